"""``tfcompress.optimize``: apply a recipe's stages to a model and fine-tune it.

Example:
    >>> import tfcompress
    >>> from tfcompress import datasets, models
    >>> data = datasets.load("digits")
    >>> model = models.get("digits_cnn").build()
    >>> model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])  # doctest: +SKIP
    >>> model.fit(*data.train, epochs=10, verbose=0)  # doctest: +SKIP
    >>> result = tfcompress.optimize(model, data.train, data.validation)  # doctest: +SKIP
    >>> result.report.optimized["accuracy"]  # doctest: +SKIP
    0.97
"""

import os
import sys
import time
from dataclasses import dataclass, field

from tfcompress import pruning, quantization
from tfcompress._data import prepare
from tfcompress._keras import check_model, clone, keras
from tfcompress.distill import ends_in_softmax
from tfcompress.errors import RecipeError
from tfcompress.recipe import Recipe
from tfcompress.report import LayerRecord, OptimizeReport

__all__ = ["optimize", "OptimizeResult", "as_recipe", "loss_for", "make_optimizer"]


@dataclass
class OptimizeResult:
    """What :func:`optimize` returns.

    Attributes:
        model: the deployable tf_keras model (pruning wrappers stripped; a QAT
            model when the recipe has a quantization stage, ready for int8
            conversion).
        report: an :class:`~tfcompress.report.OptimizeReport`.
        history: stage name → Keras ``History.history`` dict.
    """

    model: object
    report: OptimizeReport
    history: dict = field(default_factory=dict)


def as_recipe(recipe):
    """Accept a Recipe, a dict, a YAML path or None (the default recipe)."""
    if recipe is None:
        return Recipe()
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return Recipe.from_dict(recipe)
    if isinstance(recipe, (str, os.PathLike)):
        return Recipe.from_yaml(recipe)
    raise RecipeError(f"recipe must be a Recipe, a dict or a YAML path, got {type(recipe).__name__}.")


def loss_for(model, sparse_labels):
    """The classification loss matching the model's output and the labels."""
    from_logits = not ends_in_softmax(model)
    if model.output_shape[-1] == 1:
        return keras.losses.BinaryCrossentropy(from_logits=from_logits)
    if sparse_labels:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    return keras.losses.CategoricalCrossentropy(from_logits=from_logits)


def make_optimizer(name, learning_rate):
    """A fresh tf_keras optimizer by recipe name."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    return keras.optimizers.Adam(learning_rate)


class _Run:
    """State shared by the stages of one optimize call."""

    def __init__(self, recipe, train, val, batch_size, epochs, verbose, callbacks, loss):
        self.recipe, self.train, self.val = recipe, train, val
        self.batch_size, self.epochs, self.verbose = batch_size, epochs, verbose
        self.user_callbacks = list(callbacks or [])
        self.loss = loss
        self.pruned = False

    def stage_epochs(self, stage):
        return self.epochs if self.epochs is not None else stage.epochs

    def compile(self, model, lr_scale=1.0):
        model.compile(
            optimizer=make_optimizer(self.recipe.optimizer, self.recipe.learning_rate * lr_scale),
            loss=self.loss, metrics=["accuracy"],
        )

    def fit(self, model, epochs, callbacks=(), lr_scale=1.0):
        self.compile(model, lr_scale)
        hist = model.fit(
            self.train.dataset, epochs=epochs,
            validation_data=self.val.dataset if self.val is not None else None,
            callbacks=list(callbacks) + self.user_callbacks, verbose=self.verbose,
        )
        return hist.history

    def evaluate(self, model):
        data = self.val or self.train
        if not model.optimizer:
            self.compile(model)
        loss, acc = model.evaluate(data.dataset, verbose=0)
        return {"loss": float(loss), "accuracy": float(acc)}


def _prune_stage(run, model, stage):
    epochs = run.stage_epochs(stage)
    wrapped, records, steps = pruning.wrap(model, stage, run.train.num_samples, run.batch_size, epochs)
    history = run.fit(wrapped, epochs, callbacks=pruning.callbacks())
    run.pruned = True
    info = {
        "epochs": epochs, "steps": steps.total_steps,
        "details": (f"{stage.schedule} to {stage.final_sparsity:.0%}, steps "
                    f"{steps.begin_step}→{steps.end_step} every {steps.frequency}"),
        "schedule_steps": vars(steps),
    }
    return pruning.strip(wrapped), records, history, info


def _quantize_stage(run, model, stage):
    epochs = run.stage_epochs(stage)
    preserve = stage.preserve_sparsity and run.pruned
    qat, records = quantization.wrap(model, stage, preserve_sparsity=preserve)
    history = run.fit(qat, epochs, lr_scale=stage.learning_rate_scale)
    steps = epochs * -(-run.train.num_samples // run.batch_size)
    info = {"epochs": epochs, "steps": steps,
            "details": "8-bit QAT" + (", sparsity preserved (PQAT)" if preserve else "")}
    return qat, records, history, info


# Stage name (a Recipe field) -> function(run, model, stage) -> (model, records, history, info).
STAGES = {"pruning": _prune_stage, "quantization": _quantize_stage}


def optimize(model, train_data, validation_data=None, recipe=None, epochs=None,
             batch_size=None, verbose=None, callbacks=None):
    """Compress a trained tf_keras model with a recipe, fine-tuning each stage.

    The input model is left untouched. Stages run in recipe order (pruning,
    then QAT); pruning steps are computed from the data size, batch size and
    epochs, and ``UpdatePruningStep`` is added for you.

    Args:
        model: a trained tf_keras Sequential or Functional classifier.
        train_data: ``(x, y)`` numpy arrays or a ``tf.data.Dataset`` of
            ``(x, y)`` (batched or not); ``y`` holds class ids or one-hot rows.
        validation_data: same forms; used for the before/after accuracy.
            Defaults to `None` (accuracy is then measured on ``train_data``).
        recipe: a :class:`~tfcompress.Recipe`, a dict, a YAML path, or None
            for the default recipe. Defaults to `None`.
        epochs: if given, overrides every stage's ``epochs``. Defaults to `None`.
        batch_size: overrides ``recipe.batch_size``. Defaults to `None`.
        verbose: Keras verbosity; None shows progress bars on a terminal and
            one line per epoch otherwise. Defaults to `None`.
        callbacks: extra Keras callbacks for every fine-tuning run.

    Returns:
        An :class:`OptimizeResult` with ``.model``, ``.report`` and ``.history``.

    Raises:
        UnsupportedModelError: not a tf_keras Sequential/Functional model.
        DataError: empty data, or data that does not fit the model.
        RecipeError: an invalid recipe.

    Example:
        >>> result = optimize(model, (x_train, y_train), (x_val, y_val),  # doctest: +SKIP
        ...                   recipe={"pruning": {"final_sparsity": 0.8}})
        >>> result.report.layer("conv1").sparsity  # doctest: +SKIP
        0.8
    """
    check_model(model)
    recipe = as_recipe(recipe)
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise RecipeError(f"epochs must be a positive integer, got {epochs!r}.")
    bs = batch_size or recipe.batch_size
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    train = prepare(train_data, model, bs, shuffle=True, what="train_data")
    val = prepare(validation_data, model, bs, what="validation_data") if validation_data is not None else None
    run = _Run(recipe, train, val, bs, epochs, verbose, callbacks, loss_for(model, train.sparse_labels))

    current = clone(model)
    baseline = run.evaluate(current)
    layers = [LayerRecord(l.name, type(l).__name__, int(l.count_params())) for l in model.layers]
    by_name = {r.name: r for r in layers}
    stages, history = [], {}
    for i, (name, stage) in enumerate(recipe.stages, 1):
        if verbose:
            print(f"  stage {i}/{len(recipe.stages)}: {name}, {run.stage_epochs(stage)} epoch(s)", flush=True)
        t0 = time.perf_counter()
        current, records, history[name], info = STAGES[name](run, current, stage)
        for lname, what in records.items():
            if lname in by_name:
                by_name[lname].stages[name] = what
        stages.append({"name": name, "seconds": time.perf_counter() - t0, **info})

    for lname, s in pruning.layer_sparsity(current).items():
        if lname in by_name:
            by_name[lname].sparsity = s
    report = OptimizeReport(
        model=model.name, recipe=recipe.to_dict(), layers=layers, stages=stages,
        baseline=baseline, optimized=run.evaluate(current),
        evaluated_on="validation" if val is not None else "training",
    )
    return OptimizeResult(current, report, history)
