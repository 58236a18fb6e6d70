"""The range and type checks every recipe stage and argument uses.

Each check raises :class:`~tfcompress.errors.RecipeError` naming the field
(``"<where>.<name>"``, or just ``name`` for a function argument) and what is
allowed, in one line. The data checks (:func:`check_array`,
:func:`check_finite`, :func:`check_class_ids`, :func:`check_probabilities`)
raise :class:`~tfcompress.errors.DataError` the same way, naming the argument
(``"train_data: y"``) and the first bad example. The recipe stages, the ``channels`` stage and functions,
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

import math
import numbers
import re
import reprlib

import numpy as np

from tfcompress.errors import DataError, RecipeError

__all__ = [
    "brief", "is_int", "is_real", "check_range", "check_positive", "check_choice", "check_bool", "check_int",
    "check_int_pair",
    "check_patterns", "check_instances", "fraction_removed", "fraction_kept",
    "check_array", "check_finite", "check_class_ids", "check_probabilities",
]

#: The largest integer a count (epochs, steps, clusters, batch size) may be:
#: TensorFlow holds these in int32 tensors, where bigger values overflow.
INT_MAX = 2**31 - 1


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def brief(value):
    """``repr(value)`` cut to a few dozen characters: a message must stay one short line, whatever the
    value (a YAML file may hold a list of a million items, or one shared a million times).

    Example:
        >>> brief(list(range(100)))
        '[0, 1, 2, 3, 4, 5, ...]'
    """
    return _REPR.repr(value)


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
        raise RecipeError(f"{_label(where, name)} must be a number in {interval}{extra}, got {brief(value)}.")
    ok_lo = value > lo if lo_open else value >= lo
    ok_hi = value < hi if hi_open else value <= hi
    if not (ok_lo and ok_hi):
        raise RecipeError(f"{_label(where, name)} must be in {interval}{extra}, got {brief(value)}.")
    return value


def check_choice(where, name, value, choices):
    """Check that ``value`` is one of ``choices``; returns it.

    Example:
        >>> check_choice("recipe", "optimizer", "sgd", ("adam", "sgd"))
        'sgd'
    """
    if value not in choices:
        raise RecipeError(f"{_label(where, name)} must be one of {', '.join(map(repr, choices))}, got {brief(value)}.")
    return value


def check_bool(where, name, value, optional=False):
    """Check that ``value`` is True or False (or None with ``optional``); returns it.

    Example:
        >>> check_bool("clustering", "preserve_sparsity", None, optional=True) is None
        True
    """
    if not (isinstance(value, bool) or (optional and value is None)):
        raise RecipeError(
            f"{_label(where, name)} must be true or false{' or null' if optional else ''}, got {brief(value)}."
        )
    return value


def check_int(where, name, value, minimum=1, optional=False, phrase=None, maximum=INT_MAX):
    """Check that ``value`` is an integer of at least ``minimum`` (or None with ``optional``).

    Args:
        where: the stage (``"pruning"``) or None for a function argument.
        name: the field or argument name.
        value: the value to check.
        minimum: the smallest allowed value. Defaults to `1`.
        optional: None is allowed too. Defaults to `False`.
        phrase: what the message says is allowed. Defaults to `None`
            (``"an integer of at least <minimum>"``).
        maximum: the largest allowed value. Defaults to `INT_MAX` (what
            TensorFlow's int32 counters hold).

    Returns:
        ``value``, unchanged.

    Raises:
        RecipeError: not an integer, below ``minimum`` or above ``maximum``.

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
        raise RecipeError(
            f"{_label(where, name)} must be {allowed}{' or null' if optional else ''}, got {brief(value)}.")
    if maximum is not None and value > maximum:
        raise RecipeError(f"{_label(where, name)} must be at most {maximum}, got {brief(value)}.")
    return value


def check_positive(where, name, value):
    """Check that ``value`` is a number above 0; returns it.

    Example:
        >>> check_positive("channels", "temperature", 4.0)
        4.0
    """
    if not is_real(value) or not value > 0 or not math.isfinite(value):
        raise RecipeError(f"{_label(where, name)} must be a number > 0, got {brief(value)}.")
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
        raise RecipeError(f"{_label(where, name)} must be a pair of positive integers like [2, 4], got {brief(value)}.")
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
            f"got {brief(value)}."
        )
    for p in value:
        try:
            re.compile(p)
        except re.error as e:
            raise RecipeError(
                f"{_label(where, name)}: {brief(p)} is not a valid regular expression ({e}); escape it or fix it."
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


def check_instances(where, name, value, cls, what):
    """Check that ``value`` is None or a list/tuple of ``cls`` instances; returns a list.

    Args:
        where: the stage or None for a function argument.
        name: the field or argument name.
        value: the value to check.
        cls: the class (or tuple of classes) every item must be.
        what: what the items are, for the message (``"Keras callbacks"``).

    Raises:
        RecipeError: not a list, or an item of another type.

    Example:
        >>> check_instances(None, "callbacks", None, object, "callbacks")
        []
    """
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise RecipeError(f"{_label(where, name)} must be a list of {what}, got {type(value).__name__}.")
    for i, item in enumerate(value):
        if not isinstance(item, cls):
            raise RecipeError(
                f"{_label(where, name)}[{i}] must be one of the {what}, got {type(item).__name__} {item!r:.60}."
            )
    return list(value)


def _data_label(where, name):
    return f"{where}: {name}" if where else name


def check_array(where, name, value):
    """``value`` as a numeric numpy array with one row per example.

    Strings, objects that are not numbers, complex numbers, dates and ragged
    nested lists are refused; bools and integers pass unchanged. Finiteness is
    :func:`check_finite`'s job.

    Args:
        where: the data argument (``"train_data"``) or None.
        name: which part of it (``"x"``, ``"y"``).
        value: an array or anything ``numpy.asarray`` takes.

    Returns:
        A numpy array of at least one dimension (object arrays of numbers
        become float64).

    Raises:
        DataError: a scalar, or values that are not real numbers.

    Example:
        >>> check_array("train_data", "y", [0, 1, 2]).dtype.kind
        'i'
        >>> check_array("train_data", "y", ["cat", "dog"])
        Traceback (most recent call last):
        ...
        tfcompress.errors.DataError: train_data: y holds strings (dtype <U3): convert them to numbers \
(class ids for labels) first.
    """
    label = _data_label(where, name)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise DataError(f"{label} is not an array ({str(e).splitlines()[0][:100]}): pass a numpy array.") from None
    if arr.ndim == 0:
        raise DataError(
            f"{label} must be an array with one row per example, got the single value {value!r:.40}."
        )
    kind = arr.dtype.kind
    if kind in "US":
        raise DataError(
            f"{label} holds strings (dtype {arr.dtype}): convert them to numbers (class ids for labels) first."
        )
    if kind == "O":
        try:
            arr = arr.astype("float64")
        except (TypeError, ValueError):
            first = next((v for v in arr.reshape(-1) if not is_real(v)), None)
            raise DataError(
                f"{label} holds values that are not numbers (e.g. {first!r:.40}): pass a numeric array."
            ) from None
    elif kind not in "biuf":
        raise DataError(f"{label} has dtype {arr.dtype}, which is not real numbers: pass a numeric array.")
    return arr


def check_finite(where, name, arr, offset=0):
    """Check that a numeric array holds no NaN or infinite value; returns it.

    Args:
        where: the data argument (``"train_data"``) or None.
        name: which part of it (``"x"``, ``"y"``).
        arr: a numpy array from :func:`check_array`, axis 0 = examples.
        offset: the index of ``arr[0]`` in the whole data (for batches).
            Defaults to `0`.

    Raises:
        DataError: a NaN or Inf, naming how many and the first example.

    Example:
        >>> check_finite("train_data", "x", np.array([[0.0], [np.nan]]))
        Traceback (most recent call last):
        ...
        tfcompress.errors.DataError: NaN or Inf in train_data x (1 value(s), the first in example 1): \
fix or drop those examples.
    """
    if arr.dtype.kind not in "fc" or np.isfinite(arr).all():
        return arr
    bad = ~np.isfinite(arr)
    first = int(np.argwhere(bad)[0][0]) + offset
    raise DataError(
        f"NaN or Inf in {_data_label(where, name).replace(': ', ' ')} ({int(bad.sum())} value(s), the first in "
        f"example {first}): fix or drop those examples."
    )


def check_class_ids(where, name, y, units, offset=0):
    """Class labels as int64, each in ``0..units - 1`` (``0..1`` for one unit).

    Args:
        where: the data argument (``"train_data"``) or None.
        name: which part of it (``"labels"``).
        y: a 1-D numeric array from :func:`check_array`.
        units: the model's output units (one sigmoid unit means classes 0
            and 1); None skips the range check.
        offset: the index of ``y[0]`` in the whole data. Defaults to `0`.

    Returns:
        ``y`` as int64.

    Raises:
        DataError: NaN/Inf, fractions, or ids outside the range.

    Example:
        >>> check_class_ids("train_data", "labels", np.array([0, 10]), 10)
        Traceback (most recent call last):
        ...
        tfcompress.errors.DataError: train_data: labels span 0..10 but the model has 10 output unit(s): \
labels must be in 0..9.
    """
    label = _data_label(where, name)
    check_finite(where, name, y, offset)
    if y.dtype.kind not in "biu":
        frac = np.mod(y, 1) != 0
        if frac.any():
            i = int(np.argmax(frac))
            raise DataError(
                f"{label} must be integer class ids or one-hot rows, got non-integer values "
                f"(e.g. {brief(y[i])} in example {i + offset})."
            )
    y = y.astype("int64")
    classes = max(units, 2) if units else None
    if len(y) and classes and (y.min() < 0 or y.max() >= classes):
        raise DataError(
            f"{label} span {int(y.min())}..{int(y.max())} but the model has {units} output unit(s): "
            f"labels must be in 0..{classes - 1}."
        )
    return y


def check_probabilities(where, name, y, offset=0, rows=True):
    """Soft or one-hot labels: finite, in [0, 1], each row summing to 1.

    Args:
        where: the data argument (``"train_data"``) or None.
        name: which part of it (``"labels"``).
        y: a numeric array from :func:`check_array`, axis 0 = examples.
        offset: the index of ``y[0]`` in the whole data. Defaults to `0`.
        rows: each row is a distribution over classes and must sum to 1
            (False for one sigmoid unit). Defaults to `True`.

    Returns:
        ``y`` as float32.

    Raises:
        DataError: NaN/Inf, a value outside [0, 1], or a row not summing to 1.

    Example:
        >>> check_probabilities("train_data", "labels", np.array([[0.0, 1.0], [1.0, 1.0]]))
        Traceback (most recent call last):
        ...
        tfcompress.errors.DataError: train_data: labels row 1 sums to 2 (one-hot rows sum to 1): \
fix the labels, or pass class ids.
    """
    label = _data_label(where, name)
    check_finite(where, name, y, offset)
    y = y.astype("float32")
    out = (y < 0) | (y > 1)
    if out.any():
        where_bad = tuple(np.argwhere(out)[0])
        raise DataError(
            f"{label} must be in [0, 1] (one-hot or probabilities), got {float(y[where_bad]):g} "
            f"in example {int(where_bad[0]) + offset}: pass class ids or one-hot rows."
        )
    if rows and y.ndim == 2 and len(y):
        sums = y.sum(axis=1)
        off = np.abs(sums - 1) > 1e-3
        if off.any():
            i = int(np.argmax(off))
            raise DataError(
                f"{label} row {i + offset} sums to {float(sums[i]):g} (one-hot rows sum to 1): "
                "fix the labels, or pass class ids."
            )
    return y
