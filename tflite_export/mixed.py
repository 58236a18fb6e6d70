"""Per-layer precision on a converted model: int4, int8, int16x8, float16 or float32 per op.

A float32 ``.tflite`` is quantized op by op with ``ai-edge-quantizer`` (Google's
quantizer for LiteRT files): each layer with weights (conv, depthwise conv,
fully connected) gets its own precision, every other op (pooling, reshape,
add, softmax) the ``default``; the quantizer inserts the quantize/dequantize
ops between ops of different precisions. The file is calibrated once
(:class:`Mixer`), then quantized as often as a sensitivity scan needs.

Precisions (:data:`PRECISIONS`, lowest bytes first):

- ``int4``: int4 weights stored packed, per channel, float activations
  quantized on the fly (dynamic range; XNNPACK runs int4 fully connected
  layers, the interpreter's reference kernels the rest);
- ``int8``: int8 weights and activations (static, calibrated);
- ``int16x8``: int8 weights, int16 activations (static, calibrated);
- ``float16``: float16 weights dequantized to float32 before the op;
- ``float32``: left as converted.

A layer is named by the Keras layer its op comes from (the second part of
the op's TensorFlow name, e.g. ``sequential/conv1/Relu`` -> ``conv1``).

Example:
    >>> mixer = Mixer(float_bytes, x_train[:100])                     # doctest: +SKIP
    >>> data = mixer.quantize({"conv1": "int16x8", "dense": "int4"})  # doctest: +SKIP
    >>> layer_precisions(data)["dense"]                               # doctest: +SKIP
    'int4'
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from typing import Any

import numpy as np

from . import _flatbuffer as fb
from .errors import ExportError, first_line

__all__ = ["PRECISIONS", "WEIGHT_OPS", "Mixer", "quantize_mixed", "weight_layers", "layer_precisions"]

#: The precisions a layer can take, fewest weight bytes first.
PRECISIONS = ("int4", "int8", "int16x8", "float16", "float32")
#: The ops whose second input is a weight tensor a precision applies to.
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
_WEIGHT_SUFFIX = re.compile(r"(Conv2D|MatMul|depthwise|conv2d_transpose|Conv2DBackpropInput|BiasAdd|Tensordot)")


def _aeq():
    try:
        from ai_edge_quantizer import qtyping, quantizer
        from ai_edge_quantizer.algorithm_manager import AlgorithmName
    except ImportError as e:  # pragma: no cover - a dependency in setup.cfg
        raise ExportError(f"per-layer precision needs ai-edge-quantizer ({first_line(e)}); "
                          "pip install 'ai-edge-quantizer>=0.10,<0.11'") from None
    return quantizer, qtyping, AlgorithmName


@contextlib.contextmanager
def _quiet():
    """ai-edge-quantizer's calibration without its progress bar and LiteRT's preserve-all-tensors warning."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
        yield


def _layer_of(*tensor_names: str) -> str:
    """The Keras layer a weight op comes from, read from its TensorFlow tensor names."""
    pieces = [p for n in tensor_names for p in n.split(";") if "/" in p]
    for p in pieces:
        parts = p.split("/")
        if len(parts) >= 2 and _WEIGHT_SUFFIX.fullmatch(parts[-1].rstrip("0123456789_")):
            return parts[-2]
    return pieces[0].split("/")[-2] if pieces else (tensor_names[0] if tensor_names else "?")


def _weight_ops(model):
    """``(layer, op name, weight tensor, output tensor, producer of each tensor)`` of every weight op."""
    g = model.subgraphs[0]
    names = [fb.op_name(model, i) for i in range(len(model.operatorCodes))]
    producer = {}
    for op in g.operators:
        for o in op.outputs if op.outputs is not None else []:
            producer[int(o)] = op
    found = []
    for op in g.operators:
        name = names[op.opcodeIndex]
        if name not in WEIGHT_OPS or op.inputs is None or len(op.inputs) < 2:
            continue
        w = g.tensors[int(op.inputs[1 if name != "TRANSPOSE_CONV" else 1])]
        out = g.tensors[int(op.outputs[0])]
        wsrc = producer.get(int(op.inputs[1]))
        if wsrc is not None and names[wsrc.opcodeIndex] == "DEQUANTIZE":  # float16/int4 weights
            w = g.tensors[int(wsrc.inputs[0])]
        found.append((_layer_of(fb._decode(w.name), fb._decode(out.name)), name, w, out))
    return found


def weight_layers(data: bytes) -> list[dict[str, Any]]:
    """The layers with weights in a float ``.tflite``, in op order.

    Args:
        data: The file's bytes.

    Returns:
        ``[{"layer": name, "op": "CONV_2D", "params": weight count}, ...]``.

    Example:
        >>> [w["layer"] for w in weight_layers(open("f.tflite", "rb").read())]   # doctest: +SKIP
        ['conv1', 'conv2', 'dense']
    """
    model = fb.parse_model(data)
    return [{"layer": layer, "op": op, "params": int(np.prod(w.shape)) if w.shape is not None else 0}
            for layer, op, w, _ in _weight_ops(model)]


def _dtype(tensor) -> str:
    return fb.type_name(int(tensor.type)).lower()


def layer_precisions(data: bytes) -> dict[str, str]:
    """The precision each weight layer of a ``.tflite`` really runs at, read from its tensors.

    Args:
        data: The file's bytes.

    Returns:
        ``{layer: precision}``: ``int4`` (int4 weights), ``int8`` (int8 weights and
        output), ``int16x8`` (int8 weights, int16 output), ``float16`` (float16
        weights), ``float32``, or ``"<weights>/<output>"`` for anything else.

    Example:
        >>> layer_precisions(open("mixed.tflite", "rb").read())   # doctest: +SKIP
        {'conv1': 'int16x8', 'conv2': 'int8', 'dense': 'int4'}
    """
    out = {}
    for layer, _, w, o in _weight_ops(fb.parse_model(data)):
        wt, ot = _dtype(w), _dtype(o)
        known = {("int4", "float32"): "int4", ("int8", "int8"): "int8", ("int8", "int16"): "int16x8",
                 ("float16", "float32"): "float16", ("float32", "float32"): "float32"}
        out[layer] = known.get((wt, ot), f"{wt}/{ot}")
    return out


def _check_precision(what: str, p) -> None:
    if p not in PRECISIONS:
        raise ExportError(f"{what} precision {p!r} is not one of {', '.join(PRECISIONS)}")


class Mixer:
    """A float32 ``.tflite`` calibrated once, quantized per layer as often as needed.

    Args:
        data: The float32 file's bytes (``tflite_export.convert_bytes(model, "float32")``).
        samples: Calibration inputs, axis 0 = samples (a few dozen to a few hundred).

    Raises:
        ExportError: not a float file with weight layers, empty or ill-shaped samples,
            or a quantizer failure (one line).

    Example:
        >>> mixer = Mixer(float_bytes, x_train[:100])      # doctest: +SKIP
        >>> int8_everywhere = mixer.quantize({}, "int8")   # doctest: +SKIP
    """

    def __init__(self, data: bytes, samples):
        quantizer, _, _ = _aeq()
        self.data = bytes(data)
        self.layers = [w["layer"] for w in weight_layers(self.data)]
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim < 2 or len(x) == 0:
            raise ExportError(f"calibration samples must be a batch of inputs, got shape {x.shape}")
        from ai_edge_litert.interpreter import Interpreter

        sigs = Interpreter(model_content=self.data).get_signature_list()
        if len(sigs) != 1 or len(next(iter(sigs.values()))["inputs"]) != 1:
            raise ExportError("per-layer precision supports files with one signature and one input")
        self._sig, entry = next(iter(sigs.items()))
        self._input = entry["inputs"][0]
        q = quantizer.Quantizer(self.data)
        q.load_quantization_recipe(self._recipe({layer: "int16x8" for layer in self.layers}, "int8"))
        try:
            with _quiet():
                self._calibration = q.calibrate({self._sig: [{self._input: x[i:i + 1]} for i in range(len(x))]})
        except Exception as e:  # noqa: BLE001 - the quantizer's errors are not ours
            raise ExportError(f"calibration for per-layer precision failed: {first_line(e)}") from None

    def _recipe(self, per_layer: dict[str, str], default: str) -> list:
        _, qtyping, alg = _aeq()
        from ai_edge_quantizer import recipe_manager

        rm = recipe_manager.RecipeManager()
        every = qtyping.TFLOperationName.ALL_SUPPORTED
        for regex, p in [(".*", default)] + [
                (f"/{re.escape(layer)}(/|;|$)", p) for layer, p in per_layer.items()]:
            if p == "float32":
                rm.add_quantization_config(regex, every, None, alg.NO_QUANTIZE)
            elif p == "float16":
                cfg = qtyping.OpQuantizationConfig(
                    weight_tensor_config=qtyping.TensorQuantizationConfig(
                        num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
                    compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True)
                rm.add_quantization_config(regex, every, cfg, alg.FLOAT_CASTING)
            elif p == "int4":
                rm.add_dynamic_config(regex, every, 4)
            else:
                rm.add_static_config(regex, every, 8 if p == "int8" else 16, 8)
        return rm.get_quantization_recipe()

    def quantize(self, per_layer: dict[str, str], default: str = "int8") -> bytes:
        """The file with ``per_layer`` precisions on its weight layers and ``default`` elsewhere.

        Args:
            per_layer: ``{layer name: precision}``; layers not named take ``default``.
            default: The precision of every other op.

        Returns:
            The quantized file's bytes.

        Raises:
            ExportError: an unknown precision or layer, or a quantizer failure.

        Example:
            >>> data = mixer.quantize({"dense": "float16"})   # doctest: +SKIP
        """
        quantizer, _, _ = _aeq()
        _check_precision("default", default)
        for layer, p in per_layer.items():
            _check_precision(f"layer {layer!r}", p)
            if layer not in self.layers:
                raise ExportError(f"no weight layer {layer!r} in the file; its weight layers: {', '.join(self.layers)}")
        if default == "float32" and all(p == "float32" for p in per_layer.values()):
            return self.data
        q = quantizer.Quantizer(self.data, self._recipe(per_layer, default))
        try:
            with _quiet():
                return bytes(q.quantize(self._calibration if q.need_calibration else None,
                                        enable_progress_report=False).quantized_model)
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"per-layer quantization failed: {first_line(e)}") from None


def quantize_mixed(data: bytes, per_layer: dict[str, str], default: str, samples) -> bytes:
    """One-shot :class:`Mixer`: calibrate ``data`` on ``samples`` and quantize it per layer.

    Args:
        data: A float32 ``.tflite``'s bytes.
        per_layer: ``{layer name: precision}``.
        default: The precision of every other op.
        samples: Calibration inputs.

    Returns:
        The quantized file's bytes.

    Raises:
        ExportError: see :class:`Mixer`.

    Example:
        >>> quantize_mixed(float_bytes, {"conv1": "float16"}, "int8", x[:100])   # doctest: +SKIP
    """
    return Mixer(data, samples).quantize(per_layer, default)


def export_mixed(model, path, per_layer: dict[str, str], default: str, samples, metadata=None, strip_names=False):
    """Convert ``model`` to float32, quantize it per layer and write the file atomically.

    Args:
        model: What :func:`tflite_export.convert_bytes` takes (a tf_keras model, a file).
        path: Output ``.tflite`` path.
        per_layer: ``{layer name: precision}``.
        default: The precision of every other op.
        samples: Calibration inputs.
        metadata: JSON-serialisable dict stored under "tfcompress" (with the mode, "mixed").
        strip_names: Empty the inner tensors' names (:func:`tflite_export.export`'s option).

    Returns:
        A :class:`tflite_export.ExportReport` with ``mode="mixed"``.

    Raises:
        ExportError: see :class:`Mixer`; an unwritable path.

    Example:
        >>> export_mixed(model, "mixed.tflite", {"dense": "int4"}, "int8", x[:100]).bytes   # doctest: +SKIP
        21840
    """
    import os
    import time

    from ._atomic import atomic_write_bytes
    from .convert import ExportReport, __version__, convert_bytes, zipped_size

    t0 = time.perf_counter()
    float_bytes, _ = convert_bytes(model, "float32")
    data = Mixer(float_bytes, samples).quantize(per_layer, default)
    md = {"producer": "tflite_export", "tflite_export_version": __version__, "mode": "mixed",
          "precisions": dict(per_layer), "default": default, **(metadata or {})}
    if strip_names:
        data, md = fb.strip_names(data), fb.lean_metadata(md)
    data = fb.add_metadata(data, md)
    obj = fb.parse_model(data)
    info = fb.io_info(obj)
    written = atomic_write_bytes(os.fspath(path), data)
    from .safety import mark_trusted

    mark_trusted(written)  # quantizer output: no need for the child-process load check
    return ExportReport(
        path=written, mode="mixed", bytes=len(data), zipped_bytes=zipped_size(data),
        input_dtype=info["input_dtype"], output_dtype=info["output_dtype"],
        input_quantization=info["input_quantization"], output_quantization=info["output_quantization"],
        num_samples=len(samples), convert_seconds=round(time.perf_counter() - t0, 3),
        metadata=fb.summarize_value(md),
    )
