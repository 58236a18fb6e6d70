"""Per-layer numerical comparison between a Keras model and its .tflite file."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from ._record import Record
from ._runtime import dequantize_output, invoke, open_interpreter, quantize_input
from .errors import ExportError
from .tables import markdown_table

__all__ = ["LayerError", "LayerErrorReport", "layer_errors"]


@dataclasses.dataclass
class LayerError(Record):
    """Error of one Keras layer's output versus the matching tensor in the file.

    Attributes:
        layer: Keras layer name.
        tensor: Name of the matched TFLite tensor; "(fused into <layer>)" when the
            layer has no tensor of its own (e.g. a conv followed by BN + ReLU); "" if
            unmatched.
        matched_by: "name", "output" (the model output), "input" (a QAT QuantizeLayer),
            "shape" (op order + shape) or "" (unmatched).
        shape: Keras output shape without the batch dimension.
        dtype: dtype of the TFLite tensor (before dequantization).
        snr_db: Signal-to-noise ratio, 10*log10(sum(ref^2) / sum((ref - tflite)^2)); inf if identical.
        cosine: Mean per-sample cosine similarity.
        max_abs_error: Largest absolute difference.
        flagged: True if ``snr_db`` is below the threshold or the layer is among the worst.
    """

    layer: str
    tensor: str = ""
    matched_by: str = ""
    shape: tuple = ()
    dtype: str = ""
    snr_db: float | None = None
    cosine: float | None = None
    max_abs_error: float | None = None
    flagged: bool = False

    #: to_dict: errors to 4 decimals, an identical layer's SNR as "inf" (JSON has no infinity), NaN as None.
    ROUND = 4
    NONFINITE = "text"


@dataclasses.dataclass
class LayerErrorReport:
    """Result of :func:`layer_errors`.

    Attributes:
        path: The .tflite file.
        samples: Number of inputs compared.
        rows: One :class:`LayerError` per Keras layer, in model order.
        min_snr_db: Threshold used for flagging.
    """

    path: str
    samples: int
    rows: list[LayerError]
    min_snr_db: float

    @property
    def matched(self) -> list[LayerError]:
        return [r for r in self.rows if r.matched_by]

    @property
    def flagged(self) -> list[LayerError]:
        return [r for r in self.rows if r.flagged]

    def worst(self, k: int = 3) -> list[LayerError]:
        """The ``k`` matched layers with the lowest SNR."""
        return sorted(self.matched, key=_snr)[:k]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "samples": self.samples,
            "min_snr_db": self.min_snr_db,
            "layers": [r.to_dict() for r in self.rows],
            "worst": [r.layer for r in self.worst()],
        }

    def table(self) -> str:
        """Markdown table of the per-layer errors."""
        rows = [
            [r.layer, r.tensor or "(not matched)", "", "", "", "", ""] if not r.matched_by else
            [r.layer, r.tensor[:40], r.dtype, f"{r.snr_db:.1f}", f"{r.cosine:.4f}", f"{r.max_abs_error:.4g}",
             "<-- worst" if r.flagged else ""]
            for r in self.rows
        ]
        return markdown_table(["layer", "tflite tensor", "dtype", "SNR dB", "cosine", "max abs err", "flag"], rows,
                              align="lllrrrl")


def _snr_cos(ref: np.ndarray, got: np.ndarray):
    ref = ref.reshape(len(ref), -1).astype(np.float64)
    got = got.reshape(len(got), -1).astype(np.float64)
    err = ref - got
    p_sig = float(np.sum(ref * ref))
    p_err = float(np.sum(err * err))
    if p_err == 0.0:
        snr = math.inf
    elif p_sig == 0.0:
        snr = -math.inf
    else:
        snr = 10.0 * math.log10(p_sig / p_err)
    nr = np.linalg.norm(ref, axis=1)
    ng = np.linalg.norm(got, axis=1)
    denom = nr * ng
    both_zero = np.where((nr == 0) & (ng == 0), 1.0, 0.0)
    cos = np.where(denom > 0, np.sum(ref * got, axis=1) / np.where(denom > 0, denom, 1.0), both_zero)
    return snr, float(np.mean(cos)), float(np.max(np.abs(err))) if err.size else 0.0


def _foldable(layer) -> bool:
    """Layers TFLite folds into the preceding conv / FC op (BN, ReLU, ReLU6)."""
    kind = type(layer).__name__
    if kind in ("BatchNormalization", "ReLU"):
        return True
    if kind == "Activation":
        fn = getattr(layer.activation, "__name__", "")
        return fn in ("relu", "relu6", "linear")
    return False


def _consumes(layer, producer) -> bool:
    try:
        return layer.input is producer.output
    except (AttributeError, ValueError):
        return False


def _name_hit(tensor_name: str, layer_name: str) -> bool:
    for part in tensor_name.split(";"):
        if f"/{layer_name}/" in "/" + part + "/":
            return True
    return False


# ------------------------------------------------------------------ layer_errors, step by step


def _keras_references(model, x: np.ndarray):
    """Step 1: the single-output layers of ``model`` and their outputs on ``x``."""
    import tf_keras as keras

    if not hasattr(model, "inputs") or not model.inputs:
        raise ExportError(
            "layer_errors needs a functional or Sequential tf_keras model with defined inputs; "
            "build the model with an Input layer"
        )
    if len(model.inputs) != 1:
        raise ExportError("layer_errors supports single-input models only")
    probe_layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            out = layer.output
        except (AttributeError, ValueError):
            continue
        if isinstance(out, (list, tuple)) or not hasattr(out, "shape"):
            continue
        probe_layers.append(layer)
    if not probe_layers:
        raise ExportError("model has no single-output layers to compare; pass a functional or Sequential model")
    probe = keras.Model(model.inputs, [layer.output for layer in probe_layers])
    refs = probe.predict(x.astype(np.float32), verbose=0, batch_size=256)
    if not isinstance(refs, list):
        refs = [refs]
    return probe_layers, refs


@dataclasses.dataclass
class _FileRun:
    """Every op output of the .tflite file on the inputs (dequantized), from step 2."""

    op_outputs: list[int]  # tensor indices, in op order (the input first when no op produces it)
    details: dict[int, dict]  # tensor index -> LiteRT tensor details
    values: dict[int, list[np.ndarray]]  # tensor index -> per-chunk float values
    in_index: int
    model_outputs: list[int]
    samples: int

    def shape_of(self, t: int):
        v = self.values[t]
        return tuple(v[0].shape[1:]) if v else None

    def name_hit(self, t: int, layer_name: str) -> bool:
        return _name_hit(self.details[t]["name"], layer_name)


def _open_batched(path: str, x: np.ndarray):
    """An interpreter keeping all tensors, resized to the whole batch when it allows it."""
    it = open_interpreter(path, num_threads=1, use_xnnpack=False, preserve_all_tensors=True)
    d = it.get_input_details()[0]
    sample_shape = tuple(int(s) for s in d["shape"][1:])
    if tuple(x.shape[1:]) != sample_shape:
        raise ExportError(
            f"inputs have shape {tuple(x.shape)} but {path} expects (N, {', '.join(map(str, sample_shape))}); "
            "reshape x"
        )
    try:
        it.resize_tensor_input(d["index"], [len(x), *sample_shape], strict=True)
        it.allocate_tensors()
        return it, d, True
    except (ValueError, RuntimeError):
        it = open_interpreter(path, num_threads=1, use_xnnpack=False, preserve_all_tensors=True, check=False)
        return it, d, False


def _run_file(path: str, x: np.ndarray) -> _FileRun:
    """Step 2: runs the file on ``x`` and keeps every op output."""
    it, d, batched = _open_batched(path, x)
    op_outputs: list[int] = []
    for op in it._get_ops_details():  # pylint: disable=protected-access
        for t in op["outputs"]:
            if t >= 0 and t not in op_outputs:
                op_outputs.append(int(t))
    in_index = int(d["index"])
    if in_index not in op_outputs:
        op_outputs.insert(0, in_index)  # compared only for QAT QuantizeLayer; never shape-matched
    details = {t: it._get_tensor_details(t, 0) for t in op_outputs}  # pylint: disable=protected-access
    model_outputs = [int(o["index"]) for o in it.get_output_details()]
    xq = quantize_input(x, d)
    values: dict[int, list[np.ndarray]] = {t: [] for t in op_outputs}
    chunks = [xq] if batched else [xq[i : i + 1] for i in range(len(x))]
    for c in chunks:
        it.set_tensor(d["index"], np.ascontiguousarray(c))
        invoke(it, path)
        for t in op_outputs:
            try:
                values[t].append(dequantize_output(np.array(it.get_tensor(t)), details[t]))
            except ValueError:
                pass
    return _FileRun(op_outputs, details, values, in_index, model_outputs, len(x))


def _owners_by_name(probe_layers, refs, run: _FileRun):
    """Step 3: which layer owns each named op output, and which layers were fused into it.

    Each op output is owned by the LAST Keras layer (in model order) named in it
    with the same output shape: conv + BN + activation fuse into one TFLite op
    whose output is the activation layer's output; the earlier layers are "fused".

    Returns:
        ``(owned: layer -> [tensor], fused_into: layer -> owner, named: tensors naming a layer)``.
    """
    order = {layer.name: i for i, layer in enumerate(probe_layers)}
    want_shape = {layer.name: tuple(r.shape[1:]) for layer, r in zip(probe_layers, refs)}
    owned: dict[str, list[int]] = {}
    fused_into: dict[str, str] = {}
    named: set = set()
    for t in run.op_outputs:
        if t == run.in_index:
            continue
        mentioned = [layer.name for layer in probe_layers if run.name_hit(t, layer.name)]
        if not mentioned:
            continue
        named.add(t)
        fits = [n for n in mentioned if want_shape[n] == run.shape_of(t)]
        if not fits:
            continue
        owner = max(fits, key=lambda n: order[n])
        owned.setdefault(owner, []).append(t)
        lo = min(order[n] for n in mentioned)
        for layer in probe_layers[lo : order[owner]]:
            if layer.name in mentioned or _foldable(layer):
                fused_into.setdefault(layer.name, owner)
    return owned, fused_into, named


def _move_down_folded_chains(probe_layers, run: _FileRun, owned, fused_into, named) -> None:
    """Step 4: moves owned tensors down BN / ReLU chains that left no name in the tensor (in place).

    BatchNorm / ReLU layers folded into the op before them often leave no name in
    the tensor: move the tensor down such a chain to the layer it really matches.
    """
    mentioned_any = {layer.name for layer in probe_layers if any(run.name_hit(t, layer.name) for t in named)}

    def next_folded(cur):
        for n in probe_layers:
            if n.name not in owned and n.name not in mentioned_any and _foldable(n) and _consumes(n, cur):
                return n
        return None

    for layer in list(probe_layers):
        if layer.name not in owned:
            continue
        cur = layer
        nxt = next_folded(cur)
        while nxt is not None:
            owned[nxt.name] = owned.pop(cur.name)
            fused_into[cur.name] = nxt.name
            for k, v in list(fused_into.items()):
                if v == cur.name:
                    fused_into[k] = nxt.name
            cur = nxt
            nxt = next_folded(cur)
    for k in owned:
        fused_into.pop(k, None)


def _choose_tensor(model, layer, want, run: _FileRun, owned, fused_into, named, used, last_pos):
    """The tensor matched to one layer: ``(tensor or None, matched_by, fused-into note)``."""
    keras_outputs = [id(o) for o in model.outputs]
    if owned.get(layer.name):
        return owned[layer.name][-1], "name", ""
    if id(layer.output) in keras_outputs and run.model_outputs:
        t = run.model_outputs[min(len(run.model_outputs) - 1, keras_outputs.index(id(layer.output)))]
        return (t, "output", "") if run.shape_of(t) == want else (None, "", "")
    if type(layer).__name__ == "QuantizeLayer" and run.shape_of(run.in_index) == want:
        return run.in_index, "input", ""  # QAT: the quantized model input
    if layer.name in fused_into:
        return None, "", f"(fused into {fused_into[layer.name]})"
    if not any(run.name_hit(t, layer.name) for t in run.op_outputs):
        for pos, t in enumerate(run.op_outputs):
            if pos > last_pos and t not in used and t not in named and t != run.in_index and run.shape_of(t) == want:
                return t, "shape", ""
    return None, "", ""


def _match_rows(model, probe_layers, refs, run: _FileRun, owned, fused_into, named) -> list[LayerError]:
    """Step 5: one row per layer, with the errors of its matched tensor."""
    rows: list[LayerError] = []
    used: set = set()
    last_pos = -1
    for layer, ref in zip(probe_layers, refs):
        want = tuple(ref.shape[1:])
        row = LayerError(layer=layer.name, shape=want)
        chosen, how, note = _choose_tensor(model, layer, want, run, owned, fused_into, named, used, last_pos)
        if note:
            row.tensor = note
        if chosen is not None:
            got = np.concatenate(run.values[chosen], axis=0)[: len(ref)]
            row.tensor = run.details[chosen]["name"]
            row.matched_by = how
            row.dtype = np.dtype(run.details[chosen]["dtype"]).name
            row.snr_db, row.cosine, row.max_abs_error = _snr_cos(np.asarray(ref), got)
            used.add(chosen)
            last_pos = max(last_pos, run.op_outputs.index(chosen))
        rows.append(row)
    return rows


def _flag(rows: list[LayerError], min_snr_db: float, worst: int) -> None:
    """Step 6: flags rows below ``min_snr_db`` and the ``worst`` lowest under 40 dB (in place)."""
    matched = [r for r in rows if r.matched_by]
    for r in matched:
        if _snr(r) < min_snr_db:
            r.flagged = True
    if worst:
        for r in sorted(matched, key=_snr)[:worst]:
            if _snr(r) < 40.0:
                r.flagged = True


def _snr(row: LayerError) -> float:
    """A row's SNR for ranking: a matched row always has one; a row without one ranks as never worst."""
    return math.inf if row.snr_db is None else row.snr_db


def layer_errors(
    model,
    path,
    x,
    max_samples: int = 64,
    min_snr_db: float = 20.0,
    worst: int = 3,
) -> LayerErrorReport:
    """Per-layer error between a Keras model's intermediate outputs and a .tflite file.

    The file is run with ``experimental_preserve_all_tensors=True`` (builtin
    kernels, so intermediate tensors are kept). Each op-output tensor is matched to
    a Keras layer by name: TFLite tensor names carry the names of the Keras layers
    fused into the op, and the tensor belongs to the last of them with the same
    output shape (conv + BN + ReLU -> the ReLU layer; the conv and BN rows are
    reported as fused). The model output is matched by position; layers whose name
    appears nowhere fall back to the next unnamed op output with the same shape.
    Quantized tensors are dequantized before comparison.

    Args:
        model: The tf_keras model (functional or Sequential) the file came from.
        path: The .tflite file (any mode; most useful for int8 / int16x8).
        x: Float inputs (axis 0 = samples); at most ``max_samples`` are used.
        max_samples: Cap on the number of inputs compared.
        min_snr_db: Layers below this SNR are flagged.
        worst: The ``worst`` lowest-SNR layers are flagged too (0 to disable), when
            their SNR is below 40 dB.

    Returns:
        A :class:`LayerErrorReport` (``rows`` in Keras layer order; ``worst()``;
        ``table()`` for Markdown).

    Raises:
        ExportError: The model has no symbolic inputs, or the file cannot be run.

    Example:
        >>> rep = layer_errors(model, "model_int8.tflite", x_test[:32])   # doctest: +SKIP
        >>> [(r.layer, round(r.snr_db, 1)) for r in rep.worst()]          # doctest: +SKIP
        [('logits', 24.3), ('conv', 31.0), ('pool', 31.0)]
    """
    path = os.fspath(path)
    x = np.asarray(x)[: max(1, int(max_samples))]
    probe_layers, refs = _keras_references(model, x)
    run = _run_file(path, x)
    owned, fused_into, named = _owners_by_name(probe_layers, refs, run)
    _move_down_folded_chains(probe_layers, run, owned, fused_into, named)
    rows = _match_rows(model, probe_layers, refs, run, owned, fused_into, named)
    _flag(rows, min_snr_db, worst)
    return LayerErrorReport(path=os.path.abspath(path), samples=run.samples, rows=rows, min_snr_db=min_snr_db)
