"""Timing .tflite files on an Android device with TFLite's ``benchmark_model`` over adb."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence

from .benchmark import Timing
from .errors import ExportError

__all__ = ["benchmark_on_device", "parse_benchmark_model_output", "list_devices", "find_adb"]

REMOTE_DIR = "/data/local/tmp/tflite_export"

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_SUMMARY = re.compile(
    r"Inference timings in us:\s*Init:\s*" + _NUM
    + r",\s*First inference:\s*" + _NUM
    + r",\s*Warmup \(avg\):\s*" + _NUM
    + r",\s*Inference \(avg\):\s*" + _NUM
)
_COUNT = re.compile(r"count=(\d+)((?:\s+\w+=" + _NUM + r")*)")
_KV = re.compile(r"(\w+)=" + _NUM)
_MEM = re.compile(
    r"(Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\):\s*init=" + _NUM
    + r"\s+overall=" + _NUM
)
_MEM_MONITOR = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring:\s*" + _NUM)
_THREADS = re.compile(r"(?:Num threads|#threads used for CPU inference):\s*\[(\d+)\]")
_RUNS_HDR = re.compile(r"Running benchmark for at least (\d+) iterations")
_GPU_REJECTED = re.compile(
    r"will not be executed by the delegate|Failed to apply GPU delegate|failed to create GPU delegate", re.I
)


def parse_benchmark_model_output(text: str) -> Timing:
    """Parses the console output of TFLite's ``benchmark_model`` into a :class:`Timing`.

    Understands the summary line ("Inference timings in us: Init: ..., First
    inference: ..., Warmup (avg): ..., Inference (avg): ..."), the statistics lines
    ("count=50 first=... curr=... min=... max=... avg=... std=..." - the last one
    before the summary is the timed phase; newer builds add ``p5= median= p95=``),
    the memory lines ("Peak memory footprint (MB): init=... overall=...", "Memory
    footprint delta from the start of the tool (MB): ...", "Overall peak memory
    footprint (MB) via periodic monitoring: ...") and logcat prefixes such as
    "I tflite  : ". Values in microseconds (also "2.95034e+06") become ms.

    ``median_ms`` is only set when the output has a ``median=`` field;
    ``p90_ms``/``p99_ms`` are not printed by benchmark_model and stay None.

    Args:
        text: stdout/stderr of benchmark_model.

    Returns:
        A Timing with ``accelerator="android"``, ``backend="benchmark_model"``.

    Raises:
        ExportError: No "Inference timings" summary in the text (the run failed);
            the message carries the last error line of the output.

    Example:
        >>> t = parse_benchmark_model_output(out)   # doctest: +SKIP
        >>> t.mean_ms, t.runs                       # doctest: +SKIP
        (16.3948, 61)
    """
    text = text or ""
    m = _SUMMARY.search(text)
    if not m:
        errs = [ln.strip() for ln in text.splitlines() if re.search(r"error|fail|not found|cannot", ln, re.I)]
        hint = errs[-1][:160] if errs else "no 'Inference timings in us' line"
        raise ExportError(f"benchmark_model did not report timings ({hint}); run it by hand to see the full output")
    init_us, first_us, warm_us, inf_us = (float(g) for g in m.groups())
    head = text[: m.start()]
    counts = list(_COUNT.finditer(head))
    stats: dict[str, float] = {}
    runs = 0
    warm_runs = 0
    if counts:
        last = counts[-1]
        runs = int(last.group(1))
        stats = {k: float(v) for k, v in _KV.findall(last.group(2))}
        if len(counts) >= 2:
            warm_runs = int(counts[-2].group(1))
    peak = None
    mm = list(_MEM.finditer(text))
    if mm:
        peak = float(mm[-1].group(3))
    mon = _MEM_MONITOR.search(text)
    if mon:
        peak = float(mon.group(1))
    th = _THREADS.search(text)

    def ms(key):
        return stats[key] / 1000.0 if key in stats else None

    return Timing(
        status="ok",
        accelerator="android",
        backend="benchmark_model",
        threads=int(th.group(1)) if th else 1,
        runs=runs,
        warmup_runs=warm_runs,
        init_ms=init_us / 1000.0,
        first_ms=first_us / 1000.0,
        warmup_ms=warm_us / 1000.0,
        min_ms=ms("min"),
        median_ms=ms("median"),
        mean_ms=inf_us / 1000.0 if "avg" not in stats else stats["avg"] / 1000.0,
        p90_ms=None,
        p99_ms=None,
        max_ms=ms("max"),
        std_ms=ms("std"),
        peak_memory_mb=peak,
        device="android (benchmark_model)",
    )


def find_adb() -> str | None:
    """Path of ``adb`` ($ADB, then PATH, then $ANDROID_HOME/platform-tools), or None.

    Returns:
        The executable's path, or None if adb is not installed.

    Example:
        >>> find_adb()   # doctest: +SKIP
        '/usr/bin/adb'
    """
    cands = [os.environ.get("ADB"), shutil.which("adb")]
    for home in (os.environ.get("ANDROID_HOME"), os.environ.get("ANDROID_SDK_ROOT")):
        if home:
            cands.append(os.path.join(home, "platform-tools", "adb"))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def list_devices(adb: str | None = None, timeout: float = 20.0) -> list[str]:
    """Serials of connected devices in state "device" (empty if adb is missing).

    Args:
        adb: adb executable (default: :func:`find_adb`).
        timeout: Seconds for ``adb devices``.

    Returns:
        List of serials; unauthorized/offline devices are left out.

    Example:
        >>> list_devices()   # doctest: +SKIP
        ['emulator-5554']
    """
    adb = adb or find_adb()
    if not adb:
        return []
    try:
        p = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return []
    out = []
    for line in p.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "device":
            out.append(parts[0])
    return out


def _adb(adb, serial, args: Sequence[str], timeout: float):
    cmd = [adb, "-s", serial, *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ExportError(
            f"adb {' '.join(args[:2])} timed out after {timeout:.0f}s; check the device connection"
        ) from None
    return p


def _pick_device(adb: str, serial: str | None):
    """``(serial, "")`` of the device to use, or ``(None, why it is unavailable)``."""
    devices = list_devices(adb)
    if not devices:
        return None, "no Android device connected (adb devices lists none in state 'device')"
    if serial is None:
        if len(devices) > 1:
            raise ExportError(f"{len(devices)} Android devices connected ({', '.join(devices)}); pass serial=")
        return devices[0], ""
    if serial not in devices:
        return None, f"device {serial} is not connected (connected: {', '.join(devices)})"
    return serial, ""


def _push(adb: str, serial: str, path: str, binary: str):
    """Copies the model and benchmark_model to :data:`REMOTE_DIR`; their remote paths."""
    remote_model = f"{REMOTE_DIR}/{os.path.basename(path)}"
    remote_bin = f"{REMOTE_DIR}/benchmark_model"
    steps = (
        ["shell", "mkdir", "-p", REMOTE_DIR],
        ["push", path, remote_model],
        ["push", binary, remote_bin],
        ["shell", "chmod", "755", remote_bin],
    )
    for args in steps:
        p = _adb(adb, serial, args, 300)
        if p.returncode != 0:
            lines = (p.stderr or p.stdout or "").strip().splitlines()
            why = lines[-1].strip()[:160] if lines else f"exit code {p.returncode}"
            raise ExportError(f"adb {args[0]} failed: {why}; check the device has space and is unlocked")
    return remote_model, remote_bin


def benchmark_on_device(
    path,
    benchmark_binary,
    threads: int = 1,
    serial: str | None = None,
    *,
    use_xnnpack: bool = True,
    use_gpu: bool = False,
    warmup_runs: int = 1,
    warmup_seconds: float = 0.5,
    min_runs: int = 50,
    min_seconds: float = 1.0,
    extra_args: Sequence[str] = (),
    timeout: float = 600.0,
) -> Timing:
    """Times a .tflite file on an Android device with a user-supplied ``benchmark_model``.

    Pushes the model and the binary to ``/data/local/tmp/tflite_export``, runs it
    with the same rigour flags as :func:`tflite_export.benchmark` and parses the
    output with :func:`parse_benchmark_model_output`.

    Args:
        path: The .tflite file.
        benchmark_binary: Local path of an Android build of TFLite's ``benchmark_model``.
        threads: ``--num_threads``.
        serial: adb serial; default: the only connected device.
        use_xnnpack: ``--use_xnnpack``.
        use_gpu: ``--use_gpu`` (benchmark_model falls back to CPU for ops the GPU
            delegate rejects; the output is checked and such a run reported unavailable).
        warmup_runs: benchmark_model's ``--warmup_runs``.
        warmup_seconds: benchmark_model's ``--warmup_min_secs``.
        min_runs: benchmark_model's ``--num_runs``.
        min_seconds: benchmark_model's ``--min_secs``.
        extra_args: More benchmark_model flags.
        timeout: Seconds for the device run.

    Returns:
        A :class:`Timing`; ``status="unavailable: ..."`` when adb or a device is missing.

    Raises:
        ExportError: Missing model or binary file, or a failed run.

    Example:
        >>> benchmark_on_device("m.tflite", "benchmark_model", threads=4)   # doctest: +SKIP
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise ExportError(f"{path} does not exist; pass the path of a .tflite file")
    binary = os.path.abspath(os.fspath(benchmark_binary))
    if not os.path.isfile(binary):
        raise ExportError(
            f"benchmark binary {binary} does not exist; build it with bazel "
            "(//tensorflow/lite/tools/benchmark:benchmark_model, --config=android_arm64) or download the nightly"
        )
    base = dict(path=path, accelerator="android", backend="benchmark_model", threads=threads, device="android")
    adb = find_adb()
    if not adb:
        return Timing.unavailable("adb not found (install Android platform-tools or set $ADB)", **base)
    serial, why = _pick_device(adb, serial)
    if why:
        return Timing.unavailable(why, **base)
    base["device"] = f"android {serial}"
    remote_model, remote_bin = _push(adb, serial, path, binary)
    flags = [
        f"--graph={remote_model}",
        f"--num_threads={int(threads)}",
        f"--use_xnnpack={'true' if use_xnnpack else 'false'}",
        f"--warmup_runs={int(warmup_runs)}",
        f"--warmup_min_secs={float(warmup_seconds)}",
        f"--num_runs={int(min_runs)}",
        f"--min_secs={float(min_seconds)}",
    ]
    if use_gpu:
        flags.append("--use_gpu=true")
    flags.extend(extra_args)
    cmd = " ".join(shlex.quote(a) for a in [remote_bin, *flags])
    p = _adb(adb, serial, ["shell", cmd], timeout)
    out = (p.stdout or "") + "\n" + (p.stderr or "")
    if use_gpu and _GPU_REJECTED.search(out):
        return Timing.unavailable(
            "GPU delegate did not take the whole model on the device (benchmark_model would run ops on CPU)", **base
        )
    t = parse_benchmark_model_output(out)
    t.path = path
    t.threads = int(threads)
    t.device = base["device"]
    if use_gpu:
        t.backend = "benchmark_model:gpu"
    return t
