"""Running .tflite files on data: predictions, accuracy, agreement with Keras."""

from __future__ import annotations

import os
from typing import Any, Literal, overload

import numpy as np

from ._runtime import dequantize_output, invoke, open_interpreter, quantize_input
from .errors import ExportError, first_line

__all__ = ["predict", "evaluate", "agreement", "closeness", "not_a_classifier", "score_summary"]


def _numeric(a, name: str) -> np.ndarray:
    """``a`` as a numeric numpy array of at least one dimension, or ExportError."""
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as e:
        raise ExportError(f"{name} is not an array ({first_line(e, 100)}); pass a numpy array") from None
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise ExportError(f"{name} holds values that are not numbers; pass a numeric array") from None
    if arr.dtype.kind in "US":
        raise ExportError(f"{name} holds strings (dtype {arr.dtype}); convert them to numbers first")
    if arr.dtype.kind not in "biuf":
        raise ExportError(f"{name} has dtype {arr.dtype}, which is not real numbers; pass a numeric array")
    if arr.ndim == 0:
        raise ExportError(f"{name} must be an array with one row per sample, got a single value")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = ~np.isfinite(arr)
        first = int(np.argwhere(bad)[0][0])
        raise ExportError(
            f"NaN or Inf in {name} ({int(bad.sum())} value(s), the first in sample {first}); "
            "fix or drop those samples"
        )
    return arr


def _check_inputs(x, sample_shape, source: str) -> np.ndarray:
    """``x`` checked (numeric, finite, ``(N, *sample_shape)``); one sample gains a batch axis."""
    x = _numeric(x, "x")
    if len(x.shape) == len(sample_shape) and all(w is None or g == w for g, w in zip(x.shape, sample_shape)):
        x = x[None]
    if len(x.shape) != len(sample_shape) + 1 or any(
        w is not None and g != w for g, w in zip(x.shape[1:], sample_shape)
    ):
        want = ", ".join("?" if s is None else str(s) for s in sample_shape)
        raise ExportError(f"inputs have shape {tuple(x.shape)} but {source} expects (N, {want}); reshape x")
    if x.shape[0] == 0:
        raise ExportError("x is empty; pass at least one sample")
    return x


@overload
def predict(
    path, x, batch_size: int | None = ..., threads: int | None = ..., use_xnnpack: bool = ...,
    as_dict: Literal[False] = ...,
) -> np.ndarray | list[np.ndarray]: ...
@overload
def predict(
    path, x, batch_size: int | None = ..., threads: int | None = ..., use_xnnpack: bool = ..., *,
    as_dict: Literal[True],
) -> dict[str, np.ndarray]: ...
@overload
def predict(
    path, x, batch_size: int | None = ..., threads: int | None = ..., use_xnnpack: bool = ...,
    as_dict: bool = ...,
) -> np.ndarray | list[np.ndarray] | dict[str, np.ndarray]: ...
def predict(
    path, x, batch_size: int | None = 32, threads: int | None = None, use_xnnpack: bool = True,
    as_dict: bool = False,
) -> np.ndarray | list[np.ndarray] | dict[str, np.ndarray]:
    """Runs a .tflite file on inputs and returns float outputs.

    Float inputs are quantized with the input tensor's (scale, zero_point) when the
    file has integer inputs (inputs already of the file's dtype are passed as is);
    integer outputs are dequantized to float32.

    Args:
        path: The .tflite file (checked first: a damaged file raises ExportError).
        x: Input array, axis 0 = samples (a single sample without batch dim is accepted);
            for a file with several inputs, a dict by the model's input names (the file's
            signature), or a list when every input has its own shape.
        batch_size: Samples per invoke when the file's batch dimension is dynamic (it
            is resized); ``None`` or 1 runs one sample per invoke. Files with a fixed
            batch size B are fed B samples per invoke (the last chunk padded).
        threads: Interpreter threads (None = runtime default).
        use_xnnpack: Run on LiteRT's default XNNPACK delegate (True) or on its builtin
            kernels only (False: slower, for a file XNNPACK refuses).
        as_dict: return ``{output name: array}`` by the file's signature (the model's
            output names): a list follows the file's tensor order, which need not be
            the model's. Defaults to `False`.

    Returns:
        float32 array of shape ``(len(x), ...)``; a list of arrays for multi-output files;
        a dict with ``as_dict``.

    Raises:
        ExportError: Unreadable/damaged file, or inputs that are not numbers, hold
            NaN/Inf or have the wrong shape.

    Example:
        >>> probs = predict("model_int8.tflite", x_test)   # doctest: +SKIP
    """
    it = open_interpreter(path, num_threads=threads, use_xnnpack=use_xnnpack)
    inputs, outputs = _signature(it)
    if len(it.get_input_details()) > 1:
        arrays = _many_predict(it, path, x, inputs)
    else:
        arrays = _predict(it, path, x, batch_size, threads, use_xnnpack)
    if as_dict:
        by_index = {od["index"]: a for od, a in zip(it.get_output_details(), arrays)}
        names = outputs or {od["name"]: od["index"] for od in it.get_output_details()}
        return {name: by_index[index] for name, index in names.items()}
    return arrays[0] if len(arrays) == 1 else arrays


def _signature(it) -> tuple[dict, dict]:
    """``({input name: tensor index}, {output name: tensor index})`` of the file's serving signature."""
    try:
        sig = it._get_full_signature_list()  # noqa: SLF001 - LiteRT's only way to the indices
    except AttributeError:
        return {}, {}
    first: dict[str, Any] = sig.get("serving_default") or next(iter(sig.values()), {})
    return dict(first.get("inputs") or {}), dict(first.get("outputs") or {})


def _many_predict(it, path, x, names: dict) -> list:
    """A file with several inputs, one example per invoke (fixed batch 1, as the converter writes them)."""
    details = it.get_input_details()
    if isinstance(x, dict):
        by_index = {i: k for k, i in names.items()}
        missing = [by_index.get(d["index"], d["name"]) for d in details if by_index.get(d["index"]) not in x]
        if missing:
            raise ExportError(f"{os.fspath(path)} has inputs {sorted(names)}; x has keys {sorted(x)}: "
                              f"give {', '.join(map(str, missing))}")
        xs = [x[by_index[d["index"]]] for d in details]
    else:
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        shapes = [tuple(int(s) for s in d["shape"][1:]) for d in details]
        if len(xs) != len(details) or len(set(shapes)) != len(shapes):
            raise ExportError(f"{os.fspath(path)} has {len(details)} inputs ({', '.join(sorted(names))}): "
                              "pass x as a dict by those names")
        order = {np.asarray(a).shape[1:]: a for a in xs}
        if set(order) != set(shapes):
            raise ExportError(f"inputs of shapes {sorted(order)} do not match {os.fspath(path)}'s {shapes}; "
                              "pass x as a dict by input name")
        xs = [order[sh] for sh in shapes]
    xs = [_check_inputs(a, tuple(int(s) for s in d["shape"][1:]), os.fspath(path)) for a, d in zip(xs, details)]
    n = xs[0].shape[0]
    if any(a.shape[0] != n for a in xs):
        raise ExportError(f"the inputs have {[a.shape[0] for a in xs]} examples; they must match")
    outs = it.get_output_details()
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(n):
        for a, d in zip(xs, details):
            it.set_tensor(d["index"], np.ascontiguousarray(quantize_input(a[i:i + 1], d)))
        invoke(it, path)
        for k, od in enumerate(outs):
            results[k].append(dequantize_output(it.get_tensor(od["index"]), od))
    return [np.concatenate(r, axis=0) for r in results]


def _predict(it: Any, path: Any, x: np.ndarray, batch_size: int | None, threads: int | None,
             use_xnnpack: bool = True) -> list[np.ndarray]:
    """Every output of a one-input file on ``x``, in the file's output order."""
    inp = it.get_input_details()
    if len(inp) != 1:
        raise ExportError(f"{os.fspath(path)} has {len(inp)} inputs: pass them to predict() as a dict by name")
    d = inp[0]
    sample_shape = tuple(int(s) for s in d["shape"][1:])
    x = _check_inputs(x, sample_shape, os.fspath(path))
    n = x.shape[0]
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
                it = open_interpreter(path, num_threads=threads, use_xnnpack=use_xnnpack, check=False)
                bs = int(it.get_input_details()[0]["shape"][0])
    outs = it.get_output_details()
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for start in range(0, n, bs):
        chunk = xq[start : start + bs]
        m = chunk.shape[0]
        if m < bs:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - m, axis=0)])
        it.set_tensor(d["index"], np.ascontiguousarray(chunk))
        invoke(it, path)
        for k, od in enumerate(outs):
            results[k].append(dequantize_output(it.get_tensor(od["index"]), od)[:m])
    return [np.concatenate(r, axis=0) for r in results]


def _labels(pred: np.ndarray) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.ndim == 1 or pred.shape[-1] == 1:
        return (pred.reshape(len(pred)) > (0.5 if pred.min() >= 0 else 0.0)).astype(np.int64)
    return np.argmax(pred.reshape(len(pred), -1), axis=-1)


def _check_labels(y, n: int, units: int) -> np.ndarray:
    """Labels as int64 class ids, checked against ``n`` samples and ``units`` outputs."""
    y = _numeric(y, "y")
    if len(y) != n:
        raise ExportError(f"x has {n} samples but y has {len(y)} labels; pass matching arrays")
    if y.ndim == 2 and y.shape[1] > 1:
        if y.shape[1] != units:
            raise ExportError(
                f"y has one-hot rows of {y.shape[1]} classes but the file has {units} output(s); "
                "pass labels for this model"
            )
        return np.argmax(y, axis=1).astype(np.int64)
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
        raise ExportError(f"y has shape {y.shape}; pass class ids (N,) or one-hot rows (N, classes)")
    y = y.reshape(-1)
    if y.dtype.kind == "f" and (np.mod(y, 1) != 0).any():
        raise ExportError("y holds fractions; pass integer class ids or one-hot rows")
    y = y.astype(np.int64)
    classes = max(units, 2)
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise ExportError(
            f"y spans {int(y.min())}..{int(y.max())} but the file has {units} output(s): "
            f"labels must be in 0..{classes - 1}"
        )
    return y


def not_a_classifier(outputs: list) -> str | None:
    """Why a file's outputs (LiteRT output details) are not one classifier's scores, or None.

    Example:
        >>> not_a_classifier([{"shape": np.array([1, 64, 64, 1])}])
        'has a (64, 64, 1) output map, not class scores'
    """
    if len(outputs) != 1:
        return f"has {len(outputs)} outputs (several heads), not one classifier output"
    shape = tuple(int(d) for d in outputs[0]["shape"][1:])
    if len(shape) > 1:
        return f"has a {shape} output map, not class scores"
    return None


def evaluate(path, x, y, batch_size: int | None = 32) -> float:
    """Top-1 accuracy of a .tflite classifier.

    Inputs and labels are checked before the file runs: numbers only, no NaN or Inf,
    matching lengths, labels in range of the file's outputs.

    Args:
        path: The .tflite file.
        x: Inputs (float; quantized as the file requires).
        y: Integer labels, shape (N,) or (N, 1), or one-hot labels (N, classes).
        batch_size: See :func:`predict`.

    Returns:
        Accuracy in [0, 1].

    Raises:
        ExportError: A bad file; a file that is not one classifier (several outputs, an
            output map); inputs or labels that are not numbers or hold NaN/Inf; mismatched
            lengths; inputs of the wrong shape; labels outside the file's classes.

    Example:
        >>> evaluate("model_int8.tflite", x_test, y_test)   # doctest: +SKIP
        0.97
    """
    it = open_interpreter(path)
    why = not_a_classifier(it.get_output_details())
    if why:
        raise ExportError(f"{path} {why}: top-1 accuracy means nothing for it; score its outputs in the model's "
                          "own metric (tfcompress does, from the model's compile) or with predict().")
    out = it.get_output_details()[0]
    units = int(np.prod(out["shape"][1:])) if len(out["shape"]) > 1 else 1
    if isinstance(x, (dict, list, tuple)) and len(it.get_input_details()) > 1:  # several inputs: by name or shape
        pred = predict(path, x, batch_size=batch_size)
        y = _check_labels(y, len(pred), units)
    else:
        x = _check_inputs(x, tuple(int(s) for s in it.get_input_details()[0]["shape"][1:]), os.fspath(path))
        y = _check_labels(y, len(x), units)
        pred = _predict(it, path, x, batch_size, None)[0]
    if isinstance(pred, list):
        pred = pred[0]
    return float(np.mean(_labels(pred) == y))


def _float32(x):
    """Inputs as float32 for Keras: an array, or a dict/list of them (several inputs)."""
    if isinstance(x, dict):
        return {k: np.asarray(v, np.float32) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [np.asarray(v, np.float32) for v in x]
    return np.asarray(x, np.float32)


def agreement(model, path, x, batch_size: int | None = 32) -> float:
    """Fraction of inputs where the Keras model and the .tflite file pick the same top-1 class.

    Args:
        model: The tf_keras model the file was exported from.
        path: The .tflite file.
        x: Float inputs, checked against the model's input shape before either runs.
        batch_size: See :func:`predict`.

    Returns:
        Agreement in [0, 1].

    Raises:
        ExportError: A bad file, or inputs that are not numbers, hold NaN/Inf or do not
            fit the model's input shape.

    Example:
        >>> agreement(model, "model_int8.tflite", x_test)   # doctest: +SKIP
        0.99
    """
    shape = getattr(model, "input_shape", None)
    keras_x: Any
    if isinstance(x, (dict, list, tuple)):  # several inputs: the file takes them by name or shape, Keras as given
        keras_x = x
    elif isinstance(shape, tuple):
        x = keras_x = _check_inputs(x, tuple(shape[1:]), f"the model {getattr(model, 'name', '')}".rstrip())
    else:
        x = keras_x = _numeric(x, "x")
    pred = predict(path, x, batch_size=batch_size)
    ref = model.predict(_float32(keras_x), verbose=0, batch_size=256)
    if isinstance(ref, list):
        ref = ref[0]
    if isinstance(pred, list):
        pred = pred[0]
    return float(np.mean(_labels(np.asarray(ref)) == _labels(pred)))


def closeness(model, path, x, batch_size: int | None = 32) -> float:
    """How close the .tflite file's outputs are to the Keras model's, for any model:
    ``1 - ||file - keras|| / ||keras||`` over every output value (1.0: identical; 0: as
    far off as the outputs are large). The agreement of maps, boxes and regressions,
    where top-1 classes mean nothing.

    Args:
        model: The tf_keras model the file was exported from.
        path: The .tflite file.
        x: Float inputs of the model's input shape.
        batch_size: See :func:`predict`.

    Returns:
        A value in [0, 1].

    Example:
        >>> closeness(model, "segmenter_int8.tflite", x_test)   # doctest: +SKIP
        0.97
    """
    if isinstance(x, (dict, list, tuple)):  # several inputs: by name (a dict) or in the model's order
        keras_x = _float32(x)
    else:
        x = _numeric(x, "x")
        keras_x = x.astype(np.float32)
    names = list(getattr(model, "output_names", None) or [])
    pred: Any
    if len(names) > 1:  # pair the file's outputs with the model's by name (TF-MOT's QAT prefixes them: quant_box)
        by_name = predict(path, x, batch_size=batch_size, as_dict=True)
        ref = model.predict(keras_x, verbose=0, batch_size=256)
        ref = dict(zip(names, ref)) if not isinstance(ref, dict) else ref
        pick = {n: [k for k in by_name if k == n or k.endswith("_" + n)] for n in ref}
        if any(len(v) != 1 for v in pick.values()):
            raise ExportError(f"{path}: cannot pair the file's outputs {sorted(by_name)} with the model's "
                              f"{sorted(ref)}.")
        pred = {n: by_name[v[0]] for n, v in pick.items()}
    else:
        pred = predict(path, x, batch_size=batch_size)
        ref = model.predict(keras_x, verbose=0, batch_size=256)
    flat = lambda v: np.concatenate([np.asarray(a, np.float64).ravel() for a in  # noqa: E731
                                     (v.values() if isinstance(v, dict) else v if isinstance(v, list) else [v])])
    a, b = flat(pred), flat(ref)
    if a.shape != b.shape:
        raise ExportError(f"{path} gives {a.size} output values, the model {b.size}: "
                          "export the file again from this model.")
    norm = float(np.linalg.norm(b))
    return max(0.0, 1.0 - float(np.linalg.norm(a - b)) / norm) if norm > 0 else float(np.allclose(a, b))


def score_summary(path, x, y) -> tuple[dict, str]:
    """The export command's score of a written file: top-1 accuracy for one classifier
    output, else the mean absolute error of outputs the targets match; never an
    accuracy a model does not have.

    Returns:
        ``({"test_accuracy"|"test_mae"|"test_score": value}, text for the summary line)``.

    Example:
        >>> score_summary("edges_int8.tflite", x_test, maps_test)[1]  # doctest: +SKIP
        ', LiteRT test mean absolute error 0.0213 (the file has a (64, 64, 1) output map, ...: no accuracy)'
    """
    why = not_a_classifier(open_interpreter(path).get_output_details())
    if why is None:
        acc = evaluate(path, x, y)
        return {"test_accuracy": acc}, f", LiteRT test accuracy {acc:.4f}"
    if isinstance(y, dict):  # targets per head by name: class ids score top-1 accuracy, values their MAE
        heads = predict(path, x, as_dict=True)
        scores = {}
        for name, target in y.items():
            keys = [k for k in heads if k == name or k.endswith("_" + name)]
            t, p = np.asarray(target), (heads[keys[0]] if len(keys) == 1 else None)
            if p is None or len(t) != len(p):
                continue
            if t.dtype.kind in "iu" and p.ndim == 2 and p.shape[1] > 1 and t.size == len(t):  # a classifier head
                scores[f"accuracy_{name}"] = float(np.mean(p.argmax(-1) == t.ravel()))
            elif t.size == p.size:
                diff = p.astype(np.float64).ravel() - t.astype(np.float64).ravel()
                scores[f"mae_{name}"] = float(np.mean(np.abs(diff)))
        if scores:
            text = ", ".join(f"{k.replace('_', ' ', 1)} {v:.4g}" for k, v in scores.items())
            return ({f"test_{k}": v for k, v in scores.items()},
                    f", LiteRT test scores per head: {text} (the file {why})")
        return {"test_score": None}, (f"; not scored: the file {why} and no head matches the data's targets "
                                      f"{sorted(y)} (tfcompress optimize scores such models in their own metric)")
    pred = predict(path, x)
    y = np.asarray(y)
    if not isinstance(pred, list) and y.size == pred.size and len(y) == len(pred):
        mae = float(np.mean(np.abs(pred.astype(np.float64).ravel() - y.astype(np.float64).ravel())))
        return {"test_mae": mae}, f", LiteRT test mean absolute error {mae:.4g} (the file {why}: no accuracy)"
    return {"test_score": None}, (f"; not scored: the file {why} and the data's labels {y.shape[1:]} do not match "
                                  "it (tfcompress optimize scores such models in their own metric)")
