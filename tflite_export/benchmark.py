"""On-device style latency measurement of .tflite files (LiteRT, this machine)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np

from . import opreport
from ._process import current_rss_mb, memory_delta_mb, peak_rss_mb, pinned
from ._record import Record
from ._runtime import open_interpreter, random_input
from .argtypes import MAX_THREADS
from .errors import ExportError, first_line
from .probe import probe_accelerator
from .safety import check_file

__all__ = ["Timing", "benchmark", "ACCELERATORS", "probe_accelerator"]

#: Accelerators understood by :func:`benchmark`.
ACCELERATORS = ("cpu", "builtin", "compiled-cpu", "gpu")
_ALIASES = {
    "xnnpack": "cpu",
    "cpu-xnnpack": "cpu",
    "cpu-builtin": "builtin",
    "compiled": "compiled-cpu",
    "litert-cpu": "compiled-cpu",
    "litert-gpu": "gpu",
}


@dataclasses.dataclass
class Timing(Record):
    """Latency statistics of one .tflite file on one runtime configuration.

    All times are milliseconds per invoke (batch as stored in the file, normally 1).

    Attributes:
        path: The .tflite file.
        status: "ok", or "unavailable: <reason>" / "error: <reason>" (then the
            statistics are None).
        accelerator: "cpu" (Interpreter), "compiled-cpu" / "gpu" (LiteRT
            CompiledModel), "delegate" (external delegate) or "android".
        backend: What actually ran: "xnnpack" (whole graph delegated),
            "xnnpack+builtin" (some ops fell back to builtin kernels, e.g. int8
            AVERAGE_POOL_2D), "builtin", "litert-cpu", "litert-gpu", "delegate:<lib>"
            or "benchmark_model".
        threads: CPU threads requested.
        runs: Timed runs.
        warmup_runs: Warm-up runs (untimed in the statistics).
        init_ms: Interpreter creation + tensor allocation.
        first_ms: The first invoke (includes lazy initialisation).
        warmup_ms: Mean of the warm-up invokes.
        min_ms: Fastest timed invoke.
        median_ms: Median of the timed invokes.
        mean_ms: Mean of the timed invokes.
        p90_ms: 90th percentile of the timed invokes.
        p99_ms: 99th percentile of the timed invokes.
        max_ms: Slowest timed invoke.
        std_ms: Standard deviation of the timed invokes.
        peak_memory_mb: Process peak RSS (``ru_maxrss``) after the run, None where it
            cannot be read; for Android, benchmark_model's overall peak memory footprint.
        memory_delta_mb: Resident memory added by creating and running the model
            (current RSS after the runs minus before creation; Linux only, else None;
            approximate, memory freed by earlier models in the same process may be reused).
        affinity: CPUs the process was pinned to during the run, or None.
        delegate_partitions: Number of delegate kernels the graph was split into
            (Interpreter runs); more than one means ops in between ran on builtin kernels.
        macs: Multiply-accumulates per invoke (conv, depthwise, fully connected), if counted.
        gops: Achieved giga-operations/s (2*MACs / median), if counted.
        peak_fraction: ``gops`` / measured peak GOPS of this machine, if measured.
        device: Free text describing where it ran.

    Example:
        >>> Timing.unavailable("no GPU", path="m.tflite").status
        'unavailable: no GPU'
    """

    path: str = ""
    status: str = "ok"
    accelerator: str = "cpu"
    backend: str = ""
    threads: int = 1
    runs: int = 0
    warmup_runs: int = 0
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_ms: float | None = None
    min_ms: float | None = None
    median_ms: float | None = None
    mean_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    peak_memory_mb: float | None = None
    memory_delta_mb: float | None = None
    affinity: list[int] | None = None
    delegate_partitions: int | None = None
    macs: int | None = None
    gops: float | None = None
    peak_fraction: float | None = None
    device: str = ""

    #: to_dict: times to 4 decimals; a statistic that is not finite is written as None.
    ROUND = 4
    NONFINITE = "none"

    @property
    def ok(self) -> bool:
        """True when the statistics are valid."""
        return self.status == "ok"

    @classmethod
    def unavailable(cls, reason: str, **kw) -> Timing:
        """A Timing with ``status="unavailable: <reason>"`` and no statistics."""
        return cls(status=f"unavailable: {reason}", **kw)


class LatencyStats(TypedDict):
    """What :func:`stats_ms` gives: the latency statistics of a :class:`Timing`, in milliseconds."""

    min_ms: float
    median_ms: float
    mean_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    std_ms: float


def stats_ms(samples_ns: list[int]) -> LatencyStats:
    """min/median/mean/p90/p99/max/std in ms of invoke durations in ns.

    Args:
        samples_ns: Durations of the timed invokes in nanoseconds.

    Returns:
        ``{"min_ms", "median_ms", "mean_ms", "p90_ms", "p99_ms", "max_ms", "std_ms"}``.

    Example:
        >>> stats_ms([1_000_000, 3_000_000])["median_ms"]
        2.0
    """
    a = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {
        "min_ms": float(a.min()),
        "median_ms": float(np.median(a)),
        "mean_ms": float(a.mean()),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "std_ms": float(a.std()),
    }


def timed_loop(run: Callable[[], Any], warmup_runs: int, warmup_seconds: float, min_runs: int, min_seconds: float,
               max_seconds: float) -> tuple[int, list[int], list[int]]:
    """Runs ``run()`` the way TFLite's benchmark_model does.

    First invoke timed separately; warm-up until >= warmup_runs AND >= warmup_seconds
    (the first invoke counts); then timed runs until >= min_runs AND >= min_seconds,
    stopping early only when ``max_seconds`` is exceeded.

    Args:
        run: The callable to time (one invoke).
        warmup_runs: Minimum warm-up invokes.
        warmup_seconds: Minimum warm-up time.
        min_runs: Minimum timed invokes.
        min_seconds: Minimum timed duration.
        max_seconds: Cap on warm-up and on the timed phase.

    Returns:
        ``(first_ns, warmup_ns_list, timed_ns_list)``.

    Example:
        >>> first, warm, timed = timed_loop(lambda: None, 1, 0.0, 5, 0.0, 1.0)
        >>> len(timed)
        5
    """
    pc = time.perf_counter_ns
    t = pc()
    run()
    first = pc() - t
    warm: list[int] = [first]
    start = pc()
    while len(warm) < warmup_runs or (pc() - start) < warmup_seconds * 1e9 - first:
        t = pc()
        run()
        warm.append(pc() - t)
        if (pc() - start) > max_seconds * 1e9:
            break
    timed: list[int] = []
    start = pc()
    while len(timed) < min_runs or (pc() - start) < min_seconds * 1e9:
        t = pc()
        run()
        timed.append(pc() - t)
        if (pc() - start) > max_seconds * 1e9:
            break
    return first, warm, timed


def _check_args(threads, warmup_runs, warmup_seconds, min_runs, min_seconds):
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS:
        # XNNPACK's thread pool segfaults the process on absurd counts (100000 measured).
        raise ExportError(f"threads must be a whole number in 1..{MAX_THREADS}, got {threads!r}")
    if warmup_runs < 1 or min_runs < 1 or warmup_seconds < 0 or min_seconds < 0:
        raise ExportError("warmup_runs and min_runs must be >= 1 and warmup_seconds/min_seconds >= 0")


# ------------------------------------------------------------------------- runners


def delegation(it):
    """(number of DELEGATE kernels, whether some ops run outside them) (see :func:`tflite_export.opreport.split`).

    Args:
        it: An allocated ``ai_edge_litert.interpreter.Interpreter``.

    Returns:
        ``(partitions, some_ops_outside)``.

    Example:
        >>> delegation(open_interpreter("m_int8.tflite"))   # doctest: +SKIP
        (1, False)
    """
    d = opreport.split(it)
    return d.partitions, bool(d.partitions and d.fallback)


_DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}


def _dtype(name: str):
    return np.dtype(_DTYPES.get(name, np.float32))


def _run_compiled(path, threads, accelerator, loop_args, seed):
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import CpuOptions, Options

    if accelerator == "gpu":
        opts = Options(hardware_accelerators=HardwareAccelerator.GPU)
    else:
        opts = Options(hardware_accelerators=HardwareAccelerator.CPU, cpu_options=CpuOptions(num_threads=threads))
    t0 = time.perf_counter_ns()
    try:
        cm = CompiledModel.from_file(os.fspath(path), options=opts)
        ins = cm.create_input_buffers(0)
        outs = cm.create_output_buffers(0)
    except Exception as e:  # noqa: BLE001 - native errors arrive as RuntimeError
        return None, f"LiteRT CompiledModel could not be created ({first_line(e, 120)})"
    init_ns = time.perf_counter_ns() - t0
    if accelerator == "gpu" and not cm.is_fully_accelerated():
        return None, "model is not fully accelerated on the GPU (some ops would silently run on CPU)"
    sig = next(iter(cm.get_signature_list()))
    details = cm.get_input_tensor_details(sig)
    names = cm.get_signature_list()[sig]["inputs"]
    rng = np.random.default_rng(seed)
    for buf, name in zip(ins, names):
        d = details[name]
        buf.write(random_input({"dtype": _dtype(d.get("dtype", "float32")), "shape": d.get("shape", [1])}, rng))

    def run():
        cm.run_by_index(0, ins, outs)

    first, warm, timed = timed_loop(run, *loop_args)
    return (init_ns, first, warm, timed, "litert-gpu" if accelerator == "gpu" else "litert-cpu", None), ""


def _run_interpreter(path, threads, use_xnnpack, delegate, delegate_options, loop_args, seed):
    delegates = None
    lib = os.path.basename(os.fspath(delegate)) if delegate is not None else ""
    if delegate is not None:
        from ai_edge_litert.interpreter import load_delegate

        try:
            delegates = [load_delegate(os.fspath(delegate), delegate_options or {})]
        except (ValueError, OSError, RuntimeError) as e:
            return None, f"cannot load delegate {delegate}: {first_line(e, 120)}"
    t0 = time.perf_counter_ns()
    it = open_interpreter(
        path, num_threads=threads, use_xnnpack=use_xnnpack and delegate is None, delegates=delegates, check=False
    )
    init_ns = time.perf_counter_ns() - t0
    delegated, outside = delegation(it)
    if delegate is not None:
        if not delegated:
            return None, f"delegate {lib} accepted none of the ops (everything would run on CPU)"
        backend = "delegate:" + lib + ("+builtin" if outside else "")
    else:
        backend = ("xnnpack+builtin" if outside else "xnnpack") if delegated else "builtin"
    rng = np.random.default_rng(seed)
    for d in it.get_input_details():
        it.set_tensor(d["index"], random_input(d, rng))
    first, warm, timed = timed_loop(it.invoke, *loop_args)
    return (init_ns, first, warm, timed, backend, delegated), ""


def _resolve_accelerator(accelerator: str, use_xnnpack: bool, delegate) -> str:
    """The canonical accelerator name ("cpu", "builtin", "compiled-cpu", "gpu" or "delegate")."""
    acc = _ALIASES.get(str(accelerator).lower(), str(accelerator).lower())
    if acc not in ACCELERATORS:
        raise ExportError(
            f"unknown accelerator {accelerator!r}; use one of {', '.join(ACCELERATORS)} (or delegate=path/to/lib.so)"
        )
    if acc == "cpu" and not use_xnnpack:
        acc = "builtin"
    if delegate is not None:
        if not os.path.isfile(os.fspath(delegate)):
            raise ExportError(
                f"delegate library {delegate} does not exist; pass the path of a TFLite external delegate .so"
            )
        acc = "delegate"
    return acc


def benchmark(
    path,
    threads: int = 1,
    warmup_runs: int = 1,
    warmup_seconds: float = 0.5,
    min_runs: int = 50,
    min_seconds: float = 1.0,
    use_xnnpack: bool = True,
    *,
    accelerator: str = "cpu",
    delegate: str | None = None,
    delegate_options: dict[str, Any] | None = None,
    cpu_affinity: list[int] | None = None,
    max_seconds: float = 150.0,
    seed: int = 0,
) -> Timing:
    """Measures the latency of a .tflite file on this machine with LiteRT.

    Same rigour as TFLite's ``benchmark_model``: the first invoke is timed on its
    own, then warm-up runs (at least ``warmup_runs`` AND ``warmup_seconds``), then
    timed runs (at least ``min_runs`` AND ``min_seconds``; ``max_seconds`` caps each
    phase). Inputs are random data of the file's input dtype and shape, set once.

    An accelerator that cannot run the whole model gives
    ``Timing(status="unavailable: <reason>")`` - never a silent CPU fallback. GPU
    and external-delegate availability is probed in a child process first.
    MACs, GOPS and the fraction of this machine's peak are added afterwards by
    :func:`tflite_export.roofline.add_roofline`.

    Args:
        path: The .tflite file (checked first; a damaged file raises ExportError).
        threads: CPU threads (Interpreter ``num_threads`` / CompiledModel CpuOptions). Defaults to `1`.
        warmup_runs: Minimum warm-up invokes. Defaults to `1`.
        warmup_seconds: Minimum warm-up time. Defaults to `0.5`.
        min_runs: Minimum timed invokes. Defaults to `50`.
        min_seconds: Minimum timed duration. Defaults to `1.0`.
        use_xnnpack: For ``accelerator="cpu"``: apply the default XNNPACK delegate;
            False is the same as ``accelerator="builtin"``. Defaults to `True`.
        accelerator: "cpu" (Interpreter + XNNPACK), "builtin" (Interpreter, builtin
            kernels, ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``), "compiled-cpu" (LiteRT
            ``CompiledModel`` on CPU) or "gpu" (``CompiledModel`` on the GPU only, no
            CPU fallback, must be fully accelerated). Defaults to `"cpu"`.
        delegate: Path of an external delegate library (``load_delegate``); then the
            default delegates are off and at least one op must be delegated. Defaults to `None`.
        delegate_options: Options dict for the external delegate. Defaults to `None`.
        cpu_affinity: CPU ids to pin to during the run (``os.sched_setaffinity``), or None.
            Defaults to `None`.
        max_seconds: Cap on warm-up and on the timed phase. Defaults to `150.0`.
        seed: Seed of the random input. Defaults to `0`.

    Returns:
        A :class:`Timing`; ``backend`` says what actually ran ("xnnpack" only if the
        XNNPACK delegate really took ops).

    Raises:
        ExportError: Bad arguments or a missing/damaged file.

    Example:
        >>> t = benchmark("model_int8.tflite", threads=2)   # doctest: +SKIP
        >>> t.median_ms, t.backend                          # doctest: +SKIP
        (0.012, 'xnnpack')
        >>> benchmark("model.tflite", accelerator="gpu").status   # doctest: +SKIP
        'unavailable: no usable GPU: the Vulkan loader libvulkan.so.1 is missing (...)'
    """
    _check_args(threads, warmup_runs, warmup_seconds, min_runs, min_seconds)
    acc = _resolve_accelerator(accelerator, use_xnnpack, delegate)
    path = os.path.abspath(os.fspath(path))
    check_file(path)
    base = dict(path=path, accelerator=acc, threads=threads, device="this machine (LiteRT)")
    if acc in ("gpu", "delegate"):
        reason = probe_accelerator(path, acc, delegate, delegate_options)
        if reason:
            backend = "litert-gpu" if delegate is None else f"delegate:{os.path.basename(os.fspath(delegate))}"
            return Timing.unavailable(reason, backend=backend, **base)
    loop_args = (warmup_runs, warmup_seconds, min_runs, min_seconds, max_seconds)
    rss0 = current_rss_mb()
    with pinned(cpu_affinity) as cpus:
        if acc in ("compiled-cpu", "gpu"):
            res, why = _run_compiled(path, threads, acc, loop_args, seed)
        else:
            res, why = _run_interpreter(path, threads, acc == "cpu", delegate, delegate_options, loop_args, seed)
    if res is None:
        return Timing.unavailable(why, **base)
    init_ns, first, warm, timed, backend, partitions = res
    return Timing(
        status="ok",
        backend=backend,
        runs=len(timed),
        warmup_runs=len(warm),
        init_ms=init_ns / 1e6,
        first_ms=first / 1e6,
        warmup_ms=float(np.mean(warm)) / 1e6,
        peak_memory_mb=peak_rss_mb(),
        memory_delta_mb=memory_delta_mb(rss0),
        affinity=cpus,
        delegate_partitions=partitions,
        **base,
        **stats_ms(timed),
    )
