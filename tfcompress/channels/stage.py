"""The ``channels`` stage at work inside :func:`tfcompress.optimize`, its ``check`` column and its
entry in :mod:`tfcompress.techniques`.

Example:
    >>> from tfcompress.channels.stage import TECHNIQUE
    >>> TECHNIQUE.name, TECHNIQUE.recipe_class.__name__
    ('channels', 'Channels')
"""

import dataclasses
import functools
import types

from tfcompress.channels.config import Channels
from tfcompress.channels.graph import dependency_groups
from tfcompress.channels.schedule import apply
from tfcompress.technique import CheckColumn, Knob, StageResult, Technique

__all__ = ["TECHNIQUE", "run_stage", "channels_column"]


def run_stage(run, model, stage):
    """Remove (or merge) channels, fine-tuning after each pruning step; a smaller model comes back."""
    stage = dataclasses.replace(stage, epochs=run.stage_epochs(stage))
    result = StageResult(model)

    @functools.cache
    def teacher():  # one copy of the unthinned model for every pruning step, made only when the stage distils
        return run.own_teacher(model)

    def fine_tune(m, epochs):  # once per pruning step: the stage's history is every step's epochs
        h = run.fit_own(m, epochs, stage, "channels", teacher)
        for k, v in h.items():
            result.history.setdefault(k, []).extend(v)
        return m

    data = types.SimpleNamespace(train=run.train.arrays(),
                                 validation=run.val.arrays() if run.val is not None else None)
    with run.float16_scope("channels", result):
        small, rep = apply(model, stage, data=data, fine_tune=fine_tune, task=run.task)
    result.model = small
    for layer in rep.layers:
        if layer.get("before") != layer.get("after"):
            result.records[layer["name"]] = f"{'merged' if rep.mode == 'merge' else 'pruned'} channels: " \
                                            f"{layer['before']} → {layer['after']}"
    result.epochs = stage.epochs * (rep.steps and len(rep.steps) or 1)
    result.details = ((f"{stage.merge_similarity}-similarity channel merging ({rep.merged} merged, "
                       f"{len(rep.merges) - rep.merged} pruned)" if rep.mode == "merge"
                       else f"{stage.criterion} channel pruning")
                      + f": params {rep.params_before:,} → {rep.params_after:,}, FLOPs {rep.flops_ratio:.0%}")
    result.extra["channels"] = rep.to_dict()
    return result


def channels_column(model, recipe):
    """``check``'s ``channels`` column: ``"yes"`` where a layer's output channels can be removed,
    else ``"no: locked: <reason>"`` (layers with weights only)."""
    out = {}
    for g in dependency_groups(model):
        for name in g.members:
            if g.prunable:
                out[name] = "yes"
            else:
                out.setdefault(name, f"no: locked: {g.reason or 'shared with a locked group'}")
    weighted = {layer.name for layer in model.layers if layer.weights}
    return {name: answer for name, answer in out.items() if name in weighted}


TECHNIQUE = Technique(
    name="channels", recipe_class=Channels, run=run_stage,
    columns=(CheckColumn("channels", "channels", channels_column, what="structured channel pruning"),),
    mixed_precision="channel surgery rebuilds the layers from their float32 configs",
    knobs={"channel_ratio": Knob("ratio", default={"min": 0.0, "max": 0.75}), "channel_mode": Knob("mode")},
)
