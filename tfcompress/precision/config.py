"""The ``precision`` recipe stage: per-layer mixed precision of the exported file."""

import re
import typing
from dataclasses import dataclass

from tfcompress._checks import brief, check_choice, check_int, check_range
from tfcompress.errors import RecipeError
from tflite_export.mixed import PRECISIONS

__all__ = ["Precision", "PRECISIONS", "matching"]

_CANDIDATES = ("int4", "int8", "int16x8", "float16")


def matching(per_layer, name, kind):
    """The precision ``per_layer`` gives a layer (its name, a regular expression over
    names, or its type), the first match winning; None when no key matches.

    Example:
        >>> matching({"conv.*": "int16x8", "Dense": "int4"}, "dense_1", "Dense")
        'int4'
    """
    for pattern, p in (per_layer or {}).items():
        if pattern in (name, kind) or re.fullmatch(pattern, name):
            return p
    return None


@dataclass(frozen=True)
class Precision:
    """Per-layer precision of the exported ``mixed.tflite``, from a sensitivity scan with a budget.

    A post-training stage: it trains nothing. The float32 ``.tflite`` of the
    model is quantized op by op (:mod:`tflite_export.mixed`): each layer with
    weights gets ``int4``, ``int8``, ``int16x8``, ``float16`` or ``float32``,
    every other op ``default``. With ``max_drop`` or ``max_bytes`` the layers
    ``per_layer`` does not fix are chosen by a scan (accuracy on ``samples``
    validation examples when only that layer is lowered) and a greedy plan
    (bytes saved per accuracy point), checked on the assembled file; the plan
    is written back into the recipe as ``per_layer``. It replaces QAT: a recipe
    cannot have both (QAT trains every layer for int8).

    Args:
        per_layer: ``{layer name | regular expression | layer type: precision}``
            fixed by hand (the first matching key wins). Defaults to `None`.
        default: precision of the layers nothing else decides and of the ops
            without weights. Defaults to `"int8"`.
        max_drop: largest accuracy drop allowed, in points (0-100), against
            the float32 file on the same examples. Defaults to `None`.
        max_bytes: largest file size allowed, in bytes. Defaults to `None`.
        candidates: the precisions the scan may give a layer. Defaults to
            `("int4", "int8", "int16x8", "float16")`.
        samples: validation examples the scan and the check use, at least 10.
            Defaults to `500`.

    Raises:
        RecipeError: an unknown precision, a budget out of range, too few samples.

    Example:
        >>> Precision(max_drop=1.0).candidates
        ('int4', 'int8', 'int16x8', 'float16')
    """

    per_layer: dict | None = None
    default: str = "int8"
    max_drop: float | None = None
    max_bytes: int | None = None
    candidates: typing.Sequence[str] = _CANDIDATES
    samples: int = 500

    def __post_init__(self):
        if self.per_layer is not None:
            if not isinstance(self.per_layer, dict):
                raise RecipeError("precision.per_layer must be a mapping layer -> precision, "
                                  f"got {brief(self.per_layer)}.")
            for k, v in self.per_layer.items():
                if not isinstance(k, str) or not k:
                    raise RecipeError("precision.per_layer keys must be layer names, patterns or types, "
                                      f"got {brief(k)}.")
                try:
                    re.compile(k)
                except re.error as e:
                    raise RecipeError(
                        f"precision.per_layer: {brief(k)} is not a valid regular expression ({e}).") from None
                check_choice("precision", f"per_layer[{k!r}]", v, PRECISIONS)
        check_choice("precision", "default", self.default, PRECISIONS)
        if self.max_drop is not None:
            check_range("precision", "max_drop", self.max_drop, 0, 100, meaning="accuracy points")
            object.__setattr__(self, "max_drop", float(self.max_drop))
        check_int("precision", "max_bytes", self.max_bytes, optional=True)
        cands = [self.candidates] if isinstance(self.candidates, str) else self.candidates
        if not isinstance(cands, (list, tuple)) or not cands:
            raise RecipeError(f"precision.candidates must be a non-empty list of {', '.join(PRECISIONS)}, "
                              f"got {brief(self.candidates)}.")
        for c in cands:
            check_choice("precision", "candidates", c, PRECISIONS)
        object.__setattr__(self, "candidates", tuple(cands))
        check_int("precision", "samples", self.samples, minimum=10)

    @property
    def epochs(self):
        """0: the stage trains nothing."""
        return 0

    @property
    def planned(self):
        """True when a scan chooses the precisions (a budget is set)."""
        return self.max_drop is not None or self.max_bytes is not None
