"""The ``penalty`` and ``pruning`` stages at work inside :func:`tfcompress.optimize`, their
``check`` columns and their entries in :mod:`tfcompress.techniques`.

Example:
    >>> from tfcompress.pruning.stage import PRUNING
    >>> PRUNING.name, [c.key for c in PRUNING.columns]
    ('pruning', ['prunable', 'xnnpack_sparse', 'global_prune'])
"""

from tfcompress import pruning
from tfcompress._keras import keras, tfmot
from tfcompress._model import clone
from tfcompress.pruning import global_
from tfcompress.pruning.config import Penalty, Pruning
from tfcompress.technique import CheckColumn, Knob, StageResult, Technique
from tfcompress.training import pruning_callbacks, with_policy

__all__ = ["PENALTY", "PRUNING", "penalty_stage", "prune_stage"]


def penalty_stage(run, model, stage):
    """Fine-tune with the stage's L1/L2 penalties as model losses, then drop them."""
    epochs = run.stage_epochs(stage)
    result = StageResult(model, epochs=epochs, steps=run.steps(epochs))
    with run.float16_scope("penalty", result) as mixed:
        work = with_policy(model, "mixed_float16") if mixed else model
        penalised, result.records = pruning.apply_penalty(work, stage)
        result.history = run.fit(penalised, epochs, stage=stage, name="penalty")
    out = clone(penalised)  # drops the penalty losses
    result.model = with_policy(out, "float32") if mixed else out
    what = ", ".join(f"{n}={v:g}" for n, v in (("l1", stage.l1), ("l2", stage.l2)) if v)
    result.details = f"weight penalty {what}"
    return result


def prune_stage(run, model, stage):
    """Wrap the selected layers for TF-MOT pruning (global scope and saliency: sparsities planned
    first by :mod:`tfcompress.pruning.global_`), fine-tune, strip."""
    epochs = run.stage_epochs(stage)
    result = StageResult(model, epochs=epochs)
    with run.float16_scope("pruning", result) as mixed:
        work = with_policy(model, "mixed_float16") if mixed else model
        alloc = targets = None
        if stage.scope == "global" or stage.criterion == "saliency":  # pruning/global_.py picks the sparsities
            loss = run.loss if run.task.classifier else run.task.loss_fn(work.output_names)
            work, targets, alloc = global_.plan(work, stage, pruning.selected_layers(work, stage), run.train, loss)
        wrapped, result.records, steps = pruning.wrap(work, stage, run.train.num_samples, run.batch_size, epochs,
                                                      targets=targets, fixed_mask=stage.criterion == "saliency")
        result.history = run.fit(wrapped, epochs, callbacks=pruning_callbacks(run.tensorboard), stage=stage,
                                 name="pruning")
        out = pruning.strip(wrapped)
    result.model = with_policy(out, "float32") if mixed else out
    result.steps = steps.total_steps
    result.details = pruning.describe(stage, steps) + (f"; {global_.describe(alloc)}" if alloc else "")
    result.extra["schedule_steps"] = vars(steps)
    if alloc:
        result.extra["allocation"] = alloc
    return result


def _answer(reason):
    return "yes" if reason is None else f"no: {reason}"


def prunable_column(model, recipe):
    """``check``'s ``prunable`` column: TF-MOT magnitude pruning, layer by layer."""
    return {layer.name: _answer(pruning.why_not_prunable(layer)) for layer in model.layers if layer.weights}


def xnnpack_column(model, recipe):
    """``check``'s ``xnnpack_sparse`` column: whether a layer can run sparse on XNNPACK."""
    policy = tfmot.sparsity.keras.PruneForLatencyOnXNNPack()
    model_reason = pruning.xnnpack_policy_reason(model)
    out = {}
    for layer in model.layers:
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) or not layer.weights:
            continue
        if not policy.allow_pruning(layer):
            out[layer.name] = "no: only 1×1 Conv2D layers run sparse on XNNPACK"
        elif not (layer.strides == (1, 1) and layer.groups == 1 and layer.dilation_rate == (1, 1)):
            out[layer.name] = "no: XNNPACK runs only stride-1, ungrouped, undilated 1×1 convolutions sparse"
        elif model_reason is not None:
            out[layer.name] = "no: the model is not eligible (see below)"
        else:
            out[layer.name] = "yes"
    return out


def preflight(run, stage):
    """A run too short to prune fails before the earlier stages, not after them."""
    stage.steps(run.train.num_samples, run.batch_size, run.stage_epochs(stage))


PENALTY = Technique(name="penalty", recipe_class=Penalty, run=penalty_stage)

PRUNING = Technique(
    name="pruning", recipe_class=Pruning, run=prune_stage,
    columns=(CheckColumn("prunable", "prune", prunable_column, needed=True),
             CheckColumn("xnnpack_sparse", "xnnpack sparse", xnnpack_column),
             CheckColumn("global_prune", "global prune", global_.check_column)),
    # Measured by running every stage under MirroredStrategy over two logical CPUs
    # (benchmarks/bench_distribute.py, docs/RESULTS.md "Fine-tuning under tf.distribute"):
    # every other stage, QAT scheme and distillation runs; this one fails.
    single_replica={"mixed_precision": (
        "with mixed precision, TF-MOT's cross-replica mask update assigns a float16 value to a float32 "
        "variable (ValueError: Tensor conversion requested dtype float32 for Tensor with dtype float16)"
    )},
    knobs={
        "final_sparsity": Knob("final_sparsity", default={"min": 0.5, "max": 0.9}),
        "pruning_begin": Knob("begin", default={"min": 0.0, "max": 0.3}, loosest={"pruning_end": 1.0}),
        "pruning_end": Knob("end", default={"min": 0.5, "max": 0.9}, loosest={"pruning_begin": 0.0}),
        "pruning_frequency": Knob("frequency", default=[10, 25, 50, 100], integer=True),
        "pruning_epochs": Knob("epochs", integer=True),
        "pruning_scope": Knob("scope"),
        "pruning_criterion": Knob("criterion"),
    },
    preflight=preflight,
)
