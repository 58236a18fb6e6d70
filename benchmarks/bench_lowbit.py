#!/usr/bin/env python
"""Sub-8-bit weights stored as int4 on the cached LeNet-5 / Fashion-MNIST baseline.

Rows: float32, PTQ int8 (the latency reference), PQAT 80% int8 (the toolbox
reference row), 4-bit QAT, 4-bit QAT + pruning 80% (zeros kept), int4
post-training (ai-edge-quantizer), 2-bit QAT (stored in int4 tensors), and
4-bit QAT with the toolbox's per-layer ~89% pruning, and channel thinning
(conv2 16 -> 8 filters, fc1 120 -> 32, fc2 84 -> 32 units) + 4-bit QAT,
distilled from the baseline, at lr 0.0005 and 0.001 (the attempts at the
LeNet-5 target, >= 40x zipped at <= 1 point; the lr 0.001 row is
``models/recipes/lenet5_thin_int4.yaml``), and the same with fc1 at rank 16,
distilled or trained on the labels alone with cosine decay (the 50x hand
target; the latter is ``models/recipes/lenet5_rank_int4.yaml``).
Columns: test accuracy of the ``.tflite``, drop vs float32, kernel values in
the file, bytes on disk, zipped bytes, the fixed part (the file zipped with
every constant buffer zeroed), ratio vs float32, weight tensor types in the
file, median latency (1 thread, XNNPACK) and what ran it, vs the PTQ int8
file, all measured in one run.

Run from the repository root (25-40 min on 2 shared cores; the script takes
``/tmp/tfc-bench.lock`` itself, only while it times the files)::

    nice -n 10 .venv/bin/python -m benchmarks.bench_lowbit

Writes ``benchmarks/results/lowbit.json`` and ``benchmarks/results/lowbit.md``
(``--quick``: ``lowbit_quick.*``, tiny settings). ``--rows "lr 0.001"``
re-measures only the matching rows (with float32, PTQ int8 and the PQAT
reference) and merges them into the last results, each marked with its
command; ``--lock-wait S`` times without the lock after S seconds (said so).
"""

import argparse
import collections
import fcntl
import json
import os
import shlex
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import tfcompress  # noqa: E402
import tflite_export  # noqa: E402
from benchmarks._baseline import lenet5_fashion  # noqa: E402
from benchmarks._results import machine  # noqa: E402
from benchmarks._results import write as write_results  # noqa: E402
from tfcompress import Channels, Distillation, LowRank, Pruning, Quantization, Recipe  # noqa: E402
from tfcompress._keras import keras  # noqa: E402
from tflite_export import _flatbuffer as fb  # noqa: E402
from tflite_export.convert import zipped_size  # noqa: E402
from tflite_export.int4 import int4_weights  # noqa: E402

LOCK = "/tmp/tfc-bench.lock"
ROUNDS = 3
PER_LAYER = {"fc1": 0.94, "fc2": 0.85, "conv2": 0.7, "logits": 0.6}  # the toolbox's 20.7x row
#: Channel thinning of the 40x-target rows: conv2 16 -> 8 filters, fc1 120 -> 32, fc2 84 -> 32 units.
THIN = {"conv2": 0.5, "fc1": 0.73, "fc2": 0.62}


def anatomy(data):
    """(zipped bytes of the file with every constant buffer zeroed, {kernel: (values, zipped bytes alone)}).

    The first is the part no weight compression can remove (flatbuffer tables, tensor names,
    quantization scales and zero points, metadata); re-serializing leaves the size unchanged.
    """
    model = fb.parse_model(data)
    alone = {}
    for t in model.subgraphs[0].tensors:
        d = model.buffers[t.buffer].data
        if d is not None and len(d) and len(t.shape) >= 2:
            name = t.name.decode() if isinstance(t.name, bytes) else t.name
            alone[name.split(";")[0]] = (int(np.prod(t.shape)), zipped_size(np.asarray(d, np.uint8).tobytes()))
    for buf in model.buffers:
        if buf.data is not None and len(buf.data):
            buf.data = np.zeros(len(buf.data), np.uint8)
    return zipped_size(fb.serialize_model(model)), alone


def rows(quick):
    """(name, recipe fields or None for the base model, export mode)."""
    pe, qe, ce = (1, 1, 1) if quick else (3, 1, 5)
    P = lambda sp: Pruning(final_sparsity=sp, end=0.6, epochs=pe)  # noqa: E731
    Q = lambda w="int8", e=qe: Quantization(epochs=e, weights=w)  # noqa: E731
    return [
        ("float32", None, "float32"),
        ("PTQ int8", None, "int8"),
        ("PQAT 80% (int8, reference)", dict(pruning=P(0.8), quantization=Q()), "int8"),
        ("4-bit QAT", dict(pruning=None, quantization=Q("int4")), "int4"),
        ("4-bit QAT + pruning 80%", dict(pruning=P(0.8), quantization=Q("int4")), "int4"),
        ("int4 post-training (ai-edge-quantizer)", None, "int4"),
        ("2-bit QAT (int4 tensors)", dict(pruning=None, quantization=Q("int2")), "int4"),
        ("4-bit QAT + per-layer ~89% pruning", dict(
            pruning=Pruning(final_sparsity=0.9, end=0.6, epochs=pe + 2, exclude=["conv1"], per_layer=PER_LAYER),
            quantization=Q("int4")), "int4"),
        # The target (>= 40x at <= 1 point): fewer weights, none of them indexed. Thinning keeps
        # 9,182 of 61,706 parameters; distillation from the baseline in every stage.
        ("thinned + 4-bit QAT (distilled)", dict(
            channels=Channels(ratio=0.0, per_layer=THIN, epochs=ce), pruning=None,
            quantization=Q("int4", qe + 2), distillation=Distillation()), "int4"),
        ("thinned + 4-bit QAT (distilled, lr 0.001)", dict(
            channels=Channels(ratio=0.0, per_layer=THIN, epochs=ce), pruning=None,
            quantization=Q("int4", qe + 2), distillation=Distillation(), learning_rate=1e-3), "int4"),
        # The same thinning, then fc1 (200 x 32) as two Dense layers of rank 16: 3,712 weights, not 6,400.
        ("thinned + rank-16 fc1 + 4-bit QAT (distilled, lr 0.001)", dict(
            channels=Channels(ratio=0.0, per_layer=THIN, epochs=ce),
            lowrank=LowRank(per_layer={"fc1": 16}, epochs=qe + 2), pruning=None,
            quantization=Q("int4", qe + 2), distillation=Distillation(), learning_rate=1e-3), "int4"),
        # The same stages trained on the labels alone (alpha 1.0) with cosine decay: the 50x hand recipe,
        # models/recipes/lenet5_rank_int4.yaml (distillation at alpha 0.5 or 0.9 lost 0.4 / 0.2 point more, seed 0).
        ("thinned + rank-16 fc1 + 4-bit QAT (labels only, cosine, lr 0.001)", dict(
            channels=Channels(ratio=0.0, per_layer=THIN, epochs=ce),
            lowrank=LowRank(per_layer={"fc1": 16}, epochs=qe + 2), pruning=None,
            quantization=Q("int4", qe + 2), distillation=Distillation(alpha=1.0), learning_rate=1e-3,
            lr_schedule="cosine"), "int4"),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    ap.add_argument("--rows", help="comma-separated parts of row names: re-measure only those rows (with float32, "
                    "PTQ int8 and the PQAT reference, side by side) and merge them into the last results")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the fine-tuning (default 0); with --rows, rows other than the references are added "
                         "as '<row>, seed N' beside the seed-0 ones (how much a row depends on its seed)")
    ap.add_argument("--lock-wait", type=float, default=None, metavar="S",
                    help="time the files without the benchmarks' lock after waiting S seconds for it (said in the .md)")
    args = ap.parse_args(argv)
    if args.seed and not args.rows:
        ap.error("--seed N needs --rows: the seed-N rows are added beside the last full run's")
    keep = {"float32", "PTQ int8", "PQAT 80% (int8, reference)"}
    wanted = lambda name: not args.rows or name in keep or any(  # noqa: E731
        part.strip() in name for part in args.rows.split(","))
    t_start = time.perf_counter()
    b = lenet5_fashion(quick=args.quick)
    lr, bs = b.spec.recipe().learning_rate, b.spec.recipe().batch_size
    out = []
    for i, (name, fields, mode) in enumerate(rows(args.quick)):
        if not wanted(name):
            continue
        t0 = time.perf_counter()
        seed = 0 if name in keep else args.seed  # the references stay the seed-0 rows they stand for
        keras.utils.set_random_seed(seed)
        if seed:
            name = f"{name}, seed {seed}"
        model, details = b.base, []
        if fields is not None:
            res = tfcompress.optimize(b.base, (b.x_ft, b.y_ft), b.val, verbose=0,
                                      recipe=Recipe(**{"learning_rate": lr, "batch_size": bs, **fields,
                                                       **({"seed": seed} if seed else {})}))
            model, details = res.model, [s["details"] for s in res.report.stages]
        path = os.path.join(b.tmp, f"{i}_{mode}.tflite")
        rep = tflite_export.export(model, path, mode=mode, representative_data=b.rep_x if mode != "float32" else None)
        with open(path, "rb") as f:
            data = f.read()
        types = collections.Counter(int4_weights(data).values())
        fixed, alone = anatomy(data)
        # the same file as strip_names writes it: inner tensor names, converter notes and the recipe left out
        stripped = zipped_size(fb.add_metadata(fb.strip_names(data), fb.lean_metadata(rep.metadata)))
        acc = tflite_export.evaluate(path, b.x_test, b.y_test)
        out.append({
            "row": name, "mode": mode, "path": path, "accuracy": acc,
            "drop_points": round(100 * (b.f32_acc - acc), 2), "bytes": rep.bytes, "zipped_bytes": rep.zipped_bytes,
            "ratio": b.f32.zipped_bytes / rep.zipped_bytes, "weights": dict(types), "stages": details,
            "fixed_zipped_bytes": fixed, "weights_zipped_alone": alone,
            "stripped_zipped_bytes": stripped, "stripped_ratio": b.f32.zipped_bytes / stripped,
            "kernel_values": int(sum(n for n, _ in alone.values())),
            "seconds": round(time.perf_counter() - t0, 1),
        })
        r = out[-1]
        print(f"{name:40s} acc {acc:.4f} ({r['drop_points']:+.2f}) {rep.bytes:7d} B zipped {rep.zipped_bytes:7d} "
              f"{r['ratio']:5.1f}x {dict(types)} {r['seconds']:.0f} s", flush=True)
    # Timings: all files interleaved, ROUNDS times, fastest median of each, holding the
    # benchmarks' lock only now (the fine-tuning above does not hold up other benchmarks).
    with open(LOCK, "a") as lock:
        locked = _lock(lock, args.lock_wait)
        try:
            for _ in range(ROUNDS):
                for r in out:
                    t = tflite_export.benchmark(r["path"], threads=1, min_runs=200, min_seconds=1.0)
                    if r.get("median_ms") is None or t.median_ms < r["median_ms"]:
                        r["median_ms"], r["backend"] = t.median_ms, t.backend
        finally:
            if locked:
                fcntl.flock(lock, fcntl.LOCK_UN)
    for r in out:
        print(f"{r['row']:40s} {r['median_ms']:.3f} ms {r['backend']}", flush=True)
    int8_ms = next(r["median_ms"] for r in out if r["row"] == "PTQ int8")
    for r in out:
        r["latency_vs_int8"] = round(r["median_ms"] / int8_ms, 2)
    command = "nice -n 10 .venv/bin/python -m benchmarks.bench_lowbit" + \
        ("" if not (argv if argv is not None else sys.argv[1:]) else
         " " + shlex.join(argv if argv is not None else sys.argv[1:]))
    settings = dict(b.settings, float32_accuracy=b.f32_acc, float32_zipped_bytes=b.f32.zipped_bytes,
                    timed_without_lock=not locked, learning_rate=lr, batch_size=bs, command=command,
                    total_seconds=round(time.perf_counter() - t_start),
                    machine=machine())
    result = {"settings": settings, "rows": out}
    suffix = "_quick" if args.quick else ""
    res_dir = os.path.join(ROOT, "benchmarks", "results")
    if args.rows:
        result = merge(os.path.join(res_dir, f"lowbit{suffix}.json"), result, [n for n, _, _ in rows(args.quick)])
    write_results(f"lowbit{suffix}", result, markdown(result))
    print(markdown(result))


def _lock(f, wait):
    """Take the benchmarks' lock; with ``wait`` seconds given, give up after them (False)."""
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                print("timing without the benchmarks' lock (held by another benchmark)", flush=True)
                return False
            time.sleep(5)


def merge(path, new, order):
    """The last full run's results with the rows of a ``--rows`` run replaced (each keeps its command)."""
    with open(path) as f:
        old = json.load(f)
    cmd = new["settings"]["command"]
    rows_by_name = {r["row"]: r for r in old["rows"]}
    for r in new["rows"]:
        rows_by_name[r["row"]] = dict(r, command=cmd)
    order = list(order) + sorted(n for n in rows_by_name if n not in order)  # '<row>, seed N' after the rows
    old["rows"] = [rows_by_name[n] for n in order]
    old["settings"].setdefault("reruns", []).append(
        {"command": cmd, "total_seconds": new["settings"]["total_seconds"],
         "timed_without_lock": new["settings"]["timed_without_lock"],
         "float32_accuracy": new["settings"]["float32_accuracy"],
         "float32_zipped_bytes": new["settings"]["float32_zipped_bytes"]})
    return old


def _n(v):
    return "—" if v is None else f"{v:,}"


def _stripped(r):
    if r.get("stripped_zipped_bytes") is None:
        return "—"
    return f"{r['stripped_zipped_bytes']:,} ({r['stripped_ratio']:.1f}×)"


def markdown(result):
    s = result["settings"]
    lines = [
        "## Sub-8-bit weights stored as int4 (Fashion-MNIST, LeNet-5)", "",
        f"Command: `{s['command']}`", "",
        f"The cached LeNet-5 baseline (float32 .tflite {s['float32_accuracy']:.2%}, "
        f"{s['float32_zipped_bytes']:,} B zipped"
        + ("; a re-measured row's drop is against its own run's float32 file, in its footnote"
           if any(rr.get("float32_accuracy") != s["float32_accuracy"] for rr in s.get("reruns", [])) else "")
        + f"); fine-tuning on {s['train_samples']} samples, pruning 3 epochs "
        f"(the per-layer row 5), QAT 1 epoch (the thinned row: channel thinning 5 epochs, QAT 3 epochs, both "
        f"distilled from the baseline), batch {s['batch_size']}, lr {s['learning_rate']}. Accuracy: the .tflite "
        "on the 10,000 test images. Latency: median of ≥ 200 invokes, fastest of 3 interleaved rounds, 1 thread, "
        "LiteRT 2.3 with XNNPACK (\"backend\" says what ran the graph); \"vs int8\": the PTQ int8 file's median. "
        f"Total {s['total_seconds'] / 60:.1f} min on {s['machine']}"
        + ("; timed while another benchmark held the benchmarks' lock (latencies noisy)." if s.get("timed_without_lock")
           else "."), "",
        "| row | file | accuracy | drop (pts) | kernel values | bytes | zipped | fixed part | × vs float32 | "
        "zipped, names stripped (×) | weight tensors | median ms | vs int8 | backend |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    used = {r.get("command") for r in result["rows"]}  # a command run again: its last run is the one rows show
    reruns = [rr for rr in {rr["command"]: rr for rr in s.get("reruns", [])}.values() if rr["command"] in used]
    marks = {rr["command"]: "†‡§¶"[i % 4] * (1 + i // 4) for i, rr in enumerate(reruns)}
    for r in result["rows"]:
        w = ", ".join(f"{k} ×{v}" for k, v in sorted(r["weights"].items()))
        mark = f" {marks.get(r['command'], '†')}" if r.get("command") else ""
        lines.append(f"| {r['row']}{mark} | {r['mode']} | {r['accuracy']:.2%} | {r['drop_points']:+.2f} | "
                     f"{_n(r.get('kernel_values'))} | {r['bytes']:,} | {r['zipped_bytes']:,} | "
                     f"{_n(r.get('fixed_zipped_bytes'))} | "
                     f"{r['ratio']:.1f}× | {_stripped(r)} | {w} | {r['median_ms']:.3f} | "
                     f"{r['latency_vs_int8']:.2f}× | {r['backend']} |")
    ok = [r for r in result["rows"] if r["drop_points"] <= 1.0]
    best = max(ok, key=lambda r: r["ratio"]) if ok else None
    lines += ["", (f"Best at ≤ 1.0 point drop: **{best['row']}**, {best['ratio']:.2f}× smaller zipped "
                   f"({best['zipped_bytes']:,} B, {best['drop_points']:+.2f} pts); target ≥ 40× at ≤ 1 pt." if best else
                   "No row reached ≤ 1.0 point drop."), ""]
    for rr in reruns:
        lines += [f"{marks[rr['command']]} re-measured by `{rr['command']}` ({rr['total_seconds'] / 60:.1f} min), side "
                  f"by side with its own float32 file ({rr['float32_accuracy']:.2%}, {rr['float32_zipped_bytes']:,} B "
                  "zipped), PTQ int8 and PQAT 80% rows (the reference rows shown are the last re-run's)"
                  + ("; timed while another benchmark held the benchmarks' lock (latencies noisy)."
                     if rr.get("timed_without_lock") else "."), ""]
    lines += anatomy_notes(result)
    return "\n".join(lines)


#: One-off trials on the way to the thinned row (same baseline, subset, lr, batch, seed 0; not re-run here).
TRIALS = [
    "Trials on the way (one-off scripts, not re-run by this benchmark; same baseline, 24,000-image subset, "
    "seed 0): the same thinning with 2 channel + 2 QAT epochs scored 87.34% (+2.02 pts) at 5,812 B (39.7×); "
    "adding 50% magnitude pruning (2 epochs) to the thinned net 87.51% (+1.85) at 5,493 B (42.0×): at 50% "
    "zeros deflate saves little (fc1 2,400 → 2,251 B). Unstructured sparsity pays for where the non-zeros are: "
    "the per-layer ~89% recipe's int4 fc1 (94% zeros; a 1-epoch trial of it) has a zero-order entropy of "
    "0.47 bit/weight (2,800 B for "
    "48,000 values) and deflates to 3,835 B; all five kernels: 4,883 B entropy bound + 2,070 B fixed part = "
    "6,953 B > 5,772 B — at that sparsity even an ideal entropy coder of the int4 values would not reach 40×; "
    "the thinned net stores 9,094 dense values (fc1 6,400: 3.0 bit/weight after deflate, 2.67 entropy).", "",
]


def anatomy_notes(result):
    """What the best thinned (40x-target) row's file is made of (the last row if none is within 1 point)."""
    s = result["settings"]
    thinned = [r for r in result["rows"] if r["row"].startswith("thinned") and "rank" not in r["row"]]
    ok = [r for r in thinned if r["drop_points"] <= 1.0]
    r = max(ok, key=lambda r: r["ratio"]) if ok else (thinned or result["rows"])[-1]
    target = s["float32_zipped_bytes"] / 40
    parts = ", ".join(f"{k.split('/')[1].replace('quant_', '')} {n:,} values → {z:,} B"
                      for k, (n, z) in r["weights_zipped_alone"].items())
    return [
        "\"kernel values\": weights of the conv / dense kernels in the file; \"fixed part\": the file zipped with "
        "every constant buffer (kernels, biases) zeroed — flatbuffer tables, tensor names, quantization scales and "
        "zero points, metadata — which no weight compression removes.", "",
        f"The target asks for ≤ {target:,.0f} B zipped (40×). In the file of \"{r['row']}\" the fixed part is "
        f"{r['fixed_zipped_bytes']:,} B, leaving ≈ {target - r['fixed_zipped_bytes']:,.0f} B for kernels and biases "
        f"(each kernel zipped alone: {parts}). Margin of this seed: {target - r['zipped_bytes']:,.0f} B under the "
        f"40× bound and {1.0 - r['drop_points']:.2f} point inside the drop"
        + "".join(f"; {o['row'].rsplit(', ', 1)[1]} of the same recipe: {o['zipped_bytes']:,} B "
                  f"({o['ratio']:.1f}×) at {o['drop_points']:+.2f} pts" for o in thinned
                  if o is not r and o["row"].startswith(r["row"].split(", seed")[0] + ", seed"))
        + ". The lr 0.001 row as a recipe file: "
        "`models/recipes/lenet5_thin_int4.yaml` (`tfcompress optimize --model lenet5 --dataset fashion-mnist "
        "--recipe models/recipes/lenet5_thin_int4.yaml`).", "",
    ] + _low_rank_note(result) + TRIALS


#: Seed-0 one-off trials of the low-rank fc1 (not re-run by this benchmark).
RANK_TRIALS = ("one-off seed-0 trials (same thinning, names stripped): rank 20, 4,645 B (49.7×) at +1.47; "
               "rank 16 with 5 low-rank epochs, 4,343 B (53.2×) at +2.33; rank 16 or 12 fine-tuned 5 epochs by "
               "hand before a QAT distilled from the factorised model, 4,541 B (50.8×) at +1.17 or 4,013 B (57.5×) "
               "at +1.49 (those two with the converter's notes and the full metadata still in: ~120 B more)")


#: Seed-0 one-off trials of the rank-16 recipe's training settings (this stop's machine, float32 at 89.36 %).
LABEL_TRIALS = ("one-off seed-0 trials of its training settings in the same sitting (float32 file at 89.36 %; the "
                "distilled rows above were measured in another, against one at 89.95 %; same stages, bytes ±60 B, "
                "names stripped): "
                "distillation alpha 0.5 at a constant rate +1.40, with cosine decay +1.37; alpha 0.1 cosine +1.83; "
                "alpha 0.9 cosine +1.18; labels alone at a constant rate +1.12; labels alone, cosine, with 8 "
                "thinning epochs +0.98 or 5 QAT epochs +0.93")


def _seed(row):
    return row["row"].rsplit(", seed ", 1)[1] if ", seed " in row["row"] else "0"


def _low_rank_note(result):
    """The rank-16 rows against the thinned rows they extend (the 50x hand target is <= 4,617 B at <= 1 point)."""
    rows = [r for r in result["rows"] if "rank-16" in r["row"] and r.get("stripped_zipped_bytes")]
    if not rows:
        return []
    target = result["settings"]["float32_zipped_bytes"] / 50

    def each(rs):
        return "; ".join(f"seed {_seed(r)} {r['stripped_zipped_bytes']:,} B ({r['stripped_ratio']:.1f}×) at "
                         f"{r['drop_points']:+.2f} pts" for r in rs)
    kd = [r for r in rows if "labels only" not in r["row"]]
    labels = [r for r in rows if "labels only" in r["row"]]
    out = []
    if kd:
        out += [f"The rank-16 rows (the `lowrank` stage: fc1, 200 × 32 once thinned, as 200 × 16 + 16 × 32, 3,712 "
                f"weights instead of 6,400), distilled at alpha 0.5, names stripped: {each(kd)}. Under the 50× bound "
                f"({target:,.0f} B), up to {max(r['drop_points'] for r in kd) - 1:.2f} point over the 1-point budget; "
                f"{RANK_TRIALS}.", ""]
    if labels:
        ok = all(r["drop_points"] <= 1.0 and r["stripped_zipped_bytes"] <= target for r in labels)
        margin = min(1.0 - r["drop_points"] for r in labels)
        out += [f"The same stages trained on the labels alone (distillation alpha 1.0) with cosine decay, "
                f"`models/recipes/lenet5_rank_int4.yaml`, names stripped: {each(labels)}: "
                + (f"**≥ 50× at ≤ 1 point on {'both seeds' if len(labels) == 2 else 'every seed'}** (the hand "
                   "target; " if ok else "not ≥ 50× at ≤ 1 point on every seed (")
                + (f"the tightest seed {margin:.2f} point inside the budget" if margin >= 0.005 else
                   "the tightest seed exactly at the budget, no margin")
                + f"); {LABEL_TRIALS}.", ""]
    return out


if __name__ == "__main__":
    main()
