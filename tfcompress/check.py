"""Know before you train: what each compression technique can do to a model.

:func:`check` looks at every layer of a model, without training it, and says
whether TF-MOT can prune it, cluster it and quantize it (and with which
quantize config), whether it can run sparse on XNNPACK
(``PruneForLatencyOnXNNPack`` rules), whether structured channel pruning can
shrink it, and then converts an untrained copy to int8 with random
representative data so converter errors surface in seconds rather than after
fine-tuning.

Example:
    >>> import tfcompress
    >>> report = tfcompress.check(model)  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
    >>> report.conversion["status"]  # doctest: +SKIP
    'ok'
"""

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tfcompress import techniques
from tfcompress._data import check_splits
from tfcompress._keras import keras, quiet_native_logs
from tfcompress._keras3 import augmentation_layers
from tfcompress._model import coerce_model, release_memory
from tfcompress._nested import count, take
from tfcompress.datasets import as_dataset
from tfcompress.errors import RecipeError, first_line
from tfcompress.io import resolve_model
from tfcompress.pruning import xnnpack_policy_reason
from tfcompress.report import markdown_table, table
from tfcompress.task import compile_config_of, task_for

__all__ = ["check", "CheckReport", "LayerCheck", "extra_columns"]

_BASE = ("prunable", "clusterable", "quantizable", "xnnpack_sparse", "channels")


@dataclass
class LayerCheck:
    """What can be done to one layer.

    Each technique field is ``"yes"`` (or, for quantization, the config that
    would be used) or ``"no: <reason>"``; ``None`` when the question does not
    apply (a layer without weights cannot be pruned or clustered).

    Attributes:
        name: layer name (nested models are flattened first).
        type: layer class name.
        params: parameter count.
        prunable: magnitude pruning (TF-MOT ``prune_low_magnitude``).
        clusterable: weight clustering (TF-MOT ``cluster_weights``).
        quantizable: QAT annotation and its quantize config.
        xnnpack_sparse: whether the layer can run sparse on XNNPACK.
        channels: structured channel pruning: ``"yes"`` (its output channels
            can be removed) or ``"no: locked: <reason>"``.
        extra: the answers of the other technique columns
            (:func:`extra_columns`: column key -> answer), for the columns that apply.
    """

    name: str
    type: str
    params: int
    prunable: str | None = None
    clusterable: str | None = None
    quantizable: str | None = None
    xnnpack_sparse: str | None = None
    channels: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class CheckReport:
    """What :func:`check` found.

    Attributes:
        model: model name.
        layers: a :class:`LayerCheck` per layer.
        recipe: the recipe checked against (dict), or None.
        xnnpack: None when the model can use XNNPACK sparse inference, else
            why not (TF-MOT's ``PruneForLatencyOnXNNPack`` check).
        conversion: the trial conversion of an untrained copy:
            ``{"mode", "status" ("ok", "failed: ...", "skipped: ..."),
            "seconds", "bytes"}``.
        notes: model-level remarks (flattened nested models, Keras 3
            translation, recipe stages that will find nothing to do).
    """

    model: str
    layers: list[LayerCheck]
    recipe: dict[str, Any] | None = None
    xnnpack: str | None = None
    conversion: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    BASE_COLUMNS = ("layer", "type", "params", "prune", "cluster", "quantize", "xnnpack sparse", "channels")

    @property
    def extra_keys(self):
        """The :func:`extra_columns` keys some layer answered, in their order."""
        seen = {k for r in self.layers for k in r.extra}
        return [c.key for c in extra_columns() if c.key in seen]

    @property
    def COLUMNS(self):  # noqa: N802 - was a class constant; the technique columns made it depend on the rows
        heads = {c.key: c.header for c in extra_columns()}
        return self.BASE_COLUMNS + tuple(heads[k] for k in self.extra_keys)

    def layer(self, name):
        """The :class:`LayerCheck` called ``name`` (KeyError if absent)."""
        for r in self.layers:
            if r.name == name:
                return r
        raise KeyError(name)

    def count(self, column):
        """How many layers answer yes (or name a config) in ``column``.

        Example:
            >>> report.count("prunable")  # doctest: +SKIP
            12
        """
        return sum(1 for r in self.layers if _ok(getattr(r, column) if column in _BASE else r.extra.get(column)))

    def to_dict(self):
        """A JSON-able dict of the report."""
        return {
            "model": self.model, "recipe": self.recipe, "xnnpack": self.xnnpack,
            "conversion": dict(self.conversion), "notes": list(self.notes),
            "summary": {c: self.count(c) for c in ("prunable", "clusterable", "quantizable",
                                                  "xnnpack_sparse", "channels", *self.extra_keys)},
            "layers": [asdict(r) for r in self.layers],
        }

    def _rows(self, width=None):
        def cut(v):
            if v is None or width is None or len(str(v)) <= width:
                return v
            return str(v)[: width - 1] + "…"

        extra = self.extra_keys
        return [[r.name, r.type, r.params] + [cut(getattr(r, c)) for c in
                 ("prunable", "clusterable", "quantizable", "xnnpack_sparse", "channels")]
                + [cut(r.extra.get(k)) for k in extra]
                for r in self.layers]

    def _summary_lines(self):
        n = len(self.layers)
        conv = self.conversion or {}
        lines = [
            f"model {self.model}: {n} layers; prunable {self.count('prunable')}, clusterable "
            f"{self.count('clusterable')}, quantizable {self.count('quantizable')}, XNNPACK sparse "
            f"{self.count('xnnpack_sparse')}, channel-shrinkable {self.count('channels')}",
            f"XNNPACK sparse inference: {'eligible' if self.xnnpack is None else 'no: ' + self.xnnpack}",
            f"trial {conv.get('mode', 'int8')} conversion of an untrained copy: {conv.get('status', 'not run')}"
            + (f" ({conv['seconds']:.1f} s)" if conv.get("seconds") is not None else ""),
        ]
        return lines + [f"note: {n}" for n in self.notes]

    def table(self, width=48):
        """A plain-text table (long reasons cut to ``width`` characters)."""
        return table(self.COLUMNS, self._rows(width)) + "\n\n" + "\n".join(self._summary_lines())

    def to_markdown(self):
        """The report as Markdown: summary, then one row per layer."""
        head = ["# tfcompress check: " + self.model, ""] + [f"- {l}" for l in self._summary_lines()]
        return "\n".join(head + ["", markdown_table(self.COLUMNS, self._rows())]) + "\n"

    def __str__(self):
        return self.table()


def extra_columns():
    """The technique columns beyond the five base ones (``LayerCheck`` fields), in registry order:
    :class:`~tfcompress.technique.CheckColumn` s from :func:`tfcompress.techniques.columns`."""
    return [c for c in techniques.columns() if c.key not in _BASE]


def _answers(model, rec, notes):
    """Every technique column, computed once for the model: ``{key: {layer: answer}}``."""
    out = {}
    for column in techniques.columns():
        try:
            out[column.key] = dict(column.answers(model, rec))
        except Exception as e:  # noqa: BLE001 - report, never crash the check
            notes.append(f"{column.what or column.header}: analysis failed ({first_line(e, 160)})")
            out[column.key] = {}
    return out


def _ok(v):
    return v is not None and not str(v).startswith("no")


def _random_inputs(model, n):
    rng = np.random.RandomState(0)
    xs = []
    for t in model.inputs:
        shape = [n] + [d if d is not None else 1 for d in t.shape[1:]]
        dtype = t.dtype.name if hasattr(t.dtype, "name") else str(t.dtype)
        if "int" in dtype:
            xs.append(rng.randint(0, 2, size=shape).astype(dtype))
        else:
            xs.append(rng.rand(*shape).astype("float32"))
    return xs[0] if len(xs) == 1 else xs


def _trial_conversion(model, mode, samples, calibration=None):
    from tflite_export import convert_bytes

    if any(d is None for t in model.inputs for d in t.shape[1:]):
        return {"mode": mode, "status": "skipped: the input has unknown dimensions besides the batch",
                "seconds": None, "bytes": None}
    t0 = time.perf_counter()
    copy = data = None
    try:
        copy = keras.models.clone_model(model)  # untrained: fresh random weights
        with quiet_native_logs():
            rep = take(calibration, samples) if calibration is not None else _random_inputs(model, samples)
            data, _ = convert_bytes(copy, mode, representative_data=rep, num_samples=min(samples, count(rep)))
        status, size = "ok", len(data)
    except Exception as e:  # noqa: BLE001 - the point is to report it
        status, size = f"failed: {first_line(e, 300)}", None
    del copy, data
    release_memory(model)  # the copy and the converter's graphs
    return {"mode": mode, "status": status, "seconds": time.perf_counter() - t0, "bytes": size}


def check(model: Any, recipe: Any = None, convert: bool = True, samples: int = 8, data: Any = None, *,
          loss: Any = None, metrics: Any = None, safe_mode: bool = True) -> CheckReport:
    """A per-layer table of what pruning, clustering, QAT, XNNPACK sparse
    inference and channel pruning can do, before any training.

    Args:
        model: a tf_keras or Keras 3 Sequential/Functional model, a path to
            a ``.keras``/``.h5`` file or SavedModel folder (loaded in safe
            mode with :func:`tfcompress.load_model`), a reference model name
            or a function returning a model (see
            :func:`tfcompress.io.resolve_model`). Nested models are flattened
            first, as :func:`tfcompress.optimize` does.
        recipe: a :class:`~tfcompress.Recipe`, dict or YAML path; its
            clustering settings are used, its trial conversion mode is int8
            when it quantizes (else float32), and stages that would find
            nothing to do are noted. Defaults to `None` (16 clusters, int8).
        convert: run the trial conversion of an untrained copy. Defaults to
            `True`.
        samples: representative samples for the trial conversion.
            Defaults to `8`.
        data: the user's data (anything
            :func:`tfcompress.datasets.as_dataset` takes): checked against
            the model (shape, labels against the outputs) and its training
            inputs calibrate the trial conversion instead of random ones.
            Defaults to `None`.
        loss: the task loss, as :func:`tfcompress.optimize` takes it.
            Defaults to `None` (the model's compiled loss, else inferred).
        metrics: the task metrics. Defaults to `None`.
        safe_mode: refuse a model file with ``Lambda`` layers (their code would run);
            ``tfcompress check --unsafe`` is ``safe_mode=False``. Defaults to `True`.

    Returns:
        A :class:`CheckReport`; its first note says which loss and metrics
        ``optimize`` will train and score with, and where they come from.

    Raises:
        UnsupportedModelError: not a model tfcompress can handle (subclassed,
            unbuilt, not a Keras file), with what to do.
        RecipeError: an invalid recipe.

    Example:
        >>> from tfcompress import models
        >>> report = check(models.get("digits_cnn").build(), convert=False)
        >>> report.layer("conv1").prunable
        'yes'
    """
    from tfcompress.optimize import as_recipe

    notes = []
    model = resolve_model(model, safe_mode=safe_mode).model()  # a file is loaded in safe mode unless told
    original = model
    compiled = compile_config_of(model)
    model = coerce_model(model)
    try:
        task = task_for(model, loss, metrics, compiled=compiled)
        notes.append(f"task: {task.describe()}")
    except RecipeError as e:  # check reports; optimize refuses
        task = None
        notes.append(f"task: unknown: {e}")
    if model is not original:
        nested = [l.name for l in getattr(original, "layers", []) if isinstance(l, keras.Model)]
        if nested:
            notes.append(f"nested model(s) {', '.join(nested)} flattened into the outer graph")
        if not isinstance(original, keras.Model):
            notes.append("Keras 3 model translated to tf_keras")
            dropped = augmentation_layers(original)
            if dropped:
                notes.append("Keras 3 augmentation layers dropped (identity at inference): "
                             + ", ".join(f"{n} ({c})" for n, c in dropped))
    rec = as_recipe(recipe) if recipe is not None else None

    answers = _answers(model, rec, notes)
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        base = {key: answers.get(key, {}).get(layer.name) for key in _BASE}
        extra = {c.key: v for c in extra_columns() if (v := answers[c.key].get(layer.name)) is not None}
        rows.append(LayerCheck(name=layer.name, type=type(layer).__name__, params=int(layer.count_params()),
                               **base, extra=extra))
    xnn_reason = xnnpack_policy_reason(model)
    report = CheckReport(model=model.name, layers=rows, recipe=rec.to_dict() if rec else None,
                         xnnpack=xnn_reason, notes=notes)
    if rec is not None:
        for stage, _ in rec.stages:
            if any(c.needed and report.count(c.key) == 0 for c in techniques.get(stage).columns):
                notes.append(f"the recipe's {stage} stage would find no layer to work on")
    mode = "int8" if rec is None or rec.quantization is not None else "float32"
    calibration = None
    if data is not None:
        data = as_dataset(data, input_shape=tuple(model.input_shape[1:]))
        check_splits(data, model, classifier=task is not None and task.classifier)
        calibration = data.train[0]
        notes.append(f"data: {data.describe()}")
    report.conversion = _trial_conversion(model, mode, samples, calibration) if convert else \
        {"mode": mode, "status": "skipped: convert=False", "seconds": None, "bytes": None}
    if calibration is not None and convert:
        report.conversion["calibration"] = f"{min(samples, len(calibration))} samples of {data.name}"
    return report
