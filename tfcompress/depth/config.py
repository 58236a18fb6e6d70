"""The ``depth`` recipe stage: layer (block) removal settings."""

import typing
from dataclasses import dataclass

from tfcompress._checks import (
    check_bool,
    check_choice,
    check_int,
    check_patterns,
    check_positive,
    check_range,
    fraction_kept,
)
from tfcompress._stagebase import _Trains
from tfcompress.errors import RecipeError

__all__ = ["Depth", "DEPTH_CRITERIA"]

DEPTH_CRITERIA = ("branch_norm", "sensitivity")


@dataclass(frozen=True)
class Depth(_Trains):
    """Recipe stage for depth reduction: remove whole residual blocks or
    same-shape layers (replaced by identity), then fine-tune.

    Candidates are residual branches whose ``Add`` joins them back to an
    equal-shape skip tensor (the branch goes, the ``Add`` becomes identity) and
    same-shape units (a Conv/Dense whose output shape equals its input shape,
    with the BatchNorm/activation layers that follow it alone). They are
    removed in the order of ``criterion`` (cheapest first).

    Args:
        remove: number of blocks to remove, at least 1. Defaults to `None`
            (one block unless ``target_flops`` is given).
        target_flops: fraction of the model's FLOPs to keep, in (0, 1]:
            blocks are removed until the model is at or below it. Defaults
            to `None`. Give ``remove`` or ``target_flops``, not both.
        criterion: ``"branch_norm"`` (``||branch(x)|| / ||x||`` on a training
            sample, no labels) or ``"sensitivity"`` (validation accuracy with
            the block removed, no fine-tuning). Defaults to `"branch_norm"`.
        epochs: fine-tuning epochs after the removal, at least 0. Defaults to `2`.
        distill: fine-tune with distillation from the unremoved model (when the
            recipe has no ``distillation`` of its own). Defaults to `True`.
        alpha: weight of the task loss in that distillation, in [0, 1].
            Defaults to `0.5`.
        temperature: distillation temperature, > 0. Defaults to `4.0`.
        include: only blocks whose name or one of whose layers matches one of
            these (names, regular expressions, layer types). Defaults to `None`.
        exclude: never blocks matching one of these. Defaults to `None`.

    Raises:
        RecipeError: a field is out of range, or both ``remove`` and
            ``target_flops`` are given.

    Example:
        >>> Depth(remove=2, criterion="sensitivity").remove
        2
    """

    remove: int | None = None
    target_flops: float | None = None
    criterion: str = "branch_norm"
    epochs: int = 2
    distill: bool = True
    alpha: float = 0.5
    temperature: float = 4.0
    include: typing.Sequence[str] | None = None
    exclude: typing.Sequence[str] | None = None

    def __post_init__(self):
        check_int("depth", "remove", self.remove, optional=True)
        if self.target_flops is not None:
            object.__setattr__(self, "target_flops", fraction_kept("depth", "target_flops", self.target_flops, "FLOPs"))
        if self.remove is not None and self.target_flops is not None:
            raise RecipeError("depth has both remove and target_flops: give one (a block count or a FLOPs fraction).")
        check_choice("depth", "criterion", self.criterion, DEPTH_CRITERIA)
        check_int("depth", "epochs", self.epochs, minimum=0)
        check_bool("depth", "distill", self.distill)
        check_range("depth", "alpha", self.alpha, 0, 1)
        check_positive("depth", "temperature", self.temperature)
        object.__setattr__(self, "include", check_patterns("depth", "include", self.include))
        object.__setattr__(self, "exclude", check_patterns("depth", "exclude", self.exclude))
        self._check_training("depth")
