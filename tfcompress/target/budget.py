"""The budget of budget mode: ``"drop<=1.0"``, ``"size<=40KB"`` or ``"latency<=2ms"``, parsed and checked.

A ``drop`` budget (what the task's headline metric loses against the float32
model on the validation data: accuracy or IoU points, an MAE's own unit;
:mod:`tfcompress.scoring`) is spent to make the file as small (``minimize="size"``) or
as fast (``minimize="latency"``) as it allows; a ``size`` budget (zipped
``.tflite`` bytes) or a ``latency`` budget (median milliseconds on XNNPACK) is
met while losing as little of that metric as possible; a drop after a comma
(``"size<=40KB, drop<=2"``) is the user's accuracy floor there: a file that
loses more does not meet the budget, and when no round meets it, a file that
keeps the floor ships before a closer one that does not.

Example:
    >>> t = parse_target("size<=40KB")
    >>> t.metric, t.limit
    ('size', 40960.0)
    >>> t.met(drop=3.0, zipped_bytes=30000, ms=None)
    True
    >>> check_minimize(parse_target("drop<=1"), None)
    'size'
    >>> f = parse_target("size<=40KB, drop<=2")
    >>> f.floor, f.met(drop=3.0, zipped_bytes=30000, ms=None), f.describe()
    (2.0, False, 'size <= 40960 B zipped with drop <= 2 points')
"""

import re
from dataclasses import dataclass

from tfcompress.errors import RecipeError

__all__ = ["Target", "parse_target", "check_minimize", "TARGET_FORMS"]

TARGET_FORMS = "target must look like 'drop<=1.0', 'size<=40KB' or 'latency<=2ms'"
_UNITS = {
    "drop": {"": 1.0, "pt": 1.0, "pts": 1.0, "points": 1.0},
    "size": {"b": 1.0, "kb": 1024.0, "mb": 1024.0 ** 2},
    "latency": {"ms": 1.0, "us": 1e-3, "s": 1e3},
}
_FORM = re.compile(r"\s*(drop|size|latency)\s*<=\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    """A parsed budget.

    Attributes:
        metric: ``"drop"`` (accuracy points), ``"size"`` (zipped bytes) or
            ``"latency"`` (milliseconds).
        limit: the bound, in those units.
        text: the string it came from.
        floor: under a size or latency budget, the most drop the user
            accepts (the accuracy floor), or None; a drop budget is its own floor.
    """

    metric: str
    limit: float
    text: str
    floor: float | None = None

    def met(self, drop, zipped_bytes, ms):
        """True when the measured file keeps the budget and the floor (a value not measured counts as met)."""
        value = {"drop": drop, "size": zipped_bytes, "latency": ms}[self.metric]
        return (value is None or value <= self.limit + 1e-9) and self.keeps_floor(drop)

    def keeps_floor(self, drop):
        """True when ``drop`` is within the accuracy floor (the drop budget itself, or ``floor``; none: True)."""
        floor = self.limit if self.metric == "drop" else self.floor
        return floor is None or drop is None or drop <= floor + 1e-9

    def describe(self):
        unit = {"drop": " points", "size": " B zipped", "latency": " ms"}[self.metric]
        return f"{self.metric} <= {self.limit:g}{unit}" + ("" if self.floor is None else
                                                            f" with drop <= {self.floor:g} points")


def parse_target(text):
    """Parse a budget string into a :class:`Target`.

    Args:
        text: ``"drop<=1.0"`` (points, also ``pt``/``pts``), ``"size<=40KB"``
            (``B``, ``KB``, ``MB``; 1 KB = 1024 B, zipped) or
            ``"latency<=2ms"`` (``ms``, ``us``, ``s``); a size or latency
            budget may add an accuracy floor: ``"size<=40KB, drop<=2"``.

    Returns:
        A :class:`Target`.

    Raises:
        RecipeError: any other string, or a bound that is not above 0 (a
            drop bound may be 0).

    Example:
        >>> parse_target("latency <= 500us").limit
        0.5
    """
    if isinstance(text, Target):
        return text
    if isinstance(text, str) and "," in text:  # "size<=40KB, drop<=2": a size or latency budget with a floor
        main, _, rest = text.partition(",")
        try:
            budget, floor = parse_target(main), parse_target(rest)
        except RecipeError:
            budget = floor = None
        if budget is None or floor is None or budget.metric == "drop" or floor.metric != "drop":
            raise RecipeError(f"{TARGET_FORMS}, or a size or latency budget with a drop floor "
                              f"('size<=40KB, drop<=2'), got {text!r}.")
        return Target(budget.metric, budget.limit, text.strip(), floor.limit)
    m = _FORM.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise RecipeError(f"{TARGET_FORMS}, got {text!r}.")
    metric, value, unit = m.group(1).lower(), float(m.group(2)), m.group(3).lower()
    units = _UNITS[metric]
    if unit not in units:
        allowed = ", ".join(u for u in units if u) or "none"
        raise RecipeError(f"{TARGET_FORMS}, got {text!r}: the unit of {metric} is one of {allowed}.")
    if metric != "drop" and value <= 0:
        raise RecipeError(f"{TARGET_FORMS}, got {text!r}: the {metric} bound must be above 0.")
    return Target(metric, value * units[unit], text.strip())


def check_minimize(target, minimize):
    """What budget mode minimises: ``"size"``/``"latency"`` under a drop budget, ``"drop"`` otherwise.

    Raises:
        RecipeError: ``minimize`` is not one of those, or asks for size or
            latency under a size or latency budget (accuracy is what is then
            maximised).

    Example:
        >>> check_minimize(parse_target("size<=10KB"), None)
        'drop'
    """
    if minimize is not None and minimize not in ("size", "latency", "drop"):
        raise RecipeError(f"minimize must be 'size' or 'latency' (or None), got {minimize!r}.")
    if target.metric == "drop":
        return "size" if minimize in (None, "drop") else minimize
    if minimize not in (None, "drop"):
        raise RecipeError(f"minimize={minimize!r} does not go with target {target.text!r}: under a size or latency "
                          "budget the accuracy is maximised; leave minimize unset or use a 'drop<=...' target.")
    return "drop"
