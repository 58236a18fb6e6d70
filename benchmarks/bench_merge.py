#!/usr/bin/env python
"""Benchmark of channel merging against channel pruning criteria.

At the same channel ratios (0.3, 0.5 of every prunable group), on the cached
LeNet-5 / Fashion-MNIST baseline and on ``models/resnet_tiny`` trained briefly:
``l1``, ``apoz`` and ``mean_activation`` pruning against merging
(``Channels(mode="merge")``, by weight and by activation similarity). Each row:
accuracy before fine-tuning and after 1 epoch of fine-tuning (the channels
stage's default: distillation from the unpruned model), params, FLOPs; for
LeNet-5 also the int8 ``.tflite`` (accuracy, zipped bytes) beside the float32
file and the toolbox's "PQAT (80%)" row re-measured in the same run.

Run from the repository root (~10 min on 2 shared cores)::

    flock /tmp/tfc-bench.lock nice -n 10 .venv/bin/python -m benchmarks.bench_merge

Writes ``benchmarks/results/merge.json`` and ``merge.md`` (``--quick``:
``merge_quick.*``, tiny settings for a smoke test).
"""

import argparse
import os
import shlex
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import tfcompress  # noqa: E402
import tflite_export  # noqa: E402
from benchmarks import _results  # noqa: E402
from benchmarks._baseline import lenet5_fashion  # noqa: E402
from tfcompress import (  # noqa: E402
    Pruning,
    Quantization,
    Recipe,
    channels,  # noqa: E402
)
from tfcompress._keras import keras  # noqa: E402
from tfcompress._model import onednn_safe_training  # noqa: E402
from tfcompress.channels.schedule import default_fine_tune  # noqa: E402
from tfcompress.training import make_optimizer  # noqa: E402

try:  # installed package
    from tfcompress.models import resnet_tiny
except ImportError:  # source tree
    from models import resnet_tiny

RATIOS = (0.3, 0.5)
METHODS = [  # (row name, Channels fields)
    ("l1 pruning", dict(criterion="l1")),
    ("apoz pruning", dict(criterion="apoz")),
    ("mean_activation pruning", dict(criterion="mean_activation")),
    ("merge (weights)", dict(mode="merge", merge_similarity="weights")),
    ("merge (activations)", dict(mode="merge", merge_similarity="activations")),
]
FULL = dict(lenet5_ft=12000, resnet_train=8000, resnet_epochs=2, resnet_ft=3000, resnet_test=3000)
QUICK = dict(lenet5_ft=1000, resnet_train=600, resnet_epochs=1, resnet_ft=300, resnet_test=500)


def _acc(model, x, y):
    return float((model.predict(x, batch_size=500, verbose=0).argmax(-1) == y).mean())


def _rows(name, base, x_ft, y_ft, x_test, y_test, s, export=None):
    """One row per (ratio, method): accuracy before/after 1 fine-tuning epoch, params, FLOPs."""
    rows = []
    for ratio in RATIOS:
        for method, fields in METHODS:
            t0 = time.perf_counter()
            keras.utils.set_random_seed(0)
            cfg = channels.Channels(ratio=ratio, epochs=1, **fields)
            inner = default_fine_tune(base, (x_ft, y_ft), cfg)
            seen = {}

            def fine_tune(m, epochs, inner=inner, seen=seen):
                seen["before"] = _acc(m, x_test, y_test)
                return inner(m, epochs)

            # The data criteria and activation similarity read the first 4 x 64 training images.
            data = types.SimpleNamespace(train=(x_ft, y_ft), validation=None)
            small, rep = channels.apply(base, cfg, data=data, fine_tune=fine_tune)
            row = {
                "model": name, "ratio": ratio, "method": method,
                "accuracy_before_ft": round(seen["before"], 4),
                "accuracy_after_ft": round(_acc(small, x_test, y_test), 4),
                "params": int(rep.params_after), "params_base": int(rep.params_before),
                "mflops": round(rep.flops_after / 1e6, 3), "mflops_base": round(rep.flops_before / 1e6, 3),
                "merged": rep.merged, "removed": len(rep.merges) if rep.mode == "merge" else None,
            }
            if export is not None:
                row.update(export(small, f"{name}_{ratio}_{len(rows)}"))
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(f"{name} {ratio:.1f} {method:24s} before {row['accuracy_before_ft']:.4f} after "
                  f"{row['accuracy_after_ft']:.4f} params {row['params']:,} MFLOPs {row['mflops']}"
                  + ("" if export is None else f" int8 {row['int8_accuracy']:.4f} {row['zipped_bytes']} B")
                  + f"  {row['seconds']} s", flush=True)
    return rows


def _train_resnet(s, x, y):
    keras.utils.set_random_seed(0)
    model = resnet_tiny.build((28, 28, 1), 10)
    model.compile(make_optimizer("adam", 1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    with onednn_safe_training(model):  # oneDNN stays on; its 1x1 stride-2 crash is gone around
        model.fit(x, y, epochs=s["resnet_epochs"], batch_size=64, verbose=0)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    args = ap.parse_args(argv)
    s = QUICK if args.quick else FULL
    suffix = "_quick" if args.quick else ""
    t_start = time.perf_counter()
    b = lenet5_fashion(quick=args.quick)
    tmp = tempfile.mkdtemp(prefix="bench-merge-")
    x_ft, y_ft = b.x_ft[: s["lenet5_ft"]], b.y_ft[: s["lenet5_ft"]]
    x_test, y_test = (b.x_test[:1000], b.y_test[:1000]) if args.quick else (b.x_test, b.y_test)

    def export(model, tag):
        path = os.path.join(tmp, f"{tag}.tflite")
        info = tflite_export.export(model, path, mode="int8", representative_data=b.rep_x)
        return {"int8_accuracy": round(tflite_export.evaluate(path, x_test, y_test), 4),
                "zipped_bytes": int(info.zipped_bytes)}

    f32_acc = tflite_export.evaluate(b.f32.path, x_test, y_test)
    keras_acc = _acc(b.base, x_test, y_test)
    print(f"lenet5: keras {keras_acc:.4f}, float32 tflite {f32_acc:.4f}, {b.f32.zipped_bytes} B zipped", flush=True)
    # The toolbox's reference row, re-measured here.
    t0 = time.perf_counter()
    keras.utils.set_random_seed(0)
    recipe = Recipe(learning_rate=b.spec.recipe().learning_rate, batch_size=b.spec.recipe().batch_size,
                    pruning=Pruning(final_sparsity=0.8, end=0.6, epochs=1 if args.quick else 3),
                    quantization=Quantization(epochs=1))
    res = tfcompress.optimize(b.base, (x_ft, y_ft), b.val, recipe=recipe, verbose=0)
    pqat = {"model": "lenet5", "method": "PQAT (80%) [toolbox reference]", **export(res.model, "pqat"),
            "params": int(b.base.count_params()), "seconds": round(time.perf_counter() - t0, 1)}
    print(f"PQAT (80%): int8 {pqat['int8_accuracy']:.4f}, {pqat['zipped_bytes']} B", flush=True)
    rows = _rows("lenet5", b.base, x_ft, y_ft, x_test, y_test, s, export=export)

    x_all, y_all = tfcompress.datasets.load("fashion-mnist").train
    idx = np.random.default_rng(1).permutation(len(x_all))
    xr, yr = x_all[idx[: s["resnet_train"]]], y_all[idx[: s["resnet_train"]]]
    t0 = time.perf_counter()
    resnet = _train_resnet(s, xr, yr)
    rt = (b.x_test[: s["resnet_test"]], b.y_test[: s["resnet_test"]])
    resnet_acc = _acc(resnet, *rt)
    resnet_train_s = round(time.perf_counter() - t0, 1)
    print(f"resnet_tiny: {resnet_acc:.4f} after {s['resnet_epochs']} epoch(s) on {len(xr)} images "
          f"({resnet_train_s} s)", flush=True)
    rows += _rows("resnet_tiny", resnet, xr[: s["resnet_ft"]], yr[: s["resnet_ft"]], *rt, s)

    result = {
        "command": "flock /tmp/tfc-bench.lock nice -n 10 .venv/bin/python -m benchmarks.bench_merge"
                   + (" --quick" if args.quick else ""),
        "argv": " ".join(shlex.quote(a) for a in sys.argv),
        "machine": _results.machine(),
        "settings": dict(s, lenet5=b.settings, ratios=list(RATIOS), lenet5_ft_samples=len(x_ft),
                         lenet5_test=len(x_test)),
        "lenet5": {"keras_accuracy": round(keras_acc, 4), "float32_accuracy": round(f32_acc, 4),
                   "float32_zipped_bytes": int(b.f32.zipped_bytes)},
        "resnet_tiny": {"accuracy": round(resnet_acc, 4), "params": int(resnet.count_params()),
                        "train_seconds": resnet_train_s},
        "reference": pqat, "rows": rows, "merge_vs_l1": _versus(rows),
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    _results.write(f"merge{suffix}", result, markdown(result), indent=1)
    print(markdown(result))


def _versus(rows):
    """Per (model, ratio): points merging keeps over l1 pruning, before and after fine-tuning."""
    out = []
    for model in sorted({r["model"] for r in rows}):
        for ratio in RATIOS:
            by = {r["method"]: r for r in rows if r["model"] == model and r["ratio"] == ratio}
            l1 = by["l1 pruning"]
            for m in ("merge (weights)", "merge (activations)"):
                out.append({"model": model, "ratio": ratio, "method": m,
                            "before_points": round(100 * (by[m]["accuracy_before_ft"] - l1["accuracy_before_ft"]), 2),
                            "after_points": round(100 * (by[m]["accuracy_after_ft"] - l1["accuracy_after_ft"]), 2)})
    return out


def markdown(r):
    lines = [
        "## Channel merging vs pruning criteria (LeNet-5 and resnet_tiny, Fashion-MNIST)", "",
        f"Command: `{r['command']}`", "",
        f"Machine: {r['machine']}. Total {r['seconds'] / 60:.1f} min.", "",
        "Every prunable channel group loses the same fraction of channels (`Channels(ratio=...)`, one-shot). "
        "`l1` / `apoz` / `mean_activation` prune the lowest-scoring channels; `merge` folds each removed channel "
        "into its nearest positive multiple (weights: kernel+bias with BatchNorm folded; activations: values "
        "the next layer reads) and adds it to the next layer's input weights. The data criteria and activation "
        "similarity read the first 256 fine-tuning images. Accuracy before fine-tuning = the "
        "model straight out of surgery; after = 1 epoch of the channels stage's default fine-tuning "
        "(distillation from the unpruned model, Adam, cosine decay from 1e-3) on "
        f"{r['settings']['lenet5_ft_samples']} (LeNet-5) / {r['settings']['resnet_ft']} (resnet_tiny) images. "
        f"Keras accuracy on {r['settings']['lenet5_test']} (LeNet-5) / {r['settings']['resnet_test']} "
        "(resnet_tiny) test images; LeNet-5 also as an int8 `.tflite` (calibrated on 200 training images).", "",
        f"LeNet-5 baseline (cached, `benchmarks/_baseline.py`): keras {r['lenet5']['keras_accuracy']:.2%}, "
        f"float32 `.tflite` {r['lenet5']['float32_accuracy']:.2%}, {r['lenet5']['float32_zipped_bytes']:,} B zipped. "
        f"Reference row re-measured in this run (same fine-tuning images; the toolbox used 24000): "
        f"{r['reference']['method']}: int8 "
        f"{r['reference']['int8_accuracy']:.2%}, {r['reference']['zipped_bytes']:,} B zipped "
        f"({r['lenet5']['float32_zipped_bytes'] / r['reference']['zipped_bytes']:.1f}× smaller than float32).", "",
        f"resnet_tiny (`models/resnet_tiny.py`, width 16, 2 residual blocks, {r['resnet_tiny']['params']:,} params) "
        f"trained {r['settings']['resnet_epochs']} epoch(s) on {r['settings']['resnet_train']} images: "
        f"{r['resnet_tiny']['accuracy']:.2%}.", "",
        "| model | ratio | method | acc. before FT | acc. after 1 FT epoch | params | MFLOPs | merged / removed "
        "| int8 acc. | zipped B | × smaller than float32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    f32 = r["lenet5"]["float32_zipped_bytes"]
    for x in r["rows"]:
        mr = f"{x['merged']} / {x['removed']}" if x["removed"] is not None else ""
        z = x.get("zipped_bytes")
        lines.append(
            f"| {x['model']} | {x['ratio']:.1f} | {x['method']} | {x['accuracy_before_ft']:.2%} | "
            f"{x['accuracy_after_ft']:.2%} | {x['params']:,} ({x['params'] / x['params_base']:.2f}) | "
            f"{x['mflops']} ({x['mflops'] / x['mflops_base']:.2f}) | {mr} | "
            + (f"{x['int8_accuracy']:.2%} | {z:,} | {f32 / z:.1f}× |" if z else "n/a | n/a | n/a |"))
    lines += ["", "Merging minus l1 pruning, accuracy points (same model, same ratio, same channel counts):", "",
              "| model | ratio | method | before FT | after 1 FT epoch |", "|---|---|---|---|---|"]
    for v in r["merge_vs_l1"]:
        lines.append(f"| {v['model']} | {v['ratio']:.1f} | {v['method']} | {v['before_points']:+.2f} | "
                     f"{v['after_points']:+.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
