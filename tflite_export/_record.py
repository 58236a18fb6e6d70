"""One way a report dataclass becomes a JSON-ready dict: :class:`Record`.

Every report and result class of both packages whose ``to_dict`` is its fields
derives from :class:`Record` instead of writing ``dataclasses.asdict`` plus
its own clean-up: numpy values become Python ones, tuples lists, and a class
may round its floats (``ROUND``) and say how NaN and infinity are written
(``NONFINITE``). Classes whose dict holds more than their fields (a computed
summary, a ratio) build it by hand and pass it through :func:`plain`.

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Row(Record):
    ...     ROUND = 2
    ...     name: str
    ...     ms: float
    ...     shape: tuple = ()
    >>> Row("a", 1.23456, (1, 2)).to_dict()
    {'name': 'a', 'ms': 1.23, 'shape': [1, 2]}
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, ClassVar, cast

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["Record", "plain"]


def _float(x: float, digits: int | None, nonfinite: str | None) -> float | str | None:
    if not math.isfinite(x) and nonfinite is not None:
        if nonfinite == "none" or math.isnan(x):
            return None
        return "inf" if x > 0 else "-inf"
    return round(x, digits) if digits is not None and math.isfinite(x) else x


def plain(value: Any, digits: int | None = None, nonfinite: str | None = None) -> Any:
    """``value`` made JSON-ready, recursively: dict keys as text, tuples and lists as lists,
    numpy arrays and scalars as Python values, floats rounded to ``digits`` decimals.

    Args:
        value: a dict, list, tuple, number, string, numpy value or None.
        digits: decimals of every float. Defaults to `None` (kept as they are).
        nonfinite: how a NaN or infinite float is written: ``"none"`` (None),
            ``"text"`` (NaN as None, infinities as ``"inf"``/``"-inf"``). Defaults
            to `None` (kept as they are).

    Example:
        >>> import numpy as np
        >>> plain({1: (np.float32(0.5), float("inf"))}, nonfinite="text")
        {'1': [0.5, 'inf']}
    """
    if isinstance(value, dict):
        return {str(k): plain(v, digits, nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, digits, nonfinite) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        value = value.tolist()
        if isinstance(value, list):
            return plain(value, digits, nonfinite)
    if isinstance(value, float):
        return _float(value, digits, nonfinite)
    return value


class Record:
    """Mixin of a report dataclass: :meth:`to_dict` is ``dataclasses.asdict`` made plain (see :func:`plain`)."""

    #: Decimals every float is rounded to in :meth:`to_dict` (None: kept as they are).
    ROUND: ClassVar[int | None] = None
    #: How :meth:`to_dict` writes NaN and infinity: None (as they are), ``"none"`` or ``"text"`` (see :func:`plain`).
    NONFINITE: ClassVar[str | None] = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, in field order."""
        return plain(dataclasses.asdict(cast("DataclassInstance", self)), self.ROUND, self.NONFINITE)
