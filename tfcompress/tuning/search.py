"""``tune()``: run a search in a folder, then summarise it (table, Pareto set, plot, chosen recipe).

The folder keeps everything: ``search/`` (Keras Tuner's oracle and one ``trial_<id>/`` per trial,
with ``trial.json``, ``result.json``, ``trained.weights.h5`` and ``int8.tflite``), ``settings.json``
(what was searched; a restart with other settings is refused), and after the search ``trials.json``,
``trials.md``, ``pareto.png`` and ``best_recipe.yaml``. Each names the quality metric trials are
scored by: ``accuracy`` for a classifier, else the task's headline metric (``mae``, ``iou``, ...),
with its direction (``quality`` in ``settings.json`` and ``trials.json``).

Example:
    >>> from tfcompress.tuning import tune
    >>> result = tune("digits_cnn", "digits", max_trials=3, directory="tune-out")  # doctest: +SKIP
    >>> print(result.table())  # doctest: +SKIP
    >>> result.best["recipe"]  # doctest: +SKIP
"""

import glob
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfcompress._defaults import TUNING_THREADS, TUNING_TIMING_RUNS, TUNING_TIMING_SECONDS
from tfcompress.distribute import trial_strategy
from tfcompress.errors import TuningError, UnsupportedModelError
from tfcompress.io import ModelBuilder
from tfcompress.io import resolve_model as resolve_model_source
from tfcompress.recipe import Recipe
from tfcompress.report import atomic_write_json, atomic_write_text, ensure_dir, markdown_table, table
from tfcompress.tuning.algorithms import canonical_algorithm
from tfcompress.tuning.inputs import save_model_object, search_inputs
from tfcompress.tuning.objectives import (
    better,
    choose,
    direction,
    format_quality,
    parse_constraint,
    parse_objectives,
    quality_of,
)
from tfcompress.tuning.plots import save_pareto
from tfcompress.tuning.space import SearchSpace
from tfcompress.tuning.trial import failure_reason
from tflite_export.argtypes import MAX_THREADS

__all__ = ["tune", "TuneResult", "ModelBuilder", "load_results", "resolve_model", "format_params", "PROJECT"]

PROJECT = "search"
SETTINGS = "settings.json"
# Settings that must match to resume a search (max_trials and budgets may change).
_FIXED = ("space", "algorithm", "objectives", "constraints", "model", "dataset", "base_recipe",
          "epochs", "max_epochs", "train_subset")

_SHORT = {"learning_rate": "lr", "batch_size": "bs", "optimizer": "opt", "lr_decay": "decay",
          "decay_rate": "rate", "step_drop": "drop", "step_every": "every", "cosine_alpha": "alpha",
          "final_sparsity": "sparsity", "pruning_begin": "begin", "pruning_end": "end",
          "pruning_frequency": "freq", "pruning_epochs": "prune_ep", "qat_epochs": "qat_ep",
          "cluster_count": "clusters", "distill_alpha": "d_alpha", "distill_temperature": "d_temp",
          "tuner/epochs": "ep"}


def format_params(values):
    """Short ``k=v`` text of a trial's values (for progress lines and tables)."""
    out = []
    for k, v in values.items():
        if k.startswith("tuner/") and k != "tuner/epochs":
            continue
        if isinstance(v, float):
            v = f"{v:.2e}" if k == "learning_rate" else f"{v:.3g}"
        out.append(f"{_SHORT.get(k, k)}={v}")
    return " ".join(out)


def resolve_model(model, data=None):
    """``(build_fn, name, base_recipe)`` for a reference name, a model file or
    SavedModel folder, a ModelSpec, a :class:`~tfcompress.io.ModelBuilder` or
    a callable returning a tf_keras model, through the one resolver
    (:func:`tfcompress.io.resolve_model`). A file is loaded now, in safe mode,
    so a bad or unsafe file is refused before any trial starts; trials reload
    it with the same rules.

    Raises:
        UnsupportedModelError: an unknown name, a file that cannot be loaded,
            or a model object (trials need something that builds a fresh one).
    """
    source = resolve_model_source(model, input_shape=data.input_shape if data is not None else None,
                                  num_classes=data.num_classes if data is not None else 10)
    if source.kind == "object":
        raise UnsupportedModelError(
            f"tune needs to build a fresh model for every trial, got a {type(model).__name__}: pass a reference "
            "model name, a model file, or a module-level function returning a new model."
        )
    return source.build, source.name, source.spec.recipe() if source.spec is not None else None


@dataclass
class TuneResult:
    """Every trial of a search, the Pareto set and the chosen trial.

    Attributes:
        rows: one dict per trial: ``trial_id``, ``status``, ``values``,
            ``metrics`` (empty when failed), ``reason``, ``tuner_id``,
            ``feasible``.
        objectives: metric keys of the Pareto front.
        constraints: the constraints (strings).
        pareto: trial ids of the non-dominated feasible trials.
        best: the chosen row (best first objective in the Pareto set), or
            None when no trial meets the constraints.
        settings: what was searched (``settings.json``).
        metric: the quality metric, a key of each row's ``metrics``:
            ``accuracy`` for a classifier, else the task's headline metric
            (``mae``, ``iou``, ...), better lower or higher by its name.
    """

    rows: list
    objectives: list
    constraints: list
    pareto: list = field(default_factory=list)
    best: dict | None = None
    settings: dict = field(default_factory=dict)
    metric: str = "accuracy"

    @property
    def completed(self):
        return [r for r in self.rows if r["status"] == "COMPLETED"]

    @property
    def feasible(self):
        return [r for r in self.completed if r["feasible"]]

    def top(self, n=5):
        """The ``n`` best completed trials by the first objective (feasible first)."""
        first = self.objectives[0]
        sign = -1 if direction(first) == "max" else 1
        return sorted(self.completed, key=lambda r: (not r["feasible"], sign * r["metrics"][first]))[:n]

    def recipe(self, row=None):
        """The :class:`~tfcompress.Recipe` of a row (default: the best)."""
        row = row or self.best
        if row is None:
            return None
        return Recipe.from_dict(row["recipe"])

    def _table_rows(self, rows):
        out = []
        for r in rows:
            m = r["metrics"]
            mark = "*" if r["trial_id"] in self.pareto else ""
            if r["status"] == "COMPLETED":
                out.append([r["trial_id"] + mark, r.get("tuner_id") or "", "ok" if r["feasible"] else "infeasible",
                            format_quality(self.metric, m[self.metric]), f"{m['size_kb']:.1f}",
                            f"{m['latency_ms']:.3g}",
                            f"{m.get('epochs', 0):.3g}", f"{m.get('seconds', 0):.1f}", format_params(r["values"])])
            else:
                out.append([r["trial_id"], r.get("tuner_id") or "", f"FAILED: {r['reason']}"[:80], None, None,
                            None, None, None, format_params(r["values"])])
        return out

    HEADERS = ["trial", "worker", "status", "accuracy", "size KB", "latency ms", "epochs", "seconds", "params"]

    @property
    def headers(self):
        """The table's column names, the quality column named by the metric."""
        return [self.metric if h == "accuracy" else h for h in self.HEADERS]

    def table(self, rows=None):
        """Plain-text table of the trials; ``*`` marks the Pareto set."""
        return table(self.headers, self._table_rows(self.rows if rows is None else rows))

    def to_markdown(self):
        lines = ["# Tuning results", "",
                 f"Objectives (Pareto): {', '.join(self.objectives)}; constraints: "
                 f"{', '.join(self.constraints) or 'none'}; `*` marks the Pareto set.", "",
                 markdown_table(self.headers, self._table_rows(self.rows)), ""]
        if self.metric != "accuracy":
            lines[2:2] = [f"Quality metric: {self.metric} ({better(self.metric)} is better).", ""]
        if self.best:
            lines += [f"Chosen: trial {self.best['trial_id']} (best {self.objectives[0]} in the Pareto set).", ""]
        else:
            lines += ["No trial meets the constraints.", ""]
        return "\n".join(lines)

    def to_dict(self):
        return {"settings": self.settings, "objectives": self.objectives, "constraints": self.constraints,
                "quality": quality_of(self.metric), "pareto": self.pareto,
                "best": self.best and self.best["trial_id"], "trials": self.rows}

    def write(self, directory):
        """Write ``trials.json``, ``trials.md``, ``pareto.png`` and (when a
        trial meets the constraints) ``best_recipe.yaml`` to ``directory``.

        Returns:
            Dict of what was written: name → path.
        """
        out = {"json": os.path.join(directory, "trials.json"), "markdown": os.path.join(directory, "trials.md")}
        atomic_write_json(out["json"], self.to_dict())
        atomic_write_text(out["markdown"], self.to_markdown())
        try:
            out["plot"] = os.path.join(directory, "pareto.png")
            if plot(self, out["plot"]) is None:  # no trial completed: no picture
                out.pop("plot")
        except Exception as e:  # a plot is a nicety; never lose the results over it
            out.pop("plot")
            out["plot_error"] = str(e)
        if self.best is not None:
            out["recipe"] = os.path.join(directory, "best_recipe.yaml")
            atomic_write_text(out["recipe"], self.recipe_yaml())
        return out

    def recipe_yaml(self):
        """The chosen trial's recipe as YAML for ``tfcompress optimize --recipe``:
        complete (its ``train`` stage, schedule, optimizer and seed included),
        so ``tfcompress optimize`` on a freshly built model repeats the trial;
        the comments only say where it came from."""
        b = self.best
        m = b["metrics"]
        head = [f"# Chosen by `tfcompress tune`: trial {b['trial_id']} of {len(self.rows)}.",
                f"# {self.metric} {m[self.metric]:.4{'f' if self.metric == 'accuracy' else 'g'}}, "
                f"int8 zipped {m['size_kb']:.1f} KB, latency {m['latency_ms']:.4g} ms.",
                f"# constraints: {', '.join(self.constraints) or 'none'}"]
        share = b.get("compression_share", 1.0)  # the recipe is always the full one: what optimize --recipe runs
        head.append("# full fidelity: every stage ran on all the training data." if share >= 1.0 else f"# NOT full "
                    f"fidelity: compression ran on {share:.0%} of the training data; this recipe runs it on all.")
        return "\n".join(head) + "\n" + self.recipe().to_yaml()


def plot(result, path):
    """The quality metric vs size and vs latency (:mod:`tfcompress.tuning.plots`); None when no trial completed."""
    return save_pareto(result, path)


def load_results(directory):
    """Read a search folder (finished, interrupted or running) into a :class:`TuneResult`.

    Raises:
        TuningError: the folder holds no tfcompress search.
    """
    settings_path = os.path.join(directory, SETTINGS)
    if not os.path.exists(settings_path):
        raise TuningError(f"{directory} holds no tfcompress search ({SETTINGS} missing).")
    with open(settings_path, encoding="utf-8") as f:
        settings = json.load(f)
    objectives = settings["objectives"]
    metric = (settings.get("quality") or {}).get("metric", "accuracy")  # searches before it was recorded: accuracy
    constraints = [parse_constraint(c, metric) for c in settings["constraints"]]
    space = SearchSpace(settings["space"])
    base = Recipe.from_dict(settings["base_recipe"])
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, PROJECT, "trial_*", "trial.json"))):
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        folder = os.path.dirname(path)
        extra = {}
        if os.path.exists(os.path.join(folder, "result.json")):
            with open(os.path.join(folder, "result.json"), encoding="utf-8") as f:
                extra = json.load(f)
        values = state["hyperparameters"]["values"]
        metrics = {}
        for name, mh in state["metrics"]["metrics"].items():
            obs = mh.get("observations") or []
            if obs:
                metrics[name] = float(obs[-1]["value"][-1])
        status = state["status"]
        if status == "COMPLETED" and not all(k in metrics for k in (metric, "size_kb", "latency_ms")):
            status = "FAILED"
        if status in ("RUNNING", "IDLE"):
            continue  # not finished (killed, or still running elsewhere)
        reason = None
        if status != "COMPLETED":
            reason = failure_reason(state.get("message")) or extra.get("reason") or status
            metrics = {}
        try:  # a completed trial wrote the recipe it ran (train stage and seed included)
            recipe = extra.get("recipe") or space.recipe(values, base).to_dict()
        except Exception:  # an invalid combination fails its trial; keep the row
            recipe = None
        rows.append({
            "trial_id": state["trial_id"], "status": status, "values": values, "metrics": metrics,
            "reason": reason, "tuner_id": extra.get("tuner_id"), "recipe": recipe,
            "compression_share": extra.get("compression_share", 1.0),
            "feasible": status == "COMPLETED" and all(c.ok(metrics) for c in constraints),
        })
    result = TuneResult(rows=rows, objectives=objectives, constraints=[str(c) for c in constraints],
                        settings=settings, metric=metric)
    result.pareto, result.best = choose(result.feasible, objectives)
    return result


def _check_settings(directory, settings, overwrite):
    path = os.path.join(directory, SETTINGS)
    project = os.path.join(directory, PROJECT)
    if overwrite or not os.path.exists(project):
        return
    if not os.path.exists(path) and not glob.glob(os.path.join(project, "*")):
        return  # a start that could not write its settings (a full disk): no search there yet
    if not os.path.exists(path):
        raise TuningError(f"{directory} holds files that are not a tfcompress search ({SETTINGS} missing): "
                          "use another --dir or --overwrite.")
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    diff = [k for k in _FIXED if json.dumps(old.get(k), sort_keys=True) != json.dumps(settings.get(k), sort_keys=True)]
    if diff:
        if "space" in diff:
            o, n = old.get("space") or {}, settings["space"]
            names = sorted(k for k in set(o) | set(n) if o.get(k) != n.get(k))
            why = f"the search space differs ({', '.join(names)})"
        else:
            why = "; ".join(f"{k} was {old.get(k)!r}, now {settings.get(k)!r}" for k in diff)
        raise TuningError(f"refusing to resume the search in {directory}: {why}. Use the same settings, "
                          "another --dir, or --overwrite to start afresh.")


def _as_space(space, base: Recipe) -> SearchSpace:
    """A search space from what ``tune(space=...)`` takes (None: the default for ``base``)."""
    if space is None:
        return SearchSpace.default(base)
    if isinstance(space, dict):
        return SearchSpace(space)
    if isinstance(space, (str, os.PathLike)):
        return SearchSpace.from_yaml(space)
    return space


def tune(model: Any, data: Any, *, space: SearchSpace | dict | str | os.PathLike | None = None,
         algorithm: str = "random", max_trials: int = 10, objectives: str | Sequence[str] | None = None,
         constraints: Sequence[str] = (), recipe: Recipe | dict | str | os.PathLike | None = None, epochs: int = 2,
         max_epochs: int | None = None, epoch_budget: int | None = None, directory: str | os.PathLike = "tune-out",
         overwrite: bool = False, seed: int = 0, threads: int = TUNING_THREADS, timing_runs: int = TUNING_TIMING_RUNS,
         timing_seconds: float = TUNING_TIMING_SECONDS, train_subset: int | None = None,
         progress: Callable[[str], None] | None = None, validate_only: bool = False, isolation: str = "process",
         num_initial_points: int | None = None, strategy: Any = None, scale: Any = "auto", from_scratch: bool = False,
         tensorboard: str | os.PathLike | None = None, safe_mode: bool = True,
         scale_compression: bool = True) -> TuneResult | None:
    """Search training and compression settings, then summarise and write the results.

    In a Keras Tuner chief process (``KERASTUNER_TUNER_ID=chief``) this serves
    the oracle until the workers finish; in a worker it runs trials and
    returns None. Otherwise it runs the trials itself.

    Args:
        model: everything :func:`tfcompress.optimize` takes: a reference
            model name (``digits_cnn``, ``lenet5``, trained from scratch), a
            ``.keras``/``.h5`` file or SavedModel folder of tf_keras or Keras
            3, or a model object (trials fine-tune its weights; an object is
            saved as ``model.keras`` in the search folder), a ModelSpec, a
            function returning a model or a ``"module:function"`` reference to
            one (with process isolation it must be importable by a child
            process: not defined in your script).
        data: a :class:`tfcompress.datasets.Dataset`, a built-in name, a
            ``.npz`` file, an image folder, ``(x, y)`` arrays or a
            ``tf.data.Dataset``; checked against the model once, before the
            first trial.
        space: a :class:`SearchSpace`, a dict, a YAML path, or None for
            :meth:`SearchSpace.default`. Defaults to `None`.
        algorithm: ``random``, ``bayesian`` or ``hyperband``. Defaults to `"random"`.
        max_trials: at most this many trials. Defaults to `10`.
        objectives: names among the model's metric (``accuracy`` for a
            classifier, else its headline metric by name, e.g. ``mae``, or
            ``metric`` for either), size, latency; the first guides the
            oracle, all of them define the Pareto front. Defaults to `None` (all three).
        constraints: strings like ``"size_kb<=20"`` or ``"mae<=0.3"``. Defaults to `()`.
        recipe: base recipe (YAML path, dict or Recipe) for unsearched
            fields. Defaults to `None` (the model's default recipe).
        epochs: training epochs per trial (Hyperband: ``max_epochs``). Defaults to `2`.
        max_epochs: Hyperband's largest epoch count. Defaults to `None` (``epochs``).
        epoch_budget: stop once this many epochs were spent. Defaults to `None`.
        directory: the search folder. Defaults to `"tune-out"`.
        overwrite: discard an earlier search there. Defaults to `False`.
        seed: seed. Defaults to `0`.
        threads: XNNPACK threads for timing: one, unlike ``run_job``, so trials timed at once by
            several workers do not contend for cores. Defaults to `1`.
        timing_runs: minimum timed runs per trial (``min_runs`` of :func:`tflite_export.benchmark`):
            fewer than ``run_job``'s, as a search only ranks its files. Defaults to `20`.
        timing_seconds: minimum timed seconds per trial. Defaults to `0.2`.
        train_subset: use only the first N training examples. Defaults to `None`.
        progress: called with each progress line: a line per trial, and
            while a trial runs its stage and epoch lines. Defaults to `None`
            (silent).
        validate_only: check the arguments and the folder and write the
            settings (with ``overwrite``: clear the old search), run no trial;
            what ``tfcompress tune --workers`` does before starting processes.
            Defaults to `False`.
        isolation: ``"process"`` runs trials in a child process replaced
            every few trials (no memory creep); ``"session"`` runs them here.
            Defaults to `"process"`.
        num_initial_points: Bayesian optimisation's random trials before
            its model takes over. Defaults to `None` (``max(3, max_trials // 4)``).
        strategy: each trial trains and fine-tunes under this
            ``tf.distribute`` strategy: ``"mirrored"`` (the GPUs its process
            sees) or ``"default"``; trials spread over machines with
            chief/worker processes instead. Defaults to `None` (one replica).
        scale: input scaling for data read here (see
            :func:`tfcompress.datasets.from_arrays`). Defaults to `"auto"`.
        from_scratch: trials start a model file or object from fresh
            random weights instead of fine-tuning its own. Defaults to `False`.
        tensorboard: a folder for TensorBoard: ``trial_<id>/`` per trial with its stages (loss, accuracy,
            learning rate, sparsity) and its hyperparameters and metrics for the HParams dashboard. Defaults to `None`.
        safe_mode: refuse a model file with ``Lambda`` layers (their code would run), as :func:`tfcompress.load_model`
            does; ``tfcompress tune --unsafe`` is ``safe_mode=False``. Defaults to `True`.
        scale_compression: Hyperband: a trial of ``tuner/epochs`` ``e`` compresses on a seeded ``e / max_epochs``
            of the training data, counted so in its ``epochs``; full-fidelity trials (chosen first) on all of it
            (``--no-scale-compression``: off; :class:`~tfcompress.tuning.trial.TrialContext`). Defaults to `True`.

    Returns:
        A :class:`TuneResult` (None in a worker).

    Raises:
        TuningError: bad space, objective, constraint (``accuracy`` for a
            model scored by another metric), algorithm, a folder holding a
            search with other settings, or a builder trial processes cannot import.
        DataError: data that does not fit the model (checked once, before
            any trial and before the folder is touched).

    Example:
        >>> r = tune("digits_cnn", "digits", max_trials=2, epochs=1,  # doctest: +SKIP
        ...          constraints=["size_kb<=30"], directory="out")
        >>> r.best["trial_id"] in r.pareto  # doctest: +SKIP
        True
    """
    from keras_tuner.src.distribute import utils as dist_utils

    from tfcompress.optimize import as_recipe
    from tfcompress.tuning.tuner import CompressionTuner

    # Checked before any work: a bad count used to surface after every trial ("no trial completed").
    for name, value, optional, most in (
        ("max_trials", max_trials, False, None), ("epochs", epochs, False, None),
        ("max_epochs", max_epochs, True, None), ("epoch_budget", epoch_budget, True, None),
        ("train_subset", train_subset, True, None), ("timing_runs", timing_runs, False, None),
        ("threads", threads, False, MAX_THREADS),
    ):
        if optional and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1 or (most and value > most):
            allowed = f"a whole number in 1..{most}" if most else "a positive integer"
            raise TuningError(f"{name} must be {allowed}{' or None' if optional else ''}, got {value!r}.")
    strategy = trial_strategy(strategy)
    inputs = search_inputs(model, data, scale=scale, seed=seed, from_scratch=from_scratch, train_subset=train_subset,
                           isolation=isolation, safe_mode=safe_mode)  # the model/data fit is checked here, once
    metric = inputs.metric  # the quality objective: accuracy, or the task's headline metric (mae, iou, ...)
    objectives = parse_objectives(objectives, metric)
    if isinstance(constraints, str):
        constraints = [constraints]
    constraints = [parse_constraint(c, metric) for c in (constraints or ())]
    data = inputs.data
    base = as_recipe(recipe) if recipe is not None else (inputs.default_recipe or Recipe())
    searched = _as_space(space, base)
    algorithm = canonical_algorithm(algorithm)  # an unknown one fails before the folder is touched
    train, val = inputs.train, inputs.validation
    settings = {
        "space": searched.to_dict(), "algorithm": algorithm, "objectives": objectives,
        "constraints": [str(c) for c in constraints], "model": inputs.name, "dataset": data.name,
        "base_recipe": base.to_dict(), "epochs": epochs, "max_epochs": max_epochs or epochs,
        "train_subset": train_subset, "max_trials": max_trials, "epoch_budget": epoch_budget,
        "data": data.info(), "from_scratch": bool(from_scratch), "quality": quality_of(metric),
        "scale_compression": bool(scale_compression),
    }
    worker = dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle()
    ensure_dir(directory)
    if not worker:
        _check_settings(directory, settings, overwrite)
    if validate_only:
        if not worker:  # a launcher: the chief and workers it starts find the settings in place
            if overwrite:
                import shutil

                shutil.rmtree(os.path.join(directory, PROJECT), ignore_errors=True)
            atomic_write_json(os.path.join(directory, SETTINGS), settings)
        return None

    def on_end(tuner, trial, metrics, reason):
        if progress is None:
            return
        who = tuner.tuner_id
        params = format_params(trial.hyperparameters.values)
        if reason is None and metrics:
            q = f"acc {metrics['accuracy']:.2%}" if metric == "accuracy" else f"{metric} {metrics[metric]:.4g}"
            progress(f"trial {trial.trial_id} [{who}] {q}  size {metrics['size_kb']:.1f} KB"
                     f"  latency {metrics['latency_ms']:.3g} ms  {metrics['seconds']:.1f} s  | {params}")
        else:
            progress(f"trial {trial.trial_id} [{who}] FAILED: {reason}  | {params}")

    build = save_model_object(inputs, directory)  # a model object is saved for the trials to load
    if progress is not None and not worker:
        progress(f"data: {data.describe()}")
    tuner = CompressionTuner(
        build, searched, algorithm=algorithm, max_trials=max_trials, objectives=objectives,
        constraints=constraints, base_recipe=base, epochs=epochs, max_epochs=max_epochs or epochs,
        epoch_budget=epoch_budget, directory=directory, project_name=PROJECT, overwrite=overwrite and not worker,
        seed=seed, threads=threads, timing_runs=timing_runs, timing_seconds=timing_seconds, isolation=isolation,
        on_trial_end=on_end, num_initial_points=num_initial_points, strategy=strategy, on_progress=progress,
        tensorboard=tensorboard, metric=metric, scale_compression=scale_compression)
    if not worker:
        atomic_write_json(os.path.join(directory, SETTINGS), settings)
    tuner.search(train, val)
    if worker:
        return None
    result = load_results(directory)
    result.write(directory)
    return result
