"""A budget plan as a recipe: :func:`plan_recipe` (the per-layer settings a plan chose, as recipe stages).

Example:
    >>> from tfcompress.recipe import Recipe
    >>> plan_recipe(Recipe(), {"fc1": {"ratio": 0.5, "rank": 0.25}}).lowrank.per_layer
    {'fc1': 0.25}
"""

import dataclasses
import re

from tfcompress.channels.config import Channels
from tfcompress.clustering.config import Clustering
from tfcompress.depth.config import Depth
from tfcompress.lowrank.config import LowRank
from tfcompress.pruning.config import Pruning
from tfcompress.quantization.config import Quantization
from tfcompress.recipe import Distillation
from tfcompress.target.sensitivity import CLUSTERS

__all__ = ["plan_recipe"]


def plan_recipe(base, settings, clusters=CLUSTERS, weights="int8"):
    """The plan as a recipe: ``base``'s training settings with per-layer stages from ``settings``.

    Args:
        base: the :class:`Recipe` whose training settings (learning rate,
            batch size, optimizer, seed, each stage's epochs) the plan keeps.
        settings: ``{layer name: {"sparsity": s, "clustered": bool, "ratio": r, "rank": q}}`` (any
            of them: a layer may be thinned, factorised and pruned); a latency plan's removed blocks
            as ``{block name: {"remove": True}}`` (a ``depth`` stage).
        clusters: the cluster count of the clustered layers. Defaults to :data:`CLUSTERS`.
        weights: the QAT weight format, ``"int8"`` or ``"int4"`` (then no
            clustering: the 4-bit grid replaces it), or ``"float32"`` (a latency plan's float
            file: no QAT, no clustering). Defaults to `"int8"`.

    Returns:
        A :class:`Recipe`.

    Example:
        >>> from tfcompress.recipe import Recipe
        >>> plan_recipe(Recipe(), {"fc1": {"sparsity": 0.9, "clustered": True}}).pruning.per_layer
        {'fc1': 0.9}
    """
    pruned = {n: s["sparsity"] for n, s in settings.items() if s.get("sparsity")}
    clustered = [n for n, s in settings.items() if s.get("clustered") and weights == "int8"]
    thinned = {n: s["ratio"] for n, s in settings.items() if s.get("ratio")}
    removed = [n for n, s in settings.items() if s.get("remove")]
    ranked = {re.escape(n): s["rank"] for n, s in settings.items() if s.get("rank")}
    p, c = base.pruning or Pruning(end=0.6), base.clustering or Clustering()
    pruning = clustering = channels = depth = None
    epochs = (base.channels or Channels(epochs=base.pruning.epochs if base.pruning else Channels().epochs)).epochs
    if removed:  # the blocks a latency plan removes (target/depthplan.py), before any thinning
        depth = Depth(remove=len(removed), include=[re.escape(n) for n in removed], epochs=epochs)
    if pruned:
        pruning = Pruning(final_sparsity=max(pruned.values()), end=p.end, epochs=p.epochs,
                          include=[re.escape(n) for n in pruned],
                          per_layer={re.escape(n): v for n, v in pruned.items()})
    if clustered:
        clustering = Clustering(number_of_clusters=clusters, epochs=c.epochs,
                                include=[re.escape(n) for n in clustered])
    if thinned:  # without a channels stage in base, the thinned layers fine-tune as long as pruned ones would
        channels = Channels(ratio=0.0, per_layer=thinned, epochs=epochs,
                            criterion=(base.channels or Channels()).criterion)
    quantization = (None if weights == "float32" else
                    dataclasses.replace(base.quantization or Quantization(), weights=weights))
    lowrank = LowRank(per_layer=ranked, epochs=epochs) if ranked else None  # after the thinning, its own epochs
    return base.replace(depth=depth, channels=channels, lowrank=lowrank, pruning=pruning, clustering=clustering,
                        quantization=quantization, distillation=base.distillation or Distillation())
