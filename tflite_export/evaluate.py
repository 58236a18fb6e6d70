"""Running .tflite files on data: predictions, accuracy, agreement with Keras."""

from __future__ import annotations

import os

import numpy as np

from ._runtime import dequantize_output, open_interpreter, quantize_input
from .errors import ExportError

__all__ = ["predict", "evaluate", "agreement"]


def predict(
    path, x, batch_size: int | None = 32, threads: int | None = None
) -> np.ndarray | list[np.ndarray]:
    """Runs a .tflite file on inputs and returns float outputs.

    Float inputs are quantized with the input tensor's (scale, zero_point) when the
    file has integer inputs (inputs already of the file's dtype are passed as is);
    integer outputs are dequantized to float32.

    Args:
        path: The .tflite file (checked first: a damaged file raises ExportError).
        x: Input array, axis 0 = samples (a single sample without batch dim is accepted).
        batch_size: Samples per invoke when the file's batch dimension is dynamic (it
            is resized); ``None`` or 1 runs one sample per invoke. Files with a fixed
            batch size B are fed B samples per invoke (the last chunk padded).
        threads: Interpreter threads (None = runtime default).

    Returns:
        float32 array of shape ``(len(x), ...)``; a list of arrays for multi-output files.

    Raises:
        ExportError: Unreadable/damaged file or inputs of the wrong shape.

    Example:
        >>> probs = predict("model_int8.tflite", x_test)   # doctest: +SKIP
    """
    it = open_interpreter(path, num_threads=threads)
    inp = it.get_input_details()
    if len(inp) != 1:
        raise ExportError(f"{os.fspath(path)} has {len(inp)} inputs; predict supports single-input models only")
    d = inp[0]
    x = np.asarray(x)
    sample_shape = tuple(int(s) for s in d["shape"][1:])
    if x.shape == sample_shape:
        x = x[None]
    if tuple(x.shape[1:]) != sample_shape:
        raise ExportError(
            f"inputs have shape {tuple(x.shape)} but {os.fspath(path)} expects "
            f"(N, {', '.join(map(str, sample_shape))}); reshape x"
        )
    n = x.shape[0]
    if n == 0:
        raise ExportError("x is empty; pass at least one sample")
    xq = quantize_input(x, d)
    sig = d.get("shape_signature")
    dynamic_batch = sig is not None and len(sig) > 0 and int(sig[0]) == -1
    if not dynamic_batch:
        bs = int(d["shape"][0])  # fixed batch: feed chunks of exactly that size
    else:
        bs = max(1, min(int(batch_size or 1), n))
        if bs != int(d["shape"][0]):
            try:
                it.resize_tensor_input(d["index"], [bs, *sample_shape], strict=True)
                it.allocate_tensors()
            except (ValueError, RuntimeError):
                it = open_interpreter(path, num_threads=threads, check=False)
                bs = int(it.get_input_details()[0]["shape"][0])
    outs = it.get_output_details()
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for start in range(0, n, bs):
        chunk = xq[start : start + bs]
        m = chunk.shape[0]
        if m < bs:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - m, axis=0)])
        it.set_tensor(d["index"], np.ascontiguousarray(chunk))
        it.invoke()
        for k, od in enumerate(outs):
            results[k].append(dequantize_output(it.get_tensor(od["index"]), od)[:m])
    arrays = [np.concatenate(r, axis=0) for r in results]
    return arrays[0] if len(arrays) == 1 else arrays


def _labels(pred: np.ndarray) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.ndim == 1 or pred.shape[-1] == 1:
        return (pred.reshape(len(pred)) > (0.5 if pred.min() >= 0 else 0.0)).astype(np.int64)
    return np.argmax(pred.reshape(len(pred), -1), axis=-1)


def evaluate(path, x, y, batch_size: int | None = 32) -> float:
    """Top-1 accuracy of a .tflite classifier.

    Args:
        path: The .tflite file.
        x: Inputs (float; quantized as the file requires).
        y: Integer labels, shape (N,) or (N, 1), or one-hot labels (N, classes).
        batch_size: See :func:`predict`.

    Returns:
        Accuracy in [0, 1].

    Raises:
        ExportError: Mismatched lengths or a bad file.

    Example:
        >>> evaluate("model_int8.tflite", x_test, y_test)   # doctest: +SKIP
        0.97
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = np.argmax(y, axis=1)
    y = y.reshape(-1).astype(np.int64)
    if len(y) != len(x):
        raise ExportError(f"x has {len(x)} samples but y has {len(y)} labels; pass matching arrays")
    pred = predict(path, x, batch_size=batch_size)
    if isinstance(pred, list):
        pred = pred[0]
    return float(np.mean(_labels(pred) == y))


def agreement(model, path, x, batch_size: int | None = 32) -> float:
    """Fraction of inputs where the Keras model and the .tflite file pick the same top-1 class.

    Args:
        model: The tf_keras model the file was exported from.
        path: The .tflite file.
        x: Float inputs.
        batch_size: See :func:`predict`.

    Returns:
        Agreement in [0, 1].

    Raises:
        ExportError: A bad file.

    Example:
        >>> agreement(model, "model_int8.tflite", x_test)   # doctest: +SKIP
        0.99
    """
    x = np.asarray(x)
    ref = model.predict(x.astype(np.float32), verbose=0, batch_size=256)
    if isinstance(ref, list):
        ref = ref[0]
    pred = predict(path, x, batch_size=batch_size)
    if isinstance(pred, list):
        pred = pred[0]
    return float(np.mean(_labels(np.asarray(ref)) == _labels(pred)))
