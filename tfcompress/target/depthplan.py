"""Depth removal in latency plans: each removable residual block as one more unit of the allocation.

A small network on XNNPACK spends much of its time per op, not per FLOP
(MobileNetV2 at 32x32: about a hundred ops in 0.06 ms), so thinning channels
leaves that time where it is; removing a residual block (its branch goes, its
``Add`` passes the skip tensor on: :mod:`tfcompress.depth`) takes its ops
away. Each block is priced like a thinned group: the model without it,
converted to int8 in memory, its latency predicted from this machine's
measured op costs (:func:`~tfcompress.target.latency.removed_ms`), and its
drop scored after the same short fine-tuning a thinned candidate gets
(:mod:`tfcompress.target.joint`). A removed block makes thinning its
channel groups moot, and the groups are priced on the whole model, block
included: its unit ``excludes`` every group that produces or reads channels
inside it, its own and the residual group its ``Add`` carries
(:func:`~tfcompress.target.allocate.greedy` puts them back untouched). Without
the residual group's exclusion the allocation counted the block's ops twice:
ResNet-8's round with the stem group thinned and the first block removed was
predicted at 0.005 ms and ran at 0.039. The
plan removes the chosen blocks in a ``depth`` stage before the ``channels``
stage (:func:`~tfcompress.target.plan.plan_recipe`).

Example:
    >>> units = depth_units(model, x, y, base_ms, channel_units, scorer, threads=1, tune_x=x_train)  # doctest: +SKIP
    >>> units[0].name, units[0].options[1].setting  # doctest: +SKIP
    ('block_2', {'remove': True})
"""

from tfcompress.depth import find_blocks, rebuild_without
from tfcompress.errors import TfcompressError
from tfcompress.target.joint import TUNED_WEIGHT, candidate_drop
from tfcompress.target.latency import removed_ms
from tfcompress.target.sensitivity import Option, Unit
from tflite_export import ExportError

__all__ = ["depth_units"]


def depth_units(model, x, y, base_ms, channel_units=(), scorer=None, threads=1, tune_x=None):
    """One unit per removable residual block: kept (option 0) or removed, priced in predicted ms.

    Args:
        model: the tf_keras model (not changed).
        x, y: the validation sample the drops are scored on.
        base_ms: the model's predicted ms (option 0's cost, as the channel units price it), or
            ``{export mode: ms}``, each mode priced (``Option.prices``, the first mode the cost).
        channel_units: the plan's channel units: a block excludes those whose group produces or reads
            channels inside it.
            Defaults to `()`.
        scorer: a :class:`~tfcompress.scoring.Scorer`. Defaults to `None` (accuracy points).
        threads: XNNPACK threads of the prices. Defaults to `1`.
        tune_x: training inputs for the short fine-tuning of each candidate. Defaults to `None` (untuned).

    Returns:
        A list of :class:`~tfcompress.target.sensitivity.Unit` (``kind="depth"``), empty when the
        model has no removable residual block or its blocks cannot be priced.
    """
    bases = {m: float(v) for m, v in (base_ms if isinstance(base_ms, dict) else {"int8": base_ms}).items()}
    first = next(iter(bases))  # the mode each option's cost is in
    try:
        cands = find_blocks(model)
        blocks = [b for b in cands.blocks if b.kind == "residual"]
        prices = {m: removed_ms(cands, blocks, x, threads, mode=m) if blocks else {} for m in bases}
        groups = cands.analysis.groups()  # the walk find_blocks made: channel groups and blocks alike
    except (TfcompressError, ExportError):
        return []
    drop = candidate_drop(model, x, y, scorer, tune_x)
    units = []
    for b in blocks:
        try:
            lost = drop(rebuild_without(cands, [b]))
        except Exception:  # noqa: BLE001 - a block keras cannot rebuild or fit without: not offered
            continue
        inside = set(b.layers)
        touched = {g.name for g in groups if inside & (set(g.members) | set(g.consumers))}
        excludes = tuple(u.name for u in channel_units if u.name in inside or u.name in touched)
        gone = {m: float(p[b.name]) for m, p in prices.items()}
        units.append(Unit(b.name, "depth", int(b.params),
                          [Option({}, bases[first], 0.0, prices=bases),
                           Option({"remove": True}, gone[first], lost, prices=gone)],
                          TUNED_WEIGHT if tune_x is not None else 1.0, excludes))
    return units
