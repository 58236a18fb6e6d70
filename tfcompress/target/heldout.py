"""Budget mode's held-back split: the claim is measured on validation samples the plan was not tuned on.

The scan and the rounds of :func:`tfcompress.target.plan.run` choose a plan
by its score on the validation data, so the best round's score there is
biased upwards. :func:`split` cuts the validation data once, seeded, into a
*planning* part (the scan and the rounds see only it) and a *held-back* part
(:data:`FRACTION` of it, at least :data:`MINIMUM` samples); :func:`compare`
measures a file against the float32 reference on the same held-back samples:
the drop and its 95 % confidence interval from a seeded paired bootstrap. The
kept round's file is checked there by ``plan.run``, and the shipped file
again by :func:`tfcompress.target.shipped.check_shipped`.

The bootstrap resamples samples for a classifier (each sample's hit or miss
on both files, accuracy points); for any other metric (MAE, IoU, several
heads) it resamples :data:`BLOCKS` blocks of the held-back samples, each
scored in the task's metric on both files (a metric that is not a mean of
per-sample values, such as IoU, is then approximated per block).

Validation data too small to hold :data:`MINIMUM` samples back (fewer than
``MINIMUM / FRACTION``) is used whole for both, and the report says so.

Example:
    >>> plan_idx, held_idx, info = split(200)
    >>> len(plan_idx), len(held_idx), info["separate"]
    (140, 60, True)
    >>> sorted(set(plan_idx) | set(held_idx)) == list(range(200)) and not set(plan_idx) & set(held_idx)
    True
    >>> split(50)[2]["separate"]
    False
"""

from __future__ import annotations

from typing import Any

import numpy as np

import tflite_export
from tfcompress._keras import quiet_native_logs
from tfcompress._nested import count, take

__all__ = ["split", "parts", "compare", "FRACTION", "MINIMUM", "SEED", "RESAMPLES", "BLOCKS"]

#: The share of the validation samples held back from planning.
FRACTION = 0.3
#: The fewest held-back samples worth a separate check; less validation data is used whole.
MINIMUM = 30
#: The split's and the bootstrap's seed: the same data always splits the same way.
SEED = 0
#: Bootstrap resamples of the confidence interval.
RESAMPLES = 2000
#: Blocks of held-back samples resampled for a metric that is not per sample (all but accuracy).
BLOCKS = 10


def split(n: int, fraction: float = FRACTION, minimum: int = MINIMUM, seed: int = SEED) -> tuple:
    """Seeded indices of the planning and held-back parts of ``n`` validation samples.

    Args:
        n: the validation samples.
        fraction: the share held back. Defaults to :data:`FRACTION`.
        minimum: the fewest held-back samples; fewer: both parts are all ``n``. Defaults to :data:`MINIMUM`.
        seed: the permutation's seed. Defaults to :data:`SEED`.

    Returns:
        ``(planning indices, held-back indices, info)``, the indices sorted;
        ``info`` (for the report) holds ``samples`` (held back), ``of`` (``n``),
        ``planning_samples``, ``fraction``, ``seed`` and ``separate`` (False
        when the data was too small and both parts are the whole set).
    """
    held = int(round(n * fraction))
    info = {"of": n, "fraction": fraction, "seed": seed}
    if held < minimum or n - held < minimum:
        everything = np.arange(n)
        return everything, everything, {**info, "samples": n, "planning_samples": n, "separate": False}
    order = np.random.default_rng(seed).permutation(n)
    return (np.sort(order[held:]), np.sort(order[:held]),
            {**info, "samples": held, "planning_samples": n - held, "separate": True})


def parts(x: Any, y: Any, info: dict) -> tuple:
    """``((x, y) planning, (x, y) held back)`` of validation data cut as ``info`` (from :func:`split`) says."""
    if not info["separate"]:
        return (x, y), (x, y)
    plan_idx, held_idx, _ = split(info["of"], info["fraction"], 0, info["seed"])
    return (take(x, plan_idx), take(y, plan_idx)), (take(x, held_idx), take(y, held_idx))


def _hits(out: Any, y: Any) -> np.ndarray:
    """1.0 where a classifier's top-1 (or thresholded sigmoid) output is the label, else 0.0."""
    out = np.asarray(out[0] if isinstance(out, list) else (next(iter(out.values())) if isinstance(out, dict) else out))
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] > 1:
        y = y.argmax(-1)
    pred = out.argmax(-1) if out.shape[-1] > 1 else (out[..., 0] > 0.5).astype(int)
    return (pred.reshape(-1) == y.reshape(-1)).astype(float)


def _interval(diffs: np.ndarray, seed: int, resamples: int) -> list:
    """95 % percentile interval of the mean of ``diffs``, resampled with replacement."""
    if len(diffs) < 2:
        return [round(float(diffs.mean()), 3)] * 2
    idx = np.random.default_rng(seed).integers(0, len(diffs), (resamples, len(diffs)))
    lo, hi = np.percentile(diffs[idx].mean(axis=1), [2.5, 97.5])
    return [round(float(lo), 3), round(float(hi), 3)]


def compare(ref_path: str, path: str, x: Any, y: Any, scorer: Any, seed: int = SEED,
            resamples: int = RESAMPLES) -> dict:
    """The drop of the file ``path`` from the reference file ``ref_path`` on the same samples, with its 95 % CI.

    Args:
        ref_path: the float32 reference ``.tflite``.
        path: the file whose claim is checked.
        x, y: the held-back samples (arrays, or dicts/lists of them).
        scorer: the task's :class:`~tfcompress.scoring.Scorer`.
        seed: the bootstrap's seed. Defaults to :data:`SEED`.
        resamples: bootstrap resamples. Defaults to :data:`RESAMPLES`.

    Returns:
        ``{"samples", "drop", "ci95": [low, high], "ci_method", "reference", <metric>}``: the drop in
        the scorer's unit (points for accuracy), the two files' values in the metric's own terms.
    """
    n = count(x)
    several = isinstance(y, (dict, list, tuple))
    with quiet_native_logs():
        preds = [tflite_export.predict(p, x, as_dict=several) for p in (ref_path, path)]
    if scorer.task.classifier:
        ref_hits, hits = (_hits(p, y) for p in preds)
        ref, got = scorer.points(ref_hits.mean()), scorer.points(hits.mean())
        diffs, method = 100.0 * (ref_hits - hits), f"paired bootstrap over the {n} samples"
    else:
        blocks = [b for b in np.array_split(np.arange(n), min(BLOCKS, max(n // 5, 1))) if len(b)]
        # each file scored on all samples, then on each block, by one compiled model per file
        (ref, *ref_blocks), (got, *got_blocks) = (
            [scorer.points(s[scorer.name]) for s in scorer.task.score(y, p, subsets=[np.arange(n), *blocks])]
            for p in preds)
        diffs = np.array(ref_blocks) - np.array(got_blocks)
        method = f"paired bootstrap over {len(blocks)} blocks of the {n} samples"
    return {"samples": n, "drop": round(scorer.drop(ref, got), 3), "ci95": _interval(diffs, seed, resamples),
            "ci_method": method, "reference": scorer.value(ref), scorer.name: scorer.value(got)}
