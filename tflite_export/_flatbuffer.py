"""Reading and patching TFLite flatbuffers (no interpreter involved)."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .errors import ExportError

METADATA_NAME = "tfcompress"

_TYPE_NAMES = None
_OP_NAMES = None


def _schema():
    from ai_edge_litert import schema_py_generated as schema_fb

    return schema_fb


def type_name(code: int) -> str:
    """Returns the lower-case dtype name ("int8", "float32") of a TensorType code."""
    global _TYPE_NAMES
    if _TYPE_NAMES is None:
        t = _schema().TensorType
        _TYPE_NAMES = {v: k.lower() for k, v in vars(t).items() if not k.startswith("_") and isinstance(v, int)}
    return _TYPE_NAMES.get(int(code), f"type{code}")


def op_name(model, opcode_index: int) -> str:
    """The builtin op name ("CONV_2D") of ``model.operatorCodes[opcode_index]`` (a ``ModelT``);
    "CUSTOM:<code>" for custom ops."""
    global _OP_NAMES
    schema = _schema()
    if _OP_NAMES is None:
        ops = vars(schema.BuiltinOperator).items()
        _OP_NAMES = {v: k for k, v in ops if not k.startswith("_") and isinstance(v, int)}
    oc = model.operatorCodes[opcode_index]
    code = max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))
    if code == schema.BuiltinOperator.CUSTOM:
        return "CUSTOM:" + _decode(oc.customCode)
    return _OP_NAMES.get(code, f"OP{code}")


def read_bytes(path: str) -> bytes:
    """Reads a file, raising ExportError with a one-line message on failure."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ExportError(f"{path} does not exist; pass the path of a .tflite file") from None
    except IsADirectoryError:
        raise ExportError(f"{path} is a folder; pass the path of a .tflite file") from None
    except OSError as e:
        raise ExportError(f"cannot read {path} ({e.strerror or e}); check the path and permissions") from None


def has_identifier(data: bytes) -> bool:
    """True if ``data`` carries the TFLite flatbuffer identifier "TFL3"."""
    return len(data) >= 8 and data[4:8] == b"TFL3"


def parse_model(data: bytes, path: str = "<bytes>"):
    """Parses TFLite bytes into a ``ModelT`` object.

    Only call this on bytes that were produced by the converter or passed
    :func:`tflite_export.safety.check_file` (parsing is done in Python, so a bad
    file raises rather than crashing, but it may be slow or produce garbage).
    """
    if not has_identifier(data):
        raise ExportError(
            f"{path} is not a TFLite file (no 'TFL3' identifier); pass a file written by the TFLite converter"
        )
    try:
        from ai_edge_litert.tools import flatbuffer_utils

        return flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure means a damaged file
        raise ExportError(
            f"{path} is a damaged TFLite file (truncated or corrupted flatbuffer: {str(e)[:70] or type(e).__name__}); "
            "re-export it"
        ) from None


def serialize_model(model) -> bytes:
    from ai_edge_litert.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _decode(s) -> str:
    if s is None:
        return ""
    return s.decode("utf-8", "replace") if isinstance(s, (bytes, bytearray)) else str(s)


def add_metadata(data: bytes, metadata: dict, name: str = METADATA_NAME) -> bytes:
    """Returns ``data`` with ``metadata`` (JSON) stored in the flatbuffer ``metadata`` list.

    An existing entry with the same name is replaced.
    """
    schema_fb = _schema()
    try:
        payload = json.dumps(metadata, sort_keys=True, default=_json_default).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ExportError(
            f"metadata is not JSON-serialisable ({e}); pass a dict of strings, numbers, lists and dicts"
        ) from None
    model = parse_model(data)
    buf = schema_fb.BufferT()
    buf.data = np.frombuffer(payload, dtype=np.uint8).copy()
    if model.buffers is None:
        model.buffers = []
    model.buffers.append(buf)
    entries = [m for m in (model.metadata or []) if _decode(m.name) != name]
    md = schema_fb.MetadataT()
    md.name = name
    md.buffer = len(model.buffers) - 1
    entries.append(md)
    model.metadata = entries
    return serialize_model(model)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def read_metadata(model, name: str | None = METADATA_NAME) -> dict:
    """Returns ``{name: value}`` for metadata entries (JSON-decoded where possible)."""
    out = {}
    for m in model.metadata or []:
        key = _decode(m.name)
        if name is not None and key != name:
            continue
        raw = b""
        if m.buffer is not None and 0 <= m.buffer < len(model.buffers or []):
            d = model.buffers[m.buffer].data
            raw = bytes(np.asarray(d, dtype=np.uint8).tobytes()) if d is not None else b""
        try:
            out[key] = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            out[key] = {"_bytes": len(raw)}
    return out


def tensor_quant(tensor) -> tuple[float, int] | None:
    """(scale, zero_point) for a per-tensor quantized tensor, else None (or first of per-channel)."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    zp = 0 if q.zeroPoint is None or len(q.zeroPoint) == 0 else int(q.zeroPoint[0])
    return (float(q.scale[0]), zp)


def io_info(model) -> dict:
    """dtype and quantization of the first input and output of subgraph 0."""
    sg = model.subgraphs[0]
    tin = sg.tensors[sg.inputs[0]]
    tout = sg.tensors[sg.outputs[0]]
    return {
        "input_dtype": type_name(tin.type),
        "output_dtype": type_name(tout.type),
        "input_quantization": tensor_quant(tin),
        "output_quantization": tensor_quant(tout),
    }


def sparse_tensor_count(model) -> int:
    n = 0
    for sg in model.subgraphs or []:
        for t in sg.tensors or []:
            if t.sparsity is not None:
                n += 1
    return n


def summarize_value(x: Any) -> Any:
    return json.loads(json.dumps(x, default=_json_default))


# Builtin int8 kernels whose Prepare aborts the whole process (a TFLITE_CHECK in
# QuantizeMultiplierSmallerThanOneExp, no message; tensorflow#60815) unless this output
# requantization multiplier is below 1: (input1 scale, input2 scale, output scale) -> multiplier.
# The converter writes such files when calibration saw a tensor that is all zeros: ConvNeXtLarge
# after pruning + QAT, a LayerNorm's x - mean over 1x1 feature maps, SquaredDifference output
# scale 7.8e-9, multiplier 68.7.
_ABORT_MULTIPLIERS = {
    "ADD": lambda s1, s2, so: 2 * max(s1, s2) / ((1 << 20) * so),  # add.cc, int8 left shift 20
    "SUB": lambda s1, s2, so: 2 * max(s1, s2) / ((1 << 20) * so),  # sub.cc, the same
    "SQUARED_DIFFERENCE": lambda s1, s2, so: (2 * max(s1, s2)) ** 2 / ((1 << 14) * so),  # left shift 7, squared
}


def _aborting(model, fix: bool) -> list[str]:
    """The int8 ops of ``model`` (a ``ModelT``) whose kernels would abort, as readable lines; with
    ``fix``, each one's output scale is first widened until its multiplier is 1/2 (in execution order,
    so later ops see the widened scales). Widening only coarsens a tensor that calibration saw as
    (nearly) constant; its zero point, and so its zeros, stay exact."""
    int8 = _schema().TensorType.INT8
    out = []
    for sg in model.subgraphs or []:
        for i, op in enumerate(sg.operators or []):
            name = op_name(model, op.opcodeIndex)
            if name not in _ABORT_MULTIPLIERS or len(op.inputs) < 2 or len(op.outputs) < 1:
                continue
            tensors = [sg.tensors[j] for j in (op.inputs[0], op.inputs[1], op.outputs[0])]
            quants = [tensor_quant(t) for t in tensors]
            if any(t.type != int8 for t in tensors) or any(q is None or q[0] <= 0 for q in quants):
                continue
            s1, s2, so = (q[0] for q in quants)
            m = _ABORT_MULTIPLIERS[name](s1, s2, so)
            if m < 1:
                continue
            line = f"op {i} ({name}, {_decode(tensors[2].name)}): output scale {so:.3g}, multiplier {m:.3g}"
            if fix:
                _widen(model, sg, op.outputs[0], so * m * 2)
                line += f", widened to {so * m * 2:.3g}"
            out.append(line)
    return out


# Ops that move int8 values without requantizing: input and output must keep one scale (XNNPACK
# refuses a TRANSPOSE whose two differ), so a widened input widens their output too.
_SAME_SCALE = {"RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "SLICE", "STRIDED_SLICE", "GATHER", "PAD",
               "PADV2", "MAX_POOL_2D", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "BATCH_TO_SPACE_ND",
               "SPACE_TO_BATCH_ND", "TILE", "BROADCAST_TO"}


def _widen(model, sg, index, scale):
    q = sg.tensors[index].quantization
    old = tensor_quant(sg.tensors[index])
    q.scale = np.asarray([scale], dtype=np.float32)
    for op in sg.operators or []:
        if (len(op.inputs) and op.inputs[0] == index and len(op.outputs)
                and op_name(model, op.opcodeIndex) in _SAME_SCALE):
            oq = tensor_quant(sg.tensors[op.outputs[0]])
            if oq is not None and np.isclose(oq[0], old[0], rtol=1e-6) and oq[1] == old[1]:
                _widen(model, sg, op.outputs[0], scale)


def aborting_ops(data: bytes) -> list[str]:
    """One line per int8 op of a file whose LiteRT kernel would abort the process (see
    :func:`widen_aborting_scales`).

    Example:
        >>> aborting_ops(open("model.tflite", "rb").read())  # doctest: +SKIP
        []
    """
    return _aborting(parse_model(data), fix=False)


def widen_aborting_scales(data: bytes) -> tuple[bytes, list[str]]:
    """``data`` with the output scales that would make LiteRT's int8 kernels abort widened, and
    one line per op changed (none: ``data`` itself is returned).

    Example:
        >>> data, changed = widen_aborting_scales(data)  # doctest: +SKIP
    """
    model = parse_model(data)
    changed = _aborting(model, fix=True)
    return (serialize_model(model), changed) if changed else (data, [])
