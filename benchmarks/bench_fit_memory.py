"""Memory across repeated fine-tunings of new models: what budget mode's candidate scans do.

Budget mode fine-tunes each thinned or block-removed candidate briefly
(``tfcompress.target.joint``): one new model, one ``fit``, thrown away. Every
trace of a train step registers a gradient function in TensorFlow's global
gradient registry that holds the traced graph (tf-keras issue #286), so
without ``tfcompress._keras.forget_custom_gradients`` each candidate's whole
train graph stayed in memory until the process ended. This fits ``--fits``
fresh copies of MobileNetV2 (alpha 0.35, 32x32x3, ``weights=None``) one after
the other, 1 epoch on 2,048 random inputs toward the base model's outputs,
each candidate dropped after its fit, with the guard and without, each in a
fresh child process, and records the resident memory after every fit.

    .venv/bin/python -m benchmarks.bench_fit_memory            # ~5 min on 2 cores
    .venv/bin/python -m benchmarks.bench_fit_memory --render   # fit_memory.md from fit_memory.json

Writes ``benchmarks/results/fit_memory.{json,md}``.
"""

import argparse
import json
import os
import sys

from benchmarks import _results  # noqa: E402

COMMAND = ".venv/bin/python -m benchmarks.bench_fit_memory"
MODES = ("guard", "plain")


def _rss_mb():
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmRSS")


def _child(mode, fits):
    import contextlib
    import gc

    import numpy as np

    import tfcompress  # noqa: F401 - first: its TensorFlow settings apply before TensorFlow loads
    from tfcompress._keras import forget_custom_gradients, keras

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
    x = np.random.default_rng(0).random((2048, 32, 32, 3), dtype="float32")
    teacher = base.predict(x, batch_size=256, verbose=0)
    rss = []
    for _ in range(fits):
        m = keras.models.clone_model(base)
        m.compile(keras.optimizers.Adam(1e-3), loss="mse")
        with forget_custom_gradients() if mode == "guard" else contextlib.nullcontext():
            m.fit(x, teacher, epochs=1, batch_size=64, verbose=0)
        del m
        gc.collect()
        rss.append(round(_rss_mb(), 1))
    return {"params": int(base.count_params()), "rss_mb": rss}


def _run(mode, fits, timeout):
    return _results.child(__spec__.name, [mode, str(fits)], timeout)


def per_fit(rss):
    """MB gained per fit after the first two (the first traces warm the process): least-squares slope."""
    ys = rss[2:]
    if len(ys) < 2:
        return None
    n, mx, my = len(ys), (len(ys) - 1) / 2, sum(ys) / len(ys)
    return sum((i - mx) * (v - my) for i, v in enumerate(ys)) / sum((i - mx) ** 2 for i in range(n))


def _markdown(result):
    rows = result["rows"]
    lines = [
        "## Memory across repeated fine-tunings of new models", "",
        f"`{result['command']}` — {result['fits']} fresh copies of MobileNetV2 (alpha 0.35, 32x32x3, "
        "`weights=None`), each fine-tuned 1 epoch on 2,048 inputs (batch 64) and dropped, as budget mode "
        "fine-tunes each thinned or block-removed candidate; each mode a fresh child process. \"guard\": the "
        "fit inside `forget_custom_gradients` (what `tfcompress` does in every fine-tuning); \"plain\": "
        "`model.fit` alone. Resident memory after each fit (MB); the slope is fitted over fits 3 onwards.", "",
        "| mode | after fit 1 MB | after the last MB | MB per fit | status |", "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['mode']} | | | | {r['status']} |")
            continue
        slope = per_fit(r["rss_mb"])
        lines.append(f"| {r['mode']} | {r['rss_mb'][0]:,.0f} | {r['rss_mb'][-1]:,.0f} | "
                     f"{'' if slope is None else f'{slope:+.1f}'} | ok |")
    lines += ["", f"Machine: {result['machine']}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, metavar=("MODE", "FITS"), help=argparse.SUPPRESS)
    p.add_argument("--fits", type=int, default=12, help="fine-tunings per mode (default 12)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per child (default 1800)")
    p.add_argument("--render", action="store_true", help="rewrite fit_memory.md from fit_memory.json, running nothing")
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(_child(args.child[0], int(args.child[1]))), flush=True)
        return 0
    if args.render:
        with open(os.path.join(_results.RESULTS, "fit_memory.json"), encoding="utf-8") as f:
            result = {k: v for k, v in json.load(f).items() if k != "provenance"}
        print(_results.write("fit_memory", result, _markdown(result)))
        return 0
    rows = []
    for mode in MODES:
        row = {"mode": mode, **_run(mode, args.fits, args.timeout)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {"command": _results.command(COMMAND, argv), "machine": _results.machine(load=True),
              "fits": args.fits, "rows": rows}
    print(_results.write("fit_memory", result, _markdown(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
