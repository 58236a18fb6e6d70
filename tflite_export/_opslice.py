"""One-op .tflite files cut out of a model, and the key a measured op cost is stored under.

:func:`op_slices` cuts every op of a file's main subgraph into a file of its
own: the op, its constant inputs (weights, biases, quantization kept exactly)
and its other inputs turned into the file's inputs. Timing that file on LiteRT
times the op as the whole file runs it, precision, fused activation and all.
An op whose inputs are all constant (a ``DEQUANTIZE`` of float16 or int4
weights) is folded away when the file is prepared, so it gets no file and
costs nothing.

The key names what the op's cost depends on: the op, the shape, dtype and
constness of each input and output (per-channel quantization marked), and
its options (strides, padding, fused activation); two ops with the same key
cost the same on one machine, whatever their weight values.

Example:
    >>> s = op_slices(open("m_int8.tflite", "rb").read())[1]  # doctest: +SKIP
    >>> s.key  # doctest: +SKIP
    'CONV_2D|1x28x28x1:int8,6x5x5x1:int8c/q6,6:int32c/q6>1x28x28x6:int8|fusedActivationFunction=1,padding=0,...'
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from . import _flatbuffer as fb

__all__ = ["OpSlice", "op_slices", "overhead_file"]


@dataclass
class OpSlice:
    """One op of a file.

    Attributes:
        index: its position in the file's main subgraph.
        op: the builtin op name ("CONV_2D").
        key: what its cost is stored under (see the module docstring).
        data: the bytes of its one-op file, or None for an op that is folded away.
        names: the names of its output tensors (they carry the Keras layer's name).
    """

    index: int
    op: str
    key: str
    data: bytes | None
    names: list = field(default_factory=list)


def _const(model, t) -> bool:
    b = model.buffers[t.buffer] if t.buffer is not None and 0 < t.buffer < len(model.buffers) else None
    return b is not None and (b.data is not None and len(b.data) > 0 or bool(getattr(b, "size", 0)))


def _sig(model, t) -> str:
    shape = "x".join(str(int(d)) for d in (t.shape if t.shape is not None else [])) or "scalar"
    q = t.quantization
    scales = 0 if q is None or q.scale is None else len(q.scale)
    return f"{shape}:{fb.type_name(int(t.type))}{'c' if _const(model, t) else ''}{f'/q{scales}' if scales > 1 else ''}"


def _options(op) -> str:
    o = op.builtinOptions
    if o is None:
        return ""
    items = []
    for k, v in sorted(vars(o).items()):
        if hasattr(v, "tolist"):
            v = v.tolist()
        if v is None:
            continue
        items.append(f"{k}={v}")
    return ",".join(items)


def _key(model, g, op, name) -> str:
    ins = ",".join(_sig(model, g.tensors[int(i)]) if int(i) >= 0 else "-" for i in (op.inputs if op.inputs is not None
                                                                                   else []))
    outs = ",".join(_sig(model, g.tensors[int(i)]) for i in (op.outputs if op.outputs is not None else []))
    return f"{name}|{ins}>{outs}|{_options(op)}"


def _cut(model, g, op):
    """The ``ModelT`` holding only ``op``, or None when all its inputs are constant."""
    schema = fb._schema()
    new = schema.ModelT()
    new.version = model.version
    new.description = model.description
    new.operatorCodes = [copy.deepcopy(model.operatorCodes[op.opcodeIndex])]
    new.buffers = [schema.BufferT()]
    sub = schema.SubGraphT()
    sub.tensors, sub.inputs = [], []
    where = {}

    def take(i):
        i = int(i)
        if i < 0:
            return -1
        if i not in where:
            t = copy.copy(g.tensors[i])
            if _const(model, t):
                new.buffers.append(copy.deepcopy(model.buffers[t.buffer]))
                t.buffer = len(new.buffers) - 1
            else:
                t.buffer = 0
            t.shapeSignature = None
            where[i] = len(sub.tensors)
            sub.tensors.append(t)
        return where[i]

    one = copy.copy(op)
    one.opcodeIndex = 0
    one.inputs = [take(i) for i in (op.inputs if op.inputs is not None else [])]
    one.outputs = [take(i) for i in op.outputs]
    one.intermediates = [take(i) for i in op.intermediates] if op.intermediates is not None else None
    for i in op.inputs if op.inputs is not None else []:
        if int(i) >= 0 and not _const(model, g.tensors[int(i)]) and where[int(i)] not in sub.inputs:
            sub.inputs.append(where[int(i)])
    if not sub.inputs:
        return None
    sub.outputs = list(one.outputs)
    sub.operators = [one]
    sub.name = b"op"
    new.subgraphs = [sub]
    new.signatureDefs = None
    new.metadata = None
    new.metadataBuffer = None
    return new


def op_slices(data: bytes) -> list[OpSlice]:
    """Every op of the main subgraph of a .tflite file, cut into a one-op file of its own.

    Args:
        data: the file's bytes (checked by the caller).

    Returns:
        A list of :class:`OpSlice`, in graph order.

    Example:
        >>> [s.op for s in op_slices(open("m.tflite", "rb").read())]  # doctest: +SKIP
        ['CONV_2D', 'MAX_POOL_2D', 'RESHAPE', 'FULLY_CONNECTED', 'SOFTMAX']
    """
    model = fb.parse_model(data)
    g = model.subgraphs[0]
    out = []
    for n, op in enumerate(g.operators or []):
        name = fb.op_name(model, op.opcodeIndex)
        cut = _cut(model, g, op)
        names = [fb._decode(g.tensors[int(i)].name) for i in op.outputs]
        out.append(OpSlice(n, name, _key(model, g, op, name), None if cut is None else fb.serialize_model(cut), names))
    return out


def overhead_file(ops: int = 1) -> bytes:
    """A file of ``ops`` chained ADDs of one-element float32 tensors: what an invoke (and each op of it) costs
    with (nearly) no work.

    Example:
        >>> overhead_file(2)[4:8]
        b'TFL3'
    """
    schema = fb._schema()
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    code.version = 1
    tensors, operators = [], []
    for n in range(ops + 2):  # a, b, then each ADD's output
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = [1], schema.TensorType.FLOAT32, 0, f"t{n}".encode()
        tensors.append(t)
    for n in range(ops):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [0 if n == 0 else n + 1, 1], [n + 2]
        op.builtinOptionsType = schema.BuiltinOptions.AddOptions
        op.builtinOptions = schema.AddOptionsT()
        operators.append(op)
    sub = schema.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators, sub.name = tensors, [0, 1], [ops + 1], operators, b"op"
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [sub]
    model.buffers = [schema.BufferT()]
    model.description = b"tflite_export overhead probe"
    return fb.serialize_model(model)
