"""tflite_export timing: accelerators, unavailable statuses, roofline, Android parsing."""

import json
import os
import stat
import textwrap

import pytest

import tflite_export as tfl
from tflite_export import ExportError, Timing
from tflite_export._testing import digits

FAST = dict(warmup_seconds=0.0, min_seconds=0.0, min_runs=50)


def _sane(t: Timing):
    assert t.status == "ok", t.status
    assert t.runs >= 50 and t.warmup_runs >= 1
    assert 0 < t.min_ms <= t.median_ms <= t.p90_ms <= t.p99_ms <= t.max_ms
    assert t.init_ms > 0 and t.first_ms > 0 and t.std_ms >= 0
    json.dumps(t.to_dict())


@pytest.mark.parametrize("threads", [1, 2])
def test_xnnpack_threads(int8_path, threads):
    t = tfl.benchmark(int8_path, threads=threads, **FAST)
    _sane(t)
    assert t.threads == threads and t.backend == "xnnpack" and t.accelerator == "cpu"


def test_builtin_kernels(int8_path):
    t = tfl.benchmark(int8_path, accelerator="builtin", **FAST)
    _sane(t)
    assert t.backend == "builtin" and t.accelerator == "builtin"
    assert tfl.benchmark(int8_path, use_xnnpack=False, **FAST).backend == "builtin"


def test_compiled_model_cpu(int8_path):
    t = tfl.benchmark(int8_path, accelerator="compiled-cpu", threads=2, **FAST)
    _sane(t)
    assert t.backend == "litert-cpu"


def test_gpu_is_unavailable_not_a_silent_cpu_run(int8_path):
    t = tfl.benchmark(int8_path, accelerator="gpu", **FAST)
    # This machine has no WebGPU/Vulkan adapter. On a machine with one, the run must be real GPU.
    if t.status == "ok":
        assert t.backend == "litert-gpu"
    else:
        assert t.status.startswith("unavailable: ") and len(t.status) > len("unavailable: ") + 5
        assert t.median_ms is None and t.runs == 0
        assert t.accelerator == "gpu"
        json.dumps(t.to_dict())


def test_external_delegate_unavailable(int8_path, tmp_path):
    fake = tmp_path / "libnot_a_delegate.so"
    fake.write_bytes(b"\x7fELF garbage")
    t = tfl.benchmark(int8_path, delegate=str(fake), **FAST)
    assert t.status.startswith("unavailable: cannot use delegate") and t.accelerator == "delegate"
    with pytest.raises(ExportError, match="does not exist"):
        tfl.benchmark(int8_path, delegate=str(tmp_path / "missing.so"))


def test_bad_arguments(int8_path):
    with pytest.raises(ExportError, match="unknown accelerator"):
        tfl.benchmark(int8_path, accelerator="tpu")
    with pytest.raises(ExportError, match="threads"):
        tfl.benchmark(int8_path, threads=0)
    with pytest.raises(ExportError, match=r"1\.\.1024"):  # 100000 segfaulted inside XNNPACK's pool
        tfl.benchmark(int8_path, threads=100_000)
    with pytest.raises(ExportError, match="cpu_affinity"):
        tfl.benchmark(int8_path, cpu_affinity=[10_000])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_cpu_pinning_restored(int8_path):
    before = os.sched_getaffinity(0)
    t = tfl.benchmark(int8_path, cpu_affinity=[min(before)], **FAST)
    _sane(t)
    assert t.affinity == [min(before)]
    assert os.sched_getaffinity(0) == before


def test_roofline(int8_path, monkeypatch):
    from tflite_export import roofline

    monkeypatch.setattr(roofline, "PEAK_BATCH", 16)  # small and quick for the test
    monkeypatch.setattr(roofline, "_PEAK", {})
    t = tfl.benchmark(int8_path, **FAST)
    assert t.macs is None and t.gops is None  # benchmark() times; the roofline is added after
    roofline.add_roofline(t)
    assert t.macs == 6 * 6 * 8 * 9 + 72 * 10
    assert t.gops > 0 and 0 < t.peak_fraction
    assert ("int8", 1, True) in roofline._PEAK


# ------------------------------------------------------------------ benchmark_model output

# Output of TFLite's benchmark_model (Android arm64 build, --num_threads=4) in the format it
# prints: parameter echo, init, warm-up stats, timed stats, summary, memory.
BENCHMARK_MODEL_OUTPUT = textwrap.dedent(
    """\
    INFO: STARTING!
    INFO: Log parameter values verbosely: [0]
    INFO: Num threads: [4]
    INFO: Graph: [/data/local/tmp/tflite_export/mobilenet_v2_int8.tflite]
    INFO: #threads used for CPU inference: [4]
    INFO: Loaded model /data/local/tmp/tflite_export/mobilenet_v2_int8.tflite
    INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
    INFO: XNNPACK delegate created.
    INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
    INFO: The input model file size (MB): 3.98035
    INFO: Initialized session in 25.433ms.
    INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
    INFO: count=25 first=49370 curr=16785 min=16226 max=49370 avg=20020.2 std=6771

    INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    INFO: count=61 first=16681 curr=16297 min=15947 max=18003 avg=16394.8 std=347

    INFO: Inference timings in us: Init: 25433, First inference: 49370, Warmup (avg): 20020.2, Inference (avg): 16394.8
    INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to \
the actual memory footprint of the model at runtime. Take the information at your discretion.
    INFO: Memory footprint delta from the start of the tool (MB): init=3.02734 overall=11.1602
    INFO: Overall peak memory footprint (MB) via periodic monitoring: 14.0312
    """
)

# Older desktop build with scientific notation and "Peak memory footprint" (no INFO prefix).
BENCHMARK_MODEL_OUTPUT_OLD = textwrap.dedent(
    """\
    STARTING!
    Num threads: [1]
    Graph: [./mobilenet_v1_1.0_224.tflite]
    Loaded model ./mobilenet_v1_1.0_224.tflite
    Initialized session in 17.187ms.
    Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
    count=1 curr=3512391

    Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

    Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, \
Inference (avg): 2.95034e+06
    Peak memory footprint (MB): init=4.21094 overall=46.0859
    """
)

# logcat-style lines from a build that also prints percentiles.
BENCHMARK_MODEL_LOGCAT = textwrap.dedent(
    """\
    I tflite  : Num threads: [2]
    I tflite  : count=3 first=211669 curr=150111 min=150111 max=211669 avg=170000 std=29000
    I tflite  : count=25 first=187533 curr=140990 min=140071 max=195121 avg=145528 std=13583 p5=140545 \
median=141253 p95=187533
    I tflite  : Inference timings in us: Init: 92318, First inference: 187533, Warmup (avg): 211669, \
Inference (avg): 145528
    I tflite  : Memory footprint delta from the start of the tool (MB): init=54.2852 overall=73.4102
    """
)


def test_parse_benchmark_model_output():
    t = tfl.parse_benchmark_model_output(BENCHMARK_MODEL_OUTPUT)
    assert t.status == "ok" and t.accelerator == "android" and t.backend == "benchmark_model"
    assert t.threads == 4 and t.runs == 61 and t.warmup_runs == 25
    assert t.init_ms == pytest.approx(25.433) and t.first_ms == pytest.approx(49.370)
    assert t.warmup_ms == pytest.approx(20.0202) and t.mean_ms == pytest.approx(16.3948)
    assert t.min_ms == pytest.approx(15.947) and t.max_ms == pytest.approx(18.003) and t.std_ms == pytest.approx(0.347)
    assert t.median_ms is None and t.p99_ms is None  # not printed by this build
    assert t.peak_memory_mb == pytest.approx(14.0312)
    json.dumps(t.to_dict())


def test_parse_benchmark_model_variants():
    old = tfl.parse_benchmark_model_output(BENCHMARK_MODEL_OUTPUT_OLD)
    assert old.threads == 1 and old.runs == 50 and old.warmup_runs == 1
    assert old.mean_ms == pytest.approx(2950.34) and old.warmup_ms == pytest.approx(3512.39)
    assert old.peak_memory_mb == pytest.approx(46.0859)
    lc = tfl.parse_benchmark_model_output(BENCHMARK_MODEL_LOGCAT)
    assert lc.threads == 2 and lc.runs == 25 and lc.median_ms == pytest.approx(141.253)
    assert lc.peak_memory_mb == pytest.approx(73.4102)
    with pytest.raises(ExportError, match="did not report timings"):
        tfl.parse_benchmark_model_output("ERROR: Failed to load model /data/local/tmp/x.tflite\n")


def test_android_without_adb(int8_path, tmp_path, monkeypatch):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    monkeypatch.delenv("ADB", raising=False)
    monkeypatch.delenv("ANDROID_HOME", raising=False)
    monkeypatch.delenv("ANDROID_SDK_ROOT", raising=False)
    t = tfl.benchmark_on_device(int8_path, binary, threads=2)
    assert t.status.startswith("unavailable: adb not found") and t.accelerator == "android"
    with pytest.raises(ExportError, match="benchmark binary"):
        tfl.benchmark_on_device(int8_path, tmp_path / "missing_binary")


def _fake_adb(tmp_path, devices_out, shell_out):
    log = tmp_path / "adb.log"
    script = tmp_path / "adb"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{log}"\n'
        'if [ "$1" = "devices" ]; then\n'
        f"  cat <<'EOF'\n{devices_out}EOF\n"
        "  exit 0\nfi\n"
        'case "$*" in *benchmark_model\\ --graph*)\n'
        f"  cat <<'EOF'\n{shell_out}EOF\n"
        ";;\nesac\nexit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def test_android_with_fake_device(int8_path, tmp_path, monkeypatch):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    adb, log = _fake_adb(tmp_path, "List of devices attached\nemulator-5554\tdevice\n\n", BENCHMARK_MODEL_OUTPUT)
    monkeypatch.setenv("ADB", str(adb))
    t = tfl.benchmark_on_device(int8_path, binary, threads=4)
    assert t.status == "ok" and t.mean_ms == pytest.approx(16.3948) and t.device == "android emulator-5554"
    calls = log.read_text()
    assert "push" in calls and "--num_threads=4" in calls and "--use_xnnpack=true" in calls
    t2 = tfl.benchmark_on_device(int8_path, binary, serial="other-serial")
    assert t2.status.startswith("unavailable: device other-serial is not connected")


def test_android_no_device(int8_path, tmp_path, monkeypatch):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    adb, _ = _fake_adb(tmp_path, "List of devices attached\n\n", "")
    monkeypatch.setenv("ADB", str(adb))
    t = tfl.benchmark_on_device(int8_path, binary)
    assert t.status.startswith("unavailable: no Android device")


def test_partial_xnnpack_delegation_is_reported(tmp_path):
    """int8 AVERAGE_POOL_2D is not taken by XNNPACK: the graph is split and that is visible."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential(
        [keras.layers.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same"), keras.layers.AveragePooling2D(2),
         keras.layers.Conv2D(4, 3), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    xtr = digits()[0]
    f32 = tfl.export(m, tmp_path / "f32.tflite", mode="float32")
    i8 = tfl.export(m, tmp_path / "i8.tflite", representative_data=xtr, num_samples=32)
    a = tfl.benchmark(f32.path, **FAST)
    b = tfl.benchmark(i8.path, **FAST)
    assert a.backend == "xnnpack" and a.delegate_partitions == 1
    assert b.backend == "xnnpack+builtin" and b.delegate_partitions >= 2
