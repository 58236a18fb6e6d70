"""Reading what is inside a .tflite file: metadata, ops, tensors, quantization, MACs."""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Any

import numpy as np

from . import _flatbuffer as fb
from ._record import Record
from .errors import ExportError

__all__ = ["ModelInfo", "inspect", "count_macs", "read_metadata"]


def _shape(t) -> list[int]:
    return [int(s) for s in (t.shape if t.shape is not None else [])]


def _quant(t) -> dict[str, Any] | None:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    scales = [float(s) for s in q.scale]
    zps = [int(z) for z in (q.zeroPoint if q.zeroPoint is not None else [])]
    out: dict[str, Any] = {
        "per_channel": len(scales) > 1,
        "quantized_dimension": int(q.quantizedDimension or 0),
        "num_scales": len(scales),
    }
    if len(scales) == 1:
        out["scale"] = scales[0]
        out["zero_point"] = zps[0] if zps else 0
    else:
        out["scale_min"] = float(min(scales))
        out["scale_max"] = float(max(scales))
        out["zero_points_all_zero"] = all(z == 0 for z in zps)
    return out


def _macs_of_op(name: str, op, tensors) -> int:
    """MACs of one conv / depthwise / fully-connected / transpose-conv op (batch as stored)."""
    ins = [i for i in (op.inputs if op.inputs is not None else [])]
    outs = [o for o in (op.outputs if op.outputs is not None else [])]
    if len(ins) < 2 or not outs or ins[1] < 0 or outs[0] < 0:
        return 0
    w = _shape(tensors[ins[1]])
    o = _shape(tensors[outs[0]])
    if not w or not o:
        return 0
    if name == "CONV_2D" and len(w) == 4 and len(o) == 4:  # w: [Cout, kh, kw, Cin]
        return int(np.prod(o)) * w[1] * w[2] * w[3]
    if name == "CONV_3D" and len(w) == 5:  # w: [kd, kh, kw, Cin, Cout]
        return int(np.prod(o)) * w[0] * w[1] * w[2] * w[3]
    if name == "DEPTHWISE_CONV_2D" and len(w) == 4 and len(o) == 4:  # w: [1, kh, kw, Cout]
        return int(np.prod(o)) * w[1] * w[2]
    if name == "FULLY_CONNECTED" and len(w) == 2:  # w: [units, in]
        return int(np.prod(o[:-1]) if len(o) > 1 else 1) * w[0] * w[1]
    if name == "TRANSPOSE_CONV" and len(ins) >= 3:  # inputs: output_shape, weights, input
        wt = _shape(tensors[ins[1]])
        xi = _shape(tensors[ins[2]])
        if len(wt) == 4 and len(xi) == 4:
            return int(np.prod(xi)) * wt[0] * wt[1] * wt[2]
    if name == "BATCH_MATMUL":
        a = _shape(tensors[ins[0]])
        if a:
            return int(np.prod(o)) * a[-1]
    return 0


@dataclasses.dataclass
class ModelInfo(Record):
    """What :func:`inspect` found in a .tflite file.

    Attributes:
        path: The file.
        bytes: File size.
        zipped_bytes: Size zipped with deflate level 9.
        metadata: The JSON dict stored under "tfcompress" (empty if none).
        metadata_names: Names of all flatbuffer metadata entries (e.g. "min_runtime_version").
        ops: ``{op name: count}`` over all subgraphs, e.g. ``{"CONV_2D": 2}``.
        op_list: Op names in execution order (subgraph 0).
        inputs / outputs: ``[{"name", "shape", "dtype", "quantization"}]``.
        tensors: One dict per tensor of subgraph 0: index, name, shape, dtype,
            constant (has data), sparse, quantization (None or scale/zero_point, or a
            per-channel summary).
        dtype_counts: ``{dtype: number of tensors}``.
        sparse_tensors: Number of tensors stored sparse.
        macs: Multiply-accumulates per invoke of conv / depthwise / fully connected ops.
        num_subgraphs: Number of subgraphs.
    """

    path: str
    bytes: int
    zipped_bytes: int
    metadata: dict[str, Any]
    metadata_names: list[str]
    ops: dict[str, int]
    op_list: list[str]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    tensors: list[dict[str, Any]]
    dtype_counts: dict[str, int]
    sparse_tensors: int
    macs: int
    num_subgraphs: int

    def to_dict(self, tensors: bool = True) -> dict[str, Any]:
        """JSON-serialisable dict (``tensors=False`` drops the per-tensor list)."""
        d = super().to_dict()
        if not tensors:
            d.pop("tensors")
        return d

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"{self.path}: {self.bytes} bytes ({self.zipped_bytes} zipped), {self.macs / 1e6:.3f} M MACs",
            "inputs:  " + ", ".join(_io_str(t) for t in self.inputs),
            "outputs: " + ", ".join(_io_str(t) for t in self.outputs),
            "ops:     " + ", ".join(f"{k} x{v}" for k, v in sorted(self.ops.items(), key=lambda kv: (-kv[1], kv[0]))),
            "dtypes:  " + ", ".join(f"{k} x{v}" for k, v in sorted(self.dtype_counts.items())),
            f"sparse tensors: {self.sparse_tensors}",
            f"metadata: {self.metadata if self.metadata else '(none)'}",
        ]
        return "\n".join(lines)


def _qstr(q) -> str:
    if not q:
        return ""
    if "scale" in q:
        return f" (scale={q['scale']:.6g}, zp={q['zero_point']})"
    return f" (per-channel x{q['num_scales']})"


def _io_str(t) -> str:
    return f"{t['name']} {t['shape']} {t['dtype']}{_qstr(t['quantization'])}"


def _model_info(model, path: str, data: bytes) -> ModelInfo:
    from .convert import zipped_size

    ops: dict[str, int] = collections.Counter()
    op_list: list[str] = []
    macs = 0
    for si, sg in enumerate(model.subgraphs or []):
        for op in sg.operators or []:
            name = fb.op_name(model, op.opcodeIndex)
            ops[name] += 1
            if si == 0:
                op_list.append(name)
                macs += _macs_of_op(name, op, sg.tensors)
    sg = model.subgraphs[0]
    tensors = []
    dtype_counts: dict[str, int] = collections.Counter()
    for i, t in enumerate(sg.tensors or []):
        buf = model.buffers[t.buffer] if t.buffer is not None and 0 <= t.buffer < len(model.buffers or []) else None
        const = buf is not None and buf.data is not None and len(buf.data) > 0
        dt = fb.type_name(t.type)
        dtype_counts[dt] += 1
        tensors.append(
            {
                "index": i,
                "name": fb._decode(t.name),  # pylint: disable=protected-access
                "shape": _shape(t),
                "dtype": dt,
                "constant": bool(const),
                "sparse": t.sparsity is not None,
                "quantization": _quant(t),
            }
        )

    def io(idx):
        keys = ("name", "shape", "dtype", "quantization")
        return [{k: tensors[i][k] for k in keys} for i in (idx if idx is not None else [])]

    return ModelInfo(
        path=path,
        bytes=len(data),
        zipped_bytes=zipped_size(data),
        metadata=fb.read_metadata(model).get(fb.METADATA_NAME, {}),
        metadata_names=[fb._decode(m.name) for m in (model.metadata or [])],  # pylint: disable=protected-access
        ops=dict(ops),
        op_list=op_list,
        inputs=io(sg.inputs),
        outputs=io(sg.outputs),
        tensors=tensors,
        dtype_counts=dict(dtype_counts),
        sparse_tensors=fb.sparse_tensor_count(model),
        macs=int(macs),
        num_subgraphs=len(model.subgraphs or []),
    )


def inspect(path) -> ModelInfo:
    """Reads a .tflite file's metadata, ops, tensor dtypes and quantization.

    Only the flatbuffer is parsed (in Python); nothing is executed, so any file is
    safe to inspect.

    Args:
        path: The .tflite file.

    Returns:
        A :class:`ModelInfo`.

    Raises:
        ExportError: Missing, non-TFLite or damaged file.

    Example:
        >>> info = inspect("model_int8.tflite")      # doctest: +SKIP
        >>> info.metadata["recipe"], info.ops         # doctest: +SKIP
        ('prune50', {'CONV_2D': 1, 'FULLY_CONNECTED': 1, ...})
    """
    path = os.path.abspath(os.fspath(path))
    data = fb.read_bytes(path)
    model = fb.parse_model(data, path)  # raises ExportError for a non-TFLite file
    if not model.subgraphs:
        raise ExportError(f"{path} has no subgraphs; it is damaged or empty, re-export it")
    try:
        return _model_info(model, path, data)
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - inconsistent indices in a damaged file
        raise ExportError(
            f"{path} is a damaged TFLite file ({type(e).__name__}: {str(e)[:80]}); re-export it"
        ) from None


def read_metadata(path) -> dict[str, Any]:
    """The JSON metadata dict stored under "tfcompress" in a .tflite file ({} if none).

    Args:
        path: The .tflite file.

    Returns:
        The dict passed as ``export(..., metadata=)`` plus tflite_export's own keys
        (producer, tflite_export_version, mode, io, sparse, representative_samples);
        a file written with ``strip_names`` leaves out the recipe, the versions and the
        sample count (``_flatbuffer.lean_metadata``) and says ``names: stripped``.

    Raises:
        ExportError: Missing or damaged file.

    Example:
        >>> read_metadata("model_int8.tflite")["mode"]   # doctest: +SKIP
        'int8'
    """
    return inspect(path).metadata


def count_macs(path) -> int:
    """Multiply-accumulates per invoke (conv, depthwise, fully connected, transpose conv).

    Counted from the flatbuffer shapes (batch as stored, normally 1); other ops
    (pooling, adds, activations) are not counted.

    Args:
        path: The .tflite file.

    Returns:
        MACs per invoke.

    Raises:
        ExportError: Missing or damaged file.

    Example:
        >>> count_macs("mobilenet.tflite")   # doctest: +SKIP
        300774272
    """
    return inspect(path).macs
