"""The ``depth`` stage at work inside :func:`tfcompress.optimize`, and its ``check`` column.

Example:
    >>> from tfcompress.depth.stage import depth_stage   # registered in stage_runs.STAGES
"""

from tfcompress._model import clone
from tfcompress.depth.candidates import find_blocks
from tfcompress.depth.removal import remove_blocks

__all__ = ["depth_stage", "depth_column"]


def depth_stage(run, model, stage):
    """Remove the stage's blocks, then fine-tune (distilled from the unremoved model).

    Args:
        run: the optimize call's ``stage_runs._Run``.
        model: the current model.
        stage: the :class:`~tfcompress.depth.Depth` stage.

    Returns:
        (model, records, history, info) as every stage function.
    """
    epochs = run.stage_epochs(stage)
    data = run.val.arrays() if stage.criterion == "sensitivity" and run.val is not None else run.train.arrays()
    small, rep = remove_blocks(model, stage.remove, target_flops=stage.target_flops, criterion=stage.criterion,
                               data=data, include=stage.include, exclude=stage.exclude)
    history = {}
    if epochs:
        d = run.recipe.distillation
        if d is None and stage.distill:  # the stage's own distillation settings
            teacher = run.teacher if run.teacher is not None else clone(model)
            history = run.fit(small, epochs, stage=stage, name="depth", teacher=teacher, alpha=stage.alpha,
                              temperature=stage.temperature)
        else:
            history = run.fit(small, epochs, stage=stage, name="depth")
    records = {}
    for row in rep.candidates:
        if row["removed"]:
            for name in row["layers"]:
                records[name] = f"removed (block {row['name']})"
    details = rep.details() + f", params {rep.params_before:,} → {rep.params_after:,}"
    if rep.notes:
        details += "; " + "; ".join(rep.notes)
    info = {"epochs": epochs, "steps": run.steps(epochs) if epochs else 0, "details": details,
            "depth": rep.to_dict()}
    return small, records, history, info


_CACHE = {}


def depth_column(layer, model, recipe):
    """``check``'s ``depth`` answer: the removable block ``layer`` belongs to.

    Returns:
        ``"yes: block <name>"``, ``"no: not in a removable block"`` (for layers
        with weights), or None when the model has no candidate and the
        recipe no depth stage (the column is hidden).
    """
    key = id(model)
    if key not in _CACHE:
        _CACHE.clear()  # one model at a time
        try:
            _CACHE[key] = (model, find_blocks(model))
        except Exception:  # noqa: BLE001 - check reports, never crashes on one column
            _CACHE[key] = (model, None)
    cands = _CACHE[key][1]
    has_stage = recipe is not None and getattr(recipe, "depth", None) is not None
    if cands is None or (not cands.blocks and not has_stage):
        return None
    block = cands.block_of(layer.name)
    if block is not None:
        return f"yes: {block.kind} block {block.name}"
    return "no: not in a removable block" if layer.weights else None
