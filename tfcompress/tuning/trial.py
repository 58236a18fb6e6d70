"""One trial: train the model, compress it, export int8, time it, report its metrics.

:class:`TrialContext` holds everything a trial needs (the model builder, the
space, the base recipe, the data, the timing settings); the tuner builds one
per search and runs each trial with it, in its own process or in a child
process (:mod:`tfcompress.tuning.runner`). A trial that fails (NaN loss, a
recipe or conversion error) raises Keras Tuner's ``FailedTrialError`` with a
one-line reason, and every trial ends with ``keras.backend.clear_session()``
and ``gc.collect()`` so memory does not creep (keras-tuner #873, #395).

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import tflite_export
from tfcompress._keras import keras, quiet_native_logs
from tfcompress._model import check_model
from tfcompress.distribute import resolve, scope
from tfcompress.optimize import loss_for, make_optimizer, optimize
from tfcompress.recipe import Recipe
from tfcompress.report import atomic_write_json
from tfcompress.tuning._keras_tuner import FailedTrialError
from tfcompress.tuning.objectives import score
from tfcompress.tuning.space import SearchSpace, TrainingSchedule, plain_values
from tflite_export._process import current_rss_mb, peak_rss_mb

__all__ = ["TrialContext", "failure_reason", "rss_mb", "weight_seed"]


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
    threads: int = 1
    timing_runs: int = 20
    timing_seconds: float = 0.2
    seed: int | None = 0
    tuner_id: str = "tuner0"
    penalty: float = 10.0
    strategy: str | None = None

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

    def run(self, job):
        """Run one trial.

        Args:
            job: ``trial_id``, ``values`` (the trial's hyperparameters),
                ``folder`` (where its files go) and, for a Hyperband trial
                that continues another, ``parent_weights``.

        Returns:
            The trial's metrics (see :meth:`CompressionTuner.run_trial`).

        Raises:
            FailedTrialError: with a one-line reason.
        """
        try:
            return self._run(job)
        except FailedTrialError:
            raise
        except Exception as e:  # anything a trial does wrong fails that trial only
            raise FailedTrialError(_one_line(e)) from e
        finally:
            keras.backend.clear_session()
            gc.collect()

    def _run(self, job):
        t0 = time.perf_counter()
        tid, values, folder = job["trial_id"], plain_values(job["values"]), job["folder"]
        recipe = self.space.recipe(values, self.base_recipe)
        model, epochs_run, resumed = self._train(tid, values, recipe, job.get("parent_weights"), folder)
        result = optimize(model, self.train, self.validation, recipe=recipe, verbose=0, strategy=self.strategy)
        for stage, h in result.history.items():
            bad = _non_finite(h)
            if bad:
                raise FailedTrialError(f"NaN/inf loss in {stage}: {bad}")
        accuracy = float(result.report.optimized["accuracy"])
        if not math.isfinite(accuracy):
            raise FailedTrialError("accuracy is NaN")
        compress_epochs = sum(s.get("epochs") or 0 for s in result.report.stages)
        train_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        exported, timing = self._export_and_time(result.model, os.path.join(folder, "int8.tflite"))
        export_seconds = time.perf_counter() - t1
        rss, peak = rss_mb()
        metrics = {
            "accuracy": accuracy,
            "size_kb": exported.zipped_bytes / 1024.0,
            "latency_ms": float(timing.median_ms),
            "epochs": float(epochs_run + compress_epochs),
            "train_seconds": train_seconds,
            "export_seconds": export_seconds,
            "seconds": time.perf_counter() - t0,
            "rss_mb": rss,
            "peak_rss_mb": peak,
        }
        metrics["score"] = score(metrics, self.objectives, self.constraints, self.penalty)
        atomic_write_json(os.path.join(folder, "result.json"),
                          {"trial_id": tid, "tuner_id": self.tuner_id, "status": "COMPLETED",
                           "values": values, "metrics": metrics, "recipe": recipe.to_dict(),
                           "continued_from_parent": resumed,
                           "backend": timing.backend, "pid": os.getpid()})
        return metrics

    def _train(self, tid, values, recipe, parent_weights, folder):
        """Build and train the model with the trial's schedule; save its weights.

        Returns:
            ``(model, epochs trained here, whether it continued from the parent's weights)``.
        """
        sched = TrainingSchedule.from_values(values, recipe.learning_rate)
        epochs = int(values.get("tuner/epochs", self.epochs))
        initial = int(values.get("tuner/initial_epoch", 0))
        keras.utils.set_random_seed(weight_seed(self.seed, tid))
        with scope(resolve(self.strategy)):
            return self._train_in_scope(tid, values, recipe, parent_weights, folder, sched, epochs, initial)

    def _train_in_scope(self, tid, values, recipe, parent_weights, folder, sched, epochs, initial):
        model = check_model(self.build_model())
        # Hyperband continues from its parent trial's weights; a parent that
        # ran on another machine without a shared folder is not here, and the
        # trial then trains from scratch (more epochs, same outcome).
        resumed = bool(parent_weights and initial > 0 and os.path.exists(parent_weights))
        if resumed:
            model.load_weights(parent_weights)
        else:
            initial = 0
        y = self.train[1]
        model.compile(make_optimizer(recipe.optimizer, sched.learning_rate),
                      loss_for(model, np.ndim(y) == 1), ["accuracy"])
        total = self.max_epochs if "tuner/epochs" in values else epochs
        lr_cb = keras.callbacks.LearningRateScheduler(lambda e, lr: sched.rate(e, total))
        hist = model.fit(*self.train, batch_size=recipe.batch_size, epochs=epochs, initial_epoch=initial,
                         validation_data=self.validation, verbose=0,
                         callbacks=[lr_cb, keras.callbacks.TerminateOnNaN()])
        bad = _non_finite(hist.history)
        if bad:
            raise FailedTrialError(f"NaN/inf loss while training: {bad}; lower learning_rate")
        # The temporary name must end in .weights.h5 too: tf_keras picks the
        # weights format from the file name.
        tmp = os.path.join(folder, "trained.tmp.weights.h5")
        model.save_weights(tmp)
        os.replace(tmp, os.path.join(folder, "trained.weights.h5"))
        return model, epochs - initial, resumed

    def _export_and_time(self, model, path):
        """Export ``model`` as int8 ``path`` and time it: ``(ExportReport, Timing)``."""
        x = self.train[0]
        with quiet_native_logs():
            exported = tflite_export.export(model, path, mode="int8", representative_data=x[:100],
                                            num_samples=min(100, len(x)))
            timing = tflite_export.benchmark(path, threads=self.threads, min_runs=self.timing_runs,
                                             min_seconds=self.timing_seconds, warmup_seconds=0.05)
        if not timing.ok:
            raise FailedTrialError(f"timing failed: {timing.status}")
        return exported, timing
