"""Rank the removable blocks and remove the cheapest: :func:`remove_blocks`.

Criteria (lower score = removed first):

- ``"branch_norm"``: ``mean ||f(x)|| / ||x||`` over a data sample, where
  ``f(x)`` is a residual branch's output and ``x`` its skip input (for a
  same-shape unit, ``f(x)`` is its output minus its input): what replacing it
  by identity changes, relative to what flows past it. Needs inputs only.
- ``"sensitivity"``: the accuracy drop on labelled data with the block
  removed and no fine-tuning (one rebuild and one evaluation per block).

Example:
    >>> from tfcompress.depth import remove_blocks
    >>> small, report = remove_blocks(model, 2, data=(x, y))   # doctest: +SKIP
    >>> report.details()                                        # doctest: +SKIP
    'removed 2 blocks: b0, b1 (FLOPs 34%)'
"""

import re
from dataclasses import dataclass, field

import numpy as np

from tfcompress._checks import check_choice, check_int, check_patterns, fraction_kept
from tfcompress._keras import keras
from tfcompress.channels.cost import count_flops
from tfcompress.depth.candidates import find_blocks
from tfcompress.depth.config import DEPTH_CRITERIA
from tfcompress.depth.surgery import rebuild_without
from tfcompress.errors import DataError, RecipeError
from tfcompress.pruning.selection import first_match
from tflite_export._record import Record

__all__ = ["DepthReport", "remove_blocks", "rank_blocks", "SAMPLE"]

SAMPLE = 256  # inputs used for branch_norm and at most 4x that for sensitivity


@dataclass
class DepthReport(Record):
    """What :func:`remove_blocks` did.

    Attributes:
        criterion: the ranking criterion.
        candidates: one dict per candidate block (name, kind, layers, flops,
            params, score, removed), in ranking order.
        removed: names of the removed blocks, in ranking order.
        flops_before, flops_after, params_before, params_after: model cost.
        notes: anything worth saying (fewer blocks than asked, ...).
    """

    criterion: str
    candidates: list
    removed: list
    flops_before: int
    flops_after: int
    params_before: int
    params_after: int
    notes: list = field(default_factory=list)

    @property
    def flops_ratio(self):
        """FLOPs after / before."""
        return self.flops_after / self.flops_before if self.flops_before else 1.0

    def details(self):
        """One line: ``removed 2 blocks: b0, b1 (FLOPs 61%)``."""
        n = len(self.removed)
        what = f"removed {n} block{'s' if n != 1 else ''}"
        return f"{what}: {', '.join(self.removed)} (FLOPs {self.flops_ratio:.0%})" if n else what + " (no candidate)"


def _select(cands, include, exclude):
    model = cands.model
    out = []
    for b in cands.blocks:
        layers = [model.get_layer(n) for n in b.layers]
        if include and not _named(b.name, include) and not any(first_match(l, include) for l in layers):
            continue
        if exclude and (_named(b.name, exclude) or any(first_match(l, exclude) for l in layers)):
            continue
        out.append(b)
    return out


def _named(name, patterns):
    return any(p == name or re.fullmatch(p, name) for p in patterns)


def _x(data):
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    return data, None


def _predict(model, x, batch=256):
    x = np.asarray(x)
    return np.concatenate([np.asarray(model(x[i:i + batch], training=False)) for i in range(0, len(x), batch)])


def _labels_acc(pred, y):
    pred = np.asarray(pred)
    y = np.asarray(y)
    if pred.shape[-1] == 1:
        guess = (pred[..., 0] > (0.5 if pred.min() >= 0 and pred.max() <= 1 else 0.0)).astype(int)
    else:
        guess = np.argmax(pred, -1)
    truth = np.argmax(y, -1) if y.ndim == pred.ndim and y.shape[-1] == pred.shape[-1] > 1 else y.reshape(guess.shape)
    return float(np.mean(guess == truth))


def rank_blocks(cands, blocks, criterion, data):
    """{block name: score} (lower = removed first).

    Args:
        cands: the model's :class:`~tfcompress.depth.candidates.Candidates`.
        blocks: the blocks to score.
        criterion: ``"branch_norm"`` or ``"sensitivity"``.
        data: inputs ``x`` or ``(x, y)`` (labels needed for sensitivity).

    Returns:
        dict name -> float score.

    Raises:
        DataError: no data, or sensitivity without labels.
    """
    x, y = _x(data)
    if x is None or len(x) == 0:
        raise DataError(f"depth criterion {criterion!r} needs data: pass data=(x, y).")
    if criterion == "branch_norm":
        keys = [k for b in blocks for k in (b.in_key, b.branch_key or b.out_key)]
        probe = keras.Model(cands.model.inputs, [cands.tensor(k) for k in keys])
        outs = probe(np.asarray(x[:SAMPLE]), training=False)
        outs = [np.asarray(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
        scores = {}
        for i, b in enumerate(blocks):
            xin, f = outs[2 * i].astype(np.float64), outs[2 * i + 1].astype(np.float64)
            if b.branch_key is None:
                f = f - xin
            axes = tuple(range(1, xin.ndim))
            num = np.sqrt((f ** 2).sum(axes))
            den = np.sqrt((xin ** 2).sum(axes))
            scores[b.name] = float(np.mean(num / np.maximum(den, 1e-12)))
        return scores
    if y is None:
        raise DataError("depth criterion 'sensitivity' needs labelled data: pass data=(x, y).")
    n = 4 * SAMPLE
    xs, ys = x[:n], y[:n]
    base = _labels_acc(_predict(cands.model, xs), ys)
    scores = {}
    for b in blocks:
        m = rebuild_without(cands, [b])
        scores[b.name] = base - _labels_acc(_predict(m, xs), ys)
    return scores


def remove_blocks(model, remove=None, *, target_flops=None, criterion="branch_norm", data=None, include=None,
                  exclude=None):
    """Remove the cheapest residual blocks / same-shape layers of ``model``.

    Args:
        model: a tf_keras Sequential or Functional model (not modified).
        remove: number of blocks to remove (None with no ``target_flops``: 1).
        target_flops: fraction of FLOPs to keep, in (0, 1]: blocks go in
            ranking order until the model is at or below it.
        criterion: ``"branch_norm"`` or ``"sensitivity"``.
        data: ``x`` or ``(x, y)`` for the ranking.
        include, exclude: block / layer name patterns (see :class:`Depth`).

    Returns:
        (new_model, :class:`DepthReport`); the new model is a flat Functional
        model (uncompiled), ``model``'s copy when nothing is removed.

    Raises:
        RecipeError: bad remove/target_flops/criterion, both targets given, or
            no candidate block (the message says why).
        DataError: no data for the criterion.
        UnsupportedModelError: Keras 3, subclassed or unbuilt model.

    Example:
        >>> small, rep = remove_blocks(model, target_flops=0.7, data=(x, y))   # doctest: +SKIP
    """
    check_int(None, "remove", remove, optional=True)
    target_flops = fraction_kept(None, "target_flops", target_flops, "FLOPs")
    if remove is not None and target_flops is not None:
        raise RecipeError("give remove= or target_flops=, not both.")
    check_choice(None, "criterion", criterion, DEPTH_CRITERIA)
    include = check_patterns(None, "include", include)
    exclude = check_patterns(None, "exclude", exclude)
    cands = find_blocks(model)
    if not cands.blocks:
        raise RecipeError(
            f"model '{model.name}' has no removable block (no residual Add with equal-shape inputs, no Conv/Dense "
            "whose output shape equals its input shape): remove the depth stage."
        )
    blocks = _select(cands, include, exclude)
    if not blocks:
        raise RecipeError(
            f"depth include/exclude leave no block: candidates are {', '.join(b.name for b in cands.blocks)}."
        )
    scores = rank_blocks(cands, blocks, criterion, data)
    ranked = sorted(blocks, key=lambda b: (scores[b.name], b.order))
    want = 1 if remove is None and target_flops is None else remove
    chosen, gone, flops, notes = [], set(), cands.flops, []
    for b in ranked:
        if want is not None and len(chosen) >= want:
            break
        if target_flops is not None and flops <= target_flops * cands.flops:
            break
        if gone & set(b.layers):
            continue  # overlaps a removed block (a residual block nested in another's branch)
        chosen.append(b)
        gone |= set(b.layers)
        flops -= b.flops
    if want is not None and len(chosen) < want:
        notes.append(f"asked for {want} blocks; only {len(chosen)} removable")
    if target_flops is not None and flops > target_flops * cands.flops:
        notes.append(f"FLOPs target {target_flops:.0%} not reached: every candidate removed "
                     f"({flops / cands.flops:.0%})")
    new = rebuild_without(cands, chosen)
    rows = [{"name": b.name, "kind": b.kind, "layers": list(b.layers), "flops": b.flops, "params": b.params,
             "score": round(scores[b.name], 6), "removed": b in chosen} for b in ranked]
    report = DepthReport(criterion, rows, [b.name for b in chosen], cands.flops,
                         count_flops(new), cands.params, int(new.count_params()), notes)
    return new, report
