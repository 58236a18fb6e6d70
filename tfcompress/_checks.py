"""The range and type checks every recipe stage and argument uses.

Each check raises :class:`~tfcompress.errors.RecipeError` naming the field
(``"<where>.<name>"``, or just ``name`` for a function argument) and what is
allowed, in one line. The recipe stages, the ``channels`` stage and functions,
and the tuner's search space all validate through these, so a value has one
rule and one message wherever it is given.

Example:
    >>> check_range("pruning", "final_sparsity", 0.5, 0, 1, hi_open=True)
    0.5
    >>> check_range("pruning", "final_sparsity", 1.0, 0, 1, hi_open=True)
    Traceback (most recent call last):
    ...
    tfcompress.errors.RecipeError: pruning.final_sparsity must be in [0, 1), got 1.0.
"""

import numbers
import re

from tfcompress.errors import RecipeError

__all__ = [
    "is_int", "is_real", "check_range", "check_positive", "check_choice", "check_bool", "check_int", "check_int_pair",
    "check_patterns", "fraction_removed", "fraction_kept",
]


def _label(where, name):
    return f"{where}.{name}" if where else name


def is_int(value):
    """True for an integer that is not a bool (``numpy`` integers count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value):
    """True for a real number that is not a bool (``numpy`` floats count)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_range(where, name, value, lo, hi, lo_open=False, hi_open=False, meaning=None):
    """Check that ``value`` is a number in an interval.

    Args:
        where: the stage (``"pruning"``) or None for a function argument.
        name: the field or argument name.
        value: the value to check.
        lo: lower bound.
        hi: upper bound.
        lo_open: exclude ``lo``. Defaults to `False`.
        hi_open: exclude ``hi``. Defaults to `False`.
        meaning: what the number is, added to the message (``"the fraction of
            FLOPs to keep"``). Defaults to `None`.

    Returns:
        ``value``, unchanged.

    Raises:
        RecipeError: not a number, or out of the interval.

    Example:
        >>> check_range("distillation", "temperature", 2, 0, 100, lo_open=True)
        2
    """
    interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    extra = f" ({meaning})" if meaning else ""
    if not is_real(value):
        raise RecipeError(f"{_label(where, name)} must be a number in {interval}{extra}, got {value!r}.")
    ok_lo = value > lo if lo_open else value >= lo
    ok_hi = value < hi if hi_open else value <= hi
    if not (ok_lo and ok_hi):
        raise RecipeError(f"{_label(where, name)} must be in {interval}{extra}, got {value!r}.")
    return value


def check_choice(where, name, value, choices):
    """Check that ``value`` is one of ``choices``; returns it.

    Example:
        >>> check_choice("recipe", "optimizer", "sgd", ("adam", "sgd"))
        'sgd'
    """
    if value not in choices:
        raise RecipeError(f"{_label(where, name)} must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value


def check_bool(where, name, value, optional=False):
    """Check that ``value`` is True or False (or None with ``optional``); returns it.

    Example:
        >>> check_bool("clustering", "preserve_sparsity", None, optional=True) is None
        True
    """
    if not (isinstance(value, bool) or (optional and value is None)):
        raise RecipeError(
            f"{_label(where, name)} must be true or false{' or null' if optional else ''}, got {value!r}."
        )
    return value


def check_int(where, name, value, minimum=1, optional=False, phrase=None):
    """Check that ``value`` is an integer of at least ``minimum`` (or None with ``optional``).

    Args:
        where: the stage (``"pruning"``) or None for a function argument.
        name: the field or argument name.
        value: the value to check.
        minimum: the smallest allowed value. Defaults to `1`.
        optional: None is allowed too. Defaults to `False`.
        phrase: what the message says is allowed. Defaults to `None`
            (``"an integer of at least <minimum>"``).

    Returns:
        ``value``, unchanged.

    Raises:
        RecipeError: not an integer, or below ``minimum``.

    Example:
        >>> check_int("pruning", "epochs", 0)
        Traceback (most recent call last):
        ...
        tfcompress.errors.RecipeError: pruning.epochs must be an integer of at least 1, got 0.
    """
    if optional and value is None:
        return None
    if not is_int(value) or value < minimum:
        allowed = phrase or f"an integer of at least {minimum}"
        raise RecipeError(f"{_label(where, name)} must be {allowed}{' or null' if optional else ''}, got {value!r}.")
    return value


def check_positive(where, name, value):
    """Check that ``value`` is a number above 0; returns it.

    Example:
        >>> check_positive("channels", "temperature", 4.0)
        4.0
    """
    if not is_real(value) or not value > 0:
        raise RecipeError(f"{_label(where, name)} must be a number > 0, got {value!r}.")
    return value


def check_int_pair(where, name, value):
    """A pair of positive integers (YAML gives a list) as a tuple, or None.

    Example:
        >>> check_int_pair("pruning", "block_size", [1, 4])
        (1, 4)
    """
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
        is_int(v) and v >= 1 for v in value
    ):
        raise RecipeError(f"{_label(where, name)} must be a pair of positive integers like [2, 4], got {value!r}.")
    return tuple(int(v) for v in value)


def check_patterns(where, name, value):
    """Layer names / regular expressions / layer types as a tuple, or None.

    A single string is one pattern.

    Example:
        >>> check_patterns("pruning", "exclude", "logits")
        ('logits',)
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and p for p in value):
        raise RecipeError(
            f"{_label(where, name)} must be a list of layer names, regular expressions or layer types, "
            f"got {value!r}."
        )
    for p in value:
        try:
            re.compile(p)
        except re.error as e:
            raise RecipeError(
                f"{_label(where, name)}: {p!r} is not a valid regular expression ({e}); escape it or fix it."
            ) from None
    return tuple(value)


def fraction_removed(where, name, value):
    """A fraction of channels to remove, in [0, 1), as a float.

    Example:
        >>> fraction_removed(None, "ratio", 0.5)
        0.5
    """
    return float(check_range(where, name, value, 0, 1, hi_open=True, meaning="the fraction of channels to remove"))


def fraction_kept(where, name, value, what=None):
    """A fraction of FLOPs or parameters to keep, in (0, 1], as a float; None passes.

    Args:
        where: the stage or None for a function argument.
        name: the field or argument name.
        value: the value to check.
        what: what is kept. Defaults to `None` (``name``).

    Example:
        >>> fraction_kept("channels", "flops", 0.5)
        0.5
    """
    if value is None:
        return None
    return float(check_range(where, name, value, 0, 1, lo_open=True, meaning=f"the fraction of {what or name} to keep"))
