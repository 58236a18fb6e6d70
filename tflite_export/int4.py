"""``mode="int4"``: a .tflite whose conv / depthwise conv / fully connected weights are stored as INT4.

Two routes, chosen by the model:

- a model trained with 4-bit (or 2-bit) weight QAT (TF-MOT's n-bit scheme,
  ``tfcompress`` ``quantization.weights: int4``) converts like ``mode="int8"``
  (full-integer, calibrated) and the TFLite converter itself writes its weights
  as INT4 tensors, two values a byte; the file is checked to hold them;
- any other model is converted to float32 and quantized after training by
  ``ai-edge-quantizer`` (``dynamic_wi4_afp32``: int4 weights per output
  channel, activations quantized on the fly by the kernels); ai-edge-quantizer
  0.10 leaves DEPTHWISE_CONV_2D weights float32 in this recipe (measured).

Measured on ai-edge-litert 2.3 (tests/test_lowbit.py, benchmarks/bench_lowbit.py):
CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED all run with INT4 weights,
with and without XNNPACK, with the same outputs.

Example:
    >>> import tflite_export as tfl
    >>> rep = tfl.export(qat_model, "m_int4.tflite", mode="int4", representative_data=x[:200])  # doctest: +SKIP
    >>> int4_weights(open("m_int4.tflite", "rb").read())                                 # doctest: +SKIP
    {'conv1': 'int4', 'fc': 'int4'}
"""

from __future__ import annotations

from . import _flatbuffer as fb
from .errors import ExportError, first_line

__all__ = ["INT4_OPS", "int4_weights", "is_qat", "quantize_int4", "convert_int4"]

#: The ops whose weights (second input) LiteRT 2.3 runs as INT4.
INT4_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def int4_weights(data: bytes) -> dict[str, str]:
    """The weight type of every conv / depthwise conv / fully connected op of a file.

    Args:
        data: .tflite bytes.

    Returns:
        ``{weight tensor name: dtype name}`` (``"int4"``, ``"int8"``, ``"float32"`` ...)
        for the weight input of each op in :data:`INT4_OPS`; a weight fed through a
        DEQUANTIZE op reports the type it is stored in.

    Example:
        >>> sorted(set(int4_weights(data).values()))   # doctest: +SKIP
        ['int4']
    """
    model = fb.parse_model(data)
    out = {}
    for g in model.subgraphs or []:
        producer = {o: op for op in (g.operators or []) for o in (op.outputs if op.outputs is not None else [])}
        for op in g.operators or []:
            if fb.op_name(model, op.opcodeIndex) not in INT4_OPS or op.inputs is None or len(op.inputs) < 2:
                continue
            t = op.inputs[1]
            src = producer.get(t)
            if src is not None and fb.op_name(model, src.opcodeIndex) == "DEQUANTIZE":
                t = src.inputs[0]
            tensor = g.tensors[t]  # a file whose names were stripped: its tensors by index
            out[fb._decode(tensor.name) or f"tensor {t}"] = fb.type_name(tensor.type)
    return out


def is_qat(model) -> bool:
    """True for a tf_keras model with TF-MOT quantize wrappers (a QAT model)."""
    layers = getattr(model, "layers", None) or []
    return any(type(layer).__name__.startswith(("QuantizeWrapper", "QuantizeLayer")) for layer in layers)


def quantize_int4(float_data: bytes) -> bytes:
    """Post-training int4 of a float32 .tflite with ai-edge-quantizer (``dynamic_wi4_afp32``).

    Args:
        float_data: a float32 .tflite file's bytes.

    Returns:
        The quantized file's bytes: INT4 weights per output channel on the
        conv and fully connected ops (depthwise conv stays float32).

    Raises:
        ExportError: ai-edge-quantizer is missing or fails (one line).

    Example:
        >>> data = quantize_int4(open("m_float32.tflite", "rb").read())   # doctest: +SKIP
    """
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as e:  # pragma: no cover - a dependency in setup.cfg
        raise ExportError(f"mode='int4' needs ai-edge-quantizer ({first_line(e)}); "
                          "pip install 'ai-edge-quantizer>=0.10,<0.11'") from None
    try:
        q = quantizer.Quantizer(bytes(float_data), recipe.dynamic_wi4_afp32())
        return bytes(q.quantize(enable_progress_report=False).quantized_model)
    except Exception as e:  # noqa: BLE001 - the quantizer's errors are not ours
        raise ExportError(f"int4 post-training quantization (ai-edge-quantizer) failed: {first_line(e)}") from None


def convert_int4(model, convert, has_data=False) -> tuple[bytes, int]:
    """The ``mode="int4"`` conversion (see the module docstring for the two routes).

    Args:
        model: what :func:`tflite_export.export` was given.
        convert: ``mode -> (bytes, samples used)``, converting ``model`` in that mode.
        has_data: representative data was given: a model *file* is then tried
            full-integer first (it may hold a 4-bit QAT model). Defaults to `False`.

    Returns:
        ``(tflite_bytes, representative_samples_used)``.

    Raises:
        ExportError: a QAT model whose weights did not come out INT4 (8-bit QAT),
            a file without any conv / fully connected op, or a quantizer failure.

    Example:
        >>> data, used = convert_int4(model, lambda mode: convert_bytes(model, mode, x))   # doctest: +SKIP
    """
    if is_qat(model) or (has_data and not hasattr(model, "layers")):  # a model file may hold a 4-bit QAT model
        data, used = convert("int8")
        if "int4" in int4_weights(data).values():
            return data, used
        if is_qat(model):
            raise ExportError("this QAT model's weights convert to int8, not int4 (8-bit QAT); train it with "
                              "4-bit weights (tfcompress quantization.weights: int4) or export the float model")
    data, _ = convert("float32")
    if not int4_weights(data):
        raise ExportError("mode='int4' found no conv, depthwise conv or fully connected op to store as int4; "
                          "use mode='int8'")
    return quantize_int4(data), 0
