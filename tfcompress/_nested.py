"""Data of models with several inputs or outputs: an array, or a dict (by name) or list of arrays.

The user's data keeps the structure the model takes, from the ``.npz`` file
(``x_train/<input name>``, ``y_train/<output name>``) through the splits,
scaling, fine-tuning, calibration and scoring; these helpers do to each array
what would be done to one.

Example:
    >>> import numpy as np
    >>> x = {"a": np.zeros((5, 2)), "b": np.ones((5, 3))}
    >>> count(x), {k: v.shape for k, v in take(x, 2).items()}
    (5, {'a': (2, 2), 'b': (2, 3)})
    >>> named({"x/a": 1, "x/b": 2, "y": 3}, "x")
    {'a': 1, 'b': 2}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["each", "flat", "count", "take", "named", "shapes"]


def each(fn: Callable, value: Any) -> Any:
    """``fn`` applied to every array of ``value``, keeping its structure."""
    if isinstance(value, dict):
        return {k: fn(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(fn(v) for v in value)
    return fn(value)


def flat(value: Any) -> list:
    """The arrays of ``value``, in order."""
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def count(value: Any) -> int:
    """How many examples ``value`` holds (the first array's length)."""
    return len(flat(value)[0])


def take(value: Any, n: Any) -> Any:
    """The examples ``n`` (a count, a slice or an index array) of every array."""
    return each(lambda a: a[:n] if isinstance(n, int) else a[n], value)


def shapes(value: Any) -> Any:
    """Each array's shape without the batch axis, in ``value``'s structure."""
    return each(lambda a: tuple(a.shape[1:]), value)


def named(arrays: dict, key: str) -> Any:
    """``arrays[key]``, or the ``{name: array}`` saved as ``key/<name>`` (one per input or output), or None."""
    if key in arrays:
        return arrays[key]
    prefix = key + "/"
    parts = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix) and len(k) > len(prefix)}
    return parts or None
