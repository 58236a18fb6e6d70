"""The sensitivity scan, the budget plan and its check on the assembled file.

:func:`scan` lowers one layer at a time (every other weight layer float32)
and measures the file: accuracy, bytes saved. :func:`plan` orders the moves
(layer -> lower precision) greedily by bytes saved per accuracy point and
takes the shortest prefix that meets the budget by the scan's estimate
(drops added up). :func:`fit` builds that file, measures it, and moves the
cut back (a drop over budget) or forward (bytes over budget) until the file
itself meets the budget.

Example:
    >>> s = scan(mixer, x_val, y_val, ("int8", "float16"))       # doctest: +SKIP
    >>> p = plan(s, max_drop=1.0)                                 # doctest: +SKIP
    >>> fit(mixer, s, p, x_val, y_val, max_drop=1.0).per_layer    # doctest: +SKIP
    {'conv1': 'float16', 'conv2': 'int8', 'dense': 'int8'}
"""

import dataclasses
import os
import tempfile

import tflite_export
from tflite_export._record import Record
from tflite_export.mixed import PRECISIONS, layer_precisions
from tflite_export.safety import mark_trusted

__all__ = ["Scan", "Plan", "scan", "plan", "fit", "accuracy_of"]


def accuracy_of(data, x, y):
    """Top-1 accuracy (0-1) of ``.tflite`` bytes on ``(x, y)``.

    Example:
        >>> accuracy_of(open("m.tflite", "rb").read(), x, y)   # doctest: +SKIP
        0.89
    """
    fd, path = tempfile.mkstemp(suffix=".tflite")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        mark_trusted(path)  # our quantizer's output: no child-process load check
        return tflite_export.evaluate(path, x, y, batch_size=64)
    finally:
        os.remove(path)


@dataclasses.dataclass
class Scan(Record):
    """What lowering each layer alone does.

    Attributes:
        accuracy: accuracy (0-1) of the reference file (scanned layers float32).
        bytes: size of the reference file.
        fixed: ``{layer: precision}`` that the scan leaves alone.
        default: precision of the ops without weights.
        rows: ``[{"layer", "precision", "accuracy", "drop" (points), "saved" (bytes)}]``;
            a precision the quantizer cannot give the layer has ``"supported": False``.
    """

    accuracy: float
    bytes: int
    fixed: dict
    default: str
    rows: list



@dataclasses.dataclass
class Plan:
    """The ordered moves and where the budget cuts them.

    Attributes:
        moves: ``[(layer, precision, estimated drop, estimated bytes)]`` in the
            order the greedy plan lowers layers (cumulative estimates).
        cut: how many moves the budget takes by the estimate.
        layers: the scanned layers (float32 unless a move lowers them).
        fixed: ``{layer: precision}`` decided before the scan.
    """

    moves: list
    cut: int
    layers: list
    fixed: dict

    def per_layer(self, cut=None):
        """``{layer: precision}`` of every weight layer after the first ``cut`` moves."""
        out = {layer: "float32" for layer in self.layers}
        for layer, p, *_ in self.moves[: self.cut if cut is None else cut]:
            out[layer] = p
        return {**out, **self.fixed}


def scan(mixer, x, y, candidates, fixed=None, default="int8", progress=None):
    """Accuracy and bytes of the file when only one layer is lowered, for each layer and candidate.

    Args:
        mixer: a :class:`tflite_export.mixed.Mixer` of the float32 file.
        x: validation inputs.
        y: their labels.
        candidates: precisions to try below float32.
        fixed: ``{layer: precision}`` kept as given (not scanned).
        default: precision of the ops without weights.
        progress: called with one line per layer, or None.

    Returns:
        A :class:`Scan`.

    Example:
        >>> scan(mixer, x, y, ("int8",)).rows[0]["drop"]   # doctest: +SKIP
        0.2
    """
    fixed = dict(fixed or {})
    free = [layer for layer in mixer.layers if layer not in fixed]
    base_plan = {**{layer: "float32" for layer in free}, **fixed}
    ref = mixer.quantize(base_plan, default)
    acc = accuracy_of(ref, x, y)
    rows = []
    for layer in free:
        for p in (c for c in PRECISIONS if c in candidates and c != "float32"):
            data = mixer.quantize({**base_plan, layer: p}, default)
            got = layer_precisions(data).get(layer)
            row = {"layer": layer, "precision": p, "supported": got == p}
            if got == p:
                a = accuracy_of(data, x, y)
                row.update(accuracy=a, drop=100 * (acc - a), saved=len(ref) - len(data))
            rows.append(row)
        if progress is not None:
            done = [r for r in rows if r["layer"] == layer and r["supported"]]
            progress(f"  {layer}: " + ", ".join(f"{r['precision']} {-r['drop']:+.2f} pt, {r['saved']:,} B saved"
                                                for r in done))
    return Scan(acc, len(ref), fixed, default, rows)


def plan(s, max_drop=None, max_bytes=None):
    """Greedy per-layer lowering, most bytes saved per accuracy point first, cut at the budget.

    Each step moves one layer to a precision saving more bytes than its
    current one, choosing the best ratio (extra bytes saved / extra points
    lost, at least 0.01 point); with ``max_drop`` a step must keep the
    summed drop within it. The cut is the whole sequence under ``max_drop``
    alone, else the first prefix at or under ``max_bytes``.

    Args:
        s: a :class:`Scan`.
        max_drop: accuracy points the plan may lose, or None.
        max_bytes: file size to reach, or None.

    Returns:
        A :class:`Plan`.

    Example:
        >>> plan(s, max_bytes=40_000).per_layer()   # doctest: +SKIP
    """
    rows = [r for r in s.rows if r["supported"]]
    layers = list(dict.fromkeys(r["layer"] for r in s.rows))
    cur = {layer: (0.0, 0) for layer in layers}  # (drop, saved) of the layer's current precision
    drop, size, moves = 0.0, s.bytes, []
    while True:
        best = None
        for r in rows:
            d0, b0 = cur[r["layer"]]
            gain, cost = r["saved"] - b0, max(r["drop"], 0.0) - d0
            if gain <= 0 or (max_drop is not None and drop + cost > max_drop + 1e-9):
                continue
            score = gain / max(cost, 0.01)
            if best is None or score > best[0]:
                best = (score, r, cost, gain)
        if best is None:
            break
        _, r, cost, gain = best
        cur[r["layer"]] = (max(r["drop"], 0.0), r["saved"])
        drop, size = drop + cost, size - gain
        moves.append((r["layer"], r["precision"], round(drop, 4), size))
    cut = len(moves)
    if max_bytes is not None:
        cut = next((i for i in range(len(moves) + 1) if (moves[i - 1][3] if i else s.bytes) <= max_bytes), cut)
    return Plan(moves, cut, layers, dict(s.fixed))


@dataclasses.dataclass
class Fitted:
    """The plan as built and measured.

    Attributes:
        per_layer: ``{layer: precision}`` of every weight layer.
        data: the file's bytes.
        accuracy: its accuracy (0-1) on the validation examples.
        drop: points below the scan's reference file.
        met: whether the file meets every budget given.
        tries: ``[(cut, bytes, drop)]`` of each file built.
    """

    per_layer: dict
    data: bytes
    accuracy: float
    drop: float
    met: bool
    tries: list


def fit(mixer, s, p, x, y, max_drop=None, max_bytes=None):
    """Build the planned file, measure it, and move the cut until the file itself meets the budget.

    A drop over ``max_drop`` moves the cut one move back; bytes over
    ``max_bytes`` (with the drop in budget) one move forward; a cut tried
    before ends the search with the best file that met the drop budget.

    Args:
        mixer: the :class:`tflite_export.mixed.Mixer` the scan used.
        s: the :class:`Scan`.
        p: the :class:`Plan`.
        x: validation inputs.
        y: their labels.
        max_drop: accuracy points, or None.
        max_bytes: bytes, or None.

    Returns:
        A :class:`Fitted`.

    Example:
        >>> fit(mixer, s, p, x, y, max_drop=1.0).met   # doctest: +SKIP
        True
    """
    cut, seen, tries = p.cut, {}, []
    while cut not in seen:
        data = mixer.quantize(p.per_layer(cut), s.default)
        acc = accuracy_of(data, x, y)
        drop = 100 * (s.accuracy - acc)
        seen[cut] = (data, acc, drop)
        tries.append((cut, len(data), round(drop, 4)))
        drop_ok = max_drop is None or drop <= max_drop + 1e-9
        bytes_ok = max_bytes is None or len(data) <= max_bytes
        if drop_ok and bytes_ok:
            return Fitted(p.per_layer(cut), data, acc, drop, True, tries)
        if not drop_ok and cut > 0:
            cut -= 1
        elif drop_ok and not bytes_ok and cut < len(p.moves):
            cut += 1
        else:
            break
    ok = [c for c, (_, _, d) in seen.items() if max_drop is None or d <= max_drop + 1e-9]
    best = max(ok) if ok else min(seen)
    data, acc, drop = seen[best]
    return Fitted(p.per_layer(best), data, acc, drop, False, tries)
