#!/usr/bin/env python
"""Binary and ternary weights on the cached LeNet-5 / Fashion-MNIST baseline.

Rows: float32, PQAT 80% int8 (the toolbox reference row, also the latency
reference), ternary QAT, binary QAT with the first and last layers kept int8,
binary QAT of every layer, and ternary QAT after 80% pruning (zeros kept).
Every file is the ordinary int8 ``.tflite`` (LiteRT has no binary kernels;
larq-compute-engine's runtime does not work with numpy 2, see the notes), so the
binary/ternary gain is zipped size. Columns: test accuracy of the ``.tflite``,
drop vs float32, bytes on disk, zipped bytes, ratio vs float32, the most
distinct int8 values in one output channel of the binarized layers (read from
the file), median latency (1 thread, XNNPACK) vs the PQAT int8 file.

Run from the repository root (about 8 min on 2 shared cores)::

    flock /tmp/tfc-bench.lock nice -n 10 .venv/bin/python -m benchmarks.bench_binary

Writes ``benchmarks/results/binary.json`` and ``benchmarks/results/binary.md``
(``--quick``: ``binary_quick.*``, tiny settings).
"""

import argparse
import os
import re
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import tfcompress  # noqa: E402
import tflite_export  # noqa: E402
from benchmarks import _results  # noqa: E402
from benchmarks._baseline import lenet5_fashion  # noqa: E402
from tfcompress import Pruning, Quantization, Recipe  # noqa: E402
from tfcompress._keras import keras  # noqa: E402
from tfcompress.quantization.binary import tflite_levels  # noqa: E402

#: QAT epochs of the binary/ternary rows (the int8 reference keeps the toolbox's 1).
BINARY_EPOCHS = 3
#: Binary/ternary QAT fine-tunes at the recipe's learning rate (the int8 default scale is 0.1).
BINARY_LR_SCALE = 1.0


def rows(quick):
    """(name, recipe fields or None for the base model, export mode)."""
    pe, be = (1, 1) if quick else (3, BINARY_EPOCHS)
    P = Pruning(final_sparsity=0.8, end=0.6, epochs=pe)
    B = lambda w, **kw: Quantization(epochs=be, weights=w, learning_rate_scale=BINARY_LR_SCALE, **kw)  # noqa: E731
    return [
        ("float32", None, "float32"),
        ("PQAT 80% (int8, reference)", dict(pruning=P, quantization=Quantization(epochs=1)), "int8"),
        ("ternary (first/last int8)", dict(pruning=None, quantization=B("ternary")), "int8"),
        ("binary (first/last int8)", dict(pruning=None, quantization=B("binary")), "int8"),
        ("binary, every layer", dict(pruning=None, quantization=B("binary", keep_int8=())), "int8"),
        ("ternary + pruning 80% (first/last int8)", dict(pruning=P, quantization=B("ternary")), "int8"),
    ]


def _levels(path):
    """Most distinct int8 values in one output channel of each weight tensor, by layer name."""
    out = {}
    for name, n in tflite_levels(path).items():
        m = re.search(r"quant_([^/;]+)/", name)
        out[m.group(1) if m else name] = n
    return out


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
        model, details, records = b.base, [], {}
        if fields is not None:
            res = tfcompress.optimize(b.base, (b.x_ft, b.y_ft), b.val, verbose=0,
                                      recipe=Recipe(learning_rate=lr, batch_size=bs, **fields))
            model, details = res.model, [s["details"] for s in res.report.stages]
            records = {r.name: r.stages.get("quantization", "") for r in res.report.layers}
        path = os.path.join(b.tmp, f"{i}_{mode}.tflite")
        rep = tflite_export.export(model, path, mode=mode, representative_data=b.rep_x if mode != "float32" else None)
        acc = tflite_export.evaluate(path, b.x_test, b.y_test)
        t = tflite_export.benchmark(path, threads=1, min_runs=200, min_seconds=1.0)
        binarized = sorted(k for k, v in records.items() if v.endswith(("binary", "ternary")))
        levels = _levels(path) if mode == "int8" else {}
        out.append({
            "row": name, "mode": mode, "accuracy": acc, "drop_points": round(100 * (b.f32_acc - acc), 2),
            "bytes": rep.bytes, "zipped_bytes": rep.zipped_bytes, "ratio": b.f32.zipped_bytes / rep.zipped_bytes,
            "binarized_layers": binarized, "int8_levels_per_channel": levels,
            "median_ms": t.median_ms, "backend": t.backend, "stages": details,
            "seconds": round(time.perf_counter() - t0, 1),
        })
        r = out[-1]
        print(f"{name:42s} acc {acc:.4f} ({r['drop_points']:+.2f}) {rep.bytes:7d} B zipped {rep.zipped_bytes:7d} "
              f"{r['ratio']:5.1f}x levels {levels} {t.median_ms:.3f} ms {t.backend} {r['seconds']:.0f} s", flush=True)
    ref_ms = next(r["median_ms"] for r in out if r["row"].startswith("PQAT"))
    for r in out:
        r["latency_vs_int8"] = round(r["median_ms"] / ref_ms, 2)
    command = _results.command("flock /tmp/tfc-bench.lock nice -n 10 .venv/bin/python -m benchmarks.bench_binary",
                               argv)
    settings = dict(b.settings, float32_accuracy=b.f32_acc, float32_zipped_bytes=b.f32.zipped_bytes,
                    learning_rate=lr, batch_size=bs, binary_epochs=BINARY_EPOCHS,
                    binary_lr_scale=BINARY_LR_SCALE, command=command,
                    total_seconds=round(time.perf_counter() - t_start),
                    machine=_results.machine())
    result = {"settings": settings, "rows": out}
    _results.write("binary_quick" if args.quick else "binary", result, markdown(result))
    print(markdown(result))


def markdown(result):
    s = result["settings"]
    lines = [
        "## Binary and ternary weights (Fashion-MNIST, LeNet-5)", "",
        f"Command: `{s['command']}`", "",
        f"The cached LeNet-5 baseline (float32 .tflite {s['float32_accuracy']:.2%}, "
        f"{s['float32_zipped_bytes']:,} B zipped); fine-tuning on {s['train_samples']} samples, batch "
        f"{s['batch_size']}, lr {s['learning_rate']}: the int8 reference prunes 3 epochs then PQAT 1 epoch at "
        "lr × 0.1; "
        f"the binary/ternary rows run {s['binary_epochs']} QAT epochs at lr × {s['binary_lr_scale']} (pruning 3 "
        "epochs first in the last row). Binary: α·sign(w), ternary: {-α, 0, +α} (Δ = 0.7·mean|w|), α per output "
        "channel, straight-through gradients, 8-bit activations. Every file is an int8 `.tflite`: \"levels\" is "
        "the most distinct int8 values in one output channel of each weight tensor, read from the file (≤ 2 "
        "binary, ≤ 3 ternary; the kept int8 layers show their full count). Accuracy: the .tflite on the 10,000 test "
        "images. Latency: median of ≥ 200 invokes, 1 thread, LiteRT 2.3 with XNNPACK, vs the PQAT int8 file. "
        f"Total {s['total_seconds'] / 60:.1f} min on {s['machine']}.", "",
        "| row | accuracy | drop (pts) | bytes | zipped | × vs float32 | levels per channel (file) | median ms | "
        "vs int8 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lv = ", ".join(f"{k} {v}" for k, v in r["int8_levels_per_channel"].items()) or "float32"
        lines.append(f"| {r['row']} | {r['accuracy']:.2%} | {r['drop_points']:+.2f} | {r['bytes']:,} | "
                     f"{r['zipped_bytes']:,} | {r['ratio']:.1f}× | {lv} | {r['median_ms']:.3f} | "
                     f"{r['latency_vs_int8']:.2f}× |")
    lines += ["", "The file stores ±α (and 0) as int8 times a per-channel scale: same bytes on disk and the same "
              "XNNPACK int8 kernels as any int8 file, so latency does not improve; the gain is the zipped size "
              "(two or three distinct bytes per channel compress well). A runtime with binary kernels "
              "(larq-compute-engine 0.16) converts and runs larq models only with numpy < 2: its interpreter fails "
              "under numpy 2.4 (\"Expected 256 bytes but got 0\") and LiteRT cannot load its LceBconv2d ops.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
