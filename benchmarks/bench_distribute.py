"""Fine-tuning under tf.distribute, measured on CPUs; the GPU timing path's status.

Side by side in one run, each in its own child process (logical devices and a
MultiWorkerMirroredStrategy must be set up before TensorFlow does anything else):

* **which stages run under a strategy**: every stage (channels, penalty, pruning,
  clustering, QAT, and the PQAT/CQAT/PCQAT combinations, distillation, mixed
  precision) through ``tfcompress.optimize`` under ``MirroredStrategy`` over two
  logical CPUs, with no stage allowed to fall back to one replica: ok, or the
  error TF-MOT raised (this is where each technique's ``single_replica`` comes from);
* **the same result**: the digits CNN pruned to 80% and fine-tuned with PQAT,
  distilled, on one device, under MirroredStrategy (2 logical CPUs), and under
  MultiWorkerMirroredStrategy (2 worker processes on 127.0.0.1): accuracy,
  sparsity, seconds per epoch. Two logical CPUs on a 2-core machine are no
  speed-up: they measure the overhead and prove the results match;
* **the GPU**: ``tflite_export.benchmark(..., accelerator="gpu")`` on this machine
  and what its status says is missing.

Writes benchmarks/results/distribute.{json,md}.

    .venv/bin/python -m benchmarks.bench_distribute                  # ~20 min on 2 busy cores
    .venv/bin/python -m benchmarks.bench_distribute --parts stages   # one part; the others kept
    .venv/bin/python -m benchmarks.bench_distribute --parts none     # rewrite the table from the JSON
"""

import argparse
import ctypes.util
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time

from benchmarks import _results

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
COMMAND = ".venv/bin/python -m benchmarks.bench_distribute"
TIMEOUT = 1800

#: The stage matrix: name -> recipe (small epochs: support, not accuracy, is measured).
STAGE_RECIPES = {
    "channels": {"channels": {"ratio": 0.5, "epochs": 1}},
    "penalty": {"penalty": {"l1": 1e-4, "epochs": 1}},
    "pruning": {"pruning": {"final_sparsity": 0.5, "epochs": 1}},
    "clustering": {"clustering": {"number_of_clusters": 8, "epochs": 1}},
    "quantization (QAT)": {"quantization": {"epochs": 1}},
    "pruning + clustering (sparsity kept)": {"pruning": {"final_sparsity": 0.5, "epochs": 1},
                                             "clustering": {"number_of_clusters": 8, "epochs": 1}},
    "pruning + QAT (PQAT)": {"pruning": {"final_sparsity": 0.5, "epochs": 1}, "quantization": {"epochs": 1}},
    "clustering + QAT (CQAT)": {"clustering": {"number_of_clusters": 8, "epochs": 1},
                                "quantization": {"epochs": 1}},
    "pruning + clustering + QAT (PCQAT)": {"pruning": {"final_sparsity": 0.5, "epochs": 1},
                                           "clustering": {"number_of_clusters": 8, "epochs": 1},
                                           "quantization": {"epochs": 1}},
    "pruning, distilled": {"pruning": {"final_sparsity": 0.5, "epochs": 1}, "distillation": {"alpha": 0.5}},
    "pruning, mixed precision": {"pruning": {"final_sparsity": 0.5, "epochs": 1}, "mixed_precision": True},
}

NO_STAGES = {"channels": None, "penalty": None, "pruning": None, "clustering": None, "quantization": None}

#: The comparison run: one device vs two replicas.
COMPARE_RECIPE = {"batch_size": 32, "learning_rate": 1e-3, "pruning": {"final_sparsity": 0.8, "epochs": 4},
                  "quantization": {"epochs": 2}, "distillation": {"alpha": 0.5}}


def _setup(mode):
    """The strategy of a child; must run before other TensorFlow work."""
    from tfcompress import distribute
    from tfcompress._keras import tf

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    if mode == "multiworker":
        return distribute.resolve("multiworker")
    return None


def _trained():
    from tfcompress import datasets, models
    from tfcompress._keras import keras

    data = datasets.load("digits")
    keras.utils.set_random_seed(0)
    spec = models.get("digits_cnn")
    model = spec.build()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(*data.train, epochs=10, batch_size=32, verbose=0)
    return model, data


def _first_line(e):
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[-1] if lines and lines[0].startswith("in user code") else (lines or [""])[0]
    return line[:300] if line.startswith(type(e).__name__) else f"{type(e).__name__}: {line[:300]}"


def child_stages():
    """Every stage under MirroredStrategy (2 logical CPUs), none allowed to fall back."""
    strategy = _setup("mirrored")
    import tfcompress
    from tfcompress import techniques
    from tfcompress._keras import keras

    techniques.single_replica = dict  # measure, do not avoid: no stage falls back
    model, data = _trained()
    train = (data.train[0][:512], data.train[1][:512])  # support, not accuracy, is measured here
    out = {}
    for name, recipe in STAGE_RECIPES.items():
        recipe = {**NO_STAGES, **recipe}  # only the stages named (a recipe dict keeps the default stages)
        keras.utils.set_random_seed(0)
        t0 = time.perf_counter()
        try:
            res = tfcompress.optimize(model, train, data.validation, recipe=recipe, verbose=0, strategy=strategy)
            out[name] = {"status": "ok", "accuracy": res.report.optimized["accuracy"],
                         "seconds": time.perf_counter() - t0}
        except Exception as e:
            out[name] = {"status": "failed", "error": _first_line(e), "seconds": time.perf_counter() - t0}
        print(f"  {name}: {out[name]['status']} {out[name].get('error', '')}", file=sys.stderr, flush=True)
    return out


def child_compare(mode):
    """The comparison recipe under ``mode`` (single, mirrored, multiworker)."""
    strategy = _setup(mode)
    import tfcompress
    from tfcompress._keras import keras

    model, data = _trained()
    keras.utils.set_random_seed(1)
    t0 = time.perf_counter()
    res = tfcompress.optimize(model, data.train, data.validation, recipe=COMPARE_RECIPE, verbose=0,
                              strategy=strategy)
    stages = {s["name"]: {"seconds": s["seconds"], "epochs": s["epochs"], "strategy": s.get("strategy")}
              for s in res.report.stages}
    return {
        "mode": mode, "replicas": 1 if strategy is None else strategy.num_replicas_in_sync,
        "baseline": res.report.baseline["accuracy"], "accuracy": res.report.optimized["accuracy"],
        "sparsity": {r.name: r.sparsity for r in res.report.layers if r.sparsity is not None},
        "stages": stages, "seconds": time.perf_counter() - t0,
    }


def child_gpu():
    """The GPU timing path on this machine."""
    import tflite_export
    from tfcompress._keras import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
    path = os.path.join(RESULTS, ".distribute_gpu_probe.tflite")
    tflite_export.export(m, path, mode="float32")
    try:
        t = tflite_export.benchmark(path, accelerator="gpu", min_runs=5, min_seconds=0.1)
    finally:
        os.remove(path)
    return {"status": t.status, "backend": t.backend, "median_ms": t.median_ms,
            "vulkan_loader": ctypes.util.find_library("vulkan"),
            "vulkan_icd_dirs": [d for d in ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d") if os.path.isdir(d)],
            "nvidia_smi": bool(_which("nvidia-smi"))}


def _which(name):
    import shutil

    return shutil.which(name)


def _child(args, env=None, timeout=TIMEOUT):
    env = dict(os.environ if env is None else env, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    p = subprocess.run([sys.executable, "-m", __spec__.name, "--child", *args], capture_output=True,
                       text=True, timeout=timeout, env=env, cwd=ROOT)
    sys.stderr.write(p.stderr[-2000:] if p.returncode else "")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode or not lines:
        raise RuntimeError(f"child {args} failed with exit code {p.returncode}")
    return json.loads(lines[-1])


def _multiworker():
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    workers = [f"127.0.0.1:{p}" for p in ports]
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                   TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen([sys.executable, "-m", __spec__.name, "--child", "compare", "multiworker"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT))
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT)
            if p.returncode:
                sys.stderr.write(err[-2000:])
                raise RuntimeError(f"a multi-worker child failed with exit code {p.returncode}")
            outs.append(json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return outs[0]  # worker 0; both hold the same model


def _per_epoch(run, stage):
    s = run["stages"].get(stage)
    return s["seconds"] / s["epochs"] if s and s["epochs"] else None


def _markdown(res):
    from tfcompress.techniques import single_replica

    lines = [
        "## Fine-tuning under tf.distribute", "",
        f"`{COMMAND}` ({res['machine']}). Each run is a child process; the strategies run on "
        "CPUs only: **no GPU machine was lent to this work**, so no strategy ran on a GPU and no GPU "
        "figure is recorded. Measured on the shared 2-core development machine while other work ran "
        "(`--parts stages` and `--parts gpu,compare` separately): the seconds are indicative only.", "",
        "**Every stage under MirroredStrategy** (two logical CPUs, `tf.config.set_logical_device_configuration`; "
        "no stage allowed to fall back; digits CNN, 512 training digits, 1-epoch stages):", "",
        "| stage(s) | under MirroredStrategy | accuracy after |",
        "|---|---|---:|",
    ]
    for name, r in res["stages"].items():
        err = re.sub(r"^(\w+): \1: ", r"\1: ", r.get("error", ""))  # older runs doubled the type
        what = "ok" if r["status"] == "ok" else f"fails: `{err[:200]}`"
        acc = f"{r['accuracy']:.2%}" if "accuracy" in r else "-"
        lines.append(f"| {name} | {what} | {acc} |")
    fell = "; ".join(f"{stage}{' with ' + cond.replace('_', ' ') if cond else ''}: {why}"
                     for (stage, cond), why in single_replica().items()) or "none"
    lines += ["", f"Stages tfcompress runs on one replica under a strategy "
                  f"(each technique's `single_replica`): {fell}.", ""]
    lines += [
        "**One device vs two replicas**, same seeds, same global batch (32, split 16 + 16): digits CNN pruned to "
        "80% (4 epochs), then PQAT (2 epochs), distilled from the model before compression:", "",
        "| run | replicas | accuracy before | accuracy after | sparsity (per layer) | pruning s/epoch | QAT s/epoch |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for key, label in (("single", "one device"), ("mirrored", "MirroredStrategy, 2 logical CPUs"),
                       ("multiworker", "MultiWorkerMirroredStrategy, 2 workers on 127.0.0.1")):
        r = res["compare"].get(key)
        if r is None:
            lines.append(f"| {label} | - | - | - | not run: {res['errors'].get(key, 'not measured yet')} | - | - |")
            continue
        sp = ", ".join(f"{n} {s:.0%}" for n, s in r["sparsity"].items())
        pe, qe = _per_epoch(r, "pruning"), _per_epoch(r, "quantization")
        lines.append(f"| {label} | {r['replicas']} | {r['baseline']:.2%} | {r['accuracy']:.2%} | {sp} | "
                     f"{pe:.2f} | {qe:.2f} |")
    lines += [
        "", "Seconds per epoch include each stage's first-epoch tracing. Two logical CPUs (or two worker "
        "processes) on a 2-core machine are **not a speed-up**: they share the same cores and add the "
        "all-reduce; these runs show that the results match and what the overhead is. A speed-up needs "
        "replicas on separate GPUs or machines, which this project could not measure.", "",
        "**GPU timing (`tfcompress bench --accelerator gpu`)** on this machine:", "",
        f"- status: `{res['gpu']['status']}`",
        f"- Vulkan loader found: {res['gpu']['vulkan_loader'] or 'no'}; Vulkan ICD folders: "
        f"{', '.join(res['gpu']['vulkan_icd_dirs']) or 'none'}; "
        f"nvidia-smi: {'yes' if res['gpu']['nvidia_smi'] else 'no'}",
        "- why: LiteRT 2.3's GPU accelerator (`libLiteRtWebGpuAccelerator.so`) is WebGPU through Dawn, which "
        "on Linux reaches a GPU only through Vulkan: it `dlopen`s `libvulkan.so.1` (traced with `strace`: "
        "not found anywhere on this machine) and then needs a Vulkan driver (ICD) for the GPU. The status "
        "names both and the packages that provide them; the timing never falls back to the CPU.",
        "- not verified on GPU hardware: no GPU machine was lent to this work.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--parts", default="gpu,compare,stages",
                   help="what to measure now (default: %(default)s); the other parts are kept from an earlier "
                   "benchmarks/results/distribute.json")
    args = p.parse_args(argv)
    if args.child:
        kind = args.child[0]
        out = (child_stages() if kind == "stages" else child_gpu() if kind == "gpu"
               else child_compare(args.child[1]))
        print(json.dumps(out), flush=True)
        return 0
    parts = set(args.parts.split(","))
    res = {"compare": {}, "errors": {}, "stages": {}}
    old = os.path.join(RESULTS, "distribute.json")
    if parts != {"gpu", "compare", "stages"} and os.path.exists(old):
        with open(old, encoding="utf-8") as f:
            res.update(json.load(f))
    res["machine"] = f"{os.cpu_count()} CPU cores, {platform.machine()}, no GPU"
    t0 = time.perf_counter()
    if "gpu" in parts:
        res["gpu"] = _child(["gpu"])
        print(f"gpu: {res['gpu']['status']}", flush=True)
    for mode in ("single", "mirrored", "multiworker") if "compare" in parts else ():
        try:
            res["compare"][mode] = _multiworker() if mode == "multiworker" else _child(["compare", mode])
            res["errors"].pop(mode, None)
            r = res["compare"][mode]
            print(f"{mode}: accuracy {r['accuracy']:.4f}, sparsity {r['sparsity']}", flush=True)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            res["errors"][mode] = str(e)
    if "stages" in parts:
        res["stages"] = _child(["stages"])
    res["seconds"] = {**(res.get("seconds") if isinstance(res.get("seconds"), dict) else {}),
                      args.parts: time.perf_counter() - t0}
    if "gpu" not in res:
        res["gpu"] = _child(["gpu"])
    _results.write("distribute", res, _markdown(res))
    print(f"wrote benchmarks/results/distribute.md ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
