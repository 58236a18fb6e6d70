"""The ``channels`` recipe stage: structured pruning settings."""

from dataclasses import dataclass

from tfcompress._checks import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    check_range,
    fraction_kept,
    fraction_removed,
)
from tfcompress.errors import RecipeError

__all__ = ["Channels"]

_CRITERIA = ("l1", "l2", "bn_gamma", "taylor", "apoz", "mean_activation")
_MODES = ("prune", "merge")
_SIMILARITIES = ("weights", "activations")
_SCHEDULES = ("one-shot", "iterative")


@dataclass(frozen=True)
class Channels:
    """Recipe stage for channel (filter / neuron) pruning.

    Args:
        ratio: fraction of channels removed from every prunable group, in
            [0, 1). Defaults to `0.5`.
        criterion: importance criterion: ``"l1"``, ``"l2"``, ``"bn_gamma"``,
            ``"taylor"``, ``"apoz"`` (average percentage of zeros after the
            activation: high is pruned first) or ``"mean_activation"`` (mean
            ``|activation|``); the last three score channels on the training
            data. With ``mode="merge"`` it only ranks the groups of a
            ``flops``/``params`` sensitivity scan. Defaults to `"l1"`.
        per_layer: ``{layer name: ratio}`` overrides, each in [0, 1).
            Defaults to `None`.
        flops: fraction of FLOPs to keep, in (0, 1]; overrides ``ratio``
            (with validation data the per-layer ratios come from a
            sensitivity scan). Defaults to `None`.
        params: fraction of parameters to keep, in (0, 1]; like ``flops``.
            Defaults to `None`.
        schedule: ``"one-shot"`` (prune once, fine-tune) or ``"iterative"``
            (``steps`` rounds of prune + fine-tune). Defaults to `"one-shot"`.
        steps: number of prune steps of the iterative schedule, at least 1.
            Defaults to `3`.
        epochs: fine-tuning epochs after each step, at least 0. Defaults to `2`.
        alpha: distillation weight of the teacher's soft targets, in [0, 1].
            Defaults to `0.5`.
        temperature: distillation temperature, > 0. Defaults to `4.0`.
        distill: fine-tune with distillation from the unpruned model.
            Defaults to `True`.
        mode: ``"prune"`` (remove the least important channels) or
            ``"merge"`` (fold each removed channel into its nearest
            near-duplicate: the next layers' input weights absorb it; see
            :mod:`tfcompress.channels.merge`). Defaults to `"prune"`.
        merge_similarity: what ``mode="merge"`` compares: ``"weights"``
            (kernel and bias, BatchNorm folded) or ``"activations"`` (on the
            training data). Defaults to `"weights"`.

    Raises:
        RecipeError: a field is out of range (the message names it and the
            allowed range).

    Example:
        >>> Channels(ratio=0.5, criterion="bn_gamma", schedule="iterative", steps=2).steps
        2
    """

    ratio: float = 0.5
    criterion: str = "l1"
    per_layer: dict | None = None
    flops: float | None = None
    params: float | None = None
    schedule: str = "one-shot"
    steps: int = 3
    epochs: int = 2
    alpha: float = 0.5
    temperature: float = 4.0
    distill: bool = True
    mode: str = "prune"
    merge_similarity: str = "weights"

    def __post_init__(self):
        fraction_removed("channels", "ratio", self.ratio)
        check_choice("channels", "criterion", self.criterion, _CRITERIA)
        if self.per_layer is not None:
            if not isinstance(self.per_layer, dict):
                raise RecipeError(
                    f"channels.per_layer must be a mapping layer name -> ratio in [0, 1), got {self.per_layer!r}."
                )
            for k, v in self.per_layer.items():
                if not isinstance(k, str):
                    raise RecipeError(f"channels.per_layer keys must be layer names, got {k!r}.")
                fraction_removed("channels", f"per_layer[{k!r}]", v)
        fraction_kept("channels", "flops", self.flops, "FLOPs")
        fraction_kept("channels", "params", self.params, "parameters")
        check_choice("channels", "schedule", self.schedule, _SCHEDULES)
        check_int("channels", "steps", self.steps)
        check_int("channels", "epochs", self.epochs, minimum=0)
        check_range("channels", "alpha", self.alpha, 0, 1)
        check_positive("channels", "temperature", self.temperature)
        check_bool("channels", "distill", self.distill)
        check_choice("channels", "mode", self.mode, _MODES)
        check_choice("channels", "merge_similarity", self.merge_similarity, _SIMILARITIES)
