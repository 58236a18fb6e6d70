"""Reports a person can read: per-layer records, JSON, Markdown, text tables.

Its tables come from tflite_export's one table writer (:mod:`tflite_export.tables`),
re-exported here as ``table`` and ``markdown_table``.

Every file is written atomically, through tflite_export's one atomic writer
(temporary file in the same folder, then ``os.replace``), so an interrupted run
never leaves a half-written report.

Example:
    >>> print(table(["model", "acc"], [["float32", "97.2%"]]))
    model    acc
    -------  -----
    float32  97.2%
"""

import json
import os
from dataclasses import dataclass, field

from tfcompress.errors import ExportError, OutputError
from tflite_export._atomic import atomic_write_bytes
from tflite_export._record import Record
from tflite_export.tables import markdown_table
from tflite_export.tables import text_table as table

__all__ = [
    "lower_is_better",
    "LayerRecord",
    "OptimizeReport",
    "table",
    "markdown_table",
    "atomic_write_text",
    "atomic_write_json",
    "ensure_dir",
]


def ensure_dir(path):
    """Create ``path`` (and parents) or raise :class:`OutputError` saying why."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {path}: {e.strerror}; choose a writable --out.") from None
    if not os.access(path, os.W_OK):
        raise OutputError(f"output folder {path} is not writable: choose a writable --out.")
    return path


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically, honouring the umask.

    Raises:
        OutputError: If the folder cannot be created or written to.
    """
    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except ExportError as e:
        err = OutputError(str(e))
        err.errno = getattr(e, "errno", None)  # a full disk stays recognisable (errors.write_failure)
        raise err from None


def atomic_write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically (see :func:`atomic_write_text`)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


@dataclass
class LayerRecord:
    """What the stages did to one layer.

    Attributes:
        name: layer name in the original model.
        type: layer class name.
        params: parameter count.
        stages: stage name → ``"wrapped"``, ``"quantized"`` or ``"skipped: <reason>"``.
        sparsity: share of zeros in its prunable weights after optimization
            (None when it has none).
    """

    name: str
    type: str
    params: int
    stages: dict = field(default_factory=dict)
    sparsity: float | None = None


_LOWER = ("loss", "error", "mae", "mse", "mape", "msle", "rmse", "root_mean_squared", "hinge", "crossentropy",
          "kl_divergence", "kld", "poisson", "logcosh", "huber", "absolute", "squared")


def lower_is_better(metric):
    """Whether a smaller value of ``metric`` (an ``evaluate`` key) is better.

    Example:
        >>> lower_is_better("val_mae"), lower_is_better("head_accuracy")
        (True, False)
    """
    name = metric.lower()
    return any(w in name for w in _LOWER)


@dataclass
class OptimizeReport(Record):
    """What :func:`tfcompress.optimize` did, layer by layer and stage by stage."""

    model: str
    recipe: dict
    layers: list
    stages: list = field(default_factory=list)
    baseline: dict = field(default_factory=dict)
    optimized: dict = field(default_factory=dict)
    evaluated_on: str = "validation"
    budget: dict | None = None  # budget mode: target, reference files, scan, rounds (tfcompress.target.plan)
    task: dict | None = None  # the loss and metrics every stage used, and where they came from (tfcompress.task)
    metric: str = "accuracy"  # the headline metric: a key of baseline/optimized

    def drop(self):
        """How much the headline metric got worse, in its own unit (accuracy: fraction; MAE: its value).

        Example:
            >>> OptimizeReport("m", {}, [], baseline={"mae": 0.1}, optimized={"mae": 0.12}, metric="mae").drop()
            0.02
        """
        before, after = self.baseline.get(self.metric), self.optimized.get(self.metric)
        if before is None or after is None:
            return None
        d = (after - before) if lower_is_better(self.metric) else (before - after)
        return round(float(d), 12)

    def layer(self, name):
        for r in self.layers:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_markdown(self):
        names = [s["name"] for s in self.stages]
        rows = []
        for r in self.layers:
            rows.append(
                [r.name, r.type, r.params]
                + [r.stages.get(n, "—") for n in names]
                + [None if r.sparsity is None else f"{r.sparsity:.1%}"]
            )
        lines = [f"### Layers of `{self.model}`", "",
                 markdown_table(["layer", "type", "params"] + names + ["sparsity"], rows), ""]
        if self.stages:
            lines += ["### Stages", "", markdown_table(
                ["stage", "epochs", "steps", "seconds", "details"],
                [[s["name"], s.get("epochs"), s.get("steps"), round(s.get("seconds", 0), 1),
                  s.get("details", "")] for s in self.stages]), ""]
        if self.baseline:
            keys = list(self.baseline)
            lines += [f"### {self.metric} on {self.evaluated_on} data", "",
                      *([f"Task: {self.task['line']}.", ""] if self.task and self.task.get("line") else []),
                      markdown_table(["model"] + keys, [["baseline"] + [self.baseline.get(k) for k in keys],
                                                        ["optimized"] + [self.optimized.get(k) for k in keys]]), ""]
        if self.budget:
            lines += [self.budget["markdown"]]
        return "\n".join(lines)
