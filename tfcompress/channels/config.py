"""The ``channels`` recipe stage: structured pruning settings."""

import numbers
from dataclasses import dataclass

from tfcompress.errors import RecipeError

__all__ = ["Channels"]

_CRITERIA = ("l1", "l2", "bn_gamma", "taylor")
_SCHEDULES = ("one-shot", "iterative")


def _real(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _int(x):
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


@dataclass(frozen=True)
class Channels:
    """Recipe stage for channel (filter / neuron) pruning.

    Attributes:
        ratio: fraction of channels removed from every prunable group, [0, 1).
        criterion: importance criterion: "l1", "l2", "bn_gamma" or "taylor".
        per_layer: {layer name: ratio} overrides, each in [0, 1).
        flops: fraction of FLOPs to keep, (0, 1]; overrides ``ratio`` (with
            validation data the per-layer ratios come from a sensitivity scan).
        params: fraction of parameters to keep, (0, 1]; like ``flops``.
        schedule: "one-shot" (prune once, fine-tune) or "iterative" (``steps``
            rounds of prune + fine-tune).
        steps: number of prune steps of the iterative schedule, >= 1.
        epochs: fine-tuning epochs after each step, >= 0.
        alpha: distillation weight of the teacher's soft targets, [0, 1].
        temperature: distillation temperature, > 0.
        distill: fine-tune with distillation from the unpruned model.

    Raises:
        RecipeError: a field is out of range (the message names it).

    Example:
        >>> Channels(ratio=0.5, criterion="bn_gamma", schedule="iterative", steps=2)
    """

    ratio: float = 0.5
    criterion: str = "l1"
    per_layer: dict = None
    flops: float = None
    params: float = None
    schedule: str = "one-shot"
    steps: int = 3
    epochs: int = 2
    alpha: float = 0.5
    temperature: float = 4.0
    distill: bool = True

    def __post_init__(self):
        if not _real(self.ratio) or not 0.0 <= self.ratio < 1.0:
            raise RecipeError(f"channels.ratio={self.ratio!r} is out of range: use a fraction in [0, 1).")
        if self.criterion not in _CRITERIA:
            raise RecipeError(f"channels.criterion={self.criterion!r} is unknown: use one of {', '.join(_CRITERIA)}.")
        if self.per_layer is not None:
            if not isinstance(self.per_layer, dict):
                raise RecipeError("channels.per_layer must be a mapping layer name -> ratio in [0, 1).")
            for k, v in self.per_layer.items():
                if not isinstance(k, str) or not _real(v) or not 0.0 <= v < 1.0:
                    raise RecipeError(f"channels.per_layer[{k!r}]={v!r} is out of range: use a ratio in [0, 1).")
        for name in ("flops", "params"):
            v = getattr(self, name)
            if v is not None and (not _real(v) or not 0.0 < v <= 1.0):
                raise RecipeError(f"channels.{name}={v!r} is out of range: use the fraction to keep, in (0, 1].")
        if self.schedule not in _SCHEDULES:
            raise RecipeError(f"channels.schedule={self.schedule!r} is unknown: use 'one-shot' or 'iterative'.")
        if not _int(self.steps) or self.steps < 1:
            raise RecipeError(f"channels.steps={self.steps!r} is out of range: use an integer >= 1.")
        if not _int(self.epochs) or self.epochs < 0:
            raise RecipeError(f"channels.epochs={self.epochs!r} is out of range: use an integer >= 0.")
        if not _real(self.alpha) or not 0.0 <= self.alpha <= 1.0:
            raise RecipeError(f"channels.alpha={self.alpha!r} is out of range: use a weight in [0, 1].")
        if not _real(self.temperature) or self.temperature <= 0:
            raise RecipeError(f"channels.temperature={self.temperature!r} is out of range: use a value > 0.")
        if not isinstance(self.distill, bool):
            raise RecipeError(f"channels.distill={self.distill!r} must be true or false.")
