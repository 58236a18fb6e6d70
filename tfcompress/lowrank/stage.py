"""The ``lowrank`` stage at work inside :func:`tfcompress.optimize`, its ``check`` column and its entry in
:mod:`tfcompress.techniques`.

Example:
    >>> from tfcompress.lowrank.stage import TECHNIQUE
    >>> TECHNIQUE.name, TECHNIQUE.recipe_class.__name__
    ('lowrank', 'LowRank')
"""

from tfcompress.lowrank.config import LowRank
from tfcompress.lowrank.surgery import factorize, matrix_shape, rank_of
from tfcompress.technique import CheckColumn, StageResult, Technique

__all__ = ["TECHNIQUE", "lowrank_stage", "lowrank_column"]


def lowrank_stage(run, model, stage):
    """Factorise the stage's Dense (and 1×1 Conv2D) layers, then fine-tune (distilled from the unfactorised model).

    Args:
        run: the optimize call's ``stage_runs._Run``.
        model: the current model.
        stage: the :class:`~tfcompress.lowrank.LowRank` stage.

    Returns:
        A :class:`~tfcompress.technique.StageResult`.
    """
    small, rep = factorize(model, stage.per_layer)
    done = {name: r for name, r in rep.items() if "rank" in r}
    records = {name: (f"rank {r['rank']} ({r['shape'][0]}×{r['shape'][1]} → {r['shape'][0]}×{r['rank']} + "
                      f"{r['rank']}×{r['shape'][1]}, {r['kept_energy']:.0%} of the spectrum's energy)"
                      if "rank" in r else f"kept: {r['skipped']}") for name, r in rep.items()}
    epochs = run.stage_epochs(stage) if done else 0
    history = {}
    if epochs:
        history = run.fit_own(small, epochs, stage, "lowrank", lambda: run.own_teacher(model))
    before = sum(r["params_before"] for r in done.values())
    after = sum(r["params_after"] for r in done.values())
    details = (f"low-rank factorisation of {len(done)} layer(s): kernel params {before:,} → {after:,}"
               if done else "low-rank factorisation: no layer factorised (see the per-layer column)")
    return StageResult(small if done else model, records, history, epochs=epochs,
                       steps=run.steps(epochs) if epochs else 0, details=details, extra={"lowrank": rep})


def lowrank_column(model, recipe):
    """``check``'s ``lowrank`` column: for each Dense layer (and 1×1 Conv2D), the rank the recipe gives it (or
    the ranks that would save parameters); hidden when the recipe has no lowrank stage.

    Returns:
        ``{layer: "yes: rank r of m×n"}``, ``"no: rank r of m×n saves no parameters"`` or ``"no: not in
        lowrank.per_layer (a rank < k saves parameters)"``; empty without the stage.
    """
    stage = getattr(recipe, "lowrank", None) if recipe is not None else None
    if stage is None:
        return {}
    from tfcompress.precision.config import matching

    out = {}
    for layer in model.layers:
        shape = matrix_shape(layer)
        if shape is None:
            continue
        m, n = shape
        setting = matching(stage.per_layer, layer.name, type(layer).__name__)
        if setting is None:
            out[layer.name] = f"no: not in lowrank.per_layer (a rank < {m * n // (m + n) + 1} saves parameters)"
        else:
            r = rank_of(setting, m, n)
            saves = r * (m + n) < m * n
            out[layer.name] = (f"yes: rank {r} of {m}×{n}" if saves else
                               f"no: rank {r} of {m}×{n} saves no parameters")
    return out


TECHNIQUE = Technique(
    name="lowrank", recipe_class=LowRank, run=lowrank_stage,
    columns=(CheckColumn("lowrank", "low-rank", lowrank_column, what="low-rank factorisation"),),
    mixed_precision="the factorised layers are rebuilt from their float32 configs",
)
