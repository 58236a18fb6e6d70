"""Representative (calibration) data for int8 conversion: collected and checked.

The TFLite calibrator records each tensor's min/max over these samples and maps
that range onto 255 int8 steps. Two kinds of data make that meaningless, and are
refused with one line before the converter runs: NaN/Inf (one Inf segfaults the
calibrator) and outliers that stretch the input range so far that nearly every
value lands in the same int8 step (one 1e30 among pixels in [0, 1] gives an input
scale of 3.9e27: every normal input quantizes to the zero point).

Example:
    >>> import numpy as np
    >>> len(samples(np.random.rand(10, 4).astype("float32"), (None, 4), 8))
    8
"""

from __future__ import annotations

import numpy as np

from .errors import ExportError

__all__ = ["samples", "check_range", "CORE", "MIN_STEPS"]

#: The central share of the calibration values that must stay distinguishable in int8.
CORE = 0.90
#: ... by spanning at least this many of the 255 int8 steps of the calibrated range.
MIN_STEPS = 2.0


def samples(data, input_shape, num_samples: int) -> list[np.ndarray]:
    """Up to ``num_samples`` single samples (batch dim 1), finite and without dominating outliers.

    Args:
        data: A numpy array of inputs, an ``(x, y)`` tuple, a dict of one input or a
            ``tf.data.Dataset``.
        input_shape: The model's input shape (with batch dim) or None.
        num_samples: How many samples to take at most.

    Returns:
        A list of float32 arrays of shape ``(1, ...)``.

    Raises:
        ExportError: Unusable data, NaN/Inf, or outliers (see :func:`check_range`).

    Example:
        >>> import numpy as np
        >>> samples(np.zeros((3, 2)), (None, 2), 2)[0].shape
        (1, 2)
    """
    out = _collect(data, input_shape, num_samples)
    check_range(out)
    return out


def check_range(batch: list[np.ndarray]) -> None:
    """Refuses calibration data whose range is dominated by outliers.

    The rule: int8 splits the calibrated range [min(x, 0), max(x, 0)] into 255
    steps. If the central ``CORE`` (90 %) of the values, from the 5th to the
    95th percentile, spans less than ``MIN_STEPS`` (2) of those steps, int8
    cannot tell typical inputs apart: a few extreme values decided the scale.
    (The central 90 %, not 99 %, so that a whole outlier sample among a few
    dozen still counts as an outlier.)
    Data whose central values are all equal (e.g. mostly zeros) is not judged
    by this rule, since its spread says nothing about outliers.

    Args:
        batch: The samples :func:`samples` collected (finite float32).

    Raises:
        ExportError: The range is dominated by outliers, naming the largest value,
            its sample and the rule.

    Example:
        >>> import numpy as np
        >>> check_range([np.array([[0.1, 0.5, 0.9]], "float32")])
    """
    if not batch:
        return
    x = np.concatenate([b.reshape(-1) for b in batch])
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    step = (hi - lo) / 255.0
    tail = (1.0 - CORE) / 2 * 100
    stride = max(1, x.size // 1_000_000)  # percentiles of a million values are plenty (and fast)
    p_lo, p_hi = np.percentile(x[::stride].astype(np.float64), [tail, 100 - tail])
    spread = float(p_hi - p_lo)
    if step == 0 or spread == 0 or spread >= MIN_STEPS * step:
        return
    extreme = hi if abs(hi) >= abs(lo) else lo
    where = next(i for i, b in enumerate(batch) if (b == extreme).any())
    raise ExportError(
        f"representative_data is dominated by outliers: the value {extreme:.3g} in sample {where} stretches "
        f"the int8 input range to [{lo:.3g}, {hi:.3g}], so the central {CORE:.0%} of the values "
        f"({p_lo:.3g}..{p_hi:.3g}) spans {spread / step:.2g} of its 255 steps (at least {MIN_STEPS:g} needed) "
        "and int8 could not tell them apart; clip or drop the outliers, or normalise the inputs"
    )


def _collect(data, input_shape, num_samples: int) -> list[np.ndarray]:
    """Collects up to ``num_samples`` single samples (each with a batch dim of 1)."""
    import tensorflow as tf

    rank = len(input_shape) if input_shape is not None else None
    out: list[np.ndarray] = []

    def add_batch(x):
        x = np.asarray(x)
        if rank is not None and x.ndim == rank - 1:
            x = x[None]
        for i in range(x.shape[0]):
            if len(out) >= num_samples:
                return
            with np.errstate(over="ignore"):  # beyond float32 becomes Inf, refused just below
                sample = np.asarray(x[i : i + 1], dtype=np.float32)
            if not np.isfinite(sample).all():  # one Inf segfaults the TFLite calibrator
                raise ExportError(
                    f"representative_data sample {len(out)} has NaN or Inf values (or values beyond float32); "
                    "int8 calibration needs finite inputs: clean or drop those samples"
                )
            out.append(sample)

    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if isinstance(spec, (tuple, list)):
            spec = spec[0]
        batched = None
        if rank is None:
            batched = len(spec.shape) > 0 and spec.shape[0] is None
        for el in data:
            if isinstance(el, (tuple, list)):
                el = el[0]
            if isinstance(el, dict):
                el = next(iter(el.values()))
            x = el.numpy()
            if batched is False:
                x = x[None]
            add_batch(x)
            if len(out) >= num_samples:
                break
        return out
    if isinstance(data, tuple) and len(data) in (2, 3):
        data = data[0]
    if isinstance(data, dict):
        data = next(iter(data.values()))
    try:
        x = np.asarray(data)
    except Exception:  # noqa: BLE001
        x = None
    if x is None or x.dtype == object or not np.issubdtype(x.dtype, np.number) or x.ndim == 0:
        raise ExportError(
            f"representative_data of type {type(data).__name__} is not usable; pass a numpy array of inputs, "
            "an (x, y) tuple or a tf.data.Dataset"
        )
    if rank is not None and x.ndim == rank - 1:
        x = x[None]
    add_batch(x)
    return out


def many_samples(data, model, num_samples: int) -> list:
    """Calibration samples of a model with several inputs: one dict by input name per sample,
    from a dict by input name or a list in the model's order (or an ``(x, y)`` pair of either)."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], (dict, list)):
        data = data[0]
    names = list(model.input_names)
    if isinstance(data, dict):
        missing = [n for n in names if n not in data]
        if missing:
            raise ExportError(f"representative_data has keys {sorted(data)} but the model's inputs are {names}: "
                              "key the calibration inputs by those names")
        parts = [data[n] for n in names]
    elif isinstance(data, (list, tuple)) and len(data) == len(names):
        parts = list(data)
    else:
        raise ExportError(f"the model has {len(names)} inputs ({', '.join(names)}): pass representative_data as a "
                          "dict by input name, or a list in that order")
    per_input = [samples(p, tuple(t.shape), num_samples) for p, t in zip(parts, model.inputs)]
    # by name: the converter's calibrator feeds the signature's inputs, whose order is not the model's
    return [dict(zip(names, s)) for s in zip(*per_input)]
