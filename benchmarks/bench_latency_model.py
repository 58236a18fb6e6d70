"""The per-op latency model against measured latency: whole files, and budget mode's channel-thinning options.

``tflite_export.latency_model`` predicts a file's latency as the sum of its ops' costs,
each op timed alone (LiteRT/XNNPACK) once per machine and cached. This measures:

* whole files: LeNet-5, ResNet-8 (``models/``) and MobileNetV2 (alpha 0.35, 32x32x3,
  weights=None) in float32, int8, dynamic-range and int4: predicted vs measured median;
* thinning: each channel group of LeNet-5 and ResNet-8 (``--thin-mobilenet``: also
  MobileNetV2, ~25 min) thinned alone by 25/50/75 %, int8: the predicted ms
  (``tfcompress.target.latency.thinned_ms``, what budget mode's latency plans price) and
  the FLOP-proportional estimate it replaced (the measured unthinned time times the FLOPs
  kept), each scaled to the measured unthinned time as budget mode scales them, against
  each thinned file's measured median.

Writes benchmarks/results/latency_model.{json,md}.

    nice -n 19 .venv/bin/python -m benchmarks.bench_latency_model --threads 1   # ~5 min on 2 cores
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from benchmarks import _results

COMMAND = "nice -n 19 .venv/bin/python -m benchmarks.bench_latency_model"
MODES = ("float32", "int8", "dynamic", "int4")


def _models(names):
    from tfcompress import models
    from tfcompress._keras import keras

    for name in names:
        if name == "mobilenetv2":
            yield name, keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
        else:
            yield name, models.get(name).build()


def _measure(path, threads):
    import tflite_export as tfl

    return tfl.benchmark(path, threads=threads, min_runs=100, min_seconds=0.5).median_ms


def whole_files(threads, folder, tmp):
    import tflite_export as tfl
    from tflite_export.latency_model import LatencyModel

    lm, rows = LatencyModel(threads, folder), []
    rng = np.random.default_rng(0)
    for name, m in _models(("lenet5", "resnet8", "mobilenetv2")):
        x = rng.uniform(0, 1, (64, *m.input_shape[1:])).astype("float32")
        for mode in MODES:
            path = os.path.join(tmp, f"{name}_{mode}.tflite")
            tfl.export(m, path, mode=mode, representative_data=x, num_samples=64)
            p = lm.predict(path)
            ms = _measure(path, threads)
            rows.append({"model": name, "mode": mode, "ops": len(p.ops), "predicted_ms": p.predicted_ms,
                         "measured_ms": ms, "error": p.predicted_ms / ms - 1, "method": p.method})
            print(f"{name} {mode}: predicted {p.predicted_ms:.4g} ms, measured {ms:.4g} ms", file=sys.stderr,
                  flush=True)
    return rows


def thinning(name, m, threads, folder, tmp):
    import tflite_export as tfl
    from tfcompress.channels.sensitivity import sensitivity_scan
    from tfcompress.target.latency import thinned_ms

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, *m.input_shape[1:])).astype("float32")
    rep = sensitivity_scan(m, (x, rng.integers(0, 10, 64)), max_samples=64)
    base, pred = thinned_ms(m, rep, x, threads=threads, folder=folder)
    path = os.path.join(tmp, "thin.tflite")

    def measured(model):
        tfl.export(model, path, mode="int8", representative_data=x[:32], num_samples=32)
        return _measure(path, threads)

    mbase, plan, rows = measured(m), rep._plan, []
    for (r, g), scanned in zip(plan.groups.items(), rep.groups):
        for ratio in rep.ratios:
            keep = plan.keep({r: ratio})
            ms = measured(plan.build(keep)) if keep else mbase
            rows.append({"group": g.name, "ratio": ratio, "measured_ms": ms,
                         "predicted_ms": pred[g.name][ratio] * mbase / base,
                         "flops_ms": mbase * scanned["flops"][ratio] / rep.flops_before})
    return {"model": name, "base_predicted_ms": base, "base_measured_ms": mbase, "options": rows}


def _rank(a):
    return np.argsort(np.argsort(a))


def summary(t):
    m = np.array([r["measured_ms"] for r in t["options"]])
    out = {"options": len(m)}
    for k in ("predicted_ms", "flops_ms"):
        v = np.array([r[k] for r in t["options"]])
        saved, real = t["base_measured_ms"] - v, t["base_measured_ms"] - m
        out[k] = {"median_error": float(np.median(abs(v / m - 1))), "max_error": float(np.max(abs(v / m - 1))),
                  "saving_rank_correlation": float(np.corrcoef(_rank(saved), _rank(real))[0, 1])}
    return out


def markdown(res):
    lines = ["## Per-op latency model: predicted vs measured", "",
             f"`{res['command']}` on {res['machine']}, {res['threads']} thread(s), {res['seconds']:.0f} s.", "",
             "Whole files (median ms per invoke; predicted = empty invoke + sum of the ops' costs, each op timed "
             "alone once and cached):", "",
             "| model | file | ops | predicted ms | measured ms | error |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['mode']} | {r['ops']} | {r['predicted_ms']:.4g} | {r['measured_ms']:.4g} | "
              f"{100 * r['error']:+.1f}% |" for r in res["whole_files"]]
    lines += ["", "Channel-thinning options of budget mode's latency plans (one group thinned 25/50/75 %, int8; "
              "both estimates scaled to the measured unthinned file):", "",
              "| model | options | median error: predicted / FLOPs | max error: predicted / FLOPs | "
              "rank correlation of the savings: predicted / FLOPs |", "|---|---:|---:|---:|---:|"]
    for t in res["thinning"]:
        s, p, f = t["summary"], t["summary"]["predicted_ms"], t["summary"]["flops_ms"]
        lines.append(f"| {t['model']} | {s['options']} | "
                     f"{100 * p['median_error']:.1f}% / {100 * f['median_error']:.1f}% | "
                     f"{100 * p['max_error']:.1f}% / {100 * f['max_error']:.1f}% | "
                     f"{p['saving_rank_correlation']:.2f} / {f['saving_rank_correlation']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--thin-mobilenet", action="store_true", help="also thin MobileNetV2's groups (~25 min)")
    p.add_argument("--out", default=_results.RESULTS)
    args = p.parse_args(argv)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "cache")  # measured afresh: the first sitting on a machine
        res = {"command": _results.command(COMMAND, argv), "machine": _results.machine(load=True),
               "cpu": _results.cpu_flags(), "threads": args.threads,
               "whole_files": whole_files(args.threads, folder, tmp), "thinning": []}
        names = ("lenet5", "resnet8") + (("mobilenetv2",) if args.thin_mobilenet else ())
        for name, m in _models(names):
            t = thinning(name, m, args.threads, folder, tmp)
            t["summary"] = summary(t)
            res["thinning"].append(t)
            print(f"{name} thinning: {t['summary']}", file=sys.stderr, flush=True)
    res["seconds"] = time.time() - t0
    res["provenance"] = _results.provenance()
    md = markdown(res)
    _results.write("latency_model", res, md + "\n", folder=args.out)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
