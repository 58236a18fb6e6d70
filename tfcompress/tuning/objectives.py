"""Objectives, constraints and the Pareto front over accuracy × size × latency.

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

__all__ = ["OBJECTIVES", "TOLERANCE", "Constraint", "parse_objectives", "parse_constraint", "pareto_front", "score",
           "PENALTY"]

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


def parse_objectives(objectives):
    """Normalise objective names to metric keys.

    Args:
        objectives: a name, a comma-separated string or a list of names
            (``accuracy``, ``size``, ``latency``, or ``size_kb`` /
            ``latency_ms``). Defaults to all three when None or empty.

    Returns:
        List of metric keys, e.g. ``["accuracy", "size_kb"]``.

    Raises:
        TuningError: an unknown name.

    Example:
        >>> parse_objectives("accuracy,size")
        ['accuracy', 'size_kb']
    """
    if objectives is None or objectives == "" or objectives == []:
        objectives = ["accuracy", "size", "latency"]
    if isinstance(objectives, str):
        objectives = [o.strip() for o in objectives.split(",") if o.strip()]
    out = []
    for o in objectives:
        key = _ALIASES.get(str(o).lower())
        if key is None:
            raise TuningError(f"unknown objective {o!r}; use accuracy, size or latency.")
        metric = OBJECTIVES[key][0]
        if metric not in out:
            out.append(metric)
    return out


def direction(metric):
    return next(d for m, d in OBJECTIVES.values() if m == metric)


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


def parse_constraint(text):
    """Parse ``"latency_ms<=0.5"``, ``"size<=20"`` or ``"accuracy>=0.9"``.

    Raises:
        TuningError: bad syntax, unknown metric or a non-numeric bound.
    """
    if isinstance(text, Constraint):
        return text
    m = re.fullmatch(r"\s*([A-Za-z_]+)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*", str(text))
    if not m:
        raise TuningError(f"cannot read constraint {text!r}: write it like latency_ms<=0.5, "
                          "size_kb<=20 or accuracy>=0.9.")
    name, op, bound = m.groups()
    key = _ALIASES.get(name.lower())
    if key is None:
        raise TuningError(f"unknown constraint metric {name!r} in {text!r}; use accuracy, size_kb or latency_ms.")
    try:
        value = float(bound)
    except ValueError:
        raise TuningError(f"constraint {text!r}: {bound!r} is not a number.") from None
    return Constraint(OBJECTIVES[key][0], op, value)


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

    The first objective (accuracy as it is; size and latency as ``-ln(v)``,
    so that a 10 % smaller file or faster call scores the same at any scale)
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
    better on one (accuracy up; size and latency down). Latency differences
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
