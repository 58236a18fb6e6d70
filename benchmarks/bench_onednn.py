"""oneDNN on or off: what TF_ENABLE_ONEDNN_OPTS costs fine-tuning, and what it risks.

TensorFlow 2.21's oneDNN kernels kill the process (SIGSEGV or a heap abort) while
training a 1x1 convolution with stride 2 on AVX-512 CPUs; `TF_ENABLE_ONEDNN_OPTS=0`
avoids it at a cost, tfcompress's training goes around the kernel instead. This
measures, side by side in one run, in child processes (the switch is read when
TensorFlow is imported):

* the crash: the repro model trained with each setting (exit status of the child),
  with plain tf_keras ``fit`` and through ``tfcompress.optimize``;
* the speed: seconds per epoch of pruning and QAT fine-tuning through
  ``tfcompress.optimize`` (the first epoch of each stage, which traces, is left out),
  on LeNet-5 / Fashion-MNIST and MobileNetV2 (alpha 0.35, 96x96x3, random data),
  settings alternated and repeated so drift hits both alike.

Writes benchmarks/results/onednn.{json,md}.

    .venv/bin/python -m benchmarks.bench_onednn            # ~4 min on 2 cores
"""

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time

from benchmarks import _results
from benchmarks._timing import epoch_timer

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
COMMAND = ".venv/bin/python -m benchmarks.bench_onednn"
MODELS = ("lenet5", "mobilenet_v2")
SETTINGS = ("1", "0")


def _repro(through_optimize=False):
    """The crash's minimal reproduction: fit a 1x1 stride-2 conv (crashes with oneDNN on, on AVX-512), with
    plain tf_keras ``fit`` or through ``tfcompress.optimize`` (pruning + QAT)."""
    import numpy as np

    from tfcompress._keras import keras

    L = keras.layers
    keras.utils.set_random_seed(0)
    m = keras.Sequential([L.Input((60, 60, 8)), L.Conv2D(16, 1, strides=2, padding="same"),
                          L.GlobalAveragePooling2D(), L.Dense(7, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((64, 60, 60, 8), dtype=np.float32)
    if through_optimize:
        import tfcompress

        tfcompress.optimize(m, (x, np.arange(64) % 7), batch_size=16, verbose=0, check_baseline=False,
                            recipe={"pruning": {"epochs": 1, "final_sparsity": 0.5}, "quantization": {"epochs": 1}})
        return {"trained": True}
    m.fit(x, np.arange(64) % 7, batch_size=16, epochs=1, verbose=0)
    return {"trained": True}


def _timed(name):
    """Per-epoch seconds of the pruning and QAT stages of optimize() on one model."""
    import numpy as np

    import tfcompress
    from tfcompress import datasets, models
    from tfcompress._keras import keras

    keras.utils.set_random_seed(0)
    if name == "lenet5":
        d = datasets.load("fashion-mnist")
        x, y = d.train[0][:12000], d.train[1][:12000]
        model = models.get("lenet5").build()
    else:
        rng = np.random.default_rng(0)
        x = rng.random((512, 96, 96, 3), dtype=np.float32)
        y = rng.integers(0, 10, 512)
        model = keras.applications.MobileNetV2(alpha=0.35, weights=None, input_shape=(96, 96, 3), classes=10)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])

    times = epoch_timer(keras)
    recipe = {"pruning": {"epochs": 3, "final_sparsity": 0.5}, "quantization": {"epochs": 3}}
    tfcompress.optimize(model, (x, y), recipe=recipe, batch_size=64, verbose=0, callbacks=[times])
    prune, qat = times.seconds[:3], times.seconds[3:6]
    return {"samples": int(len(x)), "pruning_epoch_s": statistics.median(prune[1:]),
            "qat_epoch_s": statistics.median(qat[1:])}


def child(what, setting):
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = setting  # before TensorFlow is imported
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    out = _repro(what == "repro_optimize") if what.startswith("repro") else _timed(what)
    print("RESULT " + json.dumps(out), flush=True)


def run_child(what, setting, timeout=900):
    proc = subprocess.run([sys.executable, "-m", __spec__.name, "--child", what, setting],
                          capture_output=True, text=True, timeout=timeout, cwd=os.path.dirname(HERE))
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return {"status": "ok", **json.loads(line[7:])}
    rc = proc.returncode
    tail = (proc.stderr.strip().splitlines() or [""])[-1][:200]
    if rc < 0 or rc >= 128:  # a signal: the native crash this measures
        sig = -rc if rc < 0 else rc - 128
        return {"status": f"crashed: killed by {signal.Signals(sig).name}" + (f" ({tail})" if tail else "")}
    return {"status": f"failed: exit {rc}" + (f" ({tail})" if tail else "")}


def _cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    wanted = sorted(f for f in flags if f.startswith(("avx512", "amx")))
    return ", ".join(wanted) if wanted else "no AVX-512"


def markdown(res):
    lines = [
        "## oneDNN on or off (TF_ENABLE_ONEDNN_OPTS)", "",
        f"Command: `{COMMAND}`. Each cell is a child process with the setting made before TensorFlow "
        f"is imported; {res['repeats']} runs per setting, alternated; seconds per epoch are the median "
        "of epochs 2-3 of each stage, then the median over runs. Load average at the end: "
        f"{res['loadavg_at_end']:.1f} on {os.cpu_count()} cores; CPU: {res['cpu_flags']}.", "",
        "| case | oneDNN on (`=1`, TF's default on x86; tfcompress leaves it) | oneDNN off (`=0`) | off / on |",
        "|---|---|---|---:|",
    ]
    rep = res["repro"]
    lines.append(f"| 1x1 stride-2 conv repro, plain tf_keras `fit` | {rep['1']['status']} | {rep['0']['status']} | — |")
    opt = res.get("repro_optimize", {})
    if opt:
        on, off = opt["1"]["status"], opt["0"]["status"]
        lines.append(f"| the same model through `tfcompress.optimize` | {on} | {off} | — |")
    for name in MODELS:
        for key, label in (("pruning_epoch_s", "pruning"), ("qat_epoch_s", "QAT")):
            on, off = res["speed"][name]["1"].get(key), res["speed"][name]["0"].get(key)
            ratio = f"{off / on:.2f}x" if on and off else "—"
            fmt = (lambda v: f"{v:.2f} s/epoch" if v else "failed")
            lines.append(f"| {name} {label} fine-tuning | {fmt(on)} | {fmt(off)} | {ratio} |")
    lines += ["", res["decision"], ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, metavar=("WHAT", "SETTING"), help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args(argv)
    if args.child:
        return child(*args.child)
    t0 = time.time()
    res = {"command": COMMAND, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "cpu_flags": _cpu_flags(), "repeats": args.repeats, "repro": {}, "speed": {}}
    res["repro_optimize"] = {}
    for s in SETTINGS:
        res["repro"][s] = run_child("repro", s, timeout=300)
        res["repro_optimize"][s] = run_child("repro_optimize", s, timeout=600)
        print(f"repro oneDNN={s}: {res['repro'][s]['status']}, through optimize: {res['repro_optimize'][s]['status']}",
              file=sys.stderr, flush=True)
    for name in MODELS:
        runs = {s: [] for s in SETTINGS}
        for i in range(args.repeats):
            for s in (SETTINGS if i % 2 == 0 else SETTINGS[::-1]):
                r = run_child(name, s)
                print(f"{name} oneDNN={s}: {r}", file=sys.stderr, flush=True)
                if r["status"] == "ok":
                    runs[s].append(r)
        res["speed"][name] = {
            s: {k: statistics.median(r[k] for r in runs[s]) for k in ("pruning_epoch_s", "qat_epoch_s")}
            if runs[s] else {} for s in SETTINGS}
    res["loadavg_at_end"] = os.getloadavg()[0]
    res["seconds"] = round(time.time() - t0, 1)
    crashed_on = res["repro"]["1"]["status"] != "ok"
    ratios = [res["speed"][n]["0"][k] / res["speed"][n]["1"][k] for n in MODELS
              for k in ("pruning_epoch_s", "qat_epoch_s") if res["speed"][n]["0"] and res["speed"][n]["1"]]
    safe = res["repro_optimize"]["1"]["status"] == "ok"
    seen = ("kills plain tf_keras `fit` here" if crashed_on else
            f"did not crash plain `fit` on this machine ({res['cpu_flags']}), but kills it on AVX-512 machines")
    res["decision"] = (
        f"Decision: tfcompress leaves oneDNN on. With it on, the repro {seen}; through `optimize` it "
        f"{'trains' if safe else 'does NOT train'}, because every stage takes a 1x1 strided convolution's kernel "
        "gradient, the one kernel that crashes, as a stride-1 convolution's on the strided slice of its input (the "
        "same numbers; the forward pass, the input gradient and the deliverable keep the strided layer). Turning "
        f"oneDNN off, the former default, costs {min(ratios):.2f}x-{max(ratios):.2f}x the time per epoch here; a "
        "`TF_ENABLE_ONEDNN_OPTS` the user sets is respected."
        if ratios else "Decision: see the table (some runs failed).")
    md = markdown(res)
    _results.write("onednn", res, md + "\n", folder=args.out)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
