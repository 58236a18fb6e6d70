"""The main job: train (if needed), optimize, export float32 and int8, evaluate
both files with LiteRT, time them on XNNPACK, and write a report.

``tfcompress demo`` and ``tfcompress optimize`` both run :func:`run_job`.

Example:
    >>> from tfcompress import datasets, models
    >>> from tfcompress.pipeline import run_job
    >>> spec = models.get("digits_cnn")
    >>> job = run_job(spec.build(), datasets.load("digits"), recipe=spec.recipe(),  # doctest: +SKIP
    ...               out="out", train_epochs=spec.epochs)
    >>> print(job.table())  # doctest: +SKIP
"""

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import tflite_export
from tfcompress import leftovers, techniques
from tfcompress._checks import check_int, check_positive
from tfcompress._data import check_splits, prepare
from tfcompress._defaults import BATCH_SIZE, LEARNING_RATE, TIMING_RUNS, TIMING_SECONDS, TIMING_THREADS
from tfcompress._filenotes import (
    budget_slower,
    main_slower,
    misnamed,
    none_faster,
    slower_than_float,
    stored_weights,
    unlike_keras,
    worse_than_float,
)
from tfcompress._keras import quiet_native_logs
from tfcompress._nested import count, take
from tfcompress._version import __version__
from tfcompress.distill import fine_tune
from tfcompress.errors import DataError, OutputError
from tfcompress.optimize import RecipeLike, as_recipe, optimize
from tfcompress.quantization import nbit
from tfcompress.report import atomic_write_json, atomic_write_text, ensure_dir, markdown_table, table
from tfcompress.target.fast import TOLERANCE, float_model
from tfcompress.target.shipped import check_shipped, main_file
from tfcompress.task import compile_config_of, task_for
from tfcompress.training import make_optimizer
from tflite_export._atomic import save_figure
from tflite_export.mixed import export_mixed

__all__ = ["run_job", "JobReport", "COLUMNS", "OUTPUTS", "train_baseline", "report_figure", "slower_than_float",
           "worse_than_float", "none_faster", "main_slower"]

# Summary-table header -> key in each row of report.json["files"].
COLUMNS = {
    "file": "name",
    "accuracy": "accuracy",
    "size KB": "size_kb",
    "zipped KB": "zipped_kb",
    "compression": "compression_ratio",
    "median ms": "median_ms",
    "agreement": "agreement",
}


@dataclass
class JobReport:
    """Everything one job measured; ``to_dict()`` is what report.json holds."""

    model: str
    dataset: str
    recipe: dict
    threads: int
    timing_runs: int = TIMING_RUNS  # the least timed runs per file (after warm-up)
    files: list = field(default_factory=list)
    optimize: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    version: str = __version__
    data: dict = field(default_factory=dict)  # the Dataset's info(): source, splits, scaling
    notes: list = field(default_factory=list)  # what the reader must know, e.g. a file slower than float32
    lead: list = field(default_factory=list)  # the notes said first, under the title: a budget not met, no file faster
    metric: str = "accuracy"  # the task's headline metric; "accuracy" for classifiers
    own_metric: str | None = None  # a classifier compiled with another metric (AUC, ...): scored per file too
    outputs: list = field(default_factory=list)  # every file of the run in its folder, report.json included

    def columns(self):
        """Summary-table header -> row key: a classifier's accuracy, or the task's own metric
        (``score``) and the outputs' closeness to Keras's (``agreement``) for any other model."""
        if self.metric == "accuracy":
            if not self.own_metric:
                return COLUMNS
            cols = list(COLUMNS.items())
            return dict([*cols[:2], (self.own_metric, "score"), *cols[2:]])
        return {(self.metric if k == "accuracy" else k): ("score" if v == "accuracy" else v)
                for k, v in COLUMNS.items()}

    def to_dict(self):
        return {
            "tfcompress_version": self.version, "model": self.model, "dataset": self.dataset,
            "threads": self.threads, "recipe": self.recipe, "files": self.files,
            "optimize": self.optimize, "timings": self.timings, "seconds": self.seconds,
            "columns": self.columns(), "data": self.data, "notes": self.notes, "lead": self.lead,
            "metric": self.metric, "own_metric": self.own_metric,
            "outputs": self.outputs,
        }

    def _rows(self):
        out = []
        for f in self.files:
            row = []
            for key in self.columns().values():
                v = f.get(key)
                if key in ("accuracy", "agreement") and v is not None:
                    v = f"{v:.2%}"
                elif key == "score" and v is not None:
                    v = f"{v:.4g}"
                elif key == "compression_ratio" and v is not None:
                    v = f"{v:.1f}x"
                elif isinstance(v, float):
                    v = f"{v:.3g}" if key == "median_ms" else f"{v:.1f}"
                row.append(v)
            out.append(row)
        return out

    def table(self):
        return table(list(self.columns()), self._rows())

    def to_markdown(self, optimize_md=""):
        lines = [
            f"# tfcompress report: `{self.model}` on {self.dataset}", "",
            *[f"**{n}**\n" for n in self.lead],
            f"tfcompress {self.version}; timings on XNNPACK, {self.threads} thread(s), "
            f"median of ≥{self.timing_runs} runs after warm-up.", "",
            *([f"Data: {self.data['source']}, {self.data['scaling']}.", ""] if self.data.get("scaling") else []),
            markdown_table(list(self.columns()), self._rows()), "",
            "Compression is the float32 file's zipped size divided by each file's zipped size.",
            *([] if self.metric == "accuracy" else [
                f"{self.metric} is the model's own metric on the test split, computed by Keras from each "
                "file's outputs; agreement is 1 - |file - Keras| / |Keras| over every output value (how close "
                "each file's outputs are to its Keras model's)."]), "",
        ]
        rest = [n for n in self.notes if n not in self.lead]
        if rest:
            lines += ["## Notes", "", *[f"- {n}" for n in rest], ""]
        if optimize_md:
            lines += ["## Optimization", "", optimize_md]
        return "\n".join(lines)


def _say(msg, quiet):
    if not quiet:
        print(msg, flush=True)


def train_baseline(model, data, epochs, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE, verbose=2, task=None):
    """Train a freshly built model on ``data.train`` with its task's loss and metrics.

    The data goes through :func:`tfcompress._data.prepare`, like every other
    entry point: NaN/Inf, label range and form are checked before training;
    an inferred classification loss follows the labels' form (class ids or
    one-hot rows).

    Example:
        >>> train_baseline(spec.build(), datasets.load("digits"), epochs=1)  # doctest: +SKIP
    """
    task = task or task_for(model, compiled=compile_config_of(model))
    train = prepare(data.train, model, batch_size, shuffle=True, what="train_data",
                    sparse_labels=task.sparse_labels, classifier=task.classifier)
    if task.source == "inferred":
        task = task_for(model, sparse_labels=train.sparse_labels)
    val = None
    if data.validation is not None and len(data.validation[0]):
        val = prepare(data.validation, model, batch_size, what="validation_data",
                      sparse_labels=train.sparse_labels, classifier=task.classifier).dataset
    fine_tune(model, train.dataset, epochs, optimizer=make_optimizer("adam", learning_rate), **task.compile_args(),
              validation_data=val, verbose=verbose)
    return model


def report_figure(rep):
    """The report's picture: zipped size, latency and accuracy of each file, side by side.

    The title names the model, the dataset and the timing threads. The
    accuracy axis runs from 0 to 100 % so a small drop looks small; the exact
    values (two decimals) are written on the bars.

    Args:
        rep: a :class:`JobReport` with its ``files`` filled in.

    Returns:
        A ``matplotlib.figure.Figure`` (not saved, not closed).

    Example:
        >>> fig = report_figure(job)  # doctest: +SKIP
        >>> fig.axes[2].get_ylim()  # doctest: +SKIP
        (0.0, 1.0)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = rep.files
    names = [f["name"] for f in files]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    metric = getattr(rep, "metric", "accuracy")
    panels = (("zipped_kb", "zipped size (KB)", "{:.3g}"), ("median_ms", "median latency (ms)", "{:.3g}"),
              ("accuracy", "test accuracy (axis from 0)", "{:.2%}") if metric == "accuracy" else
              ("score", f"test {metric}", "{:.4g}"))
    for ax, (key, label, fmt) in zip(axes, panels):
        vals = [f.get(key) or 0 for f in files]
        ax.bar(names, vals, color=["#888888", "#2a7ab0"][: len(vals)])
        ax.set_title(label, fontsize=10)
        top = 1.0 if key == "accuracy" else max(vals + [0]) or 1.0
        ax.set_ylim(0, top * 1.15)  # room for the value labels inside the axes
        if key == "accuracy":
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        for i, v in enumerate(vals):
            ax.text(i, v, fmt.format(v), ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"{rep.model} on {rep.dataset}: float32 vs int8 (LiteRT, XNNPACK, {rep.threads} thread(s))",
                 fontsize=11)
    fig.tight_layout()
    return fig


def _plot(path, rep):
    save_figure(report_figure(rep), path, dpi=100)


def _int8_source(optimized, recipe):
    """What int8.tflite is exported from: a model trained with 4- or 2-bit weights converts to int4 tensors (that is
    int4.tflite), so its int8 file holds the same grid values in int8 tensors, from a float copy (target/fast.py);
    a model that copy cannot rebuild keeps the int4 tensors, and the report's notes say so (_filenotes.misnamed)."""
    q = recipe.quantization
    if q is None or q.weights not in nbit.BITS:
        return optimized
    try:
        return float_model(optimized, snap=True)
    except Exception:  # noqa: BLE001 - the int4-holding file is written and named for what it holds in the notes
        return optimized


def _export_both(model, optimized, out, rep_x, meta):
    return {
        "float32": tflite_export.export(model, os.path.join(out, "float32.tflite"), mode="float32",
                                        metadata={**meta, "recipe": None}),
        "int8": tflite_export.export(optimized, os.path.join(out, "int8.tflite"), mode="int8",
                                     representative_data=rep_x, num_samples=200, metadata=meta),
    }


def run_job(model: Any, data: Any, *, recipe: RecipeLike = None, out: str | os.PathLike = "tfcompress-out",
            train_epochs: int | None = None, threads: int = TIMING_THREADS, batch_size: int | None = None,
            learning_rate: float | None = None, epochs: int | None = None, quiet: bool = False,
            verbose: int | str | None = None, timing_runs: int = TIMING_RUNS, timing_seconds: float = TIMING_SECONDS,
            strategy: Any = None, tensorboard: str | os.PathLike | None = None,
            target: str | None = None, minimize: str | None = None, loss: Any = None, metrics: Any = None,
            loss_weights: Any = None, check_baseline: bool | None = None) -> JobReport:
    """Run the main job on ``data`` and write report.json / report.md / report.png.

    Args:
        model: a tf_keras model; trained first when ``train_epochs`` is given.
        data: a :class:`tfcompress.datasets.Dataset`.
        recipe: recipe for :func:`tfcompress.optimize`. Defaults to the default recipe.
        out: output folder (created). Defaults to `"tfcompress-out"`.
        train_epochs: train the model this many epochs first. Defaults to `None`.
        threads: XNNPACK threads for timing. Defaults to `2`.
        batch_size: baseline training batch size. Defaults to `None` (the recipe's ``batch_size``,
            so the baseline trains like the recipe's train stage would).
        learning_rate: baseline training learning rate. Defaults to `None` (the recipe's).
        epochs: overrides every recipe stage's epochs. Defaults to `None`.
        quiet: print nothing. Defaults to `False`.
        verbose: Keras verbosity (None: progress bars on a terminal).
        timing_runs: minimum timed runs per file (``min_runs`` of :func:`tflite_export.benchmark`, which
            times it). Defaults to `50`.
        timing_seconds: minimum timed seconds per file (its ``min_seconds``). Defaults to `1.0`.
        strategy: the ``tf.distribute`` strategy of the fine-tuning (see
            :func:`tfcompress.optimize`). Defaults to `None`.
        tensorboard: TensorBoard log folder of the optimization (one
            subfolder per stage, see :func:`tfcompress.optimize`). Defaults
            to `None`.
        target: budget mode (``"drop<=1.0"``, ``"size<=40KB"``, ``"latency<=2ms"``): the recipe is
            planned per layer and only gives the training settings; the plan is saved as
            ``plan.yaml`` in ``out`` (see :func:`tfcompress.optimize`). Defaults to `None`.
        minimize: under a drop budget, ``"size"`` or ``"latency"``. Defaults to `None`.
        loss, metrics, loss_weights: the task (see :func:`tfcompress.optimize`); a model
            that is not a classifier is scored in its own metric, file by file. Default
            to `None` (the model's compile; inferred for a classifier).
        check_baseline: see :func:`tfcompress.optimize`. Defaults to `None` (warn).

    Returns:
        A :class:`JobReport`.
    """
    recipe = as_recipe(recipe)
    batch_size = recipe.batch_size if batch_size is None else batch_size
    learning_rate = recipe.learning_rate if learning_rate is None else learning_rate
    _check_job_args(threads, train_epochs, epochs, batch_size, learning_rate, timing_runs, timing_seconds)
    ensure_dir(out)
    _sweep(out, quiet)
    if verbose is None:
        verbose = 0 if quiet else (1 if sys.stdout.isatty() else 2)
    x_test, y_test = data.test
    if count(x_test) == 0:
        raise DataError(f"dataset {data.name} has an empty test split.")
    task = task_for(model, loss, metrics, loss_weights, compiled=compile_config_of(model))
    check_splits(data, model, classifier=task.classifier)  # labels, shapes, dtypes: before any training
    rep = JobReport(model=model.name, dataset=data.name, recipe=recipe.to_dict(), threads=threads,
                    timing_runs=timing_runs, data=data.info() if hasattr(data, "info") else {})
    t_all = time.perf_counter()

    if train_epochs:
        _say(f"[1/5] training {model.name} on {data.describe()} for {train_epochs} epochs", quiet)
        t0 = time.perf_counter()
        train_baseline(model, data, train_epochs, batch_size, learning_rate, verbose, task)
        rep.seconds["train"] = time.perf_counter() - t0

    stages = " → ".join(n for n, _ in recipe.stages) or "no stage"
    _say(f"[2/5] optimizing: {f'budget {target}' if target else stages}", quiet)
    t0 = time.perf_counter()
    result = optimize(model, data.train, data.validation, recipe=recipe, epochs=epochs, verbose=verbose,
                      strategy=strategy, tensorboard=tensorboard, target=target, minimize=minimize, threads=threads,
                      progress=None if quiet or target is None else _say_line, loss=loss, metrics=metrics,
                      loss_weights=loss_weights, check_baseline=check_baseline)
    rep.seconds["optimize"] = time.perf_counter() - t0
    rep.optimize = result.report.to_dict()
    rep.metric = result.report.metric if not task.classifier else "accuracy"
    if task.classifier:  # the user's own metric (compiled AUC, precision...) beside the accuracy tfcompress adds
        rep.own_metric = next((k for k in result.report.baseline if "loss" not in k and k not in ("accuracy", "acc")),
                              None)
    if result.plan is not None:  # budget mode: the plan re-runs with --recipe plan.yaml
        recipe = result.plan
        rep.recipe = recipe.to_dict()
        rep.notes += (result.report.budget or {}).get("notes", [])

    _deliver(rep, model, result, data, recipe, out, quiet, threads, timing_runs, timing_seconds, t_all, task)
    return rep


def _say_line(line):
    print("  " + line, flush=True)


def _check_job_args(threads, train_epochs, epochs, batch_size, learning_rate, timing_runs, timing_seconds):
    """run_job's own arguments, checked before any training (the CLI checks them at parse time too)."""
    check_int(None, "threads", threads)
    check_int(None, "train_epochs", train_epochs, minimum=0, optional=True)
    check_int(None, "epochs", epochs, optional=True)
    check_int(None, "batch_size", batch_size)
    check_positive(None, "learning_rate", learning_rate)
    check_int(None, "timing_runs", timing_runs)
    if timing_seconds != 0:
        check_positive(None, "timing_seconds", timing_seconds)


# The files of one run, in --out. They appear together or not at all: see _commit.
OUTPUTS = ("float32.tflite", "int8.tflite", "mixed.tflite", "int4.tflite", "fast.tflite", "plan.yaml", "report.png",
           "report.md", "report.json")
_REPORTS = ("report.json", "report.md", "report.png")
_ALWAYS = ("report.json", "report.md")  # written last, into the staging folder, by every run


def _sweep(out, quiet):
    """Remove the staging folders and temporary files of killed runs in ``out`` (their process is gone)."""
    for item in leftovers.clean(out):
        _say(f"removed {os.path.basename(item.path)} from {out}: a {item.kind} of run {item.pid}, which was killed",
             quiet)


def _stale(stage, out):
    """The files in ``out`` that an earlier run made and this run does not: they must not sit beside its report."""
    return [n for n in OUTPUTS if n not in _ALWAYS and not os.path.exists(os.path.join(stage, n))
            and os.path.lexists(os.path.join(out, n))]


def _commit(stage, out, stale=()):
    """Move the staged files into ``out`` so that a report never describes another run's files.

    The old reports go first, report.json (what tools read) first of all; then
    the files of an earlier run that this run does not make (``stale``: an
    ``int4.tflite`` beside a report that lists none would be picked up by a
    ``*.tflite`` glob); then the .tflite files; then the new reports,
    report.json last. Killed at any point, ``out`` holds either the old run
    complete, or files without a report, or the new run complete: never a
    report beside files it did not measure.
    """
    try:
        for name in (*_REPORTS, *stale):
            path = os.path.join(out, name)
            if os.path.lexists(path):
                os.remove(path)
        for name in OUTPUTS:
            src = os.path.join(stage, name)
            if os.path.exists(src):
                os.replace(src, os.path.join(out, name))
    except OSError as e:
        raise OutputError(f"cannot move the results into {out} ({e.strerror or e}); "
                          f"the new files are in {stage}, or rerun with another --out.") from None


def _deliver(rep, model, result, data, recipe, out, quiet, threads, timing_runs, timing_seconds, t_all, task):
    """Export, evaluate, time and report into a staging folder inside ``out``, then commit."""
    stage = os.path.join(out, leftovers.staging_name())
    shutil.rmtree(stage, ignore_errors=True)
    ensure_dir(stage)
    try:
        if result.plan is not None:  # budget mode: the plan re-runs with --recipe plan.yaml
            atomic_write_text(os.path.join(stage, "plan.yaml"), recipe.to_yaml())
        _measure(rep, model, result, data, recipe, stage, quiet, threads, timing_runs, timing_seconds, task)
        if (result.report.budget or {}).get("target"):  # budget mode's promise, measured again on the shipped file
            shipped = check_shipped(result.report.budget, rep.files, data, task)  # NOT met first, when it is not
            rep.notes[:0] = shipped
            rep.lead[:0] = shipped[:1] if result.report.budget.get("met") is False else []
            slow = budget_slower(rep.files, main_file(result.report.budget), threads, TOLERANCE)
            rep.notes[len(shipped):len(shipped)], rep.lead = slow, rep.lead + slow
            rep.optimize = result.report.to_dict()
        rep.seconds["total"] = time.perf_counter() - t_all
        for f in rep.files:  # the report names the files where they will be
            f["path"] = os.path.join(os.path.abspath(out), os.path.basename(f["path"]))
        for t in rep.timings.values():
            if t.get("path"):
                t["path"] = os.path.join(os.path.abspath(out), os.path.basename(t["path"]))
        try:
            _plot(os.path.join(stage, "report.png"), rep)
        except Exception as e:  # a plot is a nicety; never lose the run over it
            _say(f"(plot skipped: {e})", quiet)
        stale = _stale(stage, out)
        if stale:  # said in the report and on the terminal: the folder holds this run's files only
            them = "them" if len(stale) > 1 else "it"
            rep.notes.append(f"Removed {', '.join(stale)} of an earlier run in this folder: this run does not make "
                             f"{them}, and no file here is left undescribed.")
            _say(f"removing {', '.join(stale)} of an earlier run from {out} (this run does not make {them})", quiet)
        rep.outputs = [n for n in OUTPUTS if n in _ALWAYS or os.path.exists(os.path.join(stage, n))]
        atomic_write_json(os.path.join(stage, "report.json"), rep.to_dict())
        atomic_write_text(os.path.join(stage, "report.md"), rep.to_markdown(result.report.to_markdown()))
        _commit(stage, out, stale)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _measure(rep, model, result, data, recipe, stage, quiet, threads, timing_runs, timing_seconds, task):
    x_test, y_test = data.test
    _say("[3/5] exporting float32 and int8 .tflite files", quiet)
    t0 = time.perf_counter()
    meta = {"tfcompress_version": __version__, "recipe": recipe.to_dict(), "dataset": data.name,
            "input_normalisation": data.scaling()}  # what was done to the inputs, e.g. "inputs divided by 255"
    rep_x = data.train[0]
    with quiet_native_logs():
        exports = _export_both(model, _int8_source(result.model, recipe), stage, rep_x, meta)
        for name, _ in recipe.stages:  # a stage's own file: mixed.tflite, int4.tflite
            technique = techniques.get(name)
            if technique.export is not None:
                exports.update(technique.export(result.model, stage, recipe, result.report, rep_x, meta))
        fast = (result.report.budget or {}).get("faster_file") or {}
        if "per_layer" in fast:  # budget mode's per-op mix that is not slower than float32 (target/fast.py)
            exports["fast"] = export_mixed(float_model(result.model, snap=True), os.path.join(stage, "fast.tflite"),
                                           fast["per_layer"], fast["default"], take(rep_x, 100), metadata=meta)
        if (result.report.budget or {}).get("strip_names"):  # a size budget's files, as its rounds measured them
            exports = {n: e if n == "float32" else tflite_export.strip_export(e) for n, e in exports.items()}
    rep.seconds["export"] = time.perf_counter() - t0

    _say(f"[4/5] evaluating the files with LiteRT on {count(x_test)} test examples ({rep.metric})", quiet)
    t0 = time.perf_counter()
    keras_models = {"float32": model, "int8": result.model, "mixed": result.model, "int4": result.model,
                    "fast": result.model}
    base_zip = exports["float32"].zipped_bytes
    with quiet_native_logs():
        for name, e in exports.items():
            row = {"name": name, "path": e.path, "mode": e.mode, "weights": stored_weights(e.path),
                   "input_dtype": e.input_dtype, "output_dtype": e.output_dtype}
            if task.classifier:
                row["accuracy"] = tflite_export.evaluate(e.path, x_test, y_test)
                row["agreement"] = tflite_export.agreement(keras_models[name], e.path, x_test)
                if rep.own_metric:
                    scores = task.score(y_test, tflite_export.predict(e.path, x_test))
                    row.update(metric=rep.own_metric, score=scores.get(rep.own_metric), scores=scores)
            else:  # the model's own metric, from the file's outputs; never an accuracy it does not have
                several = isinstance(y_test, (dict, list, tuple))  # heads by name, whatever the file's order
                scores = task.score(y_test, tflite_export.predict(e.path, x_test, as_dict=several))
                row.update(accuracy=None, metric=rep.metric, score=scores.get(rep.metric), scores=scores,
                           agreement=tflite_export.closeness(keras_models[name], e.path, x_test))
            rep.files.append({**row, "bytes": e.bytes, "zipped_bytes": e.zipped_bytes,
                              "size_kb": e.bytes / 1024, "zipped_kb": e.zipped_bytes / 1024,
                              "compression_ratio": base_zip / e.zipped_bytes})
    rep.seconds["evaluate"] = time.perf_counter() - t0

    _say(f"[5/5] timing both files on XNNPACK with {threads} thread(s)", quiet)
    t0 = time.perf_counter()
    with quiet_native_logs():
        for f in rep.files:
            timing = tflite_export.benchmark(f["path"], threads=threads, min_runs=timing_runs,
                                             min_seconds=timing_seconds)
            rep.timings[f["name"]] = timing.to_dict()
            f["median_ms"] = timing.median_ms
    rep.seconds["benchmark"] = time.perf_counter() - t0
    faster = none_faster(rep.files, threads)
    rep.lead += faster
    rep.notes += (misnamed(rep.files) + faster + unlike_keras(rep.files) + worse_than_float(rep.files, rep.metric)
                  + slower_than_float(rep.files, threads))
