"""The user's metric as one number that budget mode and sensitivity scans can subtract.

A :class:`Scorer` scores a Keras model or a ``.tflite`` file on labelled data in
the task's headline metric (:func:`tfcompress.task.headline`: accuracy for a
classifier, else the first compiled metric: IoU, MAE, ``box_mae``...) and
returns *points, higher is better*: a metric bounded in [0, 1] (accuracy, IoU,
AUC, precision, recall) times 100, any other metric (MAE, MSE, a loss) with
its sign turned so that higher is better. A drop is then ``ref - got`` in
the metric's own unit (points for accuracy and IoU; MAE units for an MAE),
whatever the metric's direction.

Example:
    >>> from tfcompress.task import Task
    >>> s = Scorer(Task("mse", ["mae"], classifier=False), "mae")
    >>> s.points(0.25), s.value(-0.25), s.unit
    (-0.25, 0.25, 'mae')
    >>> Scorer(Task("sparse_categorical_crossentropy", ["accuracy"]), "accuracy").points(0.9)
    90.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

import tflite_export
from tfcompress._keras import tf
from tfcompress._nested import count, take
from tfcompress.report import lower_is_better
from tfcompress.task import Task, headline

__all__ = ["Scorer", "accuracy", "baseline_problem", "take", "count"]

#: Metrics bounded in [0, 1], higher better: scored in points (x100), as accuracy always was.
FRACTIONS = ("accuracy", "iou", "auc", "precision", "recall", "f1", "fbeta")


def _batch(x: Any, start: int, size: int) -> Any:
    return tf.nest.map_structure(lambda a: tf.convert_to_tensor(a[start:start + size]), x)


def accuracy(model: Any, x: Any, y: Any, batch_size: int = 256) -> float:
    """Top-1 accuracy of a one-output classifier ``model`` on (x, y) (labels as ids or one-hot)."""
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] > 1:
        y = y.argmax(-1)
    y = y.reshape(-1)
    hits, n = 0, count(x)
    for i in range(0, n, batch_size):
        out = np.asarray(model(_batch(x, i, batch_size), training=False))
        pred = out.argmax(-1) if out.shape[-1] > 1 else (out[..., 0] > 0.5).astype(int)
        hits += int((pred.reshape(-1) == y[i:i + batch_size]).sum())
    return hits / n


def _predict(model: Any, x: Any, batch_size: int = 256) -> Any:
    """The model's outputs on ``x``, batched, in inference mode; several outputs keyed by name."""
    parts = []
    for i in range(0, count(x), batch_size):
        out = model(_batch(x, i, batch_size), training=False)
        parts.append(tf.nest.map_structure(lambda t: np.asarray(t), out))
    out = tf.nest.map_structure(lambda *a: np.concatenate(a), *parts)
    if isinstance(out, (list, tuple)):
        return dict(zip(model.output_names, out))
    return out


def _leads_with_accuracy(metrics: Any) -> bool:
    """Whether a classifier's first metric is accuracy (or none is given)."""
    while isinstance(metrics, (list, tuple)) and metrics:
        metrics = metrics[0]
    if isinstance(metrics, dict) and "class_name" not in metrics:  # per output name: a classifier has one output
        return _leads_with_accuracy(next(iter(metrics.values()), None))
    return not metrics or (isinstance(metrics, str) and metrics.lower() in ("accuracy", "acc"))


class Scorer:
    """A model's or a file's quality in the task's headline metric, as points (higher is better).

    Attributes:
        task: the :class:`~tfcompress.task.Task`.
        name: the metric (an ``evaluate`` key: ``"accuracy"``, ``"iou"``, ``"box_mae"``).
        lower: True when a smaller value of the metric is better.
        unit: ``"points"`` for a [0, 1] metric scored x100, else the metric's name.
    """

    def __init__(self, task: Task, name: str):
        self.task, self.name = task, name
        self.lower = lower_is_better(name)
        self.fraction = not self.lower and any(w in name.lower() for w in FRACTIONS)
        self.unit = "points" if self.fraction else name

    @classmethod
    def of(cls, task: Task, model: Any, x: Any, y: Any) -> Scorer:
        """The scorer of ``task``'s headline metric, found by scoring ``model`` once on (x, y).

        A classifier's headline is its first compiled metric: accuracy, unless
        the user compiled another first (``AUC``, ``precision``): that one is scored.
        """
        if task.classifier and _leads_with_accuracy(task.metrics):
            return cls(task, "accuracy")
        return cls(task, headline(task.score(y, _predict(model, x))))

    def points(self, value: float) -> float:
        """The metric's value as points, higher is better."""
        value = float(value)
        return 100.0 * value if self.fraction else (-value if self.lower else value)

    def value(self, points: float) -> float:
        """The metric's value from points (the inverse of :meth:`points`)."""
        return points / 100.0 if self.fraction else (-points if self.lower else points)

    def model(self, model: Any, x: Any, y: Any) -> float:
        """Points of a Keras model on (x, y)."""
        if self.task.classifier and self.name == "accuracy":
            return self.points(accuracy(model, x, y))
        return self.points(self.task.score(y, _predict(model, x))[self.name])

    def file(self, path: str, x: Any, y: Any) -> float:
        """Points of a ``.tflite`` file on (x, y)."""
        if self.task.classifier and self.name == "accuracy":
            return self.points(tflite_export.evaluate(path, x, y))
        several = isinstance(y, (dict, list, tuple))
        return self.points(self.task.score(y, tflite_export.predict(path, x, as_dict=several))[self.name])

    def drop(self, ref: float, got: float) -> float:
        """How much worse ``got`` is than ``ref`` (both points), in the metric's unit."""
        return round(ref - got, 6)


def baseline_problem(task: Task, y_true: Any, y_pred: Any, accuracy: float | None = None) -> str | None:
    """Why the model, before any compression, looks unfit for the data it was given, or None.

    A classifier at chance (accuracy within two standard errors of always
    answering the most common label, on at least 30 examples), or a
    single-output regression whose mean squared error is over 4x that of
    predicting the targets' mean, is almost always a data problem: inputs
    scaled twice or not at all, labels in another order, missing
    preprocessing.

    Args:
        task: the model's :class:`Task`.
        y_true: the targets of one output (class ids or one-hot rows for a classifier).
        y_pred: the model's predictions for them (unused for a classifier when ``accuracy`` is given).
        accuracy: a classifier's argmax accuracy on exactly these targets, already measured. Defaults to `None`.

    Example:
        >>> baseline_problem(Task("scce"), np.arange(100) % 10, np.eye(10)[np.zeros(100, int)])[:27]
        'accuracy 10.0% is at chance'
    """
    y = np.asarray(y_true)
    n = len(y)
    if n < 30:
        return None
    if task.classifier:
        ids = y.argmax(-1) if y.ndim == 2 and y.shape[1] > 1 else np.rint(y.reshape(n, -1)[:, 0])
        if accuracy is None:
            pred = np.asarray(y_pred, dtype="float64")
            if pred.ndim == 2 and pred.shape[1] > 1:
                guess = pred.argmax(-1)
            else:  # one unit: probabilities after a sigmoid, else logits
                one = pred.reshape(n)
                guess = one > (0.5 if one.min() >= 0 and one.max() <= 1 else 0.0)
            accuracy = float(np.mean(guess.astype("int64") == ids.astype("int64")))
        p = float(np.bincount(ids.astype("int64")).max()) / n
        if accuracy <= p + 2 * float(np.sqrt(p * (1 - p) / n)):
            return f"accuracy {accuracy:.1%} is at chance (always answering the most common label scores {p:.1%})"
        return None
    y, pred = y.reshape(n, -1).astype("float64"), np.asarray(y_pred, dtype="float64").reshape(n, -1)
    if y.shape != pred.shape:
        return None
    base = float(np.mean((y - y.mean(axis=0)) ** 2))
    mse = float(np.mean((y - pred) ** 2))
    if base > 0 and mse > 4 * base:
        return (f"its mean squared error {mse:.4g} is {mse / base:.1f}x that of predicting the targets' mean "
                f"({base:.4g})")
    return None
