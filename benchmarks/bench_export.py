#!/usr/bin/env python
"""Export flavours versus latency on this machine (a script, not a test).

For a small 8x8 digits CNN, a LeNet-5-style 28x28 CNN and MobileNetV2
(``weights=None``) at 96x96 and 224x224, exports float32, float16, dynamic-range
and full-int8 TFLite files with :mod:`tflite_export`, times each with LiteRT +
XNNPACK at 1 and 2 threads (benchmark_model rigour: warm-up >= 1 run and 0.5 s,
then >= 50 runs and >= 1 s), and reports

* median latency and its ratio to float32 measured in the same run (lower = faster),
* file size,
* MACs per invoke, achieved GOPS (2*MACs / median) and the fraction of this
  machine's measured peak (a large dense-layer GEMM model, float32 or int8, through
  the same runtime and thread count).

Writes ``benchmarks/results/export.json`` and ``benchmarks/results/export.md``
and prints the Markdown table.

Usage:
    TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH=. .venv/bin/python -m benchmarks.bench_export
    ... --quick            # small models only, short timings (smoke test)
"""


import argparse
import os
import platform
import sys
import tempfile
import time

from benchmarks import _results

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import tflite_export as tfl  # noqa: E402
from tflite_export import roofline  # noqa: E402

MODES = ("float32", "float16", "dynamic", "int8")


def small_cnn():
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.layers.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="digits_cnn",
    )


def lenet5():
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.layers.Input((28, 28, 1)),
            keras.layers.Conv2D(6, 5, padding="same", activation="relu"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Conv2D(16, 5, activation="relu"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(120, activation="relu"),
            keras.layers.Dense(84, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="lenet5",
    )


def mobilenet_v2(size):
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None, classes=1000)


def representative(name, shape, n):
    rng = np.random.default_rng(0)
    if name == "digits_cnn":
        from sklearn.datasets import load_digits

        x = (load_digits().images / 16.0).astype(np.float32)[..., None]
        return x[:n]
    if name.startswith("mobilenet"):
        return rng.uniform(-1.0, 1.0, (n, *shape)).astype(np.float32)  # MobileNetV2 input range
    return rng.uniform(0.0, 1.0, (n, *shape)).astype(np.float32)


def machine_info():
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((l for l in text.splitlines() if l.startswith("flags")), "")
        info["isa"] = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f" {f}" in flags]
    except OSError:
        pass
    try:
        import importlib.metadata as md

        info["versions"] = {p: md.version(p) for p in ("tensorflow", "tf_keras", "ai-edge-litert", "numpy")}
    except Exception:  # noqa: BLE001
        pass
    info["loadavg_at_start"] = os.getloadavg()
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small models only, short timings")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    ap.add_argument("--samples", type=int, default=64, help="representative samples for int8")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    timing = dict(warmup_runs=1, warmup_seconds=0.5, min_runs=50, min_seconds=1.0)
    models = [("digits_cnn 8x8", small_cnn), ("lenet5 28x28", lenet5)]
    if args.quick:
        timing = dict(warmup_runs=1, warmup_seconds=0.05, min_runs=20, min_seconds=0.1)
    else:
        models += [("mobilenet_v2 96x96", lambda: mobilenet_v2(96)),
                   ("mobilenet_v2 224x224", lambda: mobilenet_v2(224))]

    t_start = time.time()
    machine = machine_info()  # load average at the start
    rows = []
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        for label, build in models:
            model = build()
            shape = tuple(model.inputs[0].shape[1:])
            data_kind = model.name if not label.startswith("mobilenet") else "mobilenet"
            rep_data = representative(data_kind, shape, args.samples)
            files = {}
            for mode in MODES:
                path = os.path.join(tmp, f"{label.split()[0]}_{shape[0]}_{mode}.tflite")
                t0 = time.time()
                rep = tfl.export(model, path, mode=mode, representative_data=rep_data if mode == "int8" else None,
                                 num_samples=args.samples)
                files[mode] = (rep, time.time() - t0)
                print(f"[{time.time() - t_start:6.0f}s] exported {label} {mode}: {rep.bytes} bytes",
                      file=sys.stderr, flush=True)
            macs = tfl.count_macs(files["float32"][0].path)
            for th in threads:
                base = None
                for mode in MODES:
                    rep, conv_s = files[mode]
                    t = tfl.benchmark(rep.path, threads=th, **timing)
                    roofline.add_roofline(t)
                    if mode == "float32":
                        base = t.median_ms
                    kind = roofline.compute_kind(tfl.inspect(rep.path))
                    peaks[f"{kind} x{th}"] = roofline.measure_peak_gops(kind, th, True)
                    row = {
                        "model": label,
                        "mode": mode,
                        "threads": th,
                        "bytes": rep.bytes,
                        "zipped_bytes": rep.zipped_bytes,
                        "convert_s": round(conv_s, 2),
                        "macs": macs,
                        "median_ms": t.median_ms,
                        "p90_ms": t.p90_ms,
                        "min_ms": t.min_ms,
                        "runs": t.runs,
                        "latency_vs_float32": t.median_ms / base if base else None,
                        "gops": t.gops,
                        "peak_kind": kind,
                        "peak_fraction": t.peak_fraction,
                        "backend": t.backend,
                        "timing": t.to_dict(),
                    }
                    rows.append(row)
                    print(
                        f"[{time.time() - t_start:6.0f}s] {label:22s} {mode:8s} x{th}: median {t.median_ms:.4f} ms "
                        f"({row['latency_vs_float32']:.2f}x f32), {t.gops:.2f} GOPS, "
                        f"{100 * (t.peak_fraction or 0):.1f}% of {kind} peak",
                        file=sys.stderr,
                        flush=True,
                    )
            del model

    table = markdown(rows, peaks, threads) + "\n" + gpu_line(rows)
    result = {
        "description": "tflite_export flavours on LiteRT + XNNPACK; latency_vs_float32 = "
                       "median(mode) / median(float32) in the same run (lower is faster)",
        "machine": machine,
        "timing_protocol": timing,
        "peak_gops": peaks,
        "peak_model": f"{roofline.PEAK_DEPTH} dense layers, batch {roofline.PEAK_BATCH} x {roofline.PEAK_WIDTH}, "
                      "min latency",
        "rows": rows,
        "seconds": round(time.time() - t_start, 1),
        "quick": bool(args.quick),
    }
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    _results.write("export", result, table + "\n", folder=args.out)
    print(table)
    return 0


def markdown(rows, peaks, threads):
    lines = [
        "## Export flavours: float32 / float16 / dynamic / int8 on XNNPACK",
        "",
        "Command: `.venv/bin/python -m benchmarks.bench_export` (part of `make bench`). Load average "
        f"at the end of the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (its own 2-thread "
        "runs count; well above 2 means other jobs shared the CPU).",
        "",
        "Median latency per image (LiteRT + XNNPACK, batch 1), ratio = median / float32 median at the same "
        "thread count (lower is faster); GOPS = 2*MACs/median; % peak = GOPS / measured GEMM peak of the same "
        "kind (float32 or int8) and threads.",
        "",
        "| model | MMACs | mode | size KB | "
        + " | ".join(f"{t} thr ms | {t} thr ratio | {t} thr GOPS | {t} thr % peak" for t in threads) + " |",
        "|---|---:|---|---:|" + "---:|" * (4 * len(threads)),
    ]
    keys = []
    for r in rows:
        k = (r["model"], r["mode"])
        if k not in keys:
            keys.append(k)
    for model, mode in keys:
        rs = {r["threads"]: r for r in rows if r["model"] == model and r["mode"] == mode}
        first = next(iter(rs.values()))
        cells = []
        for t in threads:
            r = rs.get(t)
            if r is None:
                cells += ["-"] * 4
                continue
            cells += [
                f"{r['median_ms']:.4g}",
                f"{r['latency_vs_float32']:.2f}",
                f"{r['gops']:.2f}" if r["gops"] is not None else "-",
                f"{100 * r['peak_fraction']:.1f}" if r["peak_fraction"] is not None else "-",
            ]
        lines.append(f"| {model} | {first['macs'] / 1e6:.2f} | {mode} | {first['bytes'] / 1024:.1f} | "
                     + " | ".join(cells) + " |")
    partial = sorted({f"{r['model']} {r['mode']}" for r in rows if r["backend"] != "xnnpack"})
    lines.append("")
    if partial:
        lines.append("Not fully delegated to XNNPACK (some ops on builtin kernels): " + ", ".join(partial) + ".")
    lines.append("Measured peaks (GOPS): " + ", ".join(f"{k}: {v:.1f}" for k, v in sorted(peaks.items())))
    return "\n".join(lines)


def gpu_line(rows):
    """Whether LiteRT's GPU accelerator could run here; never a silent CPU stand-in."""
    import tempfile

    import tflite_export
    from tflite_export import probe_accelerator

    path = next((r["timing"]["path"] for r in rows if os.path.exists(r["timing"].get("path") or "")), None)
    with tempfile.TemporaryDirectory() as tmp:
        if path is None:  # the run's files live in a temporary folder: probe a small one
            from tfcompress import models

            path = tflite_export.export(models.get("digits_cnn").build(), os.path.join(tmp, "probe.tflite"),
                                        mode="float32").path
        reason = probe_accelerator(path, "gpu")
    if reason is None:
        return (f"GPU accelerator: available on this machine ({platform.node()}); "
                "time it with `tfcompress bench --accelerator gpu`.")
    return (f"GPU accelerator: {reason if reason.startswith('unavailable') else 'unavailable: ' + reason} "
            "(no GPU machine was lent to this session, so no GPU figures are recorded).")


if __name__ == "__main__":
    sys.exit(main())
