"""A Keras Tuner ``BaseTuner`` that trains, compresses, exports and times tf_keras models.

Keras Tuner 1.4.8 imports Keras 3, and its stock ``Tuner`` checks that the
hypermodel returns a Keras 3 model (keras-tuner #1039), so it rejects tf_keras
models. :class:`CompressionTuner` subclasses ``BaseTuner`` instead, which knows
nothing about Keras: our :meth:`~CompressionTuner.run_trial` builds the
tf_keras model, trains it with the trial's schedule, compresses it with
:func:`tfcompress.optimize`, exports the int8 ``.tflite`` and times it, and
saves/loads weights itself. Everything else is Keras Tuner's: the oracles
(random, Bayesian, Hyperband), trial files, ``overwrite=False`` resume and the
chief/worker gRPC mode.

Reliability additions:

* the oracle's and trials' JSON files are written atomically, so a SIGKILL
  never leaves half a file (a running trial is re-run on resume);
* every trial ends with ``keras.backend.clear_session()`` and ``gc.collect()``
  so memory does not creep (keras-tuner #873, #395);
* a trial that fails (NaN loss, a recipe or conversion error) is marked
  ``FAILED`` with a one-line reason and the search goes on.

Example:
    >>> from tfcompress import datasets, models
    >>> from tfcompress.tuning import CompressionTuner, SearchSpace
    >>> data = datasets.load("digits")
    >>> tuner = CompressionTuner(models.get("digits_cnn").build, SearchSpace.default(),  # doctest: +SKIP
    ...                          max_trials=3, directory="tune-out")
    >>> tuner.search(data.train, data.validation)  # doctest: +SKIP
"""

import gc
import json
import math
import os
import re
import resource
import time
from concurrent import futures

import numpy as np

from tfcompress._keras import check_model, keras, quiet_native_logs
from tfcompress.errors import TfcompressError
from tfcompress.optimize import loss_for, make_optimizer, optimize
from tfcompress.recipe import Recipe
from tfcompress.report import atomic_write_json, atomic_write_text
from tfcompress.tuning.objectives import PENALTY, parse_objectives, score
from tfcompress.tuning.space import TrainingSchedule, TuningError, plain_values

import keras_tuner  # noqa: E402  (after _keras: TensorFlow is quiet by then)
from keras_tuner.src import config as _kt_config  # noqa: E402
from keras_tuner.src.distribute import utils as dist_utils  # noqa: E402
from keras_tuner.src.engine import conditions as _kt_conditions  # noqa: E402
from keras_tuner.src.engine import base_tuner  # noqa: E402
from keras_tuner.src.engine import trial as trial_module  # noqa: E402

# Keras Tuner prints every failed trial's traceback; we report one line per
# trial instead (the traceback stays in trial.json). --debug turns it back on.
_kt_config.DEBUG = os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"

# Keras Tuner 1.4.8 left a debug print(self.values[0]) in Parent.to_proto,
# so every conditional parameter sent over gRPC (chief/worker mode) prints a
# stray line ("cosine", "step"). The module's only print: shadow it there.
_kt_conditions.print = lambda *args, **kwargs: None

__all__ = ["CompressionTuner", "make_oracle", "ALGORITHMS", "failure_reason", "serve_oracle"]

ALGORITHMS = {
    "random": keras_tuner.oracles.RandomSearchOracle,
    "randomsearch": keras_tuner.oracles.RandomSearchOracle,
    "bayesian": keras_tuner.oracles.BayesianOptimizationOracle,
    "bayesianoptimization": keras_tuner.oracles.BayesianOptimizationOracle,
    "hyperband": keras_tuner.oracles.HyperbandOracle,
}
CANONICAL = {"random": "random", "randomsearch": "random", "bayesian": "bayesian",
             "bayesianoptimization": "bayesian", "hyperband": "hyperband"}


def _atomic_json(path, obj):
    atomic_write_text(path, json.dumps(obj))


class _OracleMixin:
    """Atomic state files and an optional epoch budget, for any KT oracle."""

    epoch_budget = None

    def save(self):
        _atomic_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        _atomic_json(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())

    def reload(self):
        super().reload()
        # A trial whose trial.json says it finished, but that oracle.json
        # still lists as running (killed between the two writes), is done:
        # do not run it again.
        done = (trial_module.TrialStatus.COMPLETED, trial_module.TrialStatus.FAILED)
        for tid in list(self._retry_queue):
            if tid in self.trials and self.trials[tid].status in done:
                self._retry_queue.remove(tid)
                if tid not in self.end_order:
                    self.end_order.append(tid)

    def epochs_spent(self):
        total = 0.0
        for t in self.trials.values():
            if t.metrics.exists("epochs"):
                total += t.metrics.get_last_value("epochs")
        return total

    def populate_space(self, trial_id):
        if self.epoch_budget and self.epochs_spent() >= self.epoch_budget:
            return {"status": trial_module.TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)


_ORACLE_CLASSES = {}


def make_oracle(algorithm, hyperparameters, max_trials=None, max_epochs=None, seed=0, epoch_budget=None,
                hyperband_factor=3, num_initial_points=None):
    """A Keras Tuner oracle maximising the ``score`` metric.

    Args:
        algorithm: ``random``, ``bayesian`` or ``hyperband`` (also
            ``RandomSearch``, ``BayesianOptimization``, any case).
        hyperparameters: the ``HyperParameters`` of the space.
        max_trials: stop after this many trials. Defaults to `None`.
        max_epochs: Hyperband's largest per-trial epoch count. Defaults to
            `None` (3).
        seed: oracle seed. Defaults to `0`.
        epoch_budget: stop creating trials once completed trials spent this
            many epochs. Defaults to `None`.
        hyperband_factor: Hyperband's reduction factor. Defaults to `3`.
        num_initial_points: Bayesian optimisation's random trials before the
            Gaussian process takes over. Keras Tuner's default, 3 per
            parameter, would keep a 10-parameter search random for 30
            trials; ours is ``max(3, max_trials // 4)`` capped at that.
            Defaults to `None`.

    Returns:
        The oracle.

    Raises:
        TuningError: an unknown algorithm.

    Example:
        >>> from tfcompress.tuning import SearchSpace
        >>> make_oracle("random", SearchSpace.default().hyperparameters(), max_trials=2).max_trials
        2
    """
    key = str(algorithm).lower().replace("_", "").replace("-", "")
    if key not in ALGORITHMS:
        raise TuningError(f"unknown algorithm {algorithm!r}; use random, bayesian or hyperband.")
    base = ALGORITHMS[key]
    cls = _ORACLE_CLASSES.get(base)
    if cls is None:
        cls = _ORACLE_CLASSES[base] = type("Tfc" + base.__name__, (_OracleMixin, base), {})
    common = dict(objective=keras_tuner.Objective("score", "max"), hyperparameters=hyperparameters,
                  tune_new_entries=False, allow_new_entries=False, seed=seed or 1,
                  max_retries_per_trial=0, max_consecutive_failed_trials=10**9)
    if CANONICAL[key] == "hyperband":
        # Many Hyperband iterations: max_trials or the epoch budget end the
        # search, not Keras Tuner's single pass over the brackets.
        oracle = cls(max_epochs=max_epochs or 3, factor=hyperband_factor, hyperband_iterations=10**6, **common)
        oracle.max_trials = max_trials
    elif CANONICAL[key] == "bayesian":
        if num_initial_points is None:
            dims = max(1, len(hyperparameters.space))
            num_initial_points = min(3 * dims, max(3, (max_trials or 12) // 4))
        oracle = cls(max_trials=max_trials, num_initial_points=num_initial_points, **common)
    else:
        oracle = cls(max_trials=max_trials, **common)
    oracle.epoch_budget = epoch_budget
    return oracle


def failure_reason(message):
    """The one-line reason from a failed trial's stored traceback."""
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


def _rss_mb():
    """(current RSS, peak RSS) of this process in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    try:
        with open("/proc/self/statm") as f:
            cur = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover
        cur = float("nan")
    return cur, peak


def _finite(history):
    for key, values in history.items():
        if "loss" in key:
            for i, v in enumerate(values):
                if not math.isfinite(v):
                    return f"{key} became {v} at epoch {i + 1}"
    return None


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
        seed: seed. Defaults to `0`.
        tuner_id: written into each trial's ``result.json``. Defaults to `"tuner0"`.
        penalty: score lost per unit of constraint violation (see
            :func:`~tfcompress.tuning.objectives.score`). Defaults to `10.0`.
    """

    def __init__(self, build_model, space, base_recipe, objectives, constraints, epochs, max_epochs, train,
                 validation, threads=1, timing_runs=20, timing_seconds=0.2, seed=0, tuner_id="tuner0", penalty=10.0):
        self.build_model, self.space, self.base_recipe = build_model, space, base_recipe
        self.objectives, self.constraints = objectives, tuple(constraints)
        self.epochs, self.max_epochs = epochs, max_epochs
        self.train, self.validation = train, validation
        self.threads, self.timing_runs, self.timing_seconds = threads, timing_runs, timing_seconds
        self.seed, self.tuner_id, self.penalty = seed, tuner_id, penalty

    def run(self, job):
        """Run one trial; returns its metrics or raises FailedTrialError."""
        try:
            return self._run(job)
        except keras_tuner.errors.FailedTrialError:
            raise
        except Exception as e:  # anything a trial does wrong fails that trial only
            raise keras_tuner.errors.FailedTrialError(_one_line(e)) from e
        finally:
            keras.backend.clear_session()
            gc.collect()

    def _run(self, job):
        t0 = time.perf_counter()
        tid, values, folder = job["trial_id"], plain_values(job["values"]), job["folder"]
        recipe = self.space.recipe(values, self.base_recipe)
        sched = TrainingSchedule.from_values(values, recipe.learning_rate)
        epochs = int(values.get("tuner/epochs", self.epochs))
        initial = int(values.get("tuner/initial_epoch", 0))
        x, y = self.train
        keras.utils.set_random_seed(self.seed + (int(tid) if str(tid).isdigit() else 0))
        model = check_model(self.build_model())
        parent = job.get("parent_weights")
        # Hyperband continues from its parent trial's weights; a parent that
        # ran on another machine without a shared folder is not here, and the
        # trial then trains from scratch (more epochs, same outcome).
        resumed = bool(parent and initial > 0 and os.path.exists(parent))
        if resumed:
            model.load_weights(parent)
        else:
            initial = 0
        model.compile(make_optimizer(recipe.optimizer, sched.learning_rate),
                      loss_for(model, np.ndim(y) == 1), ["accuracy"])
        total = self.max_epochs if "tuner/epochs" in values else epochs
        lr_cb = keras.callbacks.LearningRateScheduler(lambda e, lr: sched.rate(e, total))
        hist = model.fit(x, y, batch_size=recipe.batch_size, epochs=epochs, initial_epoch=initial,
                         validation_data=self.validation, verbose=0,
                         callbacks=[lr_cb, keras.callbacks.TerminateOnNaN()])
        bad = _finite(hist.history)
        if bad:
            raise keras_tuner.errors.FailedTrialError(f"NaN/inf loss while training: {bad}; lower learning_rate")
        weights = os.path.join(folder, "trained.weights.h5")
        # The temporary name must end in .weights.h5 too: tf_keras picks the
        # weights format from the file name.
        model.save_weights(os.path.join(folder, "trained.tmp.weights.h5"))
        os.replace(os.path.join(folder, "trained.tmp.weights.h5"), weights)
        result = optimize(model, self.train, self.validation, recipe=recipe, verbose=0)
        for stage, h in result.history.items():
            bad = _finite(h)
            if bad:
                raise keras_tuner.errors.FailedTrialError(f"NaN/inf loss in {stage}: {bad}")
        accuracy = float(result.report.optimized["accuracy"])
        if not math.isfinite(accuracy):
            raise keras_tuner.errors.FailedTrialError("accuracy is NaN")
        compress_epochs = sum(s.get("epochs") or 0 for s in result.report.stages)
        train_seconds = time.perf_counter() - t0

        import tflite_export

        t1 = time.perf_counter()
        path = os.path.join(folder, "int8.tflite")
        with quiet_native_logs():
            exp = tflite_export.export(result.model, path, mode="int8", representative_data=x[:100],
                                       num_samples=min(100, len(x)))
            timing = tflite_export.benchmark(path, threads=self.threads, min_runs=self.timing_runs,
                                             min_seconds=self.timing_seconds, warmup_seconds=0.05)
        if not timing.ok:
            raise keras_tuner.errors.FailedTrialError(f"timing failed: {timing.status}")
        export_seconds = time.perf_counter() - t1
        rss, peak = _rss_mb()
        metrics = {
            "accuracy": accuracy,
            "size_kb": exp.zipped_bytes / 1024.0,
            "latency_ms": float(timing.median_ms),
            "epochs": float((epochs - initial) + compress_epochs),
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


def _child_main(conn):
    """Trial process: receive the payload, build a TrialContext once, then
    run trials on request until told to stop or the tuner goes away."""
    try:  # die with the tuner (SIGKILL included) instead of finishing a trial nobody waits for
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # pragma: no cover - not Linux
        pass
    from tfcompress.tuning.objectives import parse_constraint
    from tfcompress.tuning.space import SearchSpace

    try:
        payload = conn.recv()
    except EOFError:
        return
    ctx = TrialContext(
        payload["build_model"], SearchSpace(payload["space"]), Recipe.from_dict(payload["base_recipe"]),
        payload["objectives"], [parse_constraint(c) for c in payload["constraints"]], payload["epochs"],
        payload["max_epochs"], payload["train"], payload["validation"], payload["threads"],
        payload["timing_runs"], payload["timing_seconds"], payload["seed"], payload["tuner_id"],
        payload["penalty"])
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            conn.send(("ok", ctx.run(job)))
        except keras_tuner.errors.FailedTrialError as e:
            conn.send(("failed", str(e)))


class _ChildRunner:
    """Runs trials in a spawned process, replaced every ``trials_per_process``
    trials or once its RSS grew ``max_growth`` over its first trial's (TF
    leaks a little per model that ``clear_session`` does not give back)."""

    def __init__(self, payload, trials_per_process=8, max_growth=0.05):
        self.payload, self.per_process, self.max_growth = payload, trials_per_process, max_growth
        self.proc = self.conn = None
        self.count, self.first_rss = 0, None

    def _start(self):
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "tfcompress.tuning._child", str(theirs.fileno())],
                                         pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.count, self.first_rss = 0, None
        self.conn.send(self.payload)
        self._recv("starting the trial process")

    def _recv(self, what):
        while not self.conn.poll(0.5):
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.close()
                raise keras_tuner.errors.FailedTrialError(f"the trial process died while {what} (exit code {code})")
        try:
            return self.conn.recv()
        except EOFError:
            self.close()
            raise keras_tuner.errors.FailedTrialError(f"the trial process died while {what}") from None

    def run(self, job):
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()
        self.conn.send(job)
        status, value = self._recv(f"running trial {job['trial_id']}")
        self.count += 1
        if status != "ok":
            raise keras_tuner.errors.FailedTrialError(value)
        rss = value.get("rss_mb", 0)
        if self.first_rss is None:
            self.first_rss = rss
        if self.count >= self.per_process or rss > self.first_rss * (1 + self.max_growth):
            self.close()
        return value

    def close(self):
        if self.conn is not None:
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None


class CompressionTuner(base_tuner.BaseTuner):
    """Search training and compression schedules of a tf_keras model.

    Each trial: build the model, train it ``epochs`` epochs (Hyperband: its
    ``tuner/epochs``, continuing from the parent trial's saved weights) with
    the trial's optimizer, batch size and learning-rate decay; compress it
    with :func:`tfcompress.optimize` and the trial's recipe; export int8;
    measure zipped size and latency (``tflite_export.benchmark``, few runs);
    report ``accuracy`` (validation, compressed Keras model), ``size_kb``,
    ``latency_ms``, ``epochs`` spent and the oracle's ``score``.

    Trials run in a child process by default (``isolation="process"``),
    replaced every few trials, so memory cannot creep over a long search;
    ``isolation="session"`` runs them here, clearing the Keras session after
    each (faster start, but TensorFlow keeps a few MB per trial).

    Args:
        build_model: callable returning a fresh tf_keras model; picklable
            (a module-level function or :class:`~tfcompress.tuning.search.ModelBuilder`)
            for process isolation.
        space: a :class:`~tfcompress.tuning.SearchSpace`.
        algorithm: ``random``, ``bayesian`` or ``hyperband``. Defaults to
            `"random"`.
        max_trials: at most this many trials. Defaults to `10`.
        objectives: objective names; the first guides the oracle. Defaults to
            `None` (accuracy, size, latency).
        constraints: :class:`~tfcompress.tuning.Constraint` objects; broken
            ones lower the score. Defaults to `()`.
        base_recipe: recipe whose unsearched fields trials keep. Defaults to
            `None` (the default Recipe).
        epochs: training epochs per trial (not Hyperband). Defaults to `2`.
        max_epochs: Hyperband's largest epoch count. Defaults to `None`
            (``epochs``).
        epoch_budget: stop once this many epochs (training plus compression
            fine-tuning) were spent. Defaults to `None`.
        directory: where trials and the oracle live. Defaults to `"tune-out"`.
        project_name: sub-folder of ``directory``. Defaults to `"search"`.
        overwrite: start afresh instead of resuming. Defaults to `False`.
        seed: oracle and weight seed. Defaults to `0`.
        threads: XNNPACK threads for timing. Defaults to `1`.
        timing_runs: timed runs per trial. Defaults to `20`.
        timing_seconds: minimum timed seconds per trial. Defaults to `0.2`.
        isolation: ``"process"`` or ``"session"``. Defaults to `"process"`.
        trials_per_process: replace the trial process after this many
            trials. Defaults to `8`.
        on_trial_end: called with ``(tuner, trial, metrics, reason)``.
            Defaults to `None`.
        num_initial_points: Bayesian optimisation's random start (see
            :func:`make_oracle`). Defaults to `None`.
        penalty: score lost per unit of constraint violation. Defaults to
            `None` (``PENALTY`` of the algorithm: 1 for Bayesian
            optimisation, 10 otherwise; see
            :func:`~tfcompress.tuning.objectives.score`).

    Raises:
        TuningError: an unknown algorithm or isolation, or an unpicklable
            ``build_model`` with process isolation.

    Example:
        >>> tuner = CompressionTuner(ModelBuilder("digits_cnn"), SearchSpace.default(),  # doctest: +SKIP
        ...                          algorithm="hyperband", max_epochs=3, directory="out")
        >>> tuner.search((x, y), (x_val, y_val))  # doctest: +SKIP
    """

    def __init__(self, build_model, space, algorithm="random", max_trials=10, objectives=None, constraints=(),
                 base_recipe=None, epochs=2, max_epochs=None, epoch_budget=None, directory="tune-out",
                 project_name="search", overwrite=False, seed=0, threads=1, timing_runs=20,
                 timing_seconds=0.2, isolation="process", trials_per_process=8, on_trial_end=None,
                 num_initial_points=None, penalty=None):
        if isolation not in ("process", "session"):
            raise TuningError(f"isolation must be 'process' or 'session', got {isolation!r}.")
        if isolation == "process":
            import pickle

            try:
                pickle.dumps(build_model)
            except Exception:
                raise TuningError("build_model cannot be pickled, so trials cannot run in a child process: "
                                  "pass a module-level function, or isolation='session'.") from None
        self.build_model = build_model
        self.space = space
        self.objectives = parse_objectives(objectives)
        self.constraints = tuple(constraints)
        self.base_recipe = base_recipe or Recipe()
        self.epochs = int(epochs)
        self.max_epochs = int(max_epochs or epochs)
        self.threads, self.timing_runs, self.timing_seconds = threads, timing_runs, timing_seconds
        self.seed = seed
        self.isolation, self.trials_per_process = isolation, trials_per_process
        self.callback = on_trial_end
        key = str(algorithm).lower().replace("_", "").replace("-", "")
        self.penalty = float(penalty if penalty is not None else PENALTY.get(CANONICAL.get(key), 10.0))
        self._last = {}
        self._runner = None
        oracle = make_oracle(algorithm, space.hyperparameters(), max_trials=max_trials,
                             max_epochs=self.max_epochs, seed=seed, epoch_budget=epoch_budget,
                             num_initial_points=num_initial_points)
        super().__init__(oracle, hypermodel=None, directory=directory, project_name=project_name,
                         overwrite=overwrite)

    # --- persistence ------------------------------------------------------
    def save(self):
        if not self._is_worker():
            self.oracle.save()
        _atomic_json(self._get_tuner_fname(), self.get_state())

    def _weights_path(self, trial_id):
        return os.path.join(self.get_trial_dir(trial_id), "trained.weights.h5")

    def save_model(self, trial_id, model, step=0):
        """Save trained (uncompressed) weights for a trial, atomically (trials
        do this themselves; kept for the BaseTuner interface)."""
        path = self._weights_path(trial_id)
        tmp = path[: -len(".weights.h5")] + ".tmp.weights.h5"
        model.save_weights(tmp)
        os.replace(tmp, path)

    def load_model(self, trial):
        """The trial's trained float model (before compression); its int8
        file is ``int8.tflite`` in the trial folder."""
        model = self.build_model()
        model.load_weights(self._weights_path(trial.trial_id))
        return model

    # --- search -----------------------------------------------------------
    def search(self, train_data, validation_data, verbose=0):
        """Run trials until the oracle stops (or serve the oracle on the chief).

        Args:
            train_data: ``(x, y)`` numpy arrays.
            validation_data: ``(x, y)`` numpy arrays.
            verbose: Keras Tuner's own display (0: off; tfcompress prints one
                line per trial through ``on_trial_end``). Defaults to `0`.
        """
        if dist_utils.is_chief_oracle():
            self.oracle.verbose = verbose
            self.save()
            serve_oracle(self.oracle, os.environ["KERASTUNER_ORACLE_IP"], os.environ["KERASTUNER_ORACLE_PORT"])
            return
        ctx_args = dict(build_model=self.build_model, space=self.space.to_dict(),
                        base_recipe=self.base_recipe.to_dict(), objectives=self.objectives,
                        constraints=[str(c) for c in self.constraints], epochs=self.epochs,
                        max_epochs=self.max_epochs, train=tuple(train_data), validation=tuple(validation_data),
                        threads=self.threads, timing_runs=self.timing_runs, timing_seconds=self.timing_seconds,
                        seed=self.seed, tuner_id=self.tuner_id, penalty=self.penalty)
        if self.isolation == "process":
            self._runner = _ChildRunner(ctx_args, self.trials_per_process)
        else:
            self._runner = TrialContext(
                self.build_model, self.space, self.base_recipe, self.objectives, self.constraints, self.epochs,
                self.max_epochs, tuple(train_data), tuple(validation_data), self.threads, self.timing_runs,
                self.timing_seconds, self.seed, self.tuner_id, self.penalty)
        try:
            return super().search(train_data, validation_data, verbose=verbose)
        finally:
            if self.isolation == "process":
                self._runner.close()

    def on_trial_begin(self, trial):
        with open(os.path.join(self.project_dir, f"runs-{self.tuner_id}.log"), "a") as f:
            f.write(f"{trial.trial_id}\n")

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        metrics = self._last.get(trial.trial_id)
        reason = None if trial.status == "COMPLETED" else (failure_reason(trial.message) or trial.status)
        if reason is not None:
            atomic_write_json(os.path.join(self.get_trial_dir(trial.trial_id), "result.json"),
                              {"trial_id": trial.trial_id, "tuner_id": self.tuner_id, "status": trial.status,
                               "reason": reason, "values": trial.hyperparameters.values})
        if self.callback is not None:
            self.callback(self, trial, metrics, reason)

    def run_trial(self, trial, train_data, validation_data, **kwargs):
        """Train, compress, export and time one configuration.

        Returns:
            Metrics dict: ``score``, ``accuracy``, ``size_kb``, ``latency_ms``,
            ``epochs``, ``seconds``, ``train_seconds``, ``export_seconds``,
            ``rss_mb``, ``peak_rss_mb`` (of the process that ran it).

        Raises:
            keras_tuner.errors.FailedTrialError: with a one-line reason.
        """
        values = dict(trial.hyperparameters.values)
        parent = values.get("tuner/trial_id")
        job = {"trial_id": trial.trial_id, "values": values, "folder": self.get_trial_dir(trial.trial_id),
               "parent_weights": self._weights_path(parent) if parent is not None else None}
        metrics = self._runner.run(job)
        self._last[trial.trial_id] = metrics
        return metrics


def serve_oracle(oracle, host, port, poll_seconds=0.5):
    """Serve ``oracle`` over Keras Tuner's gRPC protocol until the search ends.

    Keras Tuner's own ``start_server`` polls every 20 s once the search is
    over; this one polls every ``poll_seconds`` and binds exactly ``host``.
    The protocol has no authentication: bind loopback unless every machine
    that can reach the port is trusted.

    Args:
        oracle: the chief's oracle.
        host: address to bind (``127.0.0.1`` by default in the CLI).
        port: TCP port.
        poll_seconds: how often to check for the end. Defaults to `0.5`.
    """
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    import ipaddress
    import sys

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        print(f"warning: the oracle listens on {host}:{port} without authentication: anyone who can reach "
              "this port can read the search and submit results. Use it only on a trusted network.",
              file=sys.stderr, flush=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise TuningError(f"cannot bind the oracle to {host}:{port}: choose another --port.")
    server.start()
    try:
        while True:
            time.sleep(poll_seconds)
            if servicer.stop_triggered and oracle_chief.exit_chief(oracle):
                break
    finally:
        server.stop(grace=1)
