"""On-device style latency measurement of .tflite files (LiteRT, this machine)."""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

from ._runtime import open_interpreter, random_input
from .errors import ExportError

__all__ = ["Timing", "benchmark", "ACCELERATORS"]

#: Accelerators understood by :func:`benchmark`.
ACCELERATORS = ("cpu", "builtin", "compiled-cpu", "gpu")


@dataclasses.dataclass
class Timing:
    """Latency statistics of one .tflite file on one runtime configuration.

    All times are milliseconds per invoke (batch as stored in the file, normally 1).

    Attributes:
      path: The .tflite file.
      status: "ok", or "unavailable: <reason>" / "error: <reason>" (then the
        statistics are None).
      accelerator: "cpu" (Interpreter), "compiled-cpu" / "gpu" (LiteRT
        CompiledModel), "delegate" (external delegate) or "android".
      backend: What actually ran: "xnnpack", "builtin", "litert-cpu",
        "litert-gpu", "delegate:<lib>" or "benchmark_model".
      threads: CPU threads requested.
      runs: Timed runs.
      warmup_runs: Warm-up runs (untimed in the statistics).
      init_ms: Interpreter creation + tensor allocation.
      first_ms: The first invoke (includes lazy initialisation).
      warmup_ms: Mean of the warm-up invokes.
      min_ms, median_ms, mean_ms, p90_ms, p99_ms, max_ms, std_ms: Statistics of
        the timed invokes.
      peak_memory_mb: Process peak RSS (``ru_maxrss``) after the run; for Android,
        benchmark_model's overall peak memory footprint.
      affinity: CPUs the process was pinned to during the run, or None.
      macs: Multiply-accumulates per invoke (conv, depthwise, fully connected), if counted.
      gops: Achieved giga-operations/s (2*MACs / median), if counted.
      peak_fraction: ``gops`` / measured peak GOPS of this machine, if measured.
      device: Free text describing where it ran.
    """

    path: str = ""
    status: str = "ok"
    accelerator: str = "cpu"
    backend: str = ""
    threads: int = 1
    runs: int = 0
    warmup_runs: int = 0
    init_ms: Optional[float] = None
    first_ms: Optional[float] = None
    warmup_ms: Optional[float] = None
    min_ms: Optional[float] = None
    median_ms: Optional[float] = None
    mean_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    max_ms: Optional[float] = None
    std_ms: Optional[float] = None
    peak_memory_mb: Optional[float] = None
    affinity: Optional[List[int]] = None
    macs: Optional[int] = None
    gops: Optional[float] = None
    peak_fraction: Optional[float] = None
    device: str = ""

    @property
    def ok(self) -> bool:
        """True when the statistics are valid."""
        return self.status == "ok"

    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable dict of all fields (floats rounded to 4 decimals)."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = None if not math.isfinite(v) else round(v, 4)
            elif isinstance(v, np.generic):
                d[k] = v.item()
        return d

    @classmethod
    def unavailable(cls, reason: str, **kw) -> "Timing":
        """A Timing with ``status="unavailable: <reason>"`` and no statistics."""
        return cls(status=f"unavailable: {reason}", **kw)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def stats_ms(samples_ns: List[int]) -> Dict[str, float]:
    """min/median/mean/p90/p99/max/std in ms of invoke durations in ns."""
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


def timed_loop(run, warmup_runs, warmup_seconds, min_runs, min_seconds, max_seconds):
    """Runs ``run()`` the way TFLite's benchmark_model does.

    First invoke timed separately; warm-up until >= warmup_runs AND >= warmup_seconds
    (the first invoke counts); then timed runs until >= min_runs AND >= min_seconds,
    stopping early only when ``max_seconds`` is exceeded.

    Returns:
      (first_ns, warmup_ns_list, timed_ns_list)
    """
    pc = time.perf_counter_ns
    t = pc()
    run()
    first = pc() - t
    warm: List[int] = [first]
    start = pc()
    while len(warm) < warmup_runs or (pc() - start) < warmup_seconds * 1e9 - first:
        t = pc()
        run()
        warm.append(pc() - t)
        if (pc() - start) > max_seconds * 1e9:
            break
    timed: List[int] = []
    start = pc()
    while len(timed) < min_runs or (pc() - start) < min_seconds * 1e9:
        t = pc()
        run()
        timed.append(pc() - t)
        if (pc() - start) > max_seconds * 1e9:
            break
    return first, warm, timed


def _check_args(threads, warmup_runs, warmup_seconds, min_runs, min_seconds):
    if not isinstance(threads, int) or threads < 1:
        raise ExportError(f"threads must be a positive integer, got {threads!r}")
    if warmup_runs < 1 or min_runs < 1 or warmup_seconds < 0 or min_seconds < 0:
        raise ExportError("warmup_runs and min_runs must be >= 1 and the second counts >= 0")


def benchmark(
    path,
    threads: int = 1,
    warmup_runs: int = 1,
    warmup_seconds: float = 0.5,
    min_runs: int = 50,
    min_seconds: float = 1.0,
    use_xnnpack: bool = True,
    *,
    max_seconds: float = 150.0,
    seed: int = 0,
) -> Timing:
    """Measures the latency of a .tflite file with the LiteRT interpreter on this CPU.

    Same rigour as TFLite's ``benchmark_model``: the first invoke is timed on its
    own, then warm-up runs (at least ``warmup_runs`` AND ``warmup_seconds``), then
    timed runs (at least ``min_runs`` AND ``min_seconds``; ``max_seconds`` caps the
    total). Inputs are random data of the file's input dtype and shape, set once.

    Args:
      path: The .tflite file (checked first; a damaged file raises ExportError).
      threads: Interpreter threads.
      warmup_runs: Minimum warm-up invokes.
      warmup_seconds: Minimum warm-up time.
      min_runs: Minimum timed invokes.
      min_seconds: Minimum timed duration.
      use_xnnpack: Apply the default XNNPACK delegate; False uses the builtin
        kernels only (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``).
      max_seconds: Hard cap on warm-up and on the timed phase.
      seed: Seed of the random input.

    Returns:
      A :class:`Timing` (``accelerator="cpu"``, ``backend`` "xnnpack" or "builtin",
      as verified from the interpreter's execution plan).

    Raises:
      ExportError: Bad arguments or a missing/damaged file.

    Example:
      >>> t = benchmark("model_int8.tflite", threads=2)   # doctest: +SKIP
      >>> t.median_ms                                     # doctest: +SKIP
      0.012
    """
    _check_args(threads, warmup_runs, warmup_seconds, min_runs, min_seconds)
    path = os.fspath(path)
    from .safety import check_file

    check_file(path)
    t0 = time.perf_counter_ns()
    it = open_interpreter(path, num_threads=threads, use_xnnpack=use_xnnpack, check=False)
    init_ns = time.perf_counter_ns() - t0
    names = [it._interpreter.NodeName(i) for i in range(it._interpreter.NumNodes())]  # pylint: disable=protected-access
    backend = "xnnpack" if "DELEGATE" in names else "builtin"
    if use_xnnpack and backend != "xnnpack":
        backend = "builtin"  # XNNPACK declined every op; report what really ran
    rng = np.random.default_rng(seed)
    for d in it.get_input_details():
        it.set_tensor(d["index"], random_input(d, rng))
    first, warm, timed = timed_loop(it.invoke, warmup_runs, warmup_seconds, min_runs, min_seconds, max_seconds)
    return Timing(
        path=os.path.abspath(path),
        status="ok",
        accelerator="cpu",
        backend=backend,
        threads=threads,
        runs=len(timed),
        warmup_runs=len(warm),
        init_ms=init_ns / 1e6,
        first_ms=first / 1e6,
        warmup_ms=float(np.mean(warm)) / 1e6,
        peak_memory_mb=peak_rss_mb(),
        affinity=_affinity(),
        device="this machine (LiteRT Interpreter)",
        **stats_ms(timed),
    )


def _affinity() -> Optional[List[int]]:
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return cpus if len(cpus) < (os.cpu_count() or len(cpus)) else None
