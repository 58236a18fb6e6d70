"""The ``depth`` stage at work inside :func:`tfcompress.optimize`, its ``check`` column and its
entry in :mod:`tfcompress.techniques`.

Example:
    >>> from tfcompress.depth.stage import TECHNIQUE
    >>> TECHNIQUE.name, list(TECHNIQUE.knobs)
    ('depth', ['depth_remove'])
"""

from tfcompress.depth.candidates import find_blocks
from tfcompress.depth.config import Depth
from tfcompress.depth.removal import remove_blocks
from tfcompress.technique import CheckColumn, Knob, StageResult, Technique

__all__ = ["TECHNIQUE", "depth_stage", "depth_column"]


def depth_stage(run, model, stage):
    """Remove the stage's blocks, then fine-tune (distilled from the unremoved model).

    Args:
        run: the optimize call's ``stage_runs._Run``.
        model: the current model.
        stage: the :class:`~tfcompress.depth.Depth` stage.

    Returns:
        A :class:`~tfcompress.technique.StageResult`.
    """
    epochs = run.stage_epochs(stage)
    data = run.val.arrays() if stage.criterion == "sensitivity" and run.val is not None else run.train.arrays()
    small, rep = remove_blocks(model, stage.remove, target_flops=stage.target_flops, criterion=stage.criterion,
                               data=data, include=stage.include, exclude=stage.exclude)
    history = {}
    if epochs:
        history = run.fit_own(small, epochs, stage, "depth", lambda: run.own_teacher(model))
    records = {}
    for row in rep.candidates:
        if row["removed"]:
            for name in row["layers"]:
                records[name] = f"removed (block {row['name']})"
    kept = {layer.name for layer in small.layers}
    for layer in model.layers:  # a ReLU after a removed block's Add, now reading a ReLU's output (depth/surgery.py)
        if layer.name not in kept and layer.name not in records:
            records[layer.name] = "left out (a ReLU after a ReLU once its block went)"
    details = rep.details() + f", params {rep.params_before:,} → {rep.params_after:,}"
    if rep.notes:
        details += "; " + "; ".join(rep.notes)
    return StageResult(small, records, history, epochs=epochs, steps=run.steps(epochs) if epochs else 0,
                       details=details, extra={"depth": rep.to_dict()})


def depth_column(model, recipe):
    """``check``'s ``depth`` column, computed once per model: the removable block each layer belongs to.

    Returns:
        ``{layer: "yes: <kind> block <name>"}``, ``"no: not in a removable
        block"`` for the other layers with weights; empty (the column hidden)
        when the model has no candidate and the recipe no depth stage.
    """
    try:
        cands = find_blocks(model)
    except Exception:  # noqa: BLE001 - check reports, never crashes on one column
        return {}
    has_stage = recipe is not None and getattr(recipe, "depth", None) is not None
    if not cands.blocks and not has_stage:
        return {}
    out = {}
    for layer in model.layers:
        block = cands.block_of(layer.name)
        if block is not None:
            out[layer.name] = f"yes: {block.kind} block {block.name}"
        elif layer.weights:
            out[layer.name] = "no: not in a removable block"
    return out


TECHNIQUE = Technique(
    name="depth", recipe_class=Depth, run=depth_stage,
    columns=(CheckColumn("depth", "depth", depth_column),),
    knobs={"depth_remove": Knob("remove", integer=True)},
)
