"""Scaling of the user's inputs (``--scale``): the factor a setting means, checked before it is applied.

Example:
    >>> import numpy as np
    >>> round(_scale_factor("auto", np.zeros((2, 3), np.uint8)) * 255, 6), _scale_factor("auto", np.zeros(2))
    (1.0, None)
"""

import numpy as np

from tfcompress._nested import flat
from tfcompress.errors import DataError

__all__ = ["_scale_factor", "_check_scaled", "_as_float32"]


def _scale_factor(scale, x):
    """The factor ``scale`` means for inputs like ``x`` (None: keep them)."""
    if scale is None:
        return None
    if isinstance(scale, str):
        if scale != "auto":
            raise DataError(f"scale must be 'auto', None or a positive number, got {scale!r}.")
        kinds = {a.dtype == np.uint8 for a in flat(x)}
        if len(kinds) > 1:
            raise DataError("some inputs are uint8 and some are not; scale='auto' would scale them differently: "
                            "give them one dtype or pass scale explicitly.")
        return 1 / 255 if kinds == {True} else None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not np.isfinite(scale) or scale <= 0:
        raise DataError(f"scale must be 'auto', None or a positive number, got {scale!r}.")
    return float(scale)


_F32_TINY, _F32_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)


def _check_scaled(name, factor, splits):
    """Refuses a factor that would turn the inputs into zeros or infinities in float32, before scaling."""
    if not factor:
        return
    for split, (x, _) in ((s, (a, None)) for s, (xs, _) in splits.items() for a in flat(xs)):
        big = max(abs(float(np.max(x))), abs(float(np.min(x)))) if x.size else 0.0
        if not np.isfinite(big) or big == 0:  # NaN/Inf are the data checks' to report; zeros stay zeros
            continue
        scaled = big * factor
        if scaled > _F32_MAX or scaled < _F32_TINY:
            what, bound = ("infinite", f"above float32's largest, {_F32_MAX:.3g}") if scaled > _F32_MAX else \
                ("zero", f"below float32's smallest normal number, {_F32_TINY:.3g}")
            raise DataError(f"{name}: scale {factor:g} makes the {split} inputs {what} in float32 (the largest, "
                            f"{big:g}, becomes {scaled:.3g}, {bound}): pick a factor such as 1/255, or none.")


def _as_float32(x, factor):
    """``x`` as float32 times ``factor``, scaled in place: one float32 copy, not two."""
    x = x.astype("float32")
    if factor:
        x *= np.float32(factor)
    return x
