"""Reading and patching TFLite flatbuffers (no interpreter involved)."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import numpy as np

from ._userfiles import refuse_special
from .errors import ExportError

METADATA_NAME = "tfcompress"
#: Metadata the TFLite converter writes that no runtime reads: the conversion options and a minimum-version
#: hint (LiteRT's interpreter reads only its own keys, e.g. ``reduced_precision_support``, which are kept).
CONVERTER_NOTES = ("CONVERSION_METADATA", "min_runtime_version")
#: Keys of the "tfcompress" metadata a stripped file leaves out: the recipe and the versions (the job's report
#: keeps them) and the calibration sample count.
LEAN_DROPS = ("recipe", "tflite_export_version", "tfcompress_version", "representative_samples")

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
    refuse_special(path, "model file")
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


def strip_names(data: bytes) -> bytes:
    """Returns ``data`` with the names of its inner tensors emptied: a smaller file that runs alike.

    The converter names every tensor after the Keras ops fused into it
    (``lenet5/quant_fc1/MatMul;lenet5/quant_fc1/BiasAdd;...``): about 300 of a
    LeNet-5 int4 file's 5,800 zipped bytes. Only the model's inputs and outputs
    and the tensors its signatures name keep their names (``get_input_details``
    and signature runners use them); the inner names are debugging aids
    (``get_tensor_details``, Netron), so a file for debugging keeps them.
    The converter's notes (:data:`CONVERTER_NOTES`, about 100 B zipped) and the
    model description ("MLIR Converted.") go too: no runtime reads them.

    Example:
        >>> small = strip_names(open("model.tflite", "rb").read())  # doctest: +SKIP
    """
    model = parse_model(data)
    main = model.subgraphs[0]
    keep = {(0, int(i)) for i in list(main.inputs if main.inputs is not None else []) +
            list(main.outputs if main.outputs is not None else [])}
    for sig in model.signatureDefs or []:
        for t in list(sig.inputs or []) + list(sig.outputs or []):
            keep.add((int(sig.subgraphIndex), int(t.tensorIndex)))
    for k, sg in enumerate(model.subgraphs):
        for i, t in enumerate(sg.tensors):
            if (k, i) not in keep:
                t.name = b""
    notes = [m for m in model.metadata or [] if _decode(m.name) in CONVERTER_NOTES]
    model.metadata = [m for m in model.metadata or [] if m not in notes] or None
    for m in notes:
        model.buffers[m.buffer].data = None  # the entry stays (buffer indices are positions), empty
    model.description = None
    return serialize_model(model)


def lean_metadata(md: dict) -> dict:
    """``md`` (tfcompress's metadata) as a stripped file stores it: without :data:`LEAN_DROPS`, saying so.

    Example:
        >>> lean_metadata({"mode": "int4", "recipe": {"seed": 0}, "tfcompress_version": "0.1.0"})
        {'mode': 'int4', 'names': 'stripped'}
    """
    return {**{k: v for k, v in md.items() if k not in LEAN_DROPS}, "names": "stripped"}


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
    if model.buffers is None:
        model.buffers = []
    entries = [m for m in (model.metadata or []) if _decode(m.name) != name]
    old = [m for m in (model.metadata or []) if _decode(m.name) == name]
    md = schema_fb.MetadataT()
    md.name = name
    if old:  # the replaced entry's buffer takes the new payload: no stale copy stays in the file
        md.buffer = old[0].buffer
    else:
        model.buffers.append(schema_fb.BufferT())
        md.buffer = len(model.buffers) - 1
    model.buffers[md.buffer].data = np.frombuffer(payload, dtype=np.uint8).copy()
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


# int8 ops LiteRT cannot run when calibration saw a tensor that is all zeros (its scale becomes
# 7.8e-9) and an op's output requantization multiplier comes out too large:
# - builtin ADD/SUB/SQUARED_DIFFERENCE kernels abort the whole process in Prepare (a TFLITE_CHECK in
#   QuantizeMultiplierSmallerThanOneExp, no message; tensorflow#60815) unless it is below 1.
#   ConvNeXtLarge after pruning + QAT: a LayerNorm's x - mean over 1x1 feature maps, SquaredDifference
#   output scale 7.8e-9, multiplier 68.7.
# - XNNPACK accepts FULLY_CONNECTED/CONV_2D/DEPTHWISE_CONV_2D into its graph but then refuses to build
#   its runtime ("failed to create XNNPACK runtime") when input scale x largest filter scale / output
#   scale >= 256 (XNNPACK's fully-connected-nc.c / convolution-nhwc.c). ConvNeXtLarge's stage-3 MLP:
#   a Dense whose outputs were all zeros, multiplier 1,350.
# name -> (multiplier from (input scale, second input's largest scale, output scale), limit, kernel).
def _sum(s1, s2, so):  # add.cc / sub.cc: int8 inputs left-shifted by 20
    return 2 * max(s1, s2) / ((1 << 20) * so)


def _squared_difference(s1, s2, so):  # squared_difference.cc: left shift 7, squared
    return (2 * max(s1, s2)) ** 2 / ((1 << 14) * so)


def _product(s1, s2, so):
    return s1 * s2 / so


_UNRUNNABLE = {
    "ADD": (_sum, 1.0, "builtin (abort)"),
    "SUB": (_sum, 1.0, "builtin (abort)"),
    "SQUARED_DIFFERENCE": (_squared_difference, 1.0, "builtin (abort)"),
    "FULLY_CONNECTED": (_product, 256.0, "XNNPACK"),
    "CONV_2D": (_product, 256.0, "XNNPACK"),
    "DEPTHWISE_CONV_2D": (_product, 256.0, "XNNPACK"),
}


def _aborting(model, fix: bool) -> list[str]:
    """The int8 ops of ``model`` (a ``ModelT``) that LiteRT's kernels would abort on or XNNPACK would
    refuse, as readable lines; with ``fix``, each one's output scale is first widened until its
    multiplier is 1/2 (in execution order, so later ops see the widened scales). Widening only coarsens
    a tensor that calibration saw as (nearly) constant; its zero point, and so its zeros, stay exact."""
    int8 = _schema().TensorType.INT8
    out = []
    for sg in model.subgraphs or []:
        for i, op in enumerate(sg.operators or []):
            name = op_name(model, op.opcodeIndex)
            if name not in _UNRUNNABLE or len(op.inputs) < 2 or len(op.outputs) < 1 or min(op.inputs[:2]) < 0:
                continue
            tensors = [sg.tensors[j] for j in (op.inputs[0], op.inputs[1], op.outputs[0])]
            scales = [t.quantization.scale if t.quantization is not None else None for t in tensors]
            if any(t.type != int8 for t in tensors):
                continue
            present = [s for s in scales if s is not None and len(s) > 0 and min(s) > 0]
            if len(present) < 3:
                continue
            multiplier, limit, kernel = _UNRUNNABLE[name]
            si, sw, so = float(present[0][0]), float(max(present[1])), float(present[2][0])
            m = multiplier(si, sw, so)
            if m < limit:
                continue
            line = f"op {i} ({name}, {_decode(tensors[2].name)}): output scale {so:.3g}, {kernel} multiplier {m:.3g}"
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


# Ops whose int32 bias is stored in units of input scale x filter scale: (input, bias) positions.
_BIASED = {"FULLY_CONNECTED": (0, 2), "CONV_2D": (0, 2), "DEPTHWISE_CONV_2D": (0, 2), "CONV_3D": (0, 2),
           "TRANSPOSE_CONV": (2, 3)}


def _widen(model, sg, index, scale):
    q = sg.tensors[index].quantization
    old = tensor_quant(sg.tensors[index])
    q.scale = np.asarray([scale], dtype=np.float32)
    for op in sg.operators or []:
        name = op_name(model, op.opcodeIndex)
        if (len(op.inputs) and op.inputs[0] == index and len(op.outputs) and name in _SAME_SCALE):
            oq = tensor_quant(sg.tensors[op.outputs[0]])
            if oq is not None and np.isclose(oq[0], old[0], rtol=1e-6) and oq[1] == old[1]:
                _widen(model, sg, op.outputs[0], scale)
        elif name in _BIASED:
            x, b = _BIASED[name]
            if len(op.inputs) > b and op.inputs[x] == index and op.inputs[b] >= 0:
                _rescale_bias(model, sg, op, b, old[0] / scale)


def _rescale_bias(model, sg, op, position, ratio):
    """Keeps a bias's value when its op's input scale grows by 1/``ratio``: the op gets its own copy
    of the bias tensor (the converter may share tensors and buffers) with int32 values and scales
    (input scale x filter scale) to match."""
    t = sg.tensors[op.inputs[position]]
    data = model.buffers[t.buffer].data if t.buffer else None
    if t.type != _schema().TensorType.INT32 or data is None or t.quantization is None or t.quantization.scale is None:
        return
    buf = _schema().BufferT()
    buf.data = np.rint(np.asarray(data, np.uint8).view("<i4") * ratio).astype("<i4").view(np.uint8)
    model.buffers.append(buf)
    bias = copy.copy(t)
    bias.quantization = copy.copy(t.quantization)
    bias.quantization.scale = (np.asarray(t.quantization.scale, np.float32) / np.float32(ratio)).astype(np.float32)
    bias.buffer = len(model.buffers) - 1
    sg.tensors.append(bias)
    op.inputs[position] = len(sg.tensors) - 1


def aborting_ops(data: bytes) -> list[str]:
    """One line per int8 op of a file that LiteRT's builtin kernel would abort the process on or that
    XNNPACK would refuse (see :func:`widen_aborting_scales`).

    Example:
        >>> aborting_ops(open("model.tflite", "rb").read())  # doctest: +SKIP
        []
    """
    return _aborting(parse_model(data), fix=False)


def widen_aborting_scales(data: bytes) -> tuple[bytes, list[str]]:
    """``data`` with the output scales that would make LiteRT's int8 kernels abort, or XNNPACK refuse
    the file, widened, and one line per op changed (none: ``data`` itself is returned).

    Example:
        >>> data, changed = widen_aborting_scales(data)  # doctest: +SKIP
    """
    model = parse_model(data)
    changed = _aborting(model, fix=True)
    return (serialize_model(model), changed) if changed else (data, [])
