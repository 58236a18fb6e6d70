"""One trial: train the model, compress it, export int8, time it, report its metrics.

A trial's quality is the compressed model's validation metric as
:func:`tfcompress.optimize` reports it: ``accuracy`` for a classifier, else
the task's own headline metric (``TrialContext.metric``).

:class:`TrialContext` holds everything a trial needs (the model builder, the
space, the base recipe, the data, the timing settings); the tuner builds one
per search and runs each trial with it, in its own process or in a child
process (:mod:`tfcompress.tuning.runner`). A trial that fails (NaN loss, a
recipe or conversion error) raises Keras Tuner's ``FailedTrialError`` with a
one-line reason, and every trial ends with ``keras.backend.clear_session()``
and ``gc.collect()`` so memory does not creep (keras-tuner #873, #395), then
``gc.freeze()``: what survived is long-lived (TensorFlow's modules and caches),
and the next trial's collections skip it (0.6-1.7 s of collections a digits
trial, 0.2-0.4 s so; the tuner unfreezes at the end of a search in its process).

Example:
    >>> from tfcompress import Recipe, datasets, models
    >>> from tfcompress.tuning import SearchSpace
    >>> data = datasets.load("digits")
    >>> ctx = TrialContext(models.get("digits_cnn").build, SearchSpace.default(), Recipe(),  # doctest: +SKIP
    ...                    ["accuracy"], (), epochs=1, max_epochs=1, train=data.train, validation=data.validation)
    >>> ctx.run({"trial_id": "0", "values": {"learning_rate": 3e-3}, "folder": "t0"})["accuracy"]  # doctest: +SKIP
    0.93
"""

import dataclasses
import gc
import math
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import tflite_export
from tfcompress._defaults import TUNING_THREADS, TUNING_TIMING_RUNS, TUNING_TIMING_SECONDS
from tfcompress._keras import keras, quiet_native_logs, tf
from tfcompress._model import check_model, save_weights
from tfcompress.distribute import resolve, scope
from tfcompress.errors import OutputError, TfcompressError
from tfcompress.optimize import optimize
from tfcompress.recipe import Recipe, Train
from tfcompress.report import atomic_write_json
from tfcompress.training import log_room, set_seed
from tfcompress.tuning._keras_tuner import FailedTrialError, SearchStopped
from tfcompress.tuning.inputs import first, first_array, take
from tfcompress.tuning.objectives import score
from tfcompress.tuning.space import SearchSpace, plain_values
from tflite_export._process import current_rss_mb, peak_rss_mb
from tflite_export.errors import first_line, write_failure

__all__ = ["TrialContext", "failure_reason", "rss_mb", "weight_seed", "log_hparams", "stopped"]


def stopped(trial_id, cause):
    """The :class:`SearchStopped` error of a trial that could not write its files.

    Example:
        >>> str(stopped("3", OSError(28, "No space left on device")))[:52]
        'the search stopped at trial 3: No space left on devi'
    """
    text = first_line(cause)
    if isinstance(cause, OSError) and cause.strerror and not isinstance(cause, OutputError):  # a raw OSError
        text = f"cannot write {cause.filename} ({cause.strerror})" if cause.filename else cause.strerror
    if not isinstance(cause, TfcompressError):  # our writers' lines already say what to do
        text += "; free some space or make the folder writable"
    err = SearchStopped(f"the search stopped at trial {trial_id}: {text}, then rerun the same command: "
                        f"it resumes with trial {trial_id}")
    err.errno = write_failure(cause)
    return err


def failure_reason(message):
    """The one-line reason from a failed trial's stored traceback.

    Example:
        >>> failure_reason("Traceback ...\\nkeras_tuner.src.errors.FailedTrialError: NaN loss")
        'NaN loss'
    """
    if not message:
        return ""
    lines = [ln for ln in str(message).strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        m = re.match(r"^[\w.]*FailedTrialError: (.*)$", ln)
        if m:
            return m.group(1)
    return lines[-1][:300] if lines else ""


def _one_line(e):
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    # TensorFlow's errors start with "in user code:" and end with the cause.
    text = (lines[-1] if lines and lines[0].startswith("in user code") else (lines or [""])[0])[:240]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def rss_mb():
    """(current RSS, peak RSS) of this process in MiB, NaN where the OS does not tell.

    Example:
        >>> rss_mb()[1] > 0
        True
    """
    cur, peak = current_rss_mb(), peak_rss_mb()
    return (math.nan if cur is None else cur), (math.nan if peak is None else peak)


def weight_seed(seed, trial_id):
    """The seed a trial's weights start from: ``seed + trial_id``, wrapped into
    NumPy's range (a negative sum made ``set_random_seed`` fail the trial).

    Example:
        >>> weight_seed(0, "03"), weight_seed(-1, "0"), weight_seed(5, "chief")
        (3, 4294967295, 5)
    """
    return (seed + (int(trial_id) if str(trial_id).isdigit() else 0)) % 2**32


def _non_finite(history):
    """Where a loss in a Keras history became NaN/inf (None when it did not)."""
    for key, values in history.items():
        if "loss" in key:
            for i, v in enumerate(values):
                if not math.isfinite(v):
                    return f"{key} became {v} at epoch {i + 1}"
    return None


class _FailOnNaN(keras.callbacks.Callback):
    """Fails the trial at the first non-finite training loss (the later stages
    would only compress NaN weights)."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FailedTrialError(f"NaN/inf loss while training (loss {float(loss)} at batch {batch + 1}); "
                                   "lower learning_rate")


class _SaveTrained(keras.callbacks.Callback):
    """Saves the weights at the end of the first training run (the train stage:
    what a Hyperband child continues from), atomically."""

    def __init__(self, path):
        super().__init__()
        self.path, self.done = path, False

    def on_train_end(self, logs=None):
        if self.done:
            return
        self.done = True
        save_weights(self.model, self.path)


def log_hparams(logdir, trial_id, values, metrics):
    """Write a trial's hyperparameters and metrics for TensorBoard's HParams dashboard.

    Example:
        >>> log_hparams("tb/trial_0", "0", {"learning_rate": 1e-3}, {"accuracy": 0.9})  # doctest: +SKIP
    """
    from tensorboard.plugins.hparams import api as hparams_api

    if not log_room(logdir):  # a log is not worth the trial: a warning, no logs
        return
    shown = {k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}
    try:
        with tf.summary.create_file_writer(logdir).as_default():
            hparams_api.hparams(shown, trial_id=str(trial_id))
            for name, value in metrics.items():
                tf.summary.scalar(f"trial/{name}", float(value), step=0)
    except Exception as e:
        if write_failure(e) is None:
            raise
        warnings.warn(f"TensorBoard logging to {logdir} failed ({os.strerror(write_failure(e))}): trial {trial_id}'s "
                      "hyperparameters are not logged; free some space for logs", RuntimeWarning, stacklevel=2)


@dataclass(frozen=True, eq=False)
class TrialContext:
    """Everything a trial needs; lives in the tuner's process or in a child.

    Args:
        build_model: picklable callable returning a fresh tf_keras model.
        space: the :class:`~tfcompress.tuning.SearchSpace`.
        base_recipe: the :class:`~tfcompress.Recipe` for unsearched fields.
        objectives: metric keys; the first makes the score.
        constraints: :class:`~tfcompress.tuning.Constraint` objects.
        epochs: training epochs (not Hyperband).
        max_epochs: Hyperband's largest epoch count (for the cosine decay).
        train: ``(x, y)``.
        validation: ``(x, y)``.
        threads: timing threads. Defaults to `1`.
        timing_runs: timed runs. Defaults to `20`.
        timing_seconds: minimum timed seconds. Defaults to `0.2`.
        seed: weight seed (trial ``i`` uses ``seed + i``); None is 0.
            Defaults to `0`.
        tuner_id: written into each trial's ``result.json``. Defaults to `"tuner0"`.
        penalty: score lost per unit of constraint violation (see
            :func:`~tfcompress.tuning.objectives.score`). Defaults to `10.0`.
        strategy: ``tf.distribute`` strategy name for training and
            fine-tuning (``"mirrored"``, ``"default"``). Defaults to `None`.
        tensorboard: a log folder: each trial writes its stages' logs and
            its hyperparameters and metrics (HParams) to ``trial_<id>/``.
            Defaults to `None`.
        metric: the compressed model's metric the trial reports as its
            quality (a key of ``optimize``'s report): ``accuracy`` for a
            classifier, else the task's headline metric (``mae``, ``iou``,
            ``box_mae``). Defaults to `"accuracy"`.
        scale_compression: a Hyperband trial of fidelity ``f`` (its
            ``tuner/epochs`` over ``max_epochs``) runs its compression stages
            (every stage after ``train``) on a seeded share ``f`` of the
            training data, each of their epochs ``f`` of an epoch, and
            counts them so in ``epochs``; full-fidelity trials and other
            algorithms are not scaled (see :meth:`compression_share`).
            Defaults to `False`.

    Example:
        >>> ctx = TrialContext(build, space, Recipe(), ["accuracy"], (), epochs=1, max_epochs=1,  # doctest: +SKIP
        ...                    train=(x, y), validation=(x_val, y_val))
        >>> ctx.run({"trial_id": "0", "values": {"learning_rate": 3e-3}, "folder": "t0"})  # doctest: +SKIP
    """

    build_model: Callable[[], Any]
    space: SearchSpace
    base_recipe: Recipe
    objectives: list
    constraints: tuple
    epochs: int
    max_epochs: int
    train: tuple
    validation: tuple
    threads: int = TUNING_THREADS
    timing_runs: int = TUNING_TIMING_RUNS
    timing_seconds: float = TUNING_TIMING_SECONDS
    seed: int | None = 0
    tuner_id: str = "tuner0"
    penalty: float = 10.0
    strategy: str | None = None
    tensorboard: str | None = None
    metric: str = "accuracy"
    scale_compression: bool = False

    def __post_init__(self):
        object.__setattr__(self, "constraints", tuple(self.constraints))
        object.__setattr__(self, "train", tuple(self.train))
        object.__setattr__(self, "validation", tuple(self.validation))
        object.__setattr__(self, "seed", int(self.seed or 0))

    def to_payload(self):
        """The fields as a dict for a child process (space and recipe as dicts)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dict(fields, space=self.space.to_dict(), base_recipe=self.base_recipe.to_dict())

    @classmethod
    def from_payload(cls, payload):
        """The context :meth:`to_payload` describes."""
        return cls(**dict(payload, space=SearchSpace(payload["space"]),
                          base_recipe=Recipe.from_dict(payload["base_recipe"])))

    def run(self, job, progress=None):
        """Run one trial.

        Args:
            job: ``trial_id``, ``values`` (the trial's hyperparameters),
                ``folder`` (where its files go) and, for a Hyperband trial
                that continues another, ``parent_weights``.
            progress: called with a line per stage and per epoch. Defaults
                to `None` (silent).

        Returns:
            The trial's metrics (see :meth:`CompressionTuner.run_trial`).

        Raises:
            FailedTrialError: with a one-line reason.
        """
        try:
            return self._run(job, progress)
        except (FailedTrialError, SearchStopped):
            raise
        except Exception as e:  # anything a trial does wrong fails that trial only; a failed write stops the search
            if write_failure(e) is not None:
                raise stopped(job["trial_id"], e) from None
            raise FailedTrialError(_one_line(e)) from e
        finally:
            keras.backend.clear_session()
            gc.collect()
            gc.freeze()  # survivors are long-lived: later collections (many while tracing) skip them

    def recipe_for(self, trial_id, values, initial_epoch=0):
        """The recipe a trial runs, complete: the space's values on the base
        recipe, a ``train`` stage of the trial's epochs (Hyperband: the epochs
        after ``initial_epoch``) and the trial's seed. ``tfcompress optimize
        --recipe`` with it (and a freshly built model) repeats the trial.

        Example:
            >>> ctx.recipe_for("3", {"learning_rate": 3e-3}).seed  # doctest: +SKIP
            3
        """
        recipe = self.space.recipe(values, self.base_recipe)
        epochs = int(values.get("tuner/epochs", self.epochs)) - initial_epoch
        train = recipe.train or Train()
        return recipe.replace(train=dataclasses.replace(train, epochs=epochs) if epochs > 0 else None,
                              seed=weight_seed(self.seed, trial_id))

    def fidelity(self, values):
        """A Hyperband trial's share of the full budget, ``tuner/epochs / max_epochs``; 1.0 for other trials.

        Example:
            >>> ctx.fidelity({"tuner/epochs": 3}), ctx.fidelity({})  # doctest: +SKIP
            (0.3333333333333333, 1.0)
        """
        if "tuner/epochs" not in values or not self.max_epochs:
            return 1.0
        return min(1.0, int(values["tuner/epochs"]) / self.max_epochs)

    def compression_share(self, values, batch_size):
        """How many training examples a trial's compression stages fine-tune on: ``(count, share)``.

        With :attr:`scale_compression`, a Hyperband trial of fidelity ``f``
        gets ``ceil(f * n)`` of the ``n`` examples (at least two batches, so
        that pruning has its steps): its pruning schedule is computed from
        that count, so it still reaches its final sparsity, in fewer steps.
        Otherwise all ``n`` (share 1.0).
        """
        n = len(first_array(self.train[0]))
        f = self.fidelity(values) if self.scale_compression else 1.0
        count = n if f >= 1.0 else min(n, max(math.ceil(f * n), 2 * int(batch_size)))
        return count, count / n

    def _run(self, job, progress=None):
        t0 = time.perf_counter()
        tid, values, folder = job["trial_id"], plain_values(job["values"]), job["folder"]
        # Hyperband continues from its parent trial's weights; a parent that
        # ran on another machine without a shared folder is not here, and the
        # trial then trains from scratch (more epochs, same outcome).
        parent, initial = job.get("parent_weights"), int(values.get("tuner/initial_epoch", 0))
        resumed = bool(parent and initial > 0 and os.path.exists(parent))
        recipe = self.recipe_for(tid, values, initial if resumed else 0)
        # The trial *is* its recipe: the model is built from the recipe's seed and trained by
        # its train stage inside optimize(), exactly as `tfcompress optimize --recipe` does.
        set_seed(recipe.seed)
        with scope(resolve(self.strategy)):
            model = check_model(self.build_model())
            if resumed:
                model.load_weights(parent)
        tensorboard = os.path.join(self.tensorboard, f"trial_{tid}") if self.tensorboard else None
        count, share = self.compression_share(values, recipe.batch_size)
        result, epochs = self._optimize(model, recipe, count, tensorboard, folder,
                                        (lambda line: progress(f"  trial {tid}: {line}")) if progress else None)
        for stage, h in result.history.items():
            bad = _non_finite(h)
            if bad:
                raise FailedTrialError(f"NaN/inf loss in {stage}: {bad}")
        optimized = result.report.optimized
        if self.metric not in optimized:
            raise FailedTrialError(f"the compressed model's evaluation has no {self.metric!r} (it has "
                                   f"{', '.join(optimized)})")
        quality = float(optimized[self.metric])
        if not math.isfinite(quality):
            raise FailedTrialError(f"{self.metric} is NaN")
        train_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        exported, timing = self._export_and_time(result.model, os.path.join(folder, "int8.tflite"))
        export_seconds = time.perf_counter() - t1
        rss, peak = rss_mb()
        metrics = {
            self.metric: quality,
            "size_kb": exported.zipped_bytes / 1024.0,
            "latency_ms": float(timing.median_ms),
            "epochs": epochs,
            "train_seconds": train_seconds,
            "export_seconds": export_seconds,
            "seconds": time.perf_counter() - t0,
            "rss_mb": rss,
            "peak_rss_mb": peak,
        }
        metrics["score"] = score(metrics, self.objectives, self.constraints, self.penalty)
        if tensorboard:
            log_hparams(tensorboard, tid, values, metrics)
        atomic_write_json(os.path.join(folder, "result.json"),
                          {"trial_id": tid, "tuner_id": self.tuner_id, "status": "COMPLETED",
                           "values": values, "metrics": metrics, "recipe": recipe.to_dict(),
                           "continued_from_parent": resumed, "fidelity": self.fidelity(values),
                           "compression_share": share,
                           "backend": timing.backend, "pid": os.getpid()})
        return metrics

    def _optimize(self, model, recipe, count, tensorboard, folder, progress):
        """``optimize`` the trial's recipe: ``(OptimizeResult, epochs spent)``.

        With ``count`` below the training set's size (a scaled trial), the
        ``train`` stage runs on all the data, then the compression stages on
        a seeded subset of ``count`` examples; their epochs count as
        ``count / n`` each. The result's report and history cover both runs.
        """
        callbacks = [_FailOnNaN(), _SaveTrained(os.path.join(folder, "trained.weights.h5"))]
        # A search reads the report's scores, never a per-epoch val_* figure: validation every epoch
        # only for TensorBoard's curves (a traced test function and a pass per stage epoch fewer)
        common = dict(verbose=0, strategy=self.strategy, seed=recipe.seed, tensorboard=tensorboard,
                      callbacks=callbacks, progress=progress, epoch_validation=tensorboard is not None)
        n = len(first_array(self.train[0]))
        if count >= n:
            result = optimize(model, self.train, self.validation, recipe=recipe, **common)
            return result, float(sum(s.get("epochs") or 0 for s in result.report.stages))
        trained, history, epochs = None, {}, 0.0
        if recipe.train is not None:
            only_train = recipe.replace(**{name: None for name, _ in recipe.stages if name != "train"})
            trained = optimize(model, self.train, self.validation, recipe=only_train, **common)
            model, history = trained.model, dict(trained.history)
            epochs += float(sum(s.get("epochs") or 0 for s in trained.report.stages))
        rows = np.sort(np.random.default_rng(recipe.seed).choice(n, count, replace=False))
        result = optimize(model, (take(self.train[0], rows), take(self.train[1], rows)), self.validation,
                          recipe=recipe.replace(train=None), check_baseline=False, **common)
        epochs += count / n * float(sum(s.get("epochs") or 0 for s in result.report.stages))
        result.history = {**history, **result.history}
        if trained is not None:  # the report covers the whole trial: the train stage first
            result.report.stages[:0] = trained.report.stages
        return result, epochs

    def _export_and_time(self, model, path):
        """Export ``model`` as int8 ``path`` and time it: ``(ExportReport, Timing)``."""
        x = self.train[0]  # an array, or a dict/list of arrays for a model of several inputs
        x = list(x) if isinstance(x, tuple) else x  # a tuple would read as an (x, y) pair
        arrays = list(x.values()) if isinstance(x, dict) else x if isinstance(x, list) else [x]
        with quiet_native_logs():
            exported = tflite_export.export(model, path, mode="int8", representative_data=first(x, 100),
                                            num_samples=min(100, len(arrays[0])))
            timing = tflite_export.benchmark(path, threads=self.threads, min_runs=self.timing_runs,
                                             min_seconds=self.timing_seconds, warmup_seconds=0.05)
        if not timing.ok:
            raise FailedTrialError(f"timing failed: {timing.status}")
        return exported, timing
