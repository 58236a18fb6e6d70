#!/usr/bin/env python
"""Latency and size of the compressed files of a trained, realistic model (issue 14 §3).

On the trained ResNet-8 / Fashion-MNIST model of ``benchmarks/_realistic.py``,
side by side in one run: float32, int8 PTQ, the model's default recipe
(pruning 50 % + PQAT) int8, and channel pruning (the Channels stage, with
distillation from the trained model) + QAT int8 at two ratios. Columns: test
accuracy of the ``.tflite`` (10k), drop in points, zipped size, median XNNPACK
latency at 1 and 2 threads and the speed-up against float32 and against plain
int8 (what the compression adds), and which ops fall back to builtin kernels
(:mod:`tflite_export.opreport`). The files are timed in interleaved rounds
(the CPU is shared), keeping the fastest median of each.

Also MobileNetV3Small (96x96, random weights: its int8 file was measured at
0.51x the speed of float32 here): the note the main job prints for it.

Run from the repository root (about 10-15 min on 2 shared cores)::

    nice -n 10 .venv/bin/python benchmarks/bench_realistic.py

The script takes ``/tmp/tfc-bench.lock`` itself, only while it times the files
(the fine-tuning and exports run without it, so other benchmarks' timings are
not held up for the whole run, nor disturbed by its timing).

Writes ``benchmarks/results/realistic.json`` and ``.md`` (``--quick``:
``realistic_quick.*``, tiny settings, for smoke tests).
"""

import argparse
import json
import os
import platform
import shlex
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import tfcompress  # noqa: E402
import tflite_export  # noqa: E402
from benchmarks._baseline import bench_lock  # noqa: E402
from benchmarks._realistic import resnet8_fashion  # noqa: E402
from tfcompress import pipeline  # noqa: E402
from tfcompress._keras import keras  # noqa: E402
from tfcompress.channels import Channels  # noqa: E402
from tfcompress.recipe import Quantization, Recipe  # noqa: E402
from tflite_export import opreport  # noqa: E402

FULL = dict(ft_samples=4000, val_samples=2000, channel_epochs=2, qat_epochs=1, rounds=3, seconds=0.5, mobilenet=True)
QUICK = dict(ft_samples=300, val_samples=300, channel_epochs=1, qat_epochs=1, rounds=1, seconds=0.05, mobilenet=False)


def recipes(spec, s):
    """(row name, recipe, or None for the plain export named by the row)."""
    def channels(ratio):
        return Recipe(channels=Channels(ratio=ratio, epochs=s["channel_epochs"], distill=True),
                      pruning=None, quantization=Quantization(epochs=s["qat_epochs"]),
                      learning_rate=5e-4, batch_size=128)
    default = spec.recipe().to_dict()
    if s is QUICK:
        default["pruning"]["epochs"] = 1
    return [
        ("float32", None), ("int8 PTQ", None),
        ("default recipe (pruning 50% + PQAT) int8", Recipe.from_dict(default)),
        ("channels 0.5 + distillation + QAT int8", channels(0.5)),
        ("channels 0.75 + distillation + QAT int8", channels(0.75)),
    ]






def _time(files, threads, rounds, seconds):
    """{name: fastest median ms} over interleaved rounds."""
    best = {}
    for _ in range(rounds):
        for name, path in files.items():
            t = tflite_export.benchmark(path, threads=threads, min_runs=30, min_seconds=seconds)
            if t.status != "ok":
                raise RuntimeError(f"timing {path} failed: {t.status}")
            best[name] = min(best.get(name, t.median_ms), t.median_ms)
    return best


def mobilenet_files(tmp):
    """MobileNetV3Small 96x96 (random weights) exported as float32 and int8."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(input_shape=(96, 96, 3), weights=None, classes=10)
    rep = np.random.default_rng(0).uniform(0, 255, (32, 96, 96, 3)).astype("float32")
    return {m: tflite_export.export(model, os.path.join(tmp, f"mnv3_{m}.tflite"), mode=m,
                                    representative_data=rep if m == "int8" else None).path
            for m in ("float32", "int8")}


def mobilenet_note(files, seconds):
    """MobileNetV3Small's timings and the main job's note on them."""
    ms = _time(files, 1, 3, seconds)
    rows = [{"name": m, "path": p, "median_ms": ms[m]} for m, p in files.items()]
    return {"median_ms": ms, "notes": pipeline.slower_than_float(rows, 1),
            "delegation": {m: opreport.delegation(p).to_dict() for m, p in files.items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    args = ap.parse_args(argv)
    s = QUICK if args.quick else FULL
    t_all = time.perf_counter()
    b = resnet8_fashion(quick=args.quick)
    x_ft, y_ft = b.x_ft[: s["ft_samples"]], b.y_ft[: s["ft_samples"]]
    val = (b.val[0][: s["val_samples"]], b.val[1][: s["val_samples"]])
    files, rows = {}, []
    for name, recipe in recipes(b.spec, s):
        t0 = time.perf_counter()
        path = os.path.join(b.tmp, f"{len(rows)}.tflite")
        if name == "float32":
            rep, model, details = b.f32, b.base, []
        else:
            model, details = b.base, []
            if recipe is not None:
                keras.utils.set_random_seed(0)
                res = tfcompress.optimize(b.base, (x_ft, y_ft), val, recipe=recipe, verbose=0)
                model, details = res.model, [st["details"] for st in res.report.stages]
            rep = tflite_export.export(model, path, mode="int8", representative_data=b.rep_x)
        acc = b.f32_acc if name == "float32" else tflite_export.evaluate(rep.path, b.x_test, b.y_test)
        files[name] = rep.path
        rows.append({"name": name, "accuracy": acc, "drop_points": round(100 * (b.f32_acc - acc), 2),
                     "zipped_bytes": rep.zipped_bytes, "size_ratio": b.f32.zipped_bytes / rep.zipped_bytes,
                     "stages": details, "delegation": opreport.delegation(rep.path).to_dict(),
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{name}: acc {acc:.4f} ({rows[-1]['drop_points']:+.2f} pts), {rep.zipped_bytes} B zipped, "
              f"{rows[-1]['seconds']:.0f} s", flush=True)
    mnv3_files = mobilenet_files(b.tmp) if s["mobilenet"] else None
    print("waiting for the benchmarks' lock to time the files", flush=True)
    with bench_lock():
        for threads in (1, 2):
            ms = _time(files, threads, s["rounds"], s["seconds"])
            for r in rows:
                r[f"ms_{threads}t"] = ms[r["name"]]
                r[f"vs_float32_{threads}t"] = ms["float32"] / ms[r["name"]]
                r[f"vs_int8_{threads}t"] = ms["int8 PTQ"] / ms[r["name"]]
        mnv3 = mobilenet_note(mnv3_files, s["seconds"]) if mnv3_files else None
    command = "nice -n 10 .venv/bin/python benchmarks/bench_realistic.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    result = {
        "settings": dict(s, model="resnet8", dataset="fashion-mnist", base=b.settings,
                         keras_accuracy=b.keras_acc, float32_accuracy=b.f32_acc,
                         float32_zipped_bytes=b.f32.zipped_bytes, test_samples=len(b.x_test),
                         total_seconds=round(time.perf_counter() - t_all, 1), command=command.strip(),
                         machine=f"{platform.machine()}, {os.cpu_count()} cores (shared), load avg "
                                 f"{os.getloadavg()[0]:.1f} at the end"),
        "rows": rows, "mobilenetv3small": mnv3,
    }
    out = os.path.join(ROOT, "benchmarks", "results")
    suffix = "_quick" if args.quick else ""
    with open(os.path.join(out, f"realistic{suffix}.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(out, f"realistic{suffix}.md"), "w") as f:
        f.write(markdown(result))
    print(markdown(result))


def _fallback(d):
    return ", ".join(f"{k} x{v}" for k, v in d["fallback"].items()) or "none"


def markdown(result):
    s = result["settings"]
    lines = [
        "## Realistic model: ResNet-8 / Fashion-MNIST, latency and size (issue 14 §3)", "",
        f"Command: `{s['command']}`", "",
        f"ResNet-8 (models/resnet_cifar.py, 16/32/64 channels, residual Add; 28x28x1) trained on "
        f"{s['base']['train_samples']} Fashion-MNIST images for {s['base']['base_epochs']} epochs: Keras "
        f"{s['keras_accuracy']:.2%}, float32 .tflite {s['float32_accuracy']:.2%} on the {s['test_samples']} test "
        f"images (the baseline), {s['float32_zipped_bytes']:,} B zipped. Fine-tuning: {s['ft_samples']} of those "
        f"images ({s['val_samples']} validation); channels {s['channel_epochs']} epoch(s) with distillation from "
        f"the trained model, QAT "
        f"{s['qat_epochs']} epoch(s). Latency: XNNPACK, median per invoke (batch 1), fastest of {s['rounds']} "
        f"interleaved rounds, under the benchmarks' lock. Total {s['total_seconds'] / 60:.1f} min on "
        f"{s['machine']}.", "",
        "| file | accuracy | drop (pts) | zipped bytes | × smaller | 1 thread ms | × vs float32 | × vs int8 "
        "| 2 threads ms | × vs float32 | × vs int8 | ops on builtin kernels |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['name']} | {r['accuracy']:.2%} | {r['drop_points']:+.2f} | {r['zipped_bytes']:,} | "
            f"{r['size_ratio']:.1f}× | {r['ms_1t']:.3f} | {r['vs_float32_1t']:.2f}× | {r['vs_int8_1t']:.2f}× | "
            f"{r['ms_2t']:.3f} | {r['vs_float32_2t']:.2f}× | {r['vs_int8_2t']:.2f}× | {_fallback(r['delegation'])} |")
    ok = [r for r in result["rows"] if r["drop_points"] <= 1.0 and r["name"] != "float32"]
    for threads in (1, 2):
        bf = max(ok, key=lambda r: r[f"vs_float32_{threads}t"], default=None)
        bi = max(ok, key=lambda r: r[f"vs_int8_{threads}t"], default=None)
        if bf:
            vf, vi = bf[f"vs_float32_{threads}t"], bi[f"vs_int8_{threads}t"]
            lines += ["", f"{threads} thread(s), best at ≤ 1.0 point: {vf:.2f}× vs float32 ({bf['name']}; "
                      f"target ≥ 3×), {vi:.2f}× vs plain int8 ({bi['name']}; target ≥ 1.8×)."]
    m = result.get("mobilenetv3small")
    if m:
        f32, q = m["median_ms"]["float32"], m["median_ms"]["int8"]
        lines += ["", f"MobileNetV3Small (96x96x3, random weights, 1 thread): float32 {f32:.3f} ms, int8 {q:.3f} ms "
                  f"({f32 / q:.2f}× the speed). The main job's note:", ""]
        lines += [f"> {n}" for n in m["notes"]] or ["> (none: int8 is not slower here)"]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
