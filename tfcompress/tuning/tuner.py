"""A Keras Tuner ``BaseTuner`` that trains, compresses, exports and times tf_keras models.

Keras Tuner 1.4.8 imports Keras 3, and its stock ``Tuner`` checks that the
hypermodel returns a Keras 3 model (keras-tuner #1039), so it rejects tf_keras
models. :class:`CompressionTuner` subclasses ``BaseTuner`` instead, which knows
nothing about Keras: its :meth:`~CompressionTuner.run_trial` hands each trial to
a :class:`~tfcompress.tuning.trial.TrialContext` (build the tf_keras model,
train it with the trial's schedule, compress it with :func:`tfcompress.optimize`,
export the int8 ``.tflite`` and time it), here or in a child process
(:class:`~tfcompress.tuning.runner.ChildRunner`). Everything else is Keras
Tuner's: the oracles (built in :mod:`tfcompress.tuning.oracle`), trial files,
``overwrite=False`` resume and the chief/worker gRPC mode.

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
import os

from tfcompress._defaults import TUNING_THREADS, TUNING_TIMING_RUNS, TUNING_TIMING_SECONDS
from tfcompress._model import save_weights
from tfcompress.errors import TuningError
from tfcompress.recipe import Recipe
from tfcompress.report import atomic_write_json
from tfcompress.tuning._keras_tuner import base_tuner, dist_utils
from tfcompress.tuning.algorithms import canonical_algorithm
from tfcompress.tuning.inputs import check_builder
from tfcompress.tuning.objectives import PENALTY, parse_objectives
from tfcompress.tuning.oracle import DEFAULT_SEED, atomic_json, make_oracle, serve_oracle
from tfcompress.tuning.oracle import ORACLES as ALGORITHMS
from tfcompress.tuning.runner import ChildRunner
from tfcompress.tuning.trial import TrialContext, failure_reason, stopped

# make_oracle, serve_oracle, failure_reason and ALGORITHMS (now oracle.ORACLES:
# canonical name -> oracle class) lived here before the oracle and the trial
# got modules of their own; still importable from here.
__all__ = ["CompressionTuner", "make_oracle", "ALGORITHMS", "failure_reason", "serve_oracle"]


class CompressionTuner(base_tuner.BaseTuner):
    """Search training and compression schedules of a tf_keras model.

    Each trial: build the model, train it ``epochs`` epochs (Hyperband: its
    ``tuner/epochs``, continuing from the parent trial's saved weights) with
    the trial's optimizer, batch size and learning-rate decay; compress it
    with :func:`tfcompress.optimize` and the trial's recipe; export int8;
    measure zipped size and latency (``tflite_export.benchmark``, few runs);
    report its quality (validation, compressed Keras model: ``accuracy`` for a
    classifier, else the task's headline metric, ``metric``), ``size_kb``,
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
            `None` (``metric``, size, latency).
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
        seed: oracle and weight seed (see
            :func:`~tfcompress.tuning.oracle.oracle_seed`); None is
            ``DEFAULT_SEED``. Defaults to `0`.
        threads: XNNPACK threads for timing. Defaults to `1`.
        timing_runs: timed runs per trial. Defaults to `20`.
        timing_seconds: minimum timed seconds per trial. Defaults to `0.2`.
        isolation: ``"process"`` or ``"session"``. Defaults to `"process"`.
        trials_per_process: replace the trial process after this many
            trials. Defaults to `8`.
        on_trial_end: called with ``(tuner, trial, metrics, reason)``.
            Defaults to `None`.
        on_progress: called with each stage and epoch line of a running
            trial (streamed from the trial process). Defaults to `None`.
        tensorboard: a log folder; each trial writes ``trial_<id>/`` (its
            stages, hyperparameters and metrics). Defaults to `None`.
        scale_compression: Hyperband trials below full fidelity run their
            compression stages on a matching share of the training data
            (:class:`~tfcompress.tuning.trial.TrialContext`). Defaults to `True`.
        num_initial_points: Bayesian optimisation's random start (see
            :func:`make_oracle`). Defaults to `None`.
        penalty: score lost per unit of constraint violation. Defaults to
            `None` (``PENALTY`` of the algorithm: 1 for Bayesian
            optimisation, 10 otherwise; see
            :func:`~tfcompress.tuning.objectives.score`).
        metric: the quality metric trials report: ``accuracy`` for a
            classifier, else the task's headline metric (``mae``, ``iou``;
            :func:`~tfcompress.tuning.inputs.quality_metric`). Defaults to `"accuracy"`.

    Raises:
        TuningError: an unknown algorithm or isolation, a seed that is not
            an int, or with process isolation a ``build_model`` that cannot
            be pickled or is defined in ``__main__`` (see
            :func:`~tfcompress.tuning.inputs.check_builder`).

    Example:
        >>> tuner = CompressionTuner(ModelBuilder("digits_cnn"), SearchSpace.default(),  # doctest: +SKIP
        ...                          algorithm="hyperband", max_epochs=3, directory="out")
        >>> tuner.search((x, y), (x_val, y_val))  # doctest: +SKIP
    """

    def __init__(self, build_model, space, algorithm="random", max_trials=10, objectives=None, constraints=(),
                 base_recipe=None, epochs=2, max_epochs=None, epoch_budget=None, directory="tune-out",
                 project_name="search", overwrite=False, seed=DEFAULT_SEED, threads=TUNING_THREADS,
                 timing_runs=TUNING_TIMING_RUNS, timing_seconds=TUNING_TIMING_SECONDS, isolation="process",
                 trials_per_process=8, on_trial_end=None, num_initial_points=None, penalty=None, strategy=None,
                 on_progress=None, tensorboard=None, metric="accuracy", scale_compression=True):
        if isolation not in ("process", "session"):
            raise TuningError(f"isolation must be 'process' or 'session', got {isolation!r}.")
        if isolation == "process":
            check_builder(build_model)  # picklable and importable by a child process, or why not
        algorithm = canonical_algorithm(algorithm)
        self.build_model = build_model
        self.space = space
        self.metric = metric
        self.objectives = parse_objectives(objectives, metric)
        self.constraints = tuple(constraints)
        self.base_recipe = base_recipe or Recipe()
        self.epochs = int(epochs)
        self.max_epochs = int(max_epochs or epochs)
        self.threads, self.timing_runs, self.timing_seconds = threads, timing_runs, timing_seconds
        self.seed = DEFAULT_SEED if seed is None else seed
        self.isolation, self.trials_per_process = isolation, trials_per_process
        self.callback = on_trial_end
        self.strategy = strategy  # a tf.distribute strategy name for each trial (tfcompress.distribute)
        self.on_progress = on_progress
        self.tensorboard = None if tensorboard is None else os.fspath(tensorboard)
        self.scale_compression = bool(scale_compression)  # Hyperband only: TrialContext.scale_compression
        self.penalty = float(penalty if penalty is not None else PENALTY[algorithm])
        self._last = {}
        self._runner = None
        oracle = make_oracle(algorithm, space.hyperparameters(), max_trials=max_trials,
                             max_epochs=self.max_epochs, seed=self.seed, epoch_budget=epoch_budget,
                             num_initial_points=num_initial_points)
        super().__init__(oracle, hypermodel=None, directory=directory, project_name=project_name,
                         overwrite=overwrite)

    # --- persistence ------------------------------------------------------
    def save(self):
        if not self._is_worker():
            self.oracle.save()
        atomic_json(self._get_tuner_fname(), self.get_state())

    def _weights_path(self, trial_id):
        return os.path.join(self.get_trial_dir(trial_id), "trained.weights.h5")

    def save_model(self, trial_id, model, step=0):
        """Save trained (uncompressed) weights for a trial, atomically (trials
        do this themselves; kept for the BaseTuner interface)."""
        save_weights(model, self._weights_path(trial_id))

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
        ctx = TrialContext(
            build_model=self.build_model, space=self.space, base_recipe=self.base_recipe, objectives=self.objectives,
            constraints=self.constraints, epochs=self.epochs, max_epochs=self.max_epochs, train=tuple(train_data),
            validation=tuple(validation_data), threads=self.threads, timing_runs=self.timing_runs,
            timing_seconds=self.timing_seconds, seed=self.seed, tuner_id=self.tuner_id, penalty=self.penalty,
            strategy=self.strategy, tensorboard=self.tensorboard, metric=self.metric,
            scale_compression=self.scale_compression)
        if self.isolation == "process":
            self._runner = ChildRunner(ctx.to_payload(), self.trials_per_process)
            self._runner.start()  # a child that cannot start fails the search here, not every trial
        else:
            self._runner = ctx
        try:
            return super().search(train_data, validation_data, verbose=verbose)
        finally:
            if self.isolation == "process":
                self._runner.close()
            else:  # trials froze what survived them (TrialContext.run): this process is the user's again
                gc.unfreeze()

    def on_trial_begin(self, trial):
        path = os.path.join(self.project_dir, f"runs-{self.tuner_id}.log")
        try:
            with open(path, "a") as f:
                f.write(f"{trial.trial_id}\n")
        except OSError as e:  # before the trial runs: it stays in oracle.json and runs on resume
            raise stopped(trial.trial_id, e) from None

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
            Metrics dict: ``score``, the quality metric (``accuracy``, ``mae``, ...), ``size_kb``, ``latency_ms``,
            ``epochs``, ``seconds``, ``train_seconds``, ``export_seconds``,
            ``rss_mb``, ``peak_rss_mb`` (of the process that ran it).

        Raises:
            FailedTrialError: (Keras Tuner's) with a one-line reason.
        """
        values = dict(trial.hyperparameters.values)
        parent = values.get("tuner/trial_id")
        job = {"trial_id": trial.trial_id, "values": values, "folder": self.get_trial_dir(trial.trial_id),
               "parent_weights": self._weights_path(parent) if parent is not None else None}
        metrics = self._runner.run(job, progress=self.on_progress)
        self._last[trial.trial_id] = metrics
        return metrics
