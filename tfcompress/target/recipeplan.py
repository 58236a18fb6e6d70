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

__all__ = ["plan_recipe", "with_epochs"]


def with_epochs(recipe, epochs):
    """``recipe`` with every stage that trains at ``epochs`` (what ``optimize(epochs=...)`` does); None: as it is.

    A stage at 0 epochs (a channels stage that does not fine-tune) stays at 0.

    Example:
        >>> from tfcompress.recipe import Recipe
        >>> with_epochs(Recipe(), 5).quantization.epochs
        5
    """
    if epochs is None:
        return recipe
    return recipe.replace(**{name: dataclasses.replace(stage, epochs=epochs) for name, stage in recipe.stages
                             if getattr(stage, "epochs", 0)})


def plan_recipe(base, settings, clusters=CLUSTERS, weights="int8", epochs=None):
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
            file: no QAT, no clustering; the epochs QAT would have trained fine-tune the
            thinning instead, so both formats' plans train as long). Defaults to `"int8"`.
        epochs: every training stage's epochs (``optimize(epochs=...)``), resolved here so that a
            float32 plan's extra thinning epochs survive it. Defaults to `None` (each stage's own).

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
    own = (base.channels or Channels(epochs=base.pruning.epochs if base.pruning else Channels().epochs)).epochs
    if removed:  # the blocks a latency plan removes (target/depthplan.py), before any thinning
        depth = Depth(remove=len(removed), include=[re.escape(n) for n in removed], epochs=own)
    if pruned:
        pruning = Pruning(final_sparsity=max(pruned.values()), end=p.end, epochs=p.epochs,
                          include=[re.escape(n) for n in pruned],
                          per_layer={re.escape(n): v for n, v in pruned.items()})
    if clustered:
        clustering = Clustering(number_of_clusters=clusters, epochs=c.epochs,
                                include=[re.escape(n) for n in clustered])
    if thinned:  # without a channels stage in base, the thinned layers fine-tune as long as pruned ones would
        channels = Channels(ratio=0.0, per_layer=thinned, epochs=own,
                            criterion=(base.channels or Channels()).criterion)
    quantization = (None if weights == "float32" else
                    dataclasses.replace(base.quantization or Quantization(), weights=weights))
    lowrank = LowRank(per_layer=ranked, epochs=own) if ranked else None  # after the thinning, its own epochs
    plan = with_epochs(base.replace(depth=depth, channels=channels, lowrank=lowrank, pruning=pruning,
                                    clustering=clustering, quantization=quantization,
                                    distillation=base.distillation or Distillation()), epochs)
    last = next((n for n in ("channels", "depth") if getattr(plan, n) is not None and getattr(plan, n).epochs), None)
    if weights == "float32" and last:  # no QAT: its epochs fine-tune the thinned float32 model (the same time)
        qat = epochs if epochs is not None else (base.quantization or Quantization()).epochs
        plan = plan.replace(**{last: dataclasses.replace(getattr(plan, last), epochs=getattr(plan, last).epochs + qat)})
    return plan
