"""The context every stage runs in during :func:`tfcompress.optimize`: :class:`_Run`.

What the stages of one ``optimize`` call share (data, recipe, strategy
placement, the distillation teacher, the stages that ran so far), the one
fine-tuning path (:meth:`_Run.fit`), the scoring of a model
(:meth:`_Run.evaluate`) and the float16 scope of a stage
(:meth:`_Run.float16_scope`). What each stage does is in its technique's
folder (:mod:`tfcompress.techniques`).

Example:
    >>> from tfcompress.stage_runs import _Run
    >>> callable(_Run.fit)
    True
"""

import contextlib
import os
from collections.abc import Callable

from tfcompress import distribute, techniques
from tfcompress._keras import keras
from tfcompress.distill import fine_tune
from tfcompress.training import GuardedBoard, build_training_state, global_policy, make_optimizer, stage_callbacks

__all__ = ["_Run"]


class _Run:
    """State shared by the stages of one optimize call: the ``context`` of ``Technique.run``."""

    tensorboard: str | os.PathLike[str] | None = None  # a log folder: one subfolder per stage
    progress: Callable[[str], None] | None = None  # called with each stage and epoch line instead of Keras's output
    epoch_validation: bool = True  # False: the validation data is scored for the report only, not every epoch

    def __init__(self, recipe, train, val, batch_size, epochs, verbose, callbacks, task, teacher=None,
                 placement=None):
        self.recipe, self.train, self.val = recipe, train, val
        self.placement = placement or distribute.Placement(None)  # the tf.distribute strategy of each stage
        self.batch_size, self.epochs, self.verbose = batch_size, epochs, verbose
        self.user_callbacks = list(callbacks or [])
        self.task = task  # the user's loss and metrics (tfcompress.task): every stage trains and scores with them
        self.output_names = None  # the input model's, set by the first evaluate
        self.teacher = teacher  # the model before compression, for distillation
        self.ran = []  # the stages that ran so far (QAT picks the scheme that keeps their work)

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
        val = self.val if self.epoch_validation else None
        extra = stage_callbacks(name, schedule, epochs, val is not None,
                                None if own_board else self.tensorboard, self.progress)
        hist = fine_tune(
            model, self.train.dataset, epochs, teacher=teacher, alpha=alpha, temperature=temperature,
            optimizer=make_optimizer(opt, lr, schedule, self.steps(1), epochs), **self.task.compile_args(),
            match="kl" if self.task.classifier else "mse",
            validation_data=val.dataset if val is not None else None,
            # the learning-rate log first: every later callback sees the rate
            callbacks=extra[:1] + list(callbacks) + extra[1:] + self.user_callbacks, verbose=self.verbose,
        )
        return hist.history

    def fit_own(self, model, epochs, stage, name, teacher_of):
        """:meth:`fit` for a stage with distillation settings of its own (channels, depth, lowrank).

        When the recipe does not distil and the stage does (``stage.distill``),
        from ``teacher_of()`` (called only then: the model before the stage)
        with the stage's ``alpha`` and ``temperature``; else as :meth:`fit`.

        Returns:
            The Keras ``History.history`` dict.
        """
        if self.recipe.distillation is None and stage.distill:
            return self.fit(model, epochs, stage=stage, name=name, teacher=teacher_of(), alpha=stage.alpha,
                            temperature=stage.temperature)
        return self.fit(model, epochs, stage=stage, name=name)

    def own_teacher(self, before):
        """The teacher of a stage's own distillation: the recipe's (the model before compression), else a copy
        of ``before``."""
        from tfcompress._model import clone

        return self.teacher if self.teacher is not None else clone(before)

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
    def float16_scope(self, stage_name, result):
        """The ``mixed_float16`` policy for one stage where the recipe asks and the technique allows.

        Yields True inside it; ``result.mixed_precision`` (a
        :class:`~tfcompress.technique.StageResult`) records what happened.
        """
        if not self.recipe.mixed_precision:
            yield False
            return
        reason = techniques.mixed_precision_invalid(stage_name)
        if reason:
            result.mixed_precision = f"skipped: {reason}"
            yield False
            return
        result.mixed_precision = "mixed_float16"
        with global_policy("mixed_float16"):
            yield True
