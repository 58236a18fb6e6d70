#!/usr/bin/env python
"""Sub-8-bit weights stored as int4 (issue 13 §1) on the cached LeNet-5 / Fashion-MNIST baseline.

Rows: float32, PTQ int8 (the latency reference), PQAT 80% int8 (the toolbox
reference row), 4-bit QAT, 4-bit QAT + pruning 80% (zeros kept), int4
post-training (ai-edge-quantizer), 2-bit QAT (stored in int4 tensors), and
4-bit QAT with the toolbox's per-layer ~89% pruning, and channel thinning
(conv2 16 -> 8 filters, fc1 120 -> 32, fc2 84 -> 32 units) + 4-bit QAT,
distilled from the baseline (the attempts at the issue-14 target, >= 40x
zipped at <= 1 point).
Columns: test accuracy of the ``.tflite``, drop vs float32, kernel values in
the file, bytes on disk, zipped bytes, the fixed part (the file zipped with
every constant buffer zeroed), ratio vs float32, weight tensor types in the
file, median latency (1 thread, XNNPACK) and what ran it, vs the PTQ int8
file, all measured in one run.

Run from the repository root (25-40 min on 2 shared cores; the script takes
``/tmp/tfc-bench.lock`` itself, only while it times the files)::

    nice -n 10 .venv/bin/python benchmarks/bench_lowbit.py

Writes ``benchmarks/results/lowbit.json`` and ``benchmarks/results/lowbit.md``
(``--quick``: ``lowbit_quick.*``, tiny settings).
"""

import argparse
import collections
import fcntl
import json
import os
import platform
import shlex
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import tfcompress  # noqa: E402
import tflite_export  # noqa: E402
from benchmarks._baseline import lenet5_fashion  # noqa: E402
from tfcompress._keras import keras  # noqa: E402
from tfcompress.recipe import Channels, Distillation, Pruning, Quantization, Recipe  # noqa: E402
from tflite_export import _flatbuffer as fb  # noqa: E402
from tflite_export.convert import zipped_size  # noqa: E402
from tflite_export.int4 import int4_weights  # noqa: E402

LOCK = "/tmp/tfc-bench.lock"
ROUNDS = 3
PER_LAYER = {"fc1": 0.94, "fc2": 0.85, "conv2": 0.7, "logits": 0.6}  # the toolbox's 20.7x row
#: Channel thinning of the issue-14 rows: conv2 16 -> 8 filters, fc1 120 -> 32, fc2 84 -> 32 units.
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
        # Issue 14 (>= 40x at <= 1 point): fewer weights, none of them indexed. Thinning keeps
        # 9,182 of 61,706 parameters; distillation from the baseline in every stage.
        ("thinned + 4-bit QAT (distilled)", dict(
            channels=Channels(ratio=0.0, per_layer=THIN, epochs=ce), pruning=None,
            quantization=Q("int4", qe + 2), distillation=Distillation()), "int4"),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    b = lenet5_fashion(quick=args.quick)
    lr, bs = b.spec.recipe().learning_rate, b.spec.recipe().batch_size
    out = []
    for i, (name, fields, mode) in enumerate(rows(args.quick)):
        t0 = time.perf_counter()
        keras.utils.set_random_seed(0)
        model, details = b.base, []
        if fields is not None:
            res = tfcompress.optimize(b.base, (b.x_ft, b.y_ft), b.val, verbose=0,
                                      recipe=Recipe(learning_rate=lr, batch_size=bs, **fields))
            model, details = res.model, [s["details"] for s in res.report.stages]
        path = os.path.join(b.tmp, f"{i}_{mode}.tflite")
        rep = tflite_export.export(model, path, mode=mode, representative_data=b.rep_x if mode != "float32" else None)
        with open(path, "rb") as f:
            data = f.read()
        types = collections.Counter(int4_weights(data).values())
        fixed, alone = anatomy(data)
        acc = tflite_export.evaluate(path, b.x_test, b.y_test)
        out.append({
            "row": name, "mode": mode, "path": path, "accuracy": acc,
            "drop_points": round(100 * (b.f32_acc - acc), 2), "bytes": rep.bytes, "zipped_bytes": rep.zipped_bytes,
            "ratio": b.f32.zipped_bytes / rep.zipped_bytes, "weights": dict(types), "stages": details,
            "fixed_zipped_bytes": fixed, "weights_zipped_alone": alone,
            "kernel_values": int(sum(n for n, _ in alone.values())),
            "seconds": round(time.perf_counter() - t0, 1),
        })
        r = out[-1]
        print(f"{name:40s} acc {acc:.4f} ({r['drop_points']:+.2f}) {rep.bytes:7d} B zipped {rep.zipped_bytes:7d} "
              f"{r['ratio']:5.1f}x {dict(types)} {r['seconds']:.0f} s", flush=True)
    # Timings: all files interleaved, ROUNDS times, fastest median of each, holding the
    # benchmarks' lock only now (the fine-tuning above does not hold up other benchmarks).
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for _ in range(ROUNDS):
                for r in out:
                    t = tflite_export.benchmark(r["path"], threads=1, min_runs=200, min_seconds=1.0)
                    if r.get("median_ms") is None or t.median_ms < r["median_ms"]:
                        r["median_ms"], r["backend"] = t.median_ms, t.backend
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    for r in out:
        print(f"{r['row']:40s} {r['median_ms']:.3f} ms {r['backend']}", flush=True)
    int8_ms = next(r["median_ms"] for r in out if r["row"] == "PTQ int8")
    for r in out:
        r["latency_vs_int8"] = round(r["median_ms"] / int8_ms, 2)
    command = "nice -n 10 .venv/bin/python benchmarks/bench_lowbit.py" + \
        ("" if not (argv if argv is not None else sys.argv[1:]) else
         " " + shlex.join(argv if argv is not None else sys.argv[1:]))
    settings = dict(b.settings, float32_accuracy=b.f32_acc, float32_zipped_bytes=b.f32.zipped_bytes,
                    learning_rate=lr, batch_size=bs, command=command,
                    total_seconds=round(time.perf_counter() - t_start),
                    machine=f"{platform.machine()}, {os.cpu_count()} cores (shared)")
    result = {"settings": settings, "rows": out}
    suffix = "_quick" if args.quick else ""
    res_dir = os.path.join(ROOT, "benchmarks", "results")
    with open(os.path.join(res_dir, f"lowbit{suffix}.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(res_dir, f"lowbit{suffix}.md"), "w") as f:
        f.write(markdown(result))
    print(markdown(result))


def markdown(result):
    s = result["settings"]
    lines = [
        "## Sub-8-bit weights stored as int4 (Fashion-MNIST, LeNet-5)", "",
        f"Command: `{s['command']}`", "",
        f"The cached LeNet-5 baseline (float32 .tflite {s['float32_accuracy']:.2%}, "
        f"{s['float32_zipped_bytes']:,} B zipped); fine-tuning on {s['train_samples']} samples, pruning 3 epochs "
        f"(the per-layer row 5), QAT 1 epoch (the thinned row: channel thinning 5 epochs, QAT 3 epochs, both "
        f"distilled from the baseline), batch {s['batch_size']}, lr {s['learning_rate']}. Accuracy: the .tflite "
        "on the 10,000 test images. Latency: median of ≥ 200 invokes, fastest of 3 interleaved rounds, 1 thread, "
        "LiteRT 2.3 with XNNPACK (\"backend\" says what ran the graph); \"vs int8\": the PTQ int8 file's median. "
        f"Total {s['total_seconds'] / 60:.1f} min on {s['machine']}.", "",
        "| row | file | accuracy | drop (pts) | kernel values | bytes | zipped | fixed part | × vs float32 | "
        "weight tensors | median ms | vs int8 | backend |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        w = ", ".join(f"{k} ×{v}" for k, v in sorted(r["weights"].items()))
        lines.append(f"| {r['row']} | {r['mode']} | {r['accuracy']:.2%} | {r['drop_points']:+.2f} | "
                     f"{r['kernel_values']:,} | {r['bytes']:,} | {r['zipped_bytes']:,} | {r['fixed_zipped_bytes']:,} | "
                     f"{r['ratio']:.1f}× | {w} | {r['median_ms']:.3f} | "
                     f"{r['latency_vs_int8']:.2f}× | {r['backend']} |")
    ok = [r for r in result["rows"] if r["drop_points"] <= 1.0]
    best = max(ok, key=lambda r: r["ratio"]) if ok else None
    lines += ["", (f"Best at ≤ 1.0 point drop: **{best['row']}**, {best['ratio']:.1f}× smaller zipped "
                   f"({best['drop_points']:+.2f} pts); issue-14 target ≥ 40×." if best else
                   "No row reached ≤ 1.0 point drop."), ""]
    lines += anatomy_notes(result)
    return "\n".join(lines)


def anatomy_notes(result):
    """What the last (issue-14) row's file is made of, and the bound the fixed part sets."""
    s, r = result["settings"], result["rows"][-1]
    target = s["float32_zipped_bytes"] / 40
    parts = ", ".join(f"{k.split('/')[1].replace('quant_', '')} {n:,} values → {z:,} B"
                      for k, (n, z) in r["weights_zipped_alone"].items())
    return [
        "\"kernel values\": weights of the conv / dense kernels in the file; \"fixed part\": the file zipped with "
        "every constant buffer (kernels, biases) zeroed — flatbuffer tables, tensor names, quantization scales and "
        "zero points, metadata — which no weight compression removes.", "",
        f"Issue 14 asks for ≤ {target:,.0f} B zipped (40×). In the last row's file the fixed part is "
        f"{r['fixed_zipped_bytes']:,} B, leaving ≈ {target - r['fixed_zipped_bytes']:,.0f} B for kernels and biases "
        f"(each kernel zipped alone: {parts}).", "",
    ]


if __name__ == "__main__":
    main()
