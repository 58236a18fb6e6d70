"""Opening .tflite files in the LiteRT interpreter, safely."""

from __future__ import annotations

import os

import numpy as np

from .errors import ExportError, first_line
from .safety import check_file


def open_interpreter(
    path,
    num_threads: int | None = None,
    use_xnnpack: bool = True,
    preserve_all_tensors: bool = False,
    delegates=None,
    check: bool = True,
):
    """Returns an allocated ``ai_edge_litert.interpreter.Interpreter`` for ``path``.

    The file is checked first (see :func:`tflite_export.safety.check_file`), so a
    damaged or non-TFLite file raises ExportError instead of crashing the process.

    Args:
        path: The .tflite file.
        num_threads: Interpreter threads. Defaults to `None` (the runtime's default).
        use_xnnpack: Apply the default XNNPACK delegate; False runs builtin kernels
            (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``). Defaults to `True`.
        preserve_all_tensors: Keep intermediate tensors readable after ``invoke()``.
            Defaults to `False`.
        delegates: External delegates from ``load_delegate``. Defaults to `None`.
        check: Run :func:`~tflite_export.safety.check_file` first. Defaults to `True`.

    Returns:
        The interpreter, tensors allocated.

    Raises:
        ExportError: The file is damaged or LiteRT cannot load or prepare it.

    Example:
        >>> it = open_interpreter("m_int8.tflite", num_threads=2)   # doctest: +SKIP
        >>> it.invoke()                                             # doctest: +SKIP
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = os.fspath(path)
    if check:
        check_file(path)
    resolver = OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        it = Interpreter(
            model_path=path,
            num_threads=num_threads,
            experimental_op_resolver_type=resolver,
            experimental_preserve_all_tensors=preserve_all_tensors,
            experimental_delegates=delegates,
        )
        it.allocate_tensors()
    except ValueError as e:
        raise ExportError(
            f"LiteRT cannot load {path} ({first_line(e, 160)}); re-export it with tflite_export.export"
        ) from None
    except RuntimeError as e:
        if "XNNPACK" in str(e):
            raise _xnnpack_refused(path, e) from None
        raise ExportError(
            f"LiteRT cannot prepare {path} ({first_line(e, 160)}); the file may need ops this runtime lacks"
        ) from None
    return it


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Converts ``x`` to the dtype the input tensor wants (quantizing floats).

    Args:
        x: Inputs.
        detail: The input's entry of ``Interpreter.get_input_details()``.

    Returns:
        ``x`` in the tensor's dtype; floats for an integer tensor are quantized with its
        (scale, zero_point) and clipped to the dtype's range.

    Example:
        >>> quantize_input(np.array([0.5]), {"dtype": np.int8, "quantization": (0.01, 0)})
        array([50], dtype=int8)
    """
    dtype = np.dtype(detail["dtype"])
    x = np.asarray(x)
    if x.dtype == dtype:
        return x
    scale, zp = detail.get("quantization", (0.0, 0))
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        q = np.round(x.astype(np.float32) / np.float32(scale)) + zp
        return np.clip(q, info.min, info.max).astype(dtype)
    return x.astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """Converts an output tensor to float32 (dequantizing if quantized).

    Args:
        y: The tensor's values.
        detail: The tensor's entry of ``Interpreter.get_output_details()``.

    Returns:
        float32 values.

    Example:
        >>> dequantize_output(np.array([50], np.int8), {"quantization": (0.01, 0)})
        array([0.5], dtype=float32)
    """
    scale, zp = detail.get("quantization", (0.0, 0))
    if np.issubdtype(y.dtype, np.integer) and scale:
        return ((y.astype(np.float32) - np.float32(zp)) * np.float32(scale)).astype(np.float32)
    return y.astype(np.float32)


def random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    """Random data of an input tensor's dtype and shape (floats in [-1, 1], integers in [-128, 127]).

    Args:
        detail: The input's entry of ``Interpreter.get_input_details()``.
        rng: The random generator.

    Returns:
        An array of the tensor's shape and dtype.

    Example:
        >>> random_input({"dtype": np.int8, "shape": [1, 2]}, np.random.default_rng(0)).shape
        (1, 2)
    """
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(s) for s in detail["shape"])
    if np.issubdtype(dtype, np.floating):
        return rng.uniform(-1.0, 1.0, shape).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    return np.zeros(shape, dtype)


def invoke(it, path) -> None:
    """``it.invoke()``; XNNPACK's refusal to build its runtime (raised at the first invoke) becomes
    a one-line ExportError naming the builtin-kernel way out."""
    try:
        it.invoke()
    except RuntimeError as e:
        if "XNNPACK" not in str(e):
            raise
        raise _xnnpack_refused(path, e) from None


def _xnnpack_refused(path, e) -> ExportError:
    """XNNPACK's refusal to build its runtime (at allocation or at the first invoke), as one line."""
    return ExportError(
        f"XNNPACK cannot run {path} ({first_line(e, 120)}): a requantization scale is outside its range, "
        "usually because calibration saw tensors constant; re-export it with tflite_export.export (which widens "
        "such scales) and more varied representative data, or run it on the builtin kernels: "
        "tflite_export.predict(path, x, use_xnnpack=False)"
    )
