"""The ``lowrank`` recipe stage: which Dense (and 1×1 Conv2D) layers to factorise, and to what rank."""

import re
from dataclasses import dataclass, field

from tfcompress._checks import brief, check_bool, check_int, check_positive, check_range, is_int, is_real
from tfcompress._stagebase import _Trains
from tfcompress.errors import RecipeError

__all__ = ["LowRank"]


@dataclass(frozen=True)
class LowRank(_Trains):
    """Recipe stage for low-rank factorisation: each chosen ``Dense`` layer becomes two, then fine-tuning.

    A ``Dense`` kernel ``W`` (``m`` inputs, ``n`` units) is replaced by its
    truncated SVD ``A · B``: a new ``Dense(r, use_bias=False)`` named
    ``<name>_lr`` holding ``A`` (``m × r``), then the layer itself with ``B``
    (``r × n``), its bias and its activation. The parameters go from ``m·n`` to
    ``r·(m+n)``; the ``.tflite`` file gets one more ``FULLY_CONNECTED`` op. A
    rank that saves nothing (``r·(m+n) ≥ m·n``) leaves the layer as it is, and
    the report says so. Later stages (pruning, 4-bit QAT) treat both layers as
    any other ``Dense``. A ``Conv2D`` with a 1×1 kernel, stride 1 and one group
    (a pointwise convolution: ``m`` input channels, ``n`` filters) is factorised
    the same way, as a ``Conv2D(r, 1, use_bias=False)`` then itself; name it
    (or ``"Conv2D"``: other convolutions are then kept, with the reason).

    Args:
        per_layer: ``{layer name | regular expression | layer type: rank}``, the
            first matching key winning: an integer rank (at least 1), or a
            fraction in (0, 1) of the layer's full rank ``min(m, n)``, rounded up.
            Defaults to `{"Dense": 0.5}` (every Dense layer at half its full rank,
            where that saves parameters).
        epochs: fine-tuning epochs after the factorisation, at least 0. Defaults to `2`.
        distill: fine-tune with distillation from the unfactorised model (when
            the recipe has no ``distillation`` of its own). Defaults to `True`.
        alpha: weight of the task loss in that distillation, in [0, 1]. Defaults to `0.5`.
        temperature: distillation temperature, > 0. Defaults to `4.0`.

    Raises:
        RecipeError: ``per_layer`` is empty or not a mapping, a rank is not a
            positive integer nor a fraction in (0, 1), or another field is out of range.

    Example:
        >>> LowRank(per_layer={"fc1": 16, "fc2": 0.5}).per_layer["fc1"]
        16
    """

    per_layer: dict = field(default_factory=lambda: {"Dense": 0.5})
    epochs: int = 2
    distill: bool = True
    alpha: float = 0.5
    temperature: float = 4.0

    def __post_init__(self):
        if not isinstance(self.per_layer, dict) or not self.per_layer:
            raise RecipeError(f"lowrank.per_layer must be a mapping layer name -> rank (an integer >= 1, or a "
                              f"fraction in (0, 1) of the layer's full rank), got {brief(self.per_layer)}.")
        ranks = {}
        for k, v in self.per_layer.items():
            if not isinstance(k, str) or not k:
                raise RecipeError(f"lowrank.per_layer keys must be layer names, patterns or types, got {brief(k)}.")
            try:
                re.compile(k)
            except re.error as e:
                raise RecipeError(f"lowrank.per_layer key {brief(k)} is not a valid regular expression ({e}); "
                                  "escape it or fix it.") from None
            if is_int(v):
                ranks[k] = int(check_int("lowrank", f"per_layer[{k!r}]", v))
            elif is_real(v):
                ranks[k] = float(check_range("lowrank", f"per_layer[{k!r}]", v, 0, 1, lo_open=True, hi_open=True,
                                             meaning="the fraction of the layer's full rank to keep"))
            else:
                raise RecipeError(f"lowrank.per_layer[{k!r}] must be a rank (an integer >= 1) or a fraction in "
                                  f"(0, 1) of the full rank, got {brief(v)}.")
        object.__setattr__(self, "per_layer", ranks)
        check_int("lowrank", "epochs", self.epochs, minimum=0)
        check_bool("lowrank", "distill", self.distill)
        check_range("lowrank", "alpha", self.alpha, 0, 1)
        check_positive("lowrank", "temperature", self.temperature)
        self._check_training("lowrank")
