"""Achieved GOPS and fraction of this machine's measured peak ("roofline" lite)."""

from __future__ import annotations

import os
import tempfile
import threading

import numpy as np

from .benchmark import benchmark
from .convert import export
from .errors import ExportError
from .inspection import inspect

__all__ = ["measure_peak_gops", "compute_kind", "add_roofline", "gops"]

_PEAK: dict[tuple[str, int, bool], float] = {}
_LOCK = threading.Lock()

#: Shape of the dense-layer model used to measure the peak: batch x width, depth layers.
PEAK_BATCH, PEAK_WIDTH, PEAK_DEPTH = 128, 512, 4


def gops(macs: int, ms: float) -> float:
    """Giga-operations per second for ``macs`` multiply-accumulates in ``ms`` (1 MAC = 2 ops).

    Args:
        macs: Multiply-accumulates per invoke.
        ms: Milliseconds per invoke.

    Returns:
        GOPS (NaN if ``ms`` is not positive).

    Example:
        >>> round(gops(1_000_000, 1.0), 3)
        2.0
    """
    return 2.0 * macs / (ms * 1e-3) / 1e9 if ms and ms > 0 else float("nan")


def compute_kind(info) -> str:
    """Which peak a file is compared with: "int8" if it has int8 weight tensors, else "float32".

    Dynamic-range files run as int8 GEMMs in XNNPACK; float16 files are
    dequantized to float32 at load time.

    Args:
        info: A :class:`tflite_export.ModelInfo` from :func:`tflite_export.inspect`.

    Returns:
        "int8" or "float32".

    Example:
        >>> compute_kind(inspect("m_int8.tflite"))   # doctest: +SKIP
        'int8'
    """
    for t in info.tensors:
        if t["constant"] and t["dtype"] == "int8" and len(t["shape"]) >= 2:
            return "int8"
    return "float32"


def measure_peak_gops(kind: str = "float32", threads: int = 1, use_xnnpack: bool = True) -> float:
    """Measures this machine's practical peak GOPS through LiteRT, cached per process.

    A ``PEAK_DEPTH``-layer dense model (batch ``PEAK_BATCH`` x ``PEAK_WIDTH``, i.e.
    large GEMMs) is converted (float32 or full int8) and timed with
    :func:`tflite_export.benchmark` on the same runtime settings.

    Args:
        kind: "float32" or "int8".
        threads: CPU threads.
        use_xnnpack: XNNPACK (True) or builtin kernels (False).

    Returns:
        Peak giga-operations per second (2 * MACs / median latency).

    Raises:
        ExportError: Unknown kind, or a probe model LiteRT cannot run here.

    Example:
        >>> measure_peak_gops("int8", threads=1)   # doctest: +SKIP
        180.5
    """
    if kind not in ("float32", "int8"):
        raise ExportError(f"unknown peak kind {kind!r}; use 'float32' or 'int8'")
    key = (kind, int(threads), bool(use_xnnpack))
    with _LOCK:
        if key in _PEAK:
            return _PEAK[key]
    import tf_keras as keras

    rng = np.random.default_rng(0)
    inp = keras.layers.Input((PEAK_WIDTH,), batch_size=PEAK_BATCH)
    h = inp
    init = keras.initializers.RandomNormal(stddev=1.0 / np.sqrt(PEAK_WIDTH), seed=0)
    for i in range(PEAK_DEPTH):
        h = keras.layers.Dense(PEAK_WIDTH, kernel_initializer=init, name=f"peak{i}")(h)
    model = keras.Model(inp, h)
    macs = PEAK_BATCH * PEAK_WIDTH * PEAK_WIDTH * PEAK_DEPTH
    with tempfile.TemporaryDirectory(prefix="tflite_export_peak_") as d:
        path = os.path.join(d, f"peak_{kind}.tflite")
        rep = rng.standard_normal((16, PEAK_WIDTH)).astype(np.float32)
        export(model, path, mode=kind, representative_data=rep, num_samples=16)
        t = benchmark(
            path, threads=threads, use_xnnpack=use_xnnpack, warmup_seconds=0.2, min_runs=10, min_seconds=0.5
        )
    if t.min_ms is None:  # LiteRT could not run the peak model here; its status says why
        raise ExportError(f"cannot measure this machine's peak GOPS: the {kind} probe model did not run ({t.status}).")
    peak = gops(macs, t.min_ms)
    with _LOCK:
        _PEAK[key] = peak
    return peak


def add_roofline(timing) -> None:
    """Fills ``timing.macs``, ``timing.gops`` and ``timing.peak_fraction`` in place.

    Call it after :func:`tflite_export.benchmark` (the ``bench --roofline`` command does).

    The peak is measured for the file's compute kind (int8 or float32) with the
    same thread count; "builtin" timings are compared with a builtin-kernel peak,
    other CPU timings with XNNPACK's. GPU/delegate timings get no peak fraction.

    Args:
        timing: A successful :class:`tflite_export.Timing` of a local file.

    Returns:
        None (``timing`` is updated; an unavailable timing is left alone).

    Example:
        >>> t = benchmark("m.tflite"); add_roofline(t); t.peak_fraction   # doctest: +SKIP
        0.24
    """
    if not timing.ok or not timing.median_ms:
        return
    info = inspect(timing.path)
    timing.macs = info.macs
    if not info.macs:
        return
    timing.gops = gops(info.macs, timing.median_ms)
    if timing.accelerator in ("cpu", "builtin", "compiled-cpu"):
        peak = measure_peak_gops(compute_kind(info), timing.threads, timing.accelerator != "builtin")
        timing.peak_fraction = timing.gops / peak if peak > 0 else None
