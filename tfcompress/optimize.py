"""``tfcompress.optimize``: apply a recipe's stages to a model and fine-tune it.

Stages run in the order channels → penalty → pruning → clustering →
quantization (see :data:`tfcompress.recipe.STAGE_ORDER`), each keeping what
the earlier ones made: clustering keeps pruning's zeros, QAT picks the
sparsity- and/or cluster-preserving scheme (PQAT, CQAT, PCQAT). Every
fine-tuning run can distil from the model before compression and use mixed
precision where it is valid.

Example:
    >>> import tfcompress
    >>> from tfcompress import datasets, models
    >>> data = datasets.load("digits")
    >>> model = models.get("digits_cnn").build()
    >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])  # doctest: +SKIP
    >>> model.fit(*data.train, epochs=10, verbose=0)  # doctest: +SKIP
    >>> result = tfcompress.optimize(model, data.train, data.validation)  # doctest: +SKIP
    >>> result.report.optimized["accuracy"]  # doctest: +SKIP
    0.97
"""

import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfcompress import _keras3_out, distribute, pruning, techniques
from tfcompress._checks import check_choice, check_instances, check_int
from tfcompress._data import prepare
from tfcompress._keras import keras
from tfcompress._model import clone, coerce_model, is_keras3_model, release_memory
from tfcompress.errors import DataError, RecipeError
from tfcompress.recipe import Recipe
from tfcompress.report import LayerRecord, OptimizeReport
from tfcompress.scoring import baseline_problem
from tfcompress.stage_runs import _Run
from tfcompress.target import plan as budget_mode
from tfcompress.task import compile_config_of, headline, task_for
from tfcompress.training import set_seed, translate_callbacks

__all__ = ["optimize", "OptimizeResult", "as_recipe", "RecipeLike"]

#: What every ``recipe=`` argument takes: a Recipe, its dict, a YAML path, or None (the default recipe).
RecipeLike = Recipe | dict | str | os.PathLike | None


@dataclass
class OptimizeResult:
    """What :func:`optimize` returns.

    Attributes:
        model: the deployable tf_keras model (pruning and clustering wrappers
            stripped; a QAT model when the recipe has a quantization stage,
            ready for int8 conversion).
        report: an :class:`~tfcompress.report.OptimizeReport`.
        history: stage name → Keras ``History.history`` dict.
        keras3_source: the user's Keras 3 model when one was given, else None.
        plan: in budget mode (``target=``), the plan :class:`~tfcompress.Recipe` that was run
            (re-runs with ``optimize(..., recipe=result.plan)``); else None.
    """

    model: Any
    report: OptimizeReport
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    keras3_source: Any = field(default=None, repr=False)
    plan: Recipe | None = None

    def to_keras3(self) -> Any:
        """The result as a new Keras 3 model (:func:`tfcompress._keras3_out.to_keras3`); a QAT
        result raises UnsupportedModelError: its int8 ``.tflite`` is the deliverable.

        Example:
            >>> small = result.to_keras3()  # doctest: +SKIP
        """
        return _keras3_out.to_keras3(self.model, self.keras3_source)

    def save(self, path: str | os.PathLike[str], keras3: bool | None = None) -> str:
        """Save to a ``.keras``/``.h5`` file ``tfcompress.load_model`` reloads; Keras 3 when the
        input was and the graph allows (:func:`tfcompress._keras3_out.save`). Returns the path.

        Example:
            >>> result.save("small.keras")  # doctest: +SKIP
        """
        return _keras3_out.save(self.model, path, self.keras3_source, keras3)


def as_recipe(recipe: RecipeLike) -> Recipe:
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


def _check_converged(name, model, history):
    """A stage whose loss or weights became NaN/Inf fails here, naming the stage and the fix,
    rather than handing a broken model on (TensorFlow's int8 converter segfaults on NaN weights)."""
    losses = [float(v) for v in (history or {}).get("loss", [])]
    bad = [w.name for w in model.weights if w.dtype.is_floating and not np.all(np.isfinite(w.numpy()))]
    if bad or not all(math.isfinite(v) for v in losses):
        lr = "quantization.learning_rate_scale or " if name == "quantization" else ""
        raise RecipeError(
            f"the {name} stage diverged: loss {losses[-1] if losses else 'n/a'} after {len(losses)} epoch(s), "
            f"{len(bad)} non-finite weights (first: {bad[0] if bad else 'none'}); lower {lr}the learning rate "
            f"({name}.learning_rate or recipe.learning_rate) and check the inputs are in the range the model "
            "was trained on"
        )


def _check_baseline(task, model, data, stop, scored=None):
    """Stop (or warn) before fine-tuning a model the data shows to be unfit (tfcompress.scoring.baseline_problem),
    judged on up to 2,000 examples of the validation data (of the training data when validation has fewer
    than 50: too few to tell chance from skill). ``scored``: the baseline's metrics when they were measured on
    ``data``; a classifier's argmax accuracy is then read from them instead of predicting ``data`` again."""
    x, y = data.arrays()
    if isinstance(y, (list, dict)):
        return  # several outputs: no single baseline to compare with
    accuracy = None
    if scored is not None and len(y) <= 2000 and task.classifier and _argmax_accuracy(model):
        accuracy = scored.get("accuracy")  # the same examples: this metric is the check's own accuracy
    x, y = x[:2000] if not isinstance(x, (list, dict)) else _head(x, 2000), y[:2000]
    pred = None if accuracy is not None else model.predict(x, verbose=0, batch_size=256)
    problem = baseline_problem(task, y, pred, accuracy=accuracy)
    if not problem:
        return
    msg = (f"before any compression the model scores badly on this data: {problem}. Likely causes: the inputs "
           "are scaled differently from training (a model that starts with Rescaling or Normalization "
           "takes raw pixels: use --scale none, or scale=None), labels in another order or encoding, or "
           "missing preprocessing. Check with model.evaluate on the same data")
    if stop:
        raise DataError(msg + "; pass check_baseline=False (--no-baseline-check) to compress anyway.")
    warnings.warn(msg + ".", UserWarning, stacklevel=3)


def _argmax_accuracy(model):
    """Whether ``model``'s compiled ``accuracy`` metric is the argmax match of a multi-unit output
    (sparse or categorical accuracy), the accuracy :func:`tfcompress.scoring.baseline_problem` computes."""
    if len(model.outputs) != 1 or model.output_shape[-1] in (None, 1):
        return False
    for m in model.metrics:
        if m.name == "accuracy":
            fn = getattr(m, "_fn", None)
            return getattr(fn, "__name__", "") in ("sparse_categorical_accuracy", "categorical_accuracy")
    return False


def _head(x, n):
    return {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else [v[:n] for v in x]


def optimize(model: Any, train_data: Any, validation_data: Any = None, *, recipe: RecipeLike = None,
             epochs: int | None = None, batch_size: int | None = None, verbose: int | str | None = None,
             callbacks: Sequence[Any] | None = None, strategy: Any = None, seed: int | None = None,
             tensorboard: str | os.PathLike[str] | None = None, progress: Callable[[str], None] | None = None,
             target: str | None = None, minimize: str | None = None, loss: Any = None, metrics: Any = None,
             loss_weights: Any = None, check_baseline: bool | None = None,
             epoch_validation: bool = True, threads: int = 2) -> OptimizeResult:
    """Compress a trained tf_keras model with a recipe, fine-tuning each stage.

    The input model is left untouched. Stages run in recipe order (train,
    channels, penalty, pruning, clustering, then QAT); pruning steps and
    learning-rate schedule steps are computed from the data size, batch size
    and each stage's epochs, and ``UpdatePruningStep`` is added for you. With
    ``recipe.distillation`` every fine-tuning run distils from a copy of the
    input model (after the ``train`` stage, when there is one).

    Every stage trains, and the report scores, with the user's task: the
    loss, loss weights and metrics the model was compiled with (or
    ``loss=``/``metrics=``); only an uncompiled classifier gets the loss its
    output implies (:mod:`tfcompress.task`). ``report.metric`` names the
    headline metric and ``report.drop()`` its change in its own unit.

    Args:
        model: a trained tf_keras or Keras 3 Sequential or Functional model:
            a classifier, a regression, a dense predictor (segmentation, edge
            or depth maps), with one or several inputs and outputs.
        train_data: ``(x, y)`` numpy arrays or a ``tf.data.Dataset`` of
            ``(x, y)`` (batched or not); for a classifier ``y`` holds class
            ids or one-hot rows, for other models one target of each output's
            shape; several inputs or outputs as a list (model order) or a dict
            by name.
        validation_data: same forms; used for the before/after accuracy.
            Defaults to `None` (accuracy is then measured on ``train_data``).
        recipe: a :class:`~tfcompress.Recipe`, a dict, a YAML path, or None
            for the default recipe. Defaults to `None`.
        epochs: if given, overrides every stage's ``epochs``. Defaults to `None`.
        batch_size: overrides ``recipe.batch_size``. Defaults to `None`.
        verbose: Keras verbosity; None shows progress bars on a terminal and
            one line per epoch otherwise. Defaults to `None`.
        callbacks: extra tf_keras callbacks for every training run; Keras 3
            ``TensorBoard``, ``EarlyStopping``, ``ModelCheckpoint``,
            ``CSVLogger`` and ``ReduceLROnPlateau`` are rebuilt as their
            tf_keras equivalents, other Keras 3 callbacks refused. Defaults
            to `None`.
        strategy: fine-tune every stage under this ``tf.distribute``
            strategy: ``"mirrored"``, ``"multiworker"`` (cluster from
            ``TF_CONFIG``), ``"default"`` or a ``tf.distribute.Strategy``;
            the batch size is the global batch, split over the replicas. A
            stage TF-MOT cannot run under it runs on one replica and its
            report entry says why (:mod:`tfcompress.distribute`). Defaults
            to `None` (one replica).
        seed: seeds Python, NumPy and TensorFlow before any work, so two runs
            give the same weights. Defaults to `None` (``recipe.seed``; None
            there too: not seeded).
        tensorboard: a folder for TensorBoard logs: one subfolder per stage
            (``train``, ``pruning``, ...) with loss, accuracy, learning rate,
            and the pruned layers' sparsity (TF-MOT's ``PruningSummaries``).
            Defaults to `None`.
        progress: called with each stage line and one line per epoch (stage,
            metrics, learning rate, seconds) instead of Keras's own output.
            Defaults to `None`.
        target: budget mode: ``"drop<=1.0"``, ``"size<=40KB"`` or
            ``"latency<=2ms"``; the recipe is planned per layer and gives only
            the training settings (:mod:`tfcompress.target`). The drop is in
            the task's headline metric: points for accuracy or IoU, the
            metric's own unit for an MAE or a loss (:mod:`tfcompress.scoring`).
            Defaults to `None`.
        minimize: under a drop budget, ``"size"`` or ``"latency"``. Defaults to `None`.
        loss: the task loss (a name, a tf_keras/Keras 3 loss, or a list/dict
            per output); overrides the model's compiled loss. Defaults to
            `None` (the model's own; inferred for an uncompiled classifier).
        metrics: the metrics to score with, as ``compile`` takes them.
            Defaults to `None` (the model's own; ``["accuracy"]`` inferred).
        loss_weights: per-output loss weights. Defaults to `None` (the model's own).
        check_baseline: what to do when the input model scores at chance on
            the data (a classifier) or far worse than predicting the mean (a
            regression), which is almost always a data problem such as inputs
            scaled twice: True stops with a DataError before any
            fine-tuning (the command line's default), None warns, False says
            nothing (an untrained model on purpose). Defaults to `None`.
        epoch_validation: score ``validation_data`` after every fine-tuning
            epoch too (the ``val_*`` figures of the history, the progress
            lines and callbacks that watch them). False scores it only for
            the report, before and after: the tuner's trials, which read no
            per-epoch figure, skip a traced test function and a validation
            pass per stage epoch. Defaults to `True`.
        threads: budget mode: the XNNPACK threads its rounds are timed and
            its latency plans priced at (the command line's ``--threads``).
            Defaults to `2`.

    Returns:
        An :class:`OptimizeResult` with ``.model``, ``.report`` and ``.history``.

    Raises:
        UnsupportedModelError: not a tf_keras Sequential/Functional model.
        DataError: empty data, NaN/Inf values, non-numeric arrays, labels out
            of range of the model's outputs, or data that does not fit the
            model; raised before any training. Validation labels given as
            class ids while the training labels are one-hot (or the reverse)
            are converted to the training labels' form.
        RecipeError: an invalid recipe or argument (``epochs``,
            ``batch_size``, ``verbose``, ``callbacks``, ``strategy``,
            ``seed``, ``tensorboard``).

    Example:
        >>> result = optimize(model, (x_train, y_train), (x_val, y_val),  # doctest: +SKIP
        ...                   recipe={"pruning": {"final_sparsity": 0.8},
        ...                           "clustering": {"number_of_clusters": 16},
        ...                           "distillation": {"alpha": 0.5}})
        >>> result.report.layer("conv1").stages["clustering"]  # doctest: +SKIP
        'clustered: 16 unique values'
    """
    compiled = compile_config_of(model)  # before translation or copies drop the user's compile
    if target is not None or minimize is not None:
        task = task_for(coerce_model(model), loss, metrics, loss_weights, compiled=compiled)

        if epochs is not None:  # each plan holds its stages' epochs (target/recipeplan.py): checked here
            check_int(None, "epochs", epochs, phrase="a positive integer (or None for each stage's own)")

        def run_recipe(plan, validation):  # the planning part of validation_data (target/heldout.py)
            return optimize(model, train_data, validation, recipe=plan, batch_size=batch_size,
                            verbose=verbose, callbacks=callbacks, strategy=strategy, seed=seed,
                            tensorboard=tensorboard, progress=progress, loss=loss, metrics=metrics,
                            loss_weights=loss_weights, check_baseline=check_baseline,
                            epoch_validation=epoch_validation)
        say = progress or (print if verbose != 0 else (lambda line: None))
        result, plan = budget_mode.run(coerce_model(model), train_data, validation_data, target or "drop<=1.0",
                                       minimize, as_recipe(recipe), run_recipe, say=say, task=task,
                                       threads=check_int(None, "threads", threads), epochs=epochs)
        result.plan = plan
        return result
    keras3_source = model if is_keras3_model(model) else None  # offered back by result.to_keras3()
    model = coerce_model(model)  # Keras 3 translated, nested backbones flattened
    recipe = as_recipe(recipe)
    if epochs is not None:
        check_int(None, "epochs", epochs, phrase="a positive integer (or None for each stage's own)")
    if batch_size is not None:
        check_int(None, "batch_size", batch_size, phrase="a positive integer (or None for recipe.batch_size)")
    check_choice(None, "verbose", verbose, (None, 0, 1, 2, "auto"))
    callbacks = check_instances(None, "callbacks", translate_callbacks(callbacks), keras.callbacks.Callback,
                                "tf_keras callbacks")
    if tensorboard is not None and not isinstance(tensorboard, (str, os.PathLike)):
        raise RecipeError(f"tensorboard must be a folder path, got {type(tensorboard).__name__}.")
    seed = recipe.seed if seed is None else check_int(None, "seed", seed, minimum=0, maximum=2**32 - 1)
    if seed is not None:
        set_seed(seed)
    bs = batch_size or recipe.batch_size
    if progress is not None:
        verbose = 0
    elif verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    task = task_for(model, loss, metrics, loss_weights, compiled=compiled)
    # Every data check runs here, before any training: one clear DataError.
    train = prepare(train_data, model, bs, shuffle=True, what="train_data", sparse_labels=task.sparse_labels,
                    classifier=task.classifier)
    if task.source == "inferred":  # the loss follows the labels' form
        task = task_for(model, loss, metrics, loss_weights, sparse_labels=train.sparse_labels)
    val = (prepare(validation_data, model, bs, what="validation_data", sparse_labels=train.sparse_labels,
                   classifier=task.classifier) if validation_data is not None else None)
    placement = distribute.Placement(strategy, mixed_precision=recipe.mixed_precision,
                                     single_replica=techniques.single_replica())
    with placement.scope():
        teacher = clone(model) if recipe.distillation is not None else None
    run = _Run(recipe, train, val, bs, epochs, verbose, callbacks, task, teacher, placement)
    run.tensorboard, run.progress = tensorboard, progress
    run.epoch_validation = bool(epoch_validation)
    for name, stage in recipe.stages:  # what cannot run fails now, not after the earlier stages
        preflight = techniques.get(name).preflight
        if preflight is not None:
            preflight(run, stage)

    with run.scope():
        current = clone(model)
        baseline = run.evaluate(current)
    if check_baseline is not False and recipe.train is None:
        checked = val if val is not None and val.num_samples >= 50 else train
        _check_baseline(task, current, checked, stop=bool(check_baseline),
                        scored=baseline if checked is (val or train) else None)
    last = None
    layers = [LayerRecord(l.name, type(l).__name__, int(l.count_params())) for l in model.layers]
    by_name = {r.name: r for r in layers}
    stages, history = [], {}
    for i, (name, stage) in enumerate(recipe.stages, 1):
        line = f"stage {i}/{len(recipe.stages)}: {name}, {run.stage_epochs(stage)} epoch(s)"
        if progress is not None:
            progress(line)
        elif verbose:
            print("  " + line, flush=True)
        release_memory(current)  # the last stage's copies go before this one makes its own
        t0 = time.perf_counter()
        with run.scope(name):
            result = techniques.get(name).run(run, current, stage)
        current, history[name] = result.model, result.history
        _check_converged(name, current, history[name])
        run.ran.append(name)
        last = name
        if placement.strategy is not None:
            result.note("strategy", placement.where(name))
            if verbose and name in placement.fell_back:
                print(f"  {name} ran on {result.notes['strategy']}", flush=True)
        d = recipe.distillation
        if d is not None and name != "train":
            result.note("distillation", f"distilled (alpha {d.alpha:g}, T {d.temperature:g})")
        for lname, what in result.records.items():
            if lname in by_name:
                by_name[lname].stages[name] = what
        stages.append({"name": name, "seconds": time.perf_counter() - t0, **result.entry()})

    release_memory(current)
    for lname, s in pruning.layer_sparsity(current).items():
        if lname in by_name:
            by_name[lname].sparsity = s
    with run.scope(last):  # where the last stage built the model
        optimized = run.evaluate(current)
    report = OptimizeReport(
        model=model.name, recipe=run.recipe.to_dict(), layers=layers, stages=stages,
        baseline=baseline, optimized=optimized,
        evaluated_on="validation" if val is not None else "training",
        task={**task.to_dict(), "line": task.describe()},
        metric="accuracy" if task.classifier and "accuracy" in baseline else headline(baseline),
    )
    return OptimizeResult(current, report, history, keras3_source)
