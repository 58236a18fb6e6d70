"""The main job: train (if needed), optimize, export float32 and int8, evaluate
both files with LiteRT, time them on XNNPACK, and write a report.

``tfcompress demo`` and ``tfcompress optimize`` both run :func:`run_job`.

Example:
    >>> from tfcompress import datasets, models
    >>> from tfcompress.pipeline import run_job
    >>> spec = models.get("digits_cnn")
    >>> job = run_job(spec.build(), datasets.load("digits"), spec.recipe(),  # doctest: +SKIP
    ...               out="out", train_epochs=spec.epochs)
    >>> print(job.table())  # doctest: +SKIP
"""

import os
import sys
import time
from dataclasses import dataclass, field

import tflite_export
from tfcompress._keras import quiet_native_logs
from tfcompress._version import __version__
from tfcompress.errors import DataError
from tfcompress.optimize import as_recipe, loss_for, make_optimizer, optimize
from tfcompress.report import atomic_write_json, atomic_write_text, ensure_dir, markdown_table, table
from tflite_export._atomic import save_figure

__all__ = ["run_job", "JobReport", "COLUMNS", "train_baseline"]

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
    files: list = field(default_factory=list)
    optimize: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    version: str = __version__

    def to_dict(self):
        return {
            "tfcompress_version": self.version, "model": self.model, "dataset": self.dataset,
            "threads": self.threads, "recipe": self.recipe, "files": self.files,
            "optimize": self.optimize, "timings": self.timings, "seconds": self.seconds,
            "columns": COLUMNS,
        }

    def _rows(self):
        out = []
        for f in self.files:
            row = []
            for key in COLUMNS.values():
                v = f.get(key)
                if key in ("accuracy", "agreement") and v is not None:
                    v = f"{v:.2%}"
                elif key == "compression_ratio" and v is not None:
                    v = f"{v:.1f}x"
                elif isinstance(v, float):
                    v = f"{v:.3g}" if key == "median_ms" else f"{v:.1f}"
                row.append(v)
            out.append(row)
        return out

    def table(self):
        return table(list(COLUMNS), self._rows())

    def to_markdown(self, optimize_md=""):
        lines = [
            f"# tfcompress report: `{self.model}` on {self.dataset}", "",
            f"tfcompress {self.version}; timings on XNNPACK, {self.threads} thread(s), "
            "median of ≥50 runs after warm-up.", "",
            markdown_table(list(COLUMNS), self._rows()), "",
            "Compression is the float32 file's zipped size divided by each file's zipped size.", "",
        ]
        if optimize_md:
            lines += ["## Optimization", "", optimize_md]
        return "\n".join(lines)


def _say(msg, quiet):
    if not quiet:
        print(msg, flush=True)


def train_baseline(model, data, epochs, batch_size=64, learning_rate=1e-3, verbose=2):
    """Train a freshly built reference model on ``data.train``."""
    model.compile(make_optimizer("adam", learning_rate), loss_for(model, True), ["accuracy"])
    model.fit(*data.train, epochs=epochs, batch_size=batch_size,
              validation_data=data.validation, verbose=verbose)
    return model


def _plot(path, files):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f["name"] for f in files]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, key, label in zip(axes, ("zipped_kb", "median_ms", "accuracy"),
                              ("zipped size (KB)", "median latency (ms)", "test accuracy")):
        vals = [f.get(key) or 0 for f in files]
        ax.bar(names, vals, color=["#888888", "#2a7ab0"][: len(vals)])
        ax.set_title(label)
        if key == "accuracy":
            lo = min(vals) if vals else 0
            ax.set_ylim(max(0, lo - 0.05), 1.0)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _export_both(model, optimized, out, rep_x, meta):
    return {
        "float32": tflite_export.export(model, os.path.join(out, "float32.tflite"), mode="float32",
                                        metadata={**meta, "recipe": None}),
        "int8": tflite_export.export(optimized, os.path.join(out, "int8.tflite"), mode="int8",
                                     representative_data=rep_x, num_samples=200, metadata=meta),
    }


def run_job(model, data, recipe=None, out="tfcompress-out", train_epochs=None, threads=2,
            batch_size=64, learning_rate=1e-3, epochs=None, quiet=False, verbose=None,
            timing_runs=50, timing_seconds=1.0):
    """Run the main job on ``data`` and write report.json / report.md / report.png.

    Args:
        model: a tf_keras model; trained first when ``train_epochs`` is given.
        data: a :class:`tfcompress.datasets.Dataset`.
        recipe: recipe for :func:`tfcompress.optimize`. Defaults to the default recipe.
        out: output folder (created). Defaults to `"tfcompress-out"`.
        train_epochs: train the model this many epochs first. Defaults to `None`.
        threads: XNNPACK threads for timing. Defaults to `2`.
        batch_size: baseline training batch size. Defaults to `64`.
        learning_rate: baseline training learning rate. Defaults to `1e-3`.
        epochs: overrides every recipe stage's epochs. Defaults to `None`.
        quiet: print nothing. Defaults to `False`.
        verbose: Keras verbosity (None: progress bars on a terminal).
        timing_runs: minimum timed runs per file. Defaults to `50`.
        timing_seconds: minimum timed seconds per file. Defaults to `1.0`.

    Returns:
        A :class:`JobReport`.
    """
    recipe = as_recipe(recipe)
    ensure_dir(out)
    if verbose is None:
        verbose = 0 if quiet else (1 if sys.stdout.isatty() else 2)
    x_test, y_test = data.test
    if len(x_test) == 0:
        raise DataError(f"dataset {data.name} has an empty test split.")
    rep = JobReport(model=model.name, dataset=data.name, recipe=recipe.to_dict(), threads=threads)
    t_all = time.perf_counter()

    if train_epochs:
        _say(f"[1/5] training {model.name} on {data.describe()} for {train_epochs} epochs", quiet)
        t0 = time.perf_counter()
        train_baseline(model, data, train_epochs, batch_size, learning_rate, verbose)
        rep.seconds["train"] = time.perf_counter() - t0

    stages = " → ".join(n for n, _ in recipe.stages) or "no stage"
    _say(f"[2/5] optimizing: {stages}", quiet)
    t0 = time.perf_counter()
    result = optimize(model, data.train, data.validation, recipe=recipe, epochs=epochs, verbose=verbose)
    rep.seconds["optimize"] = time.perf_counter() - t0
    rep.optimize = result.report.to_dict()

    _say("[3/5] exporting float32 and int8 .tflite files", quiet)
    t0 = time.perf_counter()
    meta = {"tfcompress_version": __version__, "recipe": recipe.to_dict(), "dataset": data.name,
            "input_normalisation": "float32 in [0, 1]"}
    rep_x = data.train[0]
    with quiet_native_logs():
        exports = _export_both(model, result.model, out, rep_x, meta)
    rep.seconds["export"] = time.perf_counter() - t0

    _say(f"[4/5] evaluating both files with LiteRT on {len(x_test)} test examples", quiet)
    t0 = time.perf_counter()
    keras_models = {"float32": model, "int8": result.model}
    base_zip = exports["float32"].zipped_bytes
    with quiet_native_logs():
        for name, e in exports.items():
            rep.files.append({
                "name": name, "path": e.path, "mode": e.mode,
                "input_dtype": e.input_dtype, "output_dtype": e.output_dtype,
                "accuracy": tflite_export.evaluate(e.path, x_test, y_test),
                "agreement": tflite_export.agreement(keras_models[name], e.path, x_test),
                "bytes": e.bytes, "zipped_bytes": e.zipped_bytes,
                "size_kb": e.bytes / 1024, "zipped_kb": e.zipped_bytes / 1024,
                "compression_ratio": base_zip / e.zipped_bytes,
            })
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
    rep.seconds["total"] = time.perf_counter() - t_all

    atomic_write_json(os.path.join(out, "report.json"), rep.to_dict())
    atomic_write_text(os.path.join(out, "report.md"), rep.to_markdown(result.report.to_markdown()))
    try:
        _plot(os.path.join(out, "report.png"), rep.files)
    except Exception as e:  # a plot is a nicety; never lose the run over it
        _say(f"(plot skipped: {e})", quiet)
    return rep
