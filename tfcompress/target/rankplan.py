"""Low rank in size plans: each Dense layer's rank as one more unit of the joint allocation.

A rank option ``{"rank": q}`` factorises one layer alone at ``q`` of its full
rank (:mod:`tfcompress.lowrank`); its ``shrink`` is the share of the layer's
kernel weights the two factors keep, ``r·(m+n) / (m·n)``, so
:func:`~tfcompress.target.joint.joint_greedy` prices it as it prices thinning
(and a thinned layer's rank keeps the same share of its thinner kernel, the
plan's ``q`` being a fraction of the thinned layer's rank). Like a thinned
candidate, each factorised one is fine-tuned briefly toward the model's own
outputs before it is scored (:func:`~tfcompress.target.joint.candidate_drop`),
and its points count :data:`~tfcompress.target.joint.TUNED_WEIGHT` times.

Example:
    >>> units = rank_options(model, x[:1000], y[:1000], tune_x=x_train)  # doctest: +SKIP
    >>> units[0].options[1].setting, units[0].options[1].shrink  # doctest: +SKIP
    ({'rank': 0.25}, {'fc1': 0.33})
"""

from tfcompress.lowrank.surgery import factorize, rank_of
from tfcompress.target.joint import TUNED_WEIGHT, candidate_drop
from tfcompress.target.sensitivity import Option, Unit

__all__ = ["rank_options", "RANK_FRACTIONS"]

#: The fractions of a Dense layer's full rank a size plan scans (Dense layers only: the lowrank stage also
#: factorises 1×1 convolutions, but a scan of every pointwise conv of a MobileNet, each candidate fine-tuned,
#: would about double its scan time, unmeasured).
RANK_FRACTIONS = (0.25, 0.5)


def rank_options(model, x, y, fractions=RANK_FRACTIONS, scorer=None, tune_x=None, drop=None):
    """Factorise each Dense layer alone at each fraction of its rank: the drop, and the share of its kernel kept.

    Args:
        model: a tf_keras model (not changed: factorised copies are built).
        x, y: the validation sample.
        fractions: fractions of each layer's full rank ``min(m, n)``. Defaults to :data:`RANK_FRACTIONS`.
        scorer: a :class:`~tfcompress.scoring.Scorer` (points). Defaults to `None` (top-1 accuracy in points).
        tune_x: training inputs for the short fine-tuning of each candidate. Defaults to `None` (scored as
            factorised).
        drop: a :func:`~tfcompress.target.joint.candidate_drop` of the same model, sample and ``tune_x``
            (shared with the thinning scan). Defaults to `None` (made here).

    Returns:
        A list of :class:`~tfcompress.target.sensitivity.Unit` (``kind="rank"``, named by the layer), option 0
        untouched; a layer no fraction factorises with fewer weights has no unit.
    """
    drop = drop or candidate_drop(model, x, y, scorer, tune_x)
    units = []
    for layer in model.layers:
        if type(layer).__name__ != "Dense" or not layer.weights:
            continue
        m, n = (int(d) for d in layer.kernel.shape)
        unit = Unit(layer.name, "rank", m * n, [Option({}, float(m * n), 0.0, {})],
                    TUNED_WEIGHT if tune_x is not None else 1.0)
        seen = set()
        for q in fractions:
            r = rank_of(q, m, n)
            if r in seen or r * (m + n) >= m * n:
                continue
            seen.add(r)
            small, rep = factorize(model, {layer.name: q})
            if "rank" not in rep.get(layer.name, {}):  # a shared layer: kept
                break
            try:
                lost = drop(small)
            except Exception:  # noqa: BLE001 - a net keras cannot fit so: scored as factorised, untuned
                lost = drop(small, tune=False)
            unit.options.append(Option({"rank": q}, float(r * (m + n)), lost, {layer.name: r * (m + n) / (m * n)}))
        if len(unit.options) > 1:
            units.append(unit)
    return units
