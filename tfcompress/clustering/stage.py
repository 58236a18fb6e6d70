"""The ``clustering`` stage at work inside :func:`tfcompress.optimize`, its ``check`` column and its
entry in :mod:`tfcompress.techniques`.

Example:
    >>> from tfcompress.clustering.stage import TECHNIQUE
    >>> TECHNIQUE.mixed_precision
    "TF-MOT's centroid initialisation has no float16 kernel"
"""

from tfcompress import clustering
from tfcompress.clustering.config import Clustering
from tfcompress.errors import RecipeError
from tfcompress.technique import CheckColumn, Knob, StageResult, Technique

__all__ = ["TECHNIQUE", "run_stage", "clusterable_column"]


def run_stage(run, model, stage):
    """Wrap for clustering (keeping pruning's zeros when a pruning stage ran), fine-tune, strip."""
    epochs = run.stage_epochs(stage)
    preserve = stage.preserve_sparsity if stage.preserve_sparsity is not None else "pruning" in run.ran
    result = StageResult(model, epochs=epochs, steps=run.steps(epochs))
    with run.float16_scope("clustering", result):
        wrapped, records = clustering.wrap(model, stage, preserve_sparsity=preserve)
        result.history = run.fit(wrapped, epochs, lr_scale=stage.learning_rate_scale, stage=stage,
                                 name="clustering")
    result.model = clustering.strip(wrapped)
    uniques = clustering.unique_values(result.model, per_channel=stage.per_channel)
    for name, what in records.items():
        if what.startswith("wrapped") and name in uniques:
            per = " per channel" if stage.per_channel and "Conv2D only" not in what else ""
            records[name] = what.replace("wrapped", f"clustered: {uniques[name]} unique values{per}", 1)
    result.records = records
    result.details = clustering.describe(stage, preserve)
    result.extra["unique_values"] = uniques
    return result


def clusterable_column(model, recipe):
    """``check``'s ``clusterable`` column, with the recipe's clusters (else 16) and ``per_channel``."""
    stage = getattr(recipe, "clustering", None)
    clusters = stage.number_of_clusters if stage is not None else 16
    per_channel = bool(stage.per_channel) if stage is not None else False
    out = {}
    for layer in model.layers:
        if layer.weights:
            reason = clustering.why_not_clusterable(layer, clusters, per_channel)
            out[layer.name] = "yes" if reason is None else f"no: {reason}"
    return out


def check_recipe(recipe, stage):
    """Sparsity-preserving clustering needs the pruning stage whose zeros it keeps."""
    if stage.preserve_sparsity and recipe.pruning is None:
        why = " (channel pruning leaves no zero weights to keep)" if recipe.channels is not None else ""
        raise RecipeError(
            f"clustering.preserve_sparsity is true but the recipe has no pruning stage{why}: "
            "add one or set preserve_sparsity to null."
        )


TECHNIQUE = Technique(
    name="clustering", recipe_class=Clustering, run=run_stage,
    columns=(CheckColumn("clusterable", "cluster", clusterable_column, needed=True),),
    mixed_precision="TF-MOT's centroid initialisation has no float16 kernel",
    knobs={"cluster_count": Knob("number_of_clusters", default=[8, 16, 32], integer=True)},
    check_recipe=check_recipe,
)
