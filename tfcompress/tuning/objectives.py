"""Objectives, constraints and the Pareto front over quality × size × latency.

Quality is the model's own headline metric with its direction: ``accuracy``
(maximised) for a classifier; for any other task the metric its report leads
with (the first compiled metric, e.g. ``mae`` minimised or ``iou``
maximised; ``loss`` when none is compiled). Users name it by that name or by
the alias ``metric`` (``quality`` too), so ``--objective metric,size`` fits
every model.

Keras Tuner ranks trials by one number (a list of objectives is *summed*).
tfcompress keeps the three measurements apart: the oracle is guided by one
scalar ``score`` (the first objective, minus a penalty for broken
constraints, see :func:`score`), while the result reports the true
non-dominated set and chooses among the trials that meet every constraint.

Example:
    >>> c = parse_constraint("size_kb<=20")
    >>> c.ok({"size_kb": 12.0}), c.ok({"size_kb": 25.0})
    (True, False)
    >>> rows = [{"accuracy": 0.9, "size_kb": 10, "latency_ms": 1},
    ...         {"accuracy": 0.8, "size_kb": 12, "latency_ms": 2}]
    >>> pareto_front(rows, ["accuracy", "size_kb", "latency_ms"])
    [0]
"""

import math
import re
from dataclasses import dataclass

from tfcompress.errors import TuningError
from tfcompress.report import lower_is_better

__all__ = ["OBJECTIVES", "TOLERANCE", "Constraint", "parse_objectives", "parse_constraint", "pareto_front", "score",
           "choose", "PENALTY", "QUALITY_ALIASES", "direction", "reserved_metric", "better", "quality_of",
           "format_quality"]

# Objective name -> (metric key, direction).
OBJECTIVES = {
    "accuracy": ("accuracy", "max"),
    "size": ("size_kb", "min"),
    "latency": ("latency_ms", "min"),
}
_ALIASES = {
    "accuracy": "accuracy", "acc": "accuracy", "val_accuracy": "accuracy",
    "size": "size", "size_kb": "size", "zipped_kb": "size",
    "latency": "latency", "latency_ms": "latency",
}
# Names that mean "the model's own headline metric", whatever it is called.
QUALITY_ALIASES = ("metric", "quality")
# What a trial reports besides its quality metric: a metric of the model by one of these names would collide.
_TRIAL_KEYS = ("size_kb", "latency_ms", "epochs", "train_seconds", "export_seconds", "seconds", "rss_mb",
               "peak_rss_mb", "score")


def reserved_metric(metric):
    """Whether ``metric`` (a model's headline metric) collides with a trial measurement's name.

    Example:
        >>> reserved_metric("mae"), reserved_metric("score")
        (False, True)
    """
    low = metric.lower()
    return low in _TRIAL_KEYS or low in QUALITY_ALIASES or _ALIASES.get(low) in ("size", "latency")


def _key(name, metric, what):
    """The metric key ``name`` means in a search scored by ``metric``, or why not."""
    low = str(name).strip().lower()
    if low in QUALITY_ALIASES or low == metric.lower() or low == f"val_{metric.lower()}":
        return metric
    alias = _ALIASES.get(low)
    if alias == "accuracy" and metric != "accuracy":
        raise TuningError(f"this model is not scored by accuracy but by {metric} ({direction(metric)}imised): "
                          f"use {metric} (or 'metric') as the {what}.")
    if alias is None:
        return None
    return OBJECTIVES[alias][0]


def parse_objectives(objectives, metric="accuracy"):
    """Normalise objective names to metric keys.

    Args:
        objectives: a name, a comma-separated string or a list of names
            (the model's metric by its name or as ``metric``/``quality``,
            ``size``, ``latency``, or ``size_kb`` / ``latency_ms``).
            Defaults to all three when None or empty.
        metric: the model's quality metric (``accuracy`` for a classifier,
            else its headline metric, e.g. ``mae``). Defaults to `"accuracy"`.

    Returns:
        List of metric keys, e.g. ``["accuracy", "size_kb"]``.

    Raises:
        TuningError: an unknown name, or ``accuracy`` for a model scored by another metric.

    Example:
        >>> parse_objectives("accuracy,size")
        ['accuracy', 'size_kb']
        >>> parse_objectives("metric,latency", metric="mae")
        ['mae', 'latency_ms']
    """
    if objectives is None or objectives == "" or objectives == []:
        objectives = [metric, "size", "latency"]
    if isinstance(objectives, str):
        objectives = [o.strip() for o in objectives.split(",") if o.strip()]
    out = []
    for o in objectives:
        key = _key(o, metric, "objective")
        if key is None:
            raise TuningError(f"unknown objective {o!r}; use {metric}, size or latency.")
        if key not in out:
            out.append(key)
    return out


def direction(metric):
    """``"max"`` or ``"min"``: size and latency down, accuracy up, any other
    metric by its name (:func:`tfcompress.report.lower_is_better`).

    Example:
        >>> direction("accuracy"), direction("mae"), direction("iou"), direction("loss")
        ('max', 'min', 'max', 'min')
    """
    for m, d in OBJECTIVES.values():
        if m == metric:
            return d
    return "min" if lower_is_better(metric) else "max"


def better(metric):
    """``"lower"`` or ``"higher"``: which way ``metric`` improves, in words.

    Example:
        >>> better("mae"), better("accuracy")
        ('lower', 'higher')
    """
    return "lower" if direction(metric) == "min" else "higher"


def quality_of(metric):
    """What ``trials.json`` and ``settings.json`` record of the quality metric: its key and direction.

    Example:
        >>> quality_of("mae")
        {'metric': 'mae', 'direction': 'min'}
    """
    return {"metric": metric, "direction": direction(metric)}


def format_quality(metric, value):
    """A quality value for tables and progress lines: accuracy as a percentage, any other metric in its unit.

    Example:
        >>> format_quality("accuracy", 0.9312), format_quality("mae", 0.123456)
        ('93.12%', '0.1235')
    """
    return f"{value:.2%}" if metric == "accuracy" else f"{value:.4g}"


@dataclass(frozen=True)
class Constraint:
    """``metric op bound``, e.g. ``latency_ms <= 0.5``; ``str()`` gives it back
    as text that :func:`parse_constraint` reads as the same constraint.

    Example:
        >>> Constraint("accuracy", ">=", 0.9).ok({"accuracy": 0.95})
        True
    """

    metric: str
    op: str
    bound: float

    def ok(self, metrics):
        v = metrics.get(self.metric)
        if v is None or not math.isfinite(v):
            return False
        return {"<=": v <= self.bound, "<": v < self.bound, ">=": v >= self.bound, ">": v > self.bound}[self.op]

    def violation(self, metrics):
        """How far outside the bound, relative to the bound (0 when met)."""
        v = metrics.get(self.metric)
        if v is None or not math.isfinite(v):
            return 1.0
        scale = abs(self.bound) or 1.0
        if self.op in ("<=", "<"):
            return max(0.0, (v - self.bound) / scale)
        return max(0.0, (self.bound - v) / scale)

    def __str__(self):
        # Constraints travel as text (settings.json, worker command lines):
        # the bound is written in full, so parse_constraint(str(c)) == c.
        return f"{self.metric}{self.op}{_number(self.bound)}"


def _number(x):
    """The shortest text that reads back as exactly ``x`` ("20", not "20.0").

    Example:
        >>> _number(20.0), _number(20.0000001), _number(1234567.0), _number(1e-7)
        ('20', '20.0000001', '1234567', '1e-07')
    """
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def parse_constraint(text, metric="accuracy"):
    """Parse ``"latency_ms<=0.5"``, ``"size<=20"`` or ``"accuracy>=0.9"``
    (``"mae<=0.3"`` or ``"metric<=0.3"`` for a model scored by MAE).

    Args:
        text: the constraint, or a :class:`Constraint`.
        metric: the model's quality metric (see :func:`parse_objectives`).
            Defaults to `"accuracy"`.

    Raises:
        TuningError: bad syntax, unknown metric or a non-numeric bound.
    """
    if isinstance(text, Constraint):
        return text
    m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*", str(text))
    example = "accuracy>=0.9" if metric == "accuracy" else f"{metric}{'<=' if direction(metric) == 'min' else '>='}0.5"
    if not m:
        raise TuningError(f"cannot read constraint {text!r}: write it like latency_ms<=0.5, "
                          f"size_kb<=20 or {example}.")
    name, op, bound = m.groups()
    key = _key(name, metric, "constraint's metric")
    if key is None:
        raise TuningError(f"unknown constraint metric {name!r} in {text!r}; use {metric}, size_kb or latency_ms.")
    try:
        value = float(bound)
    except ValueError:
        raise TuningError(f"constraint {text!r}: {bound!r} is not a number.") from None
    return Constraint(key, op, value)


# Score lost per unit of relative constraint violation (each constraint's
# violation capped at 1), by algorithm. Hyperband promotes the best-scoring
# trials of a bracket and more epochs never fix a size or latency, so a broken
# constraint must outrank any accuracy gain there. Bayesian optimisation fits
# a Gaussian process to the score: a steep penalty turns the surface into a
# cliff that the process extrapolates to the edge of the space (measured: 95 %
# sparsity, 23 % accuracy), so it gets a gentle slope that still points at the
# feasible side. Random search ignores the score.
PENALTY = {"bayesian": 1.0, "hyperband": 10.0, "random": 10.0}


def score(metrics, objectives, constraints=(), weight=10.0):
    """The scalar the oracle maximises.

    The first objective (accuracy, or another metric that is better higher,
    as it is; size, latency and any metric that is better lower, such as
    MAE, as ``-ln(v)``, so that a 10 % smaller file, faster call or error
    scores the same at any scale)
    minus ``weight`` per unit of relative constraint violation, each
    constraint's violation capped at 1.

    Args:
        metrics: the trial's measurements.
        objectives: metric keys; only the first counts here.
        constraints: :class:`Constraint` objects. Defaults to `()`.
        weight: penalty per unit of violation (see ``PENALTY``). Defaults to `10.0`.

    Returns:
        The score (higher is better).

    Example:
        >>> c = [parse_constraint("size_kb<=20")]
        >>> score({"accuracy": 0.8, "size_kb": 25.0}, ["accuracy"], c, weight=1.0)
        0.55
        >>> round(score({"accuracy": 0.8, "size_kb": 90.0}, ["accuracy"], c, weight=1.0), 2)
        -0.2
    """
    first = objectives[0]
    v = metrics[first]
    s = v if direction(first) == "max" else -math.log(max(v, 1e-12))
    return s - weight * sum(min(1.0, c.violation(metrics)) for c in constraints)


# Relative differences below these are measurement noise, not a trade-off:
# two latencies 3 % apart are "equal" for dominance.
TOLERANCE = {"latency_ms": 0.05}


def pareto_front(rows, metrics, tolerance=None):
    """Indices of the non-dominated rows.

    A row dominates another when it is at least as good on every metric and
    better on one (accuracy up; size and latency down; any other metric in
    its own direction, see :func:`direction`). Latency differences
    under 5 % (``TOLERANCE``) count as ties, since repeated timings of one
    file vary that much.

    Args:
        rows: dicts holding the ``metrics`` keys.
        metrics: metric keys, e.g. ``["accuracy", "size_kb", "latency_ms"]``.
        tolerance: metric → relative tolerance. Defaults to `None`
            (``TOLERANCE``); pass ``{}`` for exact comparisons.

    Returns:
        Sorted list of indices into ``rows``.

    Example:
        >>> pareto_front([{"size_kb": 1.0}, {"size_kb": 2.0}], ["size_kb"])
        [0]
    """
    tol = TOLERANCE if tolerance is None else tolerance

    def better(m, a, b):  # a strictly better than b on m
        eps = tol.get(m, 0.0) * max(abs(a), abs(b))
        return a > b + eps if direction(m) == "max" else a < b - eps

    front = []
    for i, a in enumerate(rows):
        dominated = False
        for j, b in enumerate(rows):
            if j == i:
                continue
            if any(better(m, a[m], b[m]) for m in metrics):
                continue  # a wins somewhere: b does not dominate it
            if any(better(m, b[m], a[m]) for m in metrics):
                dominated = True
                break
        if not dominated:
            front.append(i)
    return front


def choose(rows, objectives):
    """The Pareto set (trial ids) of feasible trial rows and the chosen row (None when there are none).

    Rows of full fidelity (``compression_share`` 1, every stage on all the
    training data: what ``optimize --recipe`` replays) are chosen from when
    there are any; Hyperband trials whose compression ran on a share of the
    data are only a fallback. The chosen row is the Pareto row best on the
    first objective, ties broken by size, then latency.

    Example:
        >>> rows = [{"trial_id": "0", "metrics": {"accuracy": 0.9, "size_kb": 2.0, "latency_ms": 1.0}},
        ...         {"trial_id": "1", "compression_share": 0.2,
        ...          "metrics": {"accuracy": 0.95, "size_kb": 2.0, "latency_ms": 1.0}}]
        >>> choose(rows, ["accuracy", "size_kb"])[1]["trial_id"]
        '0'
    """
    full = [r for r in rows if r.get("compression_share", 1.0) >= 1.0] or list(rows)
    cands = [full[i] for i in pareto_front([r["metrics"] for r in full], objectives)]
    if not cands:
        return [], None
    sign = -1 if direction(objectives[0]) == "max" else 1
    best = min(cands, key=lambda r: (sign * r["metrics"][objectives[0]], r["metrics"]["size_kb"],
                                     r["metrics"]["latency_ms"]))
    return [r["trial_id"] for r in cands], best
