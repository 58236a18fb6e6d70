"""The user's task: the loss, loss weights and metrics every stage trains and scores with.

A compiled model's ``loss``, ``loss_weights`` and ``metrics`` are the user's
statement of what the model is for; :func:`task_for` takes them (from a
tf_keras or Keras 3 model, or the compile config saved in a model file), or
the ``loss=``/``metrics=`` the caller gives, and only for an uncompiled
single-output classifier falls back to the classification loss its output
implies: sparse/categorical cross-entropy for a softmax or logits, binary
cross-entropy for one unit (from probabilities after a sigmoid, from logits
without). Any other uncompiled model (a regression, a dense map, several
outputs) is refused with what to pass: tfcompress does not guess a task.

Losses and metrics are kept serialized and rebuilt for each ``compile``, so
no metric object is shared between stages or strategy scopes.

Example:
    >>> from tfcompress._keras import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> m.compile(loss="mse", metrics=["mae"])
    >>> t = task_for(m)
    >>> t.source, t.classifier, t.compile_args()["metrics"]
    ('compiled', False, ['mae'])
"""

from __future__ import annotations

import inspect
import json
import numbers
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfcompress._keras import keras
from tfcompress._nested import take
from tfcompress.errors import RecipeError, UnsupportedModelError

__all__ = ["Task", "task_for", "compile_config_of", "headline",
           "remember_file_compile"]

# Models loaded from files (compile=False) -> the loss/metrics their file saved: the user's task.
_FILE_COMPILE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_PLURAL = {"loss": "losses", "metric": "metrics"}
_CE = {"sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
       "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy"}


def headline(results: dict) -> str:
    """The metric a report leads with: the first compiled metric (``evaluate``'s
    first key that is not a loss), else ``"loss"``.

    Example:
        >>> headline({"loss": 0.3, "out_loss": 0.3, "out_mae": 0.2})
        'out_mae'
    """
    for k in results:
        if k != "loss" and not k.endswith("loss"):
            return k
    return "loss"


def _serial(obj: Any, kind: str) -> Any:
    """A loss or metric as compile takes it, in a form that rebuilds fresh objects."""
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, dict) and "class_name" in obj:
        return _from_config(obj, kind)
    if isinstance(obj, dict):
        return {k: _serial(v, kind) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_serial(v, kind) for v in obj]
    module = type(obj).__module__ or ""
    if module == "keras" or module.startswith("keras."):  # a Keras 3 object: rebuild it in tf_keras
        try:
            return _from_config({"class_name": type(obj).__name__, "config": obj.get_config()}, kind)
        except Exception:  # noqa: BLE001 - a Keras 3 wrapper (LossFunctionWrapper): by its function's name
            fn = getattr(obj, "fn", None)
            name = getattr(fn, "__name__", None) or getattr(obj, "name", None)
            if isinstance(name, str):
                return name
            raise RecipeError(f"the model's {kind} {type(obj).__name__} has no tf_keras equivalent: compile the "
                              f"model with built-in Keras {_PLURAL[kind]}, or pass {kind}= to tfcompress.") from None
    module_ns = keras.losses if kind == "loss" else keras.metrics
    if isinstance(obj, (keras.losses.Loss, keras.metrics.Metric)) and getattr(module_ns, type(obj).__name__,
                                                                              None) is type(obj):
        return _from_config({"class_name": type(obj).__name__, "config": obj.get_config()}, kind)
    return obj  # a plain function (stateless) or the user's own class: used as it is


def _from_config(cfg: dict, kind: str) -> Any:
    """A serialized loss/metric (either Keras's) as a tf_keras-rebuildable dict."""
    name = cfg.get("class_name")
    if name == "function":
        return cfg.get("config")
    config = cfg.get("config")
    inner: dict = config if isinstance(config, dict) else {}
    if name in ("MeanMetricWrapper", "LossFunctionWrapper") and isinstance(inner.get("fn"), str):
        return inner["fn"]  # a wrapped built-in function (an .h5 file's compiled "accuracy"): by its name
    module = keras.losses if kind == "loss" else keras.metrics
    cls = getattr(module, name, None) if isinstance(name, str) else None
    if cls is None and kind == "metric":
        cls = getattr(keras.losses, name, None) if isinstance(name, str) else None
    if cls is None:
        raise RecipeError(f"the model's {kind} {name!r} has no tf_keras equivalent: compile the model with "
                          f"built-in Keras {_PLURAL[kind]}, or pass {kind}= to tfcompress.")
    params = inspect.signature(cls.__init__).parameters
    config = {k: v for k, v in (cfg.get("config") or {}).items() if k in params and k != "dtype"}
    if config.get("reduction") not in (None, "auto", "none", "sum", "sum_over_batch_size"):
        config.pop("reduction")
    return {"class_name": name, "config": config}


def _build(value: Any, kind: str) -> Any:
    """Fresh tf_keras objects from :func:`_serial`'s form."""
    if isinstance(value, dict) and "class_name" in value:
        module = keras.losses if kind == "loss" else keras.metrics
        cls = getattr(module, value["class_name"], None) or getattr(keras.losses, value["class_name"])
        return cls(**value["config"])
    if isinstance(value, dict):
        return {k: _build(v, kind) for k, v in value.items()}
    if isinstance(value, list):
        return [_build(v, kind) for v in value]
    return value


def _label(value: Any) -> str:
    if isinstance(value, dict) and "class_name" in value:
        return value["class_name"]
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_label(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_label(v) for v in value) + "]"
    return getattr(value, "__name__", None) or str(value)


@dataclass(frozen=True)
class Task:
    """What the model is for: the compile arguments every stage uses, and where they came from.

    Attributes:
        loss: the loss, in a form :meth:`compile_args` rebuilds (a name, a
            function, a serialized loss, or a list/dict of them per output).
        metrics: the metrics, as compile takes them. Defaults to `None`.
        loss_weights: per-output loss weights. Defaults to `None`.
        source: ``"given"`` (``loss=``), ``"compiled"`` (the user's compile)
            or ``"inferred"`` (a classifier's output). Defaults to `"inferred"`.
        classifier: one output scored against class ids or one-hot rows;
            its labels are checked as such. Defaults to `True`.
        why: for an inferred loss, what it was inferred from.
    """

    loss: Any
    metrics: Any = None
    loss_weights: Any = None
    source: str = "inferred"
    classifier: bool = True
    why: str = ""
    _extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def sparse_labels(self) -> bool | None:
        """For a classifier, the label form its loss takes: True for class ids, False for
        one-hot rows, None for one unit or an inferred loss (which follows the labels)."""
        if not self.classifier or self.source == "inferred":
            return None
        name = _label(self.loss[0] if isinstance(self.loss, list) else self.loss).lower()
        if "sparse" in name or name == "scce":
            return True
        if "categorical" in name or name == "cce":
            return False
        return None

    def compile_args(self) -> dict:
        """``loss``, ``metrics`` and ``loss_weights`` for ``compile``, as fresh objects."""
        return {"loss": _build(self.loss, "loss"), "metrics": _build(self.metrics, "metric"),
                "loss_weights": self.loss_weights}

    def score(self, y_true: Any, y_pred: Any, names: list | None = None, subsets: list | None = None) -> Any:
        """Every loss and metric of the task on predictions made elsewhere (a ``.tflite``
        file's), computed by Keras's own ``compile``/``evaluate`` on a model that passes
        the predictions through, so the names and values match ``model.evaluate``.

        Args:
            y_true: the targets (an array, or a list/dict per output).
            y_pred: the predictions, in the same structure.
            names: the output names (for several outputs given as lists).
                Defaults to `None`.
            subsets: index arrays: a list of results, one per subset of the
                samples, from one compiled model (faster than a call each).
                Defaults to `None` (one result, all samples).

        Example:
            >>> t = Task("mse", ["mae"], classifier=False)
            >>> round(t.score(np.zeros((2, 1)), np.ones((2, 1)))["mae"], 3)
            1.0
        """
        if isinstance(y_pred, dict) and isinstance(y_true, dict) and set(y_pred) != set(y_true):
            y_pred = _align(y_pred, list(y_true))  # a QAT model's file names its heads quant_<name>
        preds = y_pred if isinstance(y_pred, dict) else None
        arrays = list(y_pred.values()) if preds else (list(y_pred) if isinstance(y_pred, (list, tuple))
                                                       else [y_pred])
        out_names = list(preds) if preds else (names or [f"output_{i}" for i in range(len(arrays))])
        model = self._passthrough(tuple(np.asarray(a).shape[1:] for a in arrays), tuple(out_names), bool(preds))
        x = [np.asarray(a, "float32") for a in arrays]
        y = {k: np.asarray(v) for k, v in y_true.items()} if isinstance(y_true, dict) else (
            [np.asarray(v) for v in y_true] if isinstance(y_true, (list, tuple)) else np.asarray(y_true))
        if subsets is None:
            res = model.evaluate(x if len(x) > 1 else x[0], y, verbose=0, return_dict=True,
                                 batch_size=max(1, min(256, len(x[0]))))
            return {k: float(v) for k, v in res.items()}
        out = []
        for i in subsets:  # one step each: no data pipeline per subset
            xi = [a[i] for a in x]
            res = model.test_on_batch(xi if len(xi) > 1 else xi[0], take(y, i), reset_metrics=True, return_dict=True)
            out.append({k: float(v) for k, v in res.items()})
        return out

    def __getstate__(self) -> dict:
        """Pickled and deep-copied without the cached Keras models (trial processes rebuild them)."""
        state = dict(self.__dict__)
        state["_extra"] = {k: v for k, v in self._extra.items() if k != "passthrough"}
        return state

    def _passthrough(self, shapes: tuple, out_names: tuple, as_dict: bool) -> Any:
        """The compiled model that passes predictions through to the task's losses and metrics, built
        once per prediction structure: a budget scan scores hundreds of candidates, and building and
        compiling (then tracing its evaluate) each time cost more than the scoring itself."""
        cache = self._extra.setdefault("passthrough", {})
        key = (shapes, out_names, as_dict, repr((self.loss, self.metrics, self.loss_weights)))
        if key not in cache:
            inputs = [keras.Input(shape, name=f"in_{i}") for i, shape in enumerate(shapes)]
            outputs: Any = [keras.layers.Activation("linear", name=n)(i) for n, i in zip(out_names, inputs)]
            if as_dict:
                outputs = dict(zip(out_names, outputs))
            model = keras.Model(inputs, outputs if len(shapes) > 1 or as_dict else outputs[0])
            model.compile(**self.compile_args())
            cache[key] = model
        return cache[key]

    def loss_fn(self, output_names: list) -> Any:
        """``fn(y_true, y_pred) -> scalar``: the task's total loss (each output's loss, weighted), for gradients
        taken outside ``fit`` (saliency, Taylor importance); outputs and targets as one array, a list in
        ``output_names`` order or a dict by name (TF-MOT's wrapper prefixes such as ``quant_box`` allowed)."""
        args = self.compile_args()
        loss, weights = args["loss"], args["loss_weights"] or {}

        def keyed(value: Any) -> dict:
            if isinstance(value, dict):
                return value
            return dict(zip(output_names, value if isinstance(value, (list, tuple)) else [value]))

        def pick(table: Any, name: str, i: int, default: Any) -> Any:
            if isinstance(table, dict):
                hits = [v for k, v in table.items() if k == name or name.endswith("_" + k)]
                return hits[0] if hits else default
            return table[i] if isinstance(table, (list, tuple)) else table

        def total(y_true: Any, y_pred: Any) -> Any:
            ys, ps = keyed(y_true), keyed(y_pred)
            out = 0.0
            for i, name in enumerate(output_names):
                y = ys[name] if name in ys else pick(ys, name, i, None)
                fn = keras.losses.get(pick(loss, name, i, None))
                value = keras.backend.mean(fn(y, keras.backend.cast(ps[name], "float32")))
                out = out + float(pick(weights, name, i, 1.0)) * value
            return out

        return total

    def describe(self) -> str:
        """One line: the loss and metrics, and where they came from.

        Example:
            >>> Task("mse", ["mae"], source="compiled", classifier=False).describe()
            "loss mse, metrics [mae] (the model's compile)"
        """
        where = {"given": "given to tfcompress", "compiled": "the model's compile",
                 "inferred": f"inferred from {self.why or 'the output'}"}[self.source]
        metrics = _label(self.metrics) if self.metrics else "none"
        return f"loss {_label(self.loss)}, metrics {metrics} ({where})"

    def to_dict(self) -> dict:
        return {"loss": _label(self.loss), "metrics": _label(self.metrics) if self.metrics else None,
                "loss_weights": self.loss_weights, "source": self.source, "classifier": self.classifier}


def _align(pred: dict, names: list) -> dict:
    """Predictions keyed by the user's output names, from a file whose outputs carry TF-MOT's
    prefixes (``quant_box`` for ``box``)."""
    out = {}
    for n in names:
        keys = [k for k in pred if k == n or k.endswith("_" + n)]
        if len(keys) != 1:
            raise RecipeError(f"cannot tell which of the file's outputs {sorted(pred)} is the model's output {n!r}; "
                              "score the predictions keyed by the model's output names.")
        out[n] = pred[keys[0]]
    return out


def compile_config_of(model: Any) -> dict | None:
    """The ``loss``/``metrics``/``loss_weights`` a model (either Keras) was compiled with, or None."""
    try:
        saved = _FILE_COMPILE.get(model)  # read from its file by tfcompress.load_model
    except TypeError:
        saved = None
    if saved:
        return saved
    live = getattr(getattr(model, "_compile_config", None), "config", None)  # what compile was given, as given
    if isinstance(live, dict) and live.get("loss") is not None:
        return {k: live.get(k) for k in ("loss", "metrics", "loss_weights")}
    try:
        cfg = model.get_compile_config()  # None (or an error) for an uncompiled model
    except Exception:  # noqa: BLE001 - a compile that cannot describe itself: the live objects below
        cfg = None
    if not cfg or cfg.get("loss") is None:
        live = getattr(model, "loss", None)
        if live is None or not (getattr(model, "_is_compiled", False) or getattr(model, "compiled", False)):
            return None
        cfg = {"loss": live, "metrics": getattr(getattr(model, "compiled_metrics", None), "_user_metrics", None),
               "loss_weights": None}
    return {k: cfg.get(k) for k in ("loss", "metrics", "loss_weights")}


def remember_file_compile(model: Any, fmt: str, config: Any, path: str) -> None:
    """Keep the loss/metrics a model file saved (a ``.keras`` file's ``compile_config``,
    an ``.h5`` file's ``training_config``) for :func:`compile_config_of`: models are loaded
    with ``compile=False``, so the user's task would otherwise be lost."""
    cfg = None
    if fmt == "keras" and isinstance(config, dict):
        cfg = config.get("compile_config")
    elif fmt == "h5":
        try:
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("training_config")
            if raw is not None:
                cfg = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except (OSError, ValueError):
            cfg = None
    if isinstance(cfg, dict) and cfg.get("loss") is not None:
        metrics = cfg.get("metrics")
        if isinstance(metrics, list) and len(metrics) == 1 and isinstance(metrics[0], list):
            metrics = metrics[0]
        _FILE_COMPILE[model] = {"loss": cfg["loss"], "metrics": metrics, "loss_weights": cfg.get("loss_weights")}


def _outputs(model: Any) -> list:
    shape = model.output_shape
    if isinstance(shape, dict):
        return list(shape.values())
    if isinstance(shape, list):
        return shape
    return [shape]


def _is_classifier(model: Any, loss: Any) -> bool:
    outs = _outputs(model)
    if len(outs) != 1 or len(outs[0]) != 2:
        return False
    name = loss if isinstance(loss, str) else (loss.get("class_name") if isinstance(loss, dict) else
                                               getattr(loss, "__name__", ""))
    if isinstance(loss, list) and len(loss) == 1:
        return _is_classifier(model, loss[0])
    if name in ("binary_crossentropy", "BinaryCrossentropy", "bce") and outs[0][-1] != 1:
        return False  # several sigmoid units: multi-label, labels are multi-hot rows
    return name in _CE or name in ("sparse_categorical_crossentropy", "bce", "cce", "scce")


def output_activation(model: Any) -> str:
    """The name of the activation the model's last layer applies (``"softmax"``, ``"sigmoid"``, ``""``),
    through pruning and QAT wrappers (QAT replaces a Dense's activation by a ``QuantizeAwareActivation``)."""
    last = model.layers[-1]
    inner = getattr(last, "layer", last)  # through pruning / QAT wrappers
    act = getattr(inner, "activation", None)
    name = getattr(act, "__name__", "")
    if not name and act is not None:  # QAT: the wrapped layer's QuantizeAwareActivation holds the function
        name = getattr(getattr(act, "activation", None), "__name__", "")
    if not name and hasattr(last, "activation"):  # QAT wraps activations
        name = getattr(getattr(last.activation, "activation", None), "__name__", "")
    if not name and type(inner).__name__ in ("Softmax", "Activation"):
        name = "softmax" if type(inner).__name__ == "Softmax" else getattr(inner.activation, "__name__", "")
    return name


def _inferred(model: Any, sparse_labels: bool | None) -> Task:
    outs = _outputs(model)
    if len(outs) != 1 or len(outs[0]) != 2:
        shape = outs[0][1:] if len(outs) == 1 else f"{len(outs)} outputs"
        raise RecipeError(
            f"the model is not compiled and its output ({shape}) is not a classifier's, so tfcompress cannot "
            "tell its task: compile it with its loss and metrics (model.compile(loss=..., metrics=[...])), or pass "
            "loss= and metrics= to optimize (--loss and --metric on the command line)."
        )
    act = output_activation(model)
    if act == "sigmoid" and outs[0][-1] > 1:  # independent sigmoid units: multi-label, multi-hot targets
        return Task("binary_crossentropy", ["binary_accuracy"], classifier=False,
                    why=f"{outs[0][-1]} sigmoid units (multi-label)")
    if outs[0][-1] == 1:
        probs = act == "sigmoid"
        return Task({"class_name": "BinaryCrossentropy", "config": {"from_logits": not probs}}, ["accuracy"],
                    why=f"one {'sigmoid' if probs else 'logit'} unit")
    probs = act == "softmax"
    cls = "SparseCategoricalCrossentropy" if sparse_labels is not False else "CategoricalCrossentropy"
    return Task({"class_name": cls, "config": {"from_logits": not probs}}, ["accuracy"],
                why=f"{'a softmax' if probs else 'logits'} over {outs[0][-1]} classes, "
                    f"{'class ids' if sparse_labels is not False else 'one-hot'} labels")


def _with_accuracy(metrics: Any) -> Any:
    """A classifier's metrics with ``accuracy`` (what reports and the tuner score) among them.

    ``accuracy`` goes after the user's own metrics, so the first compiled metric
    (``AUC``, say) stays the task's headline: what budget mode counts its drop in.
    """
    if isinstance(metrics, list) and len(metrics) == 1 and isinstance(metrics[0], list):
        metrics = metrics[0]  # one output's metrics, given per output
    if metrics is None:
        return ["accuracy"]
    if isinstance(metrics, list):
        return metrics if any(m in ("accuracy", "acc") for m in metrics) else [*metrics, "accuracy"]
    return metrics


def task_for(model: Any, loss: Any = None, metrics: Any = None, loss_weights: Any = None,
             sparse_labels: bool | None = None, compiled: dict | None = None) -> Task:
    """The task of ``model``: the caller's ``loss``, else its compile, else inferred (classifiers only).

    Args:
        model: the model (tf_keras or Keras 3), compiled or not.
        loss: a loss for ``compile`` (a name, a loss object, or a list/dict per
            output); overrides the model's own. Defaults to `None`.
        metrics: metrics for ``compile``. Defaults to `None` (the model's
            own; ``["accuracy"]`` for an inferred classifier).
        loss_weights: per-output loss weights. Defaults to `None`.
        sparse_labels: for an inferred classifier, whether the labels are
            class ids (else one-hot rows). Defaults to `None` (class ids).
        compiled: a compile config to use instead of the model's (what
            :func:`compile_config_of` returned for the model before it was
            translated or copied). Defaults to `None`.

    Returns:
        A :class:`Task`.

    Raises:
        RecipeError: an uncompiled model that is not a single-output
            classifier and no ``loss``; a loss or metric with no tf_keras
            equivalent.

    Example:
        >>> task_for(model, loss="mse", metrics=["mae"]).source  # doctest: +SKIP
        'given'
    """
    if loss is not None:
        loss_s, metrics_s = _serial(loss, "loss"), _serial(metrics, "metric")
        classifier = _is_classifier(model, loss_s)
        return Task(loss_s, _with_accuracy(metrics_s) if classifier else metrics_s, loss_weights, "given", classifier)
    cfg = compiled if compiled is not None else compile_config_of(model)
    if cfg and cfg.get("loss") is not None:
        loss_s = _serial(cfg["loss"], "loss")
        metrics_s = _serial(metrics if metrics is not None else cfg.get("metrics"), "metric")
        weights = loss_weights if loss_weights is not None else _numbers(cfg.get("loss_weights"))
        classifier = _is_classifier(model, loss_s)
        return Task(loss_s, _with_accuracy(metrics_s) if classifier else metrics_s, weights, "compiled", classifier)
    task = _inferred(model, sparse_labels)
    if metrics is not None:
        task = Task(task.loss, _serial(metrics, "metric"), loss_weights, "inferred", True, task.why)
    return task


def _numbers(weights: Any) -> Any:
    """A compiled model's ``loss_weights`` when they are numbers (one, a list or a dict of them); else one line.

    Keras 3's ``compile(optimizer, loss, loss_weights, metrics)`` takes ``loss_weights`` third:
    ``compile("adam", loss, ["accuracy"])`` stores the metric names there, and training then fails in Keras.
    """
    values = list(weights.values()) if isinstance(weights, dict) else (
        list(weights) if isinstance(weights, (list, tuple)) else [weights])
    if weights is None or all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        return weights
    raise UnsupportedModelError(
        f"the model was compiled with loss_weights {weights!r}, which are not numbers (Keras 3's compile takes "
        "optimizer, loss, loss_weights, metrics in that order): compile it with metrics=[...] by keyword.")

