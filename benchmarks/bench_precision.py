#!/usr/bin/env python
"""Per-layer mixed precision on the LeNet-5 / Fashion-MNIST baseline.

The trained baseline's float32 ``.tflite`` is quantized op by op
(:mod:`tflite_export.mixed`, ai-edge-quantizer): rows for float32, the
converter's PTQ int8 (the toolbox benchmark's "PTQ int8" reference row, re-measured
here), every uniform precision (int8, int16x8, float16, int4 weights) and the
scan-planned mix at two budgets (an accuracy drop, a size). Each row: test
accuracy on the 10k test images, drop against float32, bytes on disk, zipped
bytes, median latency (XNNPACK, 1 thread) and its ratio to the PTQ int8 file.
The scan (accuracy on ``--scan-samples`` validation images with one layer
lowered) and the plan (greedy, bytes saved per point, checked on the assembled
file) use validation data only; the test set measures the rows.

Run from the repository root (about 3 min on 2 shared cores)::

    nice -n 10 .venv/bin/python -m benchmarks.bench_precision

It takes /tmp/tfc-bench.lock itself, only while it times the files (waiting
at most 3 min for it; the .md says when it timed without it).

Writes ``benchmarks/results/precision.json`` and ``.md`` (``--quick``:
``precision_quick.*``, the 1-epoch baseline, for smoke tests).
"""

import argparse
import fcntl
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import tflite_export  # noqa: E402
from benchmarks import _results  # noqa: E402
from benchmarks._baseline import lenet5_fashion  # noqa: E402
from tfcompress import precision  # noqa: E402
from tfcompress.precision.stage import CALIBRATION_SAMPLES  # noqa: E402
from tflite_export.mixed import Mixer, layer_precisions  # noqa: E402
from tflite_export.safety import mark_trusted  # noqa: E402


def _row(name, path, b, note=""):
    acc = tflite_export.evaluate(path, b.x_test, b.y_test)
    data = open(path, "rb").read()
    return {"name": name, "path": path, "accuracy": acc, "drop": 100 * (b.f32_acc - acc), "bytes": len(data),
            "zipped_bytes": tflite_export.zipped_size(data), "layers": layer_precisions(data), "note": note}


def _time(rows, rounds=3, wait=180):
    """Median latency per file: XNNPACK, 1 thread, interleaved rounds (best round).

    Holds the bench lock when it gets it within ``wait`` seconds; else times
    anyway (the rounds are interleaved, so the ratios stay side by side).
    Returns whether the lock was held.
    """
    with open("/tmp/tfc-bench.lock", "a") as lock:
        held, t0 = False, time.monotonic()
        while not held and time.monotonic() - t0 < wait:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
            except OSError:
                time.sleep(2)
        for _ in range(rounds):
            for r in rows:
                t = tflite_export.benchmark(r["path"], threads=1, min_runs=100, min_seconds=1.0)
                r["median_ms"] = min(r.get("median_ms", float("inf")), t.median_ms)
        return held


def _write(tmp, name, data):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    mark_trusted(path)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--scan-samples", type=int, default=1000)
    args = ap.parse_args()
    t_all = time.perf_counter()
    b = lenet5_fashion(quick=args.quick)
    x_val, y_val = b.val[0][: args.scan_samples], b.val[1][: args.scan_samples]
    float_bytes = open(b.f32.path, "rb").read()
    mixer = Mixer(float_bytes, b.rep_x[:CALIBRATION_SAMPLES])
    ptq = tflite_export.export(b.base, os.path.join(b.tmp, "ptq_int8.tflite"), mode="int8",
                               representative_data=b.rep_x, num_samples=200)
    rows = [_row("float32", b.f32.path, b), _row("PTQ int8 (converter)", ptq.path, b)]
    for p in ("int8", "int16x8", "float16", "int4"):
        default = "float32" if p in ("float16", "int4") else p  # weight-only precisions keep float activations
        data = mixer.quantize(dict.fromkeys(mixer.layers, p), default)
        rows.append(_row(f"uniform {p}", _write(b.tmp, f"u_{p}.tflite", data), b,
                         note=f"ops without weights: {default}"))
    t0 = time.perf_counter()
    s = precision.scan(mixer, x_val, y_val, ("int4", "int8", "int16x8", "float16"), default="int8", progress=print)
    scan_s = time.perf_counter() - t0
    int8_bytes = rows[2]["bytes"]
    budgets = [("max_drop 0.5 pt", {"max_drop": 0.5}),
               ("max_bytes 80% of uniform int8", {"max_bytes": int(0.8 * int8_bytes)})]
    plans = []
    for label, budget in budgets:
        t0 = time.perf_counter()
        p = precision.plan(s, **budget)
        f = precision.fit(mixer, s, p, x_val, y_val, **budget)
        plans.append({"budget": label, **budget, "per_layer": f.per_layer, "met": f.met, "tries": f.tries,
                      "val_drop": f.drop, "seconds": time.perf_counter() - t0})
        rows.append(_row(f"planned mix, {label}", _write(b.tmp, f"mix_{len(plans)}.tflite", f.data), b,
                         note=("met" if f.met else "NOT met") + " on validation"))
    locked = _time(rows)
    ptq_ms = rows[1]["median_ms"]
    for r in rows:
        r["latency_vs_ptq_int8"] = r["median_ms"] / ptq_ms if ptq_ms else None
    result = {
        "command": _results.command("nice -n 10 .venv/bin/python -m benchmarks.bench_precision"),
        "machine": _results.machine(), "baseline": b.settings,
        "f32_acc": b.f32_acc, "scan": s.to_dict(), "scan_seconds": scan_s, "scan_samples": len(x_val),
        "plans": plans, "rows": rows, "timed_with_bench_lock": locked, "seconds": time.perf_counter() - t_all,
    }
    _results.write("precision_quick" if args.quick else "precision", result, markdown(result))
    print(markdown(result))


def markdown(r):
    lines = [
        "## Per-layer mixed precision (LeNet-5, Fashion-MNIST)", "",
        f"Command: `{r['command']}`", "",
        f"The trained baseline's float32 `.tflite` quantized op by op with ai-edge-quantizer 0.10 "
        f"(`tflite_export/mixed.py`); scan on {r['scan_samples']} validation images "
        f"({r['scan_seconds']:.0f} s), rows measured on the 10k test images; latency: XNNPACK, 1 thread, "
        f"median of ≥ 100 runs, best of 3 interleaved rounds"
        f"{'' if r['timed_with_bench_lock'] else ' (timed without the bench lock: other benchmarks were running)'}. "
        f"Total {r['seconds'] / 60:.1f} min on {r['machine']}.", "",
        "| file | test accuracy | drop vs float32 (pts) | bytes | zipped bytes | median ms | latency vs PTQ int8 | "
        "per layer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        layers = ", ".join(f"{k} {v}" for k, v in row["layers"].items())
        lines.append(f"| {row['name']} | {100 * row['accuracy']:.2f}% | {row['drop']:+.2f} | {row['bytes']:,} | "
                     f"{row['zipped_bytes']:,} | {row['median_ms']:.3f} | {row['latency_vs_ptq_int8']:.2f}× | "
                     f"{layers} |")
    lines += ["", "Scan (validation; each layer alone lowered, the others float32, ops without weights int8): "
              "drop in points / bytes saved.", "",
              "| layer | " + " | ".join(("int4", "int8", "int16x8", "float16")) + " |", "|---|---|---|---|---|"]
    for layer in dict.fromkeys(x["layer"] for x in r["scan"]["rows"]):
        cells = []
        for p in ("int4", "int8", "int16x8", "float16"):
            x = next((x for x in r["scan"]["rows"] if x["layer"] == layer and x["precision"] == p), None)
            cells.append("not supported" if x is None or not x["supported"] else f"{x['drop']:+.2f} / {x['saved']:,}")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    lines.append("")
    for p in r["plans"]:
        lines.append(f"- plan `{p['budget']}`: {'met' if p['met'] else 'NOT met'} on validation "
                     f"({p['val_drop']:+.2f} pt), files tried (moves, bytes, drop): {p['tries']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
