"""The recipe stages at work: what each stage does to the model during :func:`tfcompress.optimize`.

:class:`_Run` holds what the stages of one ``optimize`` call share (data,
recipe, strategy placement, the distillation teacher, what ran so far);
:data:`STAGES` maps each recipe field to the function that runs it,
``fn(run, model, stage) -> (model, records, history, info)``: the new model,
per-layer records (layer name -> what the stage did), the Keras history and
the stage's report entry. A new technique adds its function here (or in its
own package) and one line to :data:`STAGES`.

Example:
    >>> from tfcompress.stage_runs import STAGES
    >>> list(STAGES)[:3]
    ['train', 'depth', 'channels']
"""

import contextlib
import dataclasses
import types

from tfcompress import clustering, distribute, pruning, quantization
from tfcompress._keras import keras
from tfcompress._model import clone
from tfcompress.depth.stage import depth_stage
from tfcompress.distill import fine_tune
from tfcompress.precision.stage import run_stage as precision_stage
from tfcompress.pruning import global_
from tfcompress.quantization import binary, nbit
from tfcompress.stages import qat_scheme
from tfcompress.training import (
    GuardedBoard,
    build_training_state,
    global_policy,
    make_optimizer,
    pruning_callbacks,
    stage_callbacks,
    with_policy,
)

__all__ = ["STAGES"]


class _Run:
    """State shared by the stages of one optimize call."""

    tensorboard = None  # a log folder: one subfolder per stage
    progress = None  # called with each stage and epoch line instead of Keras's output

    def __init__(self, recipe, train, val, batch_size, epochs, verbose, callbacks, task, teacher=None,
                 placement=None):
        self.recipe, self.train, self.val = recipe, train, val
        self.placement = placement or distribute.Placement(None)  # the tf.distribute strategy of each stage
        self.batch_size, self.epochs, self.verbose = batch_size, epochs, verbose
        self.user_callbacks = list(callbacks or [])
        self.task = task  # the user's loss and metrics (tfcompress.task): every stage trains and scores with them
        self.output_names = None  # the input model's, set by the first evaluate
        self.teacher = teacher  # the model before compression, for distillation
        self.pruned = False
        self.clustered = False

    @property
    def loss(self):
        """A fresh task loss (global pruning's saliency scores gradients of it)."""
        return self.task.compile_args()["loss"]

    def scope(self, stage=None):
        """The strategy scope a stage (None: the baseline) builds, compiles and trains in."""
        return self.placement.scope(stage)

    def stage_epochs(self, stage):
        # `epochs=` overrides every stage that trains; a channels stage with
        # epochs 0 does not fine-tune, and the override does not make it.
        return stage.epochs if self.epochs is None or stage.epochs == 0 else self.epochs

    def steps(self, epochs):
        return epochs * -(-self.train.num_samples // self.batch_size)

    def training(self, stage=None, lr_scale=1.0):
        """``(learning rate, Optimizer, Schedule or None)`` of a stage: its own fields, else the recipe's."""
        r = self.recipe
        lr = getattr(stage, "learning_rate", None)
        return ((r.learning_rate * lr_scale) if lr is None else lr, getattr(stage, "optimizer", None) or r.optimizer,
                getattr(stage, "lr_schedule", None) or r.lr_schedule)

    def fit(self, model, epochs, callbacks=(), lr_scale=1.0, stage=None, name="fit", distil=True,
            teacher=None, alpha=None, temperature=None):
        """The one fine-tuning path of every stage: train ``model`` in place.

        The stage's optimizer and schedule (its own fields, else the
        recipe's), the task loss, validation data, the user's callbacks,
        TensorBoard (``<tensorboard>/<name>``) and ``progress`` lines, through
        :func:`tfcompress.distill.fine_tune`. Distillation: from ``teacher``
        with ``alpha``/``temperature`` when given (a stage's own settings:
        channels, depth), else from the recipe's teacher when the recipe
        distils and ``distil`` is True.

        Returns:
            The Keras ``History.history`` dict.
        """
        d = self.recipe.distillation
        if teacher is None and distil and d is not None and self.teacher is not None:
            teacher, alpha, temperature = self.teacher, d.alpha, d.temperature
        lr, opt, schedule = self.training(stage, lr_scale)
        # The pruning stage's TensorBoard is TF-MOT's PruningSummaries (sparsity too): no second one.
        own_board = any(isinstance(c, (keras.callbacks.TensorBoard, GuardedBoard)) for c in callbacks)
        extra = stage_callbacks(name, schedule, epochs, self.val is not None,
                                None if own_board else self.tensorboard, self.progress)
        hist = fine_tune(
            model, self.train.dataset, epochs, teacher=teacher, alpha=alpha, temperature=temperature,
            optimizer=make_optimizer(opt, lr, schedule, self.steps(1), epochs), **self.task.compile_args(),
            match="kl" if self.task.classifier else "mse",
            validation_data=self.val.dataset if self.val is not None else None,
            # the learning-rate log first: every later callback sees the rate
            callbacks=extra[:1] + list(callbacks) + extra[1:] + self.user_callbacks, verbose=self.verbose,
        )
        return hist.history

    def evaluate(self, model):
        """Every compiled loss and metric of the task on the validation data (else the training data)."""
        data = self.val or self.train
        model.compile(optimizer=make_optimizer(self.recipe.optimizer, self.recipe.learning_rate),
                      **self.task.compile_args())
        build_training_state(model, data.dataset, optimizer=False)
        out = {k: float(v) for k, v in model.evaluate(data.dataset, verbose=0, return_dict=True).items()}
        # Keras names a head's metrics by its output layer, which TF-MOT's wrappers rename
        # (quant_box, prune_low_magnitude_box): report them under the user's output names.
        names = list(getattr(model, "output_names", None) or [])
        if self.output_names is None:
            self.output_names = names
        renames = {c: o for c, o in zip(names, self.output_names) if c != o} if len(names) > 1 else {}
        for current, original in sorted(renames.items(), key=lambda kv: -len(kv[0])):
            out = {(original + k[len(current):] if k.startswith(current + "_") else k): v for k, v in out.items()}
        return out

    @contextlib.contextmanager
    def precision(self, stage_name, info):
        """Mixed precision for one stage where valid; records what happened in ``info``."""
        if not self.recipe.mixed_precision:
            yield False
            return
        reason = _MIXED_PRECISION_INVALID.get(stage_name)
        if reason:
            info["mixed_precision"] = f"skipped: {reason}"
            yield False
            return
        info["mixed_precision"] = "mixed_float16"
        with global_policy("mixed_float16"):
            yield True


_MIXED_PRECISION_INVALID = {
    "quantization": "QAT's fake-quantization ops need float32",
    "clustering": "TF-MOT's centroid initialisation has no float16 kernel",
    "channels": "channel surgery rebuilds the layers from their float32 configs",
}


def _details(info, text):
    mp = info.get("mixed_precision")
    if mp and mp.startswith("skipped"):
        text += f"; mixed precision {mp}"
    elif mp:
        text += "; mixed_float16"
    return text


def _channels_stage(run, model, stage):
    from tfcompress import channels as channels_mod

    stage = dataclasses.replace(stage, epochs=run.stage_epochs(stage))
    info = {}
    d = run.recipe.distillation
    teacher = run.teacher if run.teacher is not None else clone(model)

    history = {}

    def fine_tune(m, epochs):  # once per pruning step: the stage's history is every step's epochs
        if d is None and stage.distill:  # the stage's own distillation settings
            h = run.fit(m, epochs, name="channels", teacher=teacher, alpha=stage.alpha, temperature=stage.temperature)
        else:
            h = run.fit(m, epochs, name="channels")
        for k, v in h.items():
            history.setdefault(k, []).extend(v)
        return m

    data = types.SimpleNamespace(train=run.train.arrays(),
                                 validation=run.val.arrays() if run.val is not None else None)
    with run.precision("channels", info):
        small, rep = channels_mod.apply(model, stage, data=data, fine_tune=fine_tune, task=run.task)
    records = {}
    for layer in rep.layers:
        if layer.get("before") != layer.get("after"):
            records[layer["name"]] = f"{'merged' if rep.mode == 'merge' else 'pruned'} channels: " \
                                     f"{layer['before']} → {layer['after']}"
    steps = rep.steps and len(rep.steps) or 1
    info.update({
        "epochs": stage.epochs * steps, "steps": None,
        "details": _details(info, (f"{stage.merge_similarity}-similarity channel merging ({rep.merged} merged, "
                                   f"{len(rep.merges) - rep.merged} pruned)" if rep.mode == "merge"
                                   else f"{stage.criterion} channel pruning")
                            + f": params {rep.params_before:,} → {rep.params_after:,}, FLOPs {rep.flops_ratio:.0%}"),
        "channels": rep.to_dict(),
    })
    return small, records, history, info


def _train_stage(run, model, stage):
    epochs = run.stage_epochs(stage)
    info = {"epochs": epochs, "steps": run.steps(epochs)}
    with run.precision("train", info):
        mixed = info.get("mixed_precision") == "mixed_float16"
        work = with_policy(model, "mixed_float16") if mixed else model
        history = run.fit(work, epochs, stage=stage, name="train", distil=False)
    out = with_policy(work, "float32") if mixed else work
    if run.recipe.distillation is not None:  # the later stages distil from the trained model
        run.teacher = clone(out)
    lr, opt, schedule = run.training(stage)
    info["details"] = _details(info, f"trained: {opt.name}, learning rate {lr:g}, "
                                     f"{schedule.kind if schedule else 'constant'} schedule")
    return out, {}, history, info


def _penalty_stage(run, model, stage):
    epochs = run.stage_epochs(stage)
    info = {"epochs": epochs, "steps": run.steps(epochs)}
    with run.precision("penalty", info):
        work = with_policy(model, "mixed_float16") if info.get("mixed_precision") == "mixed_float16" else model
        penalised, records = pruning.apply_penalty(work, stage)
        history = run.fit(penalised, epochs, stage=stage, name="penalty")
    out = clone(penalised)  # drops the penalty losses
    if info.get("mixed_precision") == "mixed_float16":
        out = with_policy(out, "float32")
    what = ", ".join(f"{n}={v:g}" for n, v in (("l1", stage.l1), ("l2", stage.l2)) if v)
    info["details"] = _details(info, f"weight penalty {what}")
    return out, records, history, info


def _prune_stage(run, model, stage):
    epochs = run.stage_epochs(stage)
    info = {"epochs": epochs}
    with run.precision("pruning", info):
        mixed = info.get("mixed_precision") == "mixed_float16"
        work = with_policy(model, "mixed_float16") if mixed else model
        alloc = targets = None
        if stage.scope == "global" or stage.criterion == "saliency":  # pruning/global_.py picks the sparsities
            work, targets, alloc = global_.plan(work, stage, pruning.selected_layers(work, stage), run.train,
                                               run.loss if run.task.classifier else run.task.loss_fn(work.output_names))
        wrapped, records, steps = pruning.wrap(work, stage, run.train.num_samples, run.batch_size, epochs,
                                               targets=targets, fixed_mask=stage.criterion == "saliency")
        history = run.fit(wrapped, epochs, callbacks=pruning_callbacks(run.tensorboard), stage=stage, name="pruning")
        out = pruning.strip(wrapped)
    if mixed:
        out = with_policy(out, "float32")
    run.pruned = True
    info.update({
        "steps": steps.total_steps,
        "details": _details(info, pruning.describe(stage, steps) + (f"; {global_.describe(alloc)}" if alloc else "")),
        "schedule_steps": vars(steps),
    })
    if alloc:
        info["allocation"] = alloc
    return out, records, history, info


def _cluster_stage(run, model, stage):
    epochs = run.stage_epochs(stage)
    preserve = stage.preserve_sparsity if stage.preserve_sparsity is not None else run.pruned
    info = {"epochs": epochs, "steps": run.steps(epochs)}
    with run.precision("clustering", info):
        wrapped, records = clustering.wrap(model, stage, preserve_sparsity=preserve)
        history = run.fit(wrapped, epochs, lr_scale=stage.learning_rate_scale, stage=stage, name="clustering")
    out = clustering.strip(wrapped)
    uniques = clustering.unique_values(out, per_channel=stage.per_channel)
    for name, what in records.items():
        if what.startswith("wrapped") and name in uniques:
            per = " per channel" if stage.per_channel and "Conv2D only" not in what else ""
            records[name] = what.replace("wrapped", f"clustered: {uniques[name]} unique values{per}", 1)
    run.clustered = True
    info.update({"details": _details(info, clustering.describe(stage, preserve)), "unique_values": uniques})
    return out, records, history, info


_SCHEME_NAMES = {
    "qat": "8-bit QAT",
    "pqat": "8-bit QAT, sparsity preserved (PQAT)",
    "cqat": "8-bit QAT, clusters preserved (CQAT)",
    "pcqat": "8-bit QAT, clusters and sparsity preserved (PCQAT)",
}


def _quantize_stage(run, model, stage):
    epochs = run.stage_epochs(stage)
    scheme = qat_scheme(stage, pruned=run.pruned, clustered=run.clustered)
    info = {"epochs": epochs, "steps": run.steps(epochs), "scheme": scheme}
    with run.precision("quantization", info):
        qat, records = quantization.wrap(model, stage, scheme=scheme)
        keep = nbit.zero_keeper(qat) if stage.weights in nbit.BITS and scheme in ("pqat", "pcqat") else None
        history = run.fit(qat, epochs, callbacks=[keep] if keep else (), lr_scale=stage.learning_rate_scale,
                          stage=stage, name="quantization")
    name = nbit.describe(stage, scheme) if stage.weights in nbit.BITS else _SCHEME_NAMES[scheme]
    name = binary.describe(stage, scheme) if stage.weights in binary.FORMATS else name
    info["details"] = _details(info, name + ("" if stage.scheme == "auto" else " (chosen in recipe)"))
    return qat, records, history, info


#: Stage name (a Recipe field) -> function(run, model, stage) -> (model, records, history, info).
STAGES = {
    "train": _train_stage,
    "depth": depth_stage,
    "channels": _channels_stage,
    "penalty": _penalty_stage,
    "pruning": _prune_stage,
    "clustering": _cluster_stage,
    "quantization": _quantize_stage,
    "precision": precision_stage,
}
