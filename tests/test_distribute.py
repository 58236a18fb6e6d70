"""Fine-tuning under tf.distribute: MirroredStrategy over two logical
CPUs and a two-worker MultiWorkerMirroredStrategy on 127.0.0.1 give the same
result as one device; tuner workers are pinned to GPUs; the GPU timing path
says exactly what is missing instead of falling back to the CPU.

Logical devices must be configured before TensorFlow initialises its devices, and
a MultiWorkerMirroredStrategy needs its own process, so the runs happen in child
processes (:data:`CHILD`), bounded in time.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from tfcompress import distribute
from tfcompress.errors import RecipeError, TuningError

TIMEOUT = 240  # seconds for any child; a hung collective fails the test instead of the suite

# optimize() on a tiny seeded CNN and 256 digits under the strategy named in argv[1]
# ("mirrored" also runs the one-device reference first); one JSON line per run.
# argv[2] "quick": pruning (the sparsity must match exactly), distilled from the model
# before compression (the Distiller's per-replica loss); "full" adds PQAT and a
# mixed-precision pruning run (which falls back to one replica).
CHILD = r"""
import json, os, sys, time
mode, size = sys.argv[1], sys.argv[2]
import tfcompress
from tfcompress import distribute
from tfcompress._keras import keras, tf
if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
elif mode == "multiworker":
    strategy = distribute.resolve("multiworker")  # first: before any other TensorFlow work
else:
    strategy = None
from tflite_export._testing import digits
x, y, xv, yv = digits()
x, y, xv, yv = x[:256], y[:256], xv[:128], yv[:128]
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(10)])
model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              ["accuracy"])
model.fit(x, y, batch_size=32, epochs=6, verbose=0)
recipe = {"batch_size": 32, "learning_rate": 1e-3, "pruning": {"final_sparsity": 0.5, "epochs": 2},
          "quantization": None, "distillation": {"alpha": 0.5}}
if size == "full":
    recipe["quantization"] = {"epochs": 1}
runs = [(mode, strategy, recipe)]
if mode == "mirrored":  # the one-device reference
    runs.insert(0, ("single", None, recipe))
if mode == "mirrored" and size == "full":  # mixed-precision pruning falls back to one replica
    mixed = {"batch_size": 32, "pruning": {"final_sparsity": 0.5, "epochs": 1}, "quantization": None,
             "mixed_precision": True}
    runs.append(("mixed", strategy, mixed))
for run, strat, rec in runs:
    keras.utils.set_random_seed(1)
    t0 = time.perf_counter()
    res = tfcompress.optimize(model, (x, y), (xv, yv), recipe=rec, verbose=0, strategy=strat)
    print(json.dumps({
        "run": run, "replicas": 1 if strat is None else strat.num_replicas_in_sync,
        "baseline": res.report.baseline["accuracy"], "accuracy": res.report.optimized["accuracy"],
        "sparsity": {l.name: l.sparsity for l in res.report.layers if l.sparsity is not None},
        "strategy": [s.get("strategy") for s in res.report.stages],
        "loss": [h["loss"][-1] for h in res.history.values()], "seconds": time.perf_counter() - t0,
    }), flush=True)
"""

# Accuracy of the 128 validation digits may differ by this much between one device
# and two replicas: the same global batches and weights, but float sums in another
# order (the all-reduce) and QAT's ranges averaged over replicas.
ACCURACY_TOLERANCE = 0.05


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", **extra)


def _results(proc_out, what):
    runs = {r["run"]: r for r in (json.loads(ln) for ln in proc_out.splitlines() if ln.startswith("{"))}
    assert runs, f"{what} printed no result"
    return runs


_MIRRORED = {}


def _mirrored(size):
    """One child (cached): the recipe on one device, then under MirroredStrategy over two logical CPUs."""
    if size not in _MIRRORED:
        p = subprocess.run([sys.executable, "-c", CHILD, "mirrored", size], capture_output=True, text=True,
                           timeout=TIMEOUT, env=_env())
        assert p.returncode == 0, p.stderr[-3000:]
        _MIRRORED[size] = _results(p.stdout, "mirrored")
    return _MIRRORED[size]


def _same_result(got, ref):
    assert set(got["sparsity"]) == set(ref["sparsity"]) and got["sparsity"]
    for name, s in ref["sparsity"].items():
        assert got["sparsity"][name] == pytest.approx(s, abs=0.01), name  # the same sparsity reached
    assert got["baseline"] == pytest.approx(ref["baseline"], abs=1e-6)  # the same model going in
    assert got["accuracy"] == pytest.approx(ref["accuracy"], abs=ACCURACY_TOLERANCE)
    assert got["accuracy"] > 0.6
    assert len(got["loss"]) == len(ref["loss"])
    for loss, ref_loss in zip(got["loss"], ref["loss"]):  # the loss is the global batch's, not a replica's share
        assert loss == pytest.approx(ref_loss, rel=0.25)


# "quick": pruning + distillation (make test); "full" adds PQAT (slow tier).
SIZES = ["quick", pytest.param("full", marks=pytest.mark.slow)]


@pytest.mark.parametrize("size", SIZES)
def test_mirrored_two_logical_cpus_matches_one_device(size):
    runs = _mirrored(size)
    got = runs["mirrored"]
    assert got["replicas"] == 2
    assert all(s and s.startswith("MirroredStrategy, 2 replica(s)") for s in got["strategy"]), got["strategy"]
    _same_result(got, runs["single"])


@pytest.mark.slow
def test_mixed_precision_pruning_runs_on_one_replica_and_says_why():
    got = _mirrored("full")["mixed"]
    assert got["strategy"][0].startswith("one replica (not under MirroredStrategy: with mixed precision, TF-MOT")
    assert set(got["sparsity"].values()) == {0.5}


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# Two worker processes (TensorFlow imported twice, a gRPC collective on 127.0.0.1): the
# quick size runs in make test (the strategy is tested on every change), PQAT in the slow tier.
@pytest.mark.parametrize("size", SIZES)
def test_multiworker_two_local_workers_match_one_device(size):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen([sys.executable, "-c", CHILD, "multiworker", size], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=_env(TF_CONFIG=tf_config)))
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT)
            assert p.returncode == 0, err[-3000:]
            outs.append(_results(out, "worker")["multiworker"])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    single = _mirrored(size)["single"]
    for got in outs:
        assert got["replicas"] == 2
        assert all(s and "MultiWorkerMirroredStrategy, 2 replica(s) on 2 worker(s)" in s
                   for s in got["strategy"]), got["strategy"]
        _same_result(got, single)
    assert outs[0]["sparsity"] == outs[1]["sparsity"]  # the workers hold one model
    assert outs[0]["accuracy"] == pytest.approx(outs[1]["accuracy"], abs=1e-6)


def test_strategy_names_and_errors(monkeypatch):
    assert distribute.resolve(None) is None and distribute.resolve("default") is None
    with pytest.raises(RecipeError, match="strategy must be one of default, mirrored, multiworker"):
        distribute.resolve("tpu")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(RecipeError, match="TF_CONFIG is not a valid cluster"):
        distribute.resolve("multiworker")
    assert distribute.trial_strategy("Mirrored") == "mirrored" and distribute.trial_strategy("default") is None
    with pytest.raises(TuningError, match="--chief"):
        distribute.trial_strategy("multiworker")


def test_stage_falls_back_to_one_replica_with_the_reason():
    class FakeStrategy:  # only what Placement reads
        num_replicas_in_sync = 2

        def scope(self):
            raise AssertionError("a stage that falls back must not enter the strategy's scope")

    table = {("clustering", None): "measured: fails", ("pruning", "mixed_precision"): "float16"}
    p = distribute.Placement(None, single_replica=table)
    p.strategy = FakeStrategy()
    with p.scope("clustering"):
        pass
    assert p.fell_back == {"clustering": "measured: fails"}
    assert p.where("clustering") == "one replica (not under FakeStrategy: measured: fails)"
    assert p.to_dict()["single_replica"] == {"clustering": "measured: fails"}
    assert "pruning" not in p.single_replica  # float32 pruning runs under the strategy
    assert distribute.Placement(None, mixed_precision=True, single_replica=table).single_replica["pruning"] == "float16"


def test_gpu_assignment_round_robin():
    assert distribute.gpu_assignment(3, ["0", "1"]) == ["0", "1", "0"]
    assert distribute.gpu_assignment(2, ["0", "1", "2", "3"]) == ["0", "1"]
    assert distribute.gpu_assignment(2, []) == [None, None]
    assert distribute.gpu_summary(2, []) == "0 GPUs: workers run on CPU"
    assert distribute.pin_env({"X": "1"}, "3")["CUDA_VISIBLE_DEVICES"] == "3"
    assert "CUDA_VISIBLE_DEVICES" not in distribute.pin_env({"X": "1"}, None)


def test_find_gpus_reads_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert distribute.find_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert distribute.find_gpus() == []


def _tune_args(tmp_path, workers=3):
    from tfcompress.cli import build_parser

    return build_parser().parse_args(["tune", "--model", "digits_cnn", "--dataset", "digits", "--dir", str(tmp_path),
                                      "--strategy", "mirrored", "--workers", str(workers),
                                      "--chief", "127.0.0.1:1"])


def test_tune_workers_pinned_to_faked_gpus(monkeypatch, tmp_path, capsys):
    from tfcompress.tuning import cli as tuning_cli

    started = []

    class FakePopen:
        def __init__(self, argv, env):
            started.append((argv, env))

        def wait(self):
            return 0

    monkeypatch.setattr(tuning_cli, "find_gpus", lambda: ["0", "1"])
    monkeypatch.setattr(tuning_cli.subprocess, "Popen", FakePopen)
    assert tuning_cli._join(_tune_args(tmp_path), progress=None) == 0
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == ["0", "1", "0"]
    assert all(argv[argv.index("--strategy") + 1] == "mirrored" for argv, _ in started)
    assert "2 GPU(s): worker0 on GPU 0, worker1 on GPU 1, worker2 on GPU 0" in capsys.readouterr().out

    started.clear()
    monkeypatch.setattr(tuning_cli, "find_gpus", lambda: [])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    tuning_cli._join(_tune_args(tmp_path, workers=2), progress=None)
    assert all("CUDA_VISIBLE_DEVICES" not in env for _, env in started)
    assert "0 GPUs: workers run on CPU" in capsys.readouterr().out


def test_gpu_timing_names_what_is_missing_and_never_runs_on_cpu(int8_path):
    import ctypes.util

    import tflite_export

    t = tflite_export.benchmark(int8_path, accelerator="gpu", min_runs=1, min_seconds=0.0)
    if t.ok:  # a machine with a working Vulkan GPU
        assert t.backend == "litert-gpu"
        return
    assert t.status.startswith("unavailable: no usable GPU: ")
    assert t.runs == 0 and t.median_ms is None and t.backend == "litert-gpu"  # no silent CPU run
    if ctypes.util.find_library("vulkan") is None:  # this machine: no Vulkan loader
        assert "the Vulkan loader libvulkan.so.1 is missing" in t.status
        assert "apt install libvulkan1" in t.status and "Vulkan driver" in t.status


@pytest.mark.parametrize("stderr, wanted", [
    ("Warning: Couldn't load Vulkan: libvulkan.so.1: cannot open shared object file: No such file or directory\n"
     "ERROR: Failed to initialize WebGPU environment: INTERNAL: No adapters found",
     "the Vulkan loader libvulkan.so.1 is missing"),
    ("ERROR: [delegate_webgpu.cc:359] Failed to initialize WebGPU environment: INTERNAL: No adapters found",
     "no Vulkan driver offers a GPU"),
    ("Could not load shared library libLiteRtWebGpuAccelerator.so: oops", "Could not load shared library"),
    ("", "the fallback"),
])
def test_gpu_failure_reasons(stderr, wanted):
    from tflite_export.probe import gpu_failure

    reason = gpu_failure(stderr, "the fallback")
    assert reason.startswith("no usable GPU: ") and wanted in reason


def test_output_dir_chief_writes_out_others_a_subfolder(monkeypatch):
    class Spec:
        def __init__(self, d):
            self.d = d

        def as_dict(self):
            return self.d

    class Resolver:
        def __init__(self, kind, index, spec):
            self.task_type, self.task_id, self.spec = kind, index, spec

        def cluster_spec(self):
            return Spec(self.spec)

    class Strategy:
        def __init__(self, resolver):
            self.cluster_resolver = resolver

    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": workers, "task": {"type": "worker", "index": 0}}))
    assert distribute.output_dir("out", Strategy(Resolver("worker", 0, workers))) == "out"
    assert distribute.output_dir("out", Strategy(Resolver("worker", 1, workers))) == os.path.join("out", "worker1")
    with_chief = dict(workers, chief=["127.0.0.1:3"])
    assert distribute.output_dir("out", Strategy(Resolver("chief", 0, with_chief))) == "out"
    assert distribute.output_dir("out", Strategy(Resolver("worker", 0, with_chief))) == os.path.join("out", "worker0")
    assert distribute.output_dir("out", None) == "out"


def test_cli_strategy_options(capsys):
    from tfcompress.cli import build_parser

    base = ["--model", "lenet5", "--dataset", "digits", "--strategy"]
    assert build_parser().parse_args(["optimize", *base, "multiworker"]).strategy == "multiworker"
    assert build_parser().parse_args(["tune", *base, "mirrored"]).strategy == "mirrored"
    for argv in (["optimize", *base, "tpu"], ["tune", *base, "multiworker"]):  # trials take mirrored/default
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(argv)
        assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
