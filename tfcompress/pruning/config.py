"""The ``pruning`` recipe stage (:class:`Pruning` and its schedule in steps) and the ``penalty``
stage before it (:class:`Penalty`).

Example:
    >>> from tfcompress.pruning.config import Pruning
    >>> Pruning(final_sparsity=0.5, epochs=2).steps(640, 64).total_steps
    20
"""

import math
import typing
from dataclasses import dataclass

from tfcompress._checks import check_choice, check_int, check_int_pair, check_patterns, check_range, is_real
from tfcompress._stagebase import _Trains, is_schedule_object
from tfcompress.errors import RecipeError

__all__ = ["Pruning", "Penalty", "PruningSteps", "PRUNING_POLICIES"]

PRUNING_POLICIES = (None, "xnnpack")


@dataclass(frozen=True)
class PruningSteps:
    """The pruning schedule in optimizer steps, derived from fractions."""

    begin_step: int
    end_step: int
    frequency: int
    total_steps: int


@dataclass(frozen=True)
class Pruning(_Trains):
    """Magnitude pruning (TF-MOT ``prune_low_magnitude``).

    ``begin`` and ``end`` are fractions of this stage's fine-tuning run; they
    are turned into optimizer steps from the dataset size, batch size and
    epochs by :meth:`steps`, so the final sparsity is really reached.

    Args:
        final_sparsity: share of weights set to zero in each pruned layer, in
            [0, 1). Defaults to `0.8`.
        initial_sparsity: sparsity at ``begin`` (polynomial schedule only).
            Defaults to `0.0`.
        schedule: ``"polynomial"`` (ramps up), ``"constant"``, or (from Python
            only) a ``tfmot.sparsity.keras.PruningSchedule`` instance used as
            is — ``begin``/``end``/``frequency``/``final_sparsity`` are then
            ignored and the recipe cannot be saved to YAML. Defaults to
            `"polynomial"`.
        begin: fraction of the stage at which pruning starts. Defaults to `0.0`.
        end: fraction of the stage at which ``final_sparsity`` is reached.
            Defaults to `0.7`.
        frequency: prune every this many steps; ``None`` picks about 10 pruning
            events between ``begin`` and ``end``. Defaults to `None`.
        power: exponent of the polynomial schedule. Defaults to `3`.
        epochs: fine-tuning epochs of this stage. Defaults to `4`.
        sparsity_m_by_n: ``(m, n)``: M:N structured sparsity, ``m`` zeros in
            every ``n`` consecutive input-channel weights (``(2, 4)`` is 2:4);
            replaces ``final_sparsity``. A layer whose kernel cannot hold it is
            skipped with the reason. Defaults to `None`.
        block_size: ``(height, width)`` of the blocks pruned together (block
            sparsity) in 2-D kernels (Dense); TF-MOT prunes other kernels
            element-wise. Defaults to `(1, 1)`.
        pruning_policy: ``"xnnpack"`` prunes only what XNNPACK's sparse
            kernels speed up (TF-MOT ``PruneForLatencyOnXNNPack``); when the
            model does not qualify, the stage prunes without the policy and
            the records say why. Defaults to `None`.
        include: prune only layers matching one of these layer names, regular
            expressions (matched against the whole name) or layer types.
            Defaults to `None` (every prunable layer).
        exclude: never prune layers matching one of these. Defaults to `None`.
        per_layer: ``{name_or_regex_or_type: final_sparsity}`` overrides; the
            first matching entry wins. Defaults to `None`.
        scope: ``"layer"`` prunes each layer to its sparsity; ``"global"``
            sets one score threshold over the weights of all pruned layers for
            ``final_sparsity`` in total, each layer kept within
            ``min_layer_sparsity``..``max_layer_sparsity`` (allocated once from
            the weights at the start; see ``pruning/global_.py``). Defaults to `"layer"`.
        max_layer_sparsity: cap on one layer's sparsity under global scope.
            Defaults to `0.95`.
        min_layer_sparsity: floor on one layer's sparsity under global scope.
            Defaults to `0.0`.
        criterion: ``"magnitude"`` (``|w|``, TF-MOT's schedule) or ``"saliency"``
            (``|w * dL/dw|`` summed over ``saliency_batches`` training batches; the
            lowest are zeroed at the start and the mask is kept fixed).
            Defaults to `"magnitude"`.
        saliency_batches: batches the saliency is accumulated over. Defaults to `8`.

    Raises:
        RecipeError: a value is out of range or of the wrong type.

    Example:
        >>> Pruning(final_sparsity=0.8).steps(num_samples=1000, batch_size=32)
        PruningSteps(begin_step=0, end_step=90, frequency=9, total_steps=128)
        >>> Pruning(sparsity_m_by_n=[2, 4], exclude=["logits"]).sparsity_m_by_n
        (2, 4)
    """

    final_sparsity: float = 0.8
    initial_sparsity: float = 0.0
    schedule: str = "polynomial"
    begin: float = 0.0
    end: float = 0.7
    frequency: int | None = None
    power: float = 3.0
    epochs: int = 4
    sparsity_m_by_n: typing.Sequence[int] | None = None
    block_size: typing.Sequence[int] = (1, 1)
    pruning_policy: str | None = None
    include: typing.Sequence[str] | None = None
    exclude: typing.Sequence[str] | None = None
    per_layer: dict[str, float] | None = None
    scope: str = "layer"
    max_layer_sparsity: float = 0.95
    min_layer_sparsity: float = 0.0
    criterion: str = "magnitude"
    saliency_batches: int = 8

    def __post_init__(self):
        check_range("pruning", "final_sparsity", self.final_sparsity, 0, 1, hi_open=True)
        check_range("pruning", "initial_sparsity", self.initial_sparsity, 0, 1, hi_open=True)
        if self.initial_sparsity > self.final_sparsity:
            raise RecipeError(
                f"pruning.initial_sparsity ({self.initial_sparsity}) must not exceed "
                f"pruning.final_sparsity ({self.final_sparsity})."
            )
        if not self.custom_schedule:
            check_choice("pruning", "schedule", self.schedule, ("polynomial", "constant"))
        check_range("pruning", "begin", self.begin, 0, 1, hi_open=True)
        check_range("pruning", "end", self.end, 0, 1, lo_open=True)
        if self.end <= self.begin:
            raise RecipeError(
                f"pruning.end ({self.end}) must be greater than pruning.begin ({self.begin})."
            )
        check_int("pruning", "frequency", self.frequency, optional=True)
        check_range("pruning", "power", self.power, 0, 100, lo_open=True)
        check_int("pruning", "epochs", self.epochs)
        self._check_training("pruning")
        mn = check_int_pair("pruning", "sparsity_m_by_n", self.sparsity_m_by_n)
        object.__setattr__(self, "sparsity_m_by_n", mn)
        if mn is not None and mn[0] >= mn[1]:
            raise RecipeError(
                f"pruning.sparsity_m_by_n {list(mn)} must have m < n (m zeros in every n weights), e.g. [2, 4]."
            )
        block = check_int_pair("pruning", "block_size", self.block_size)
        object.__setattr__(self, "block_size", block)
        if mn is not None and block != (1, 1):
            raise RecipeError(
                "pruning.sparsity_m_by_n and pruning.block_size cannot be combined: "
                "use M:N sparsity or block sparsity, not both."
            )
        check_choice("pruning", "pruning_policy", self.pruning_policy, PRUNING_POLICIES)
        object.__setattr__(self, "include", check_patterns("pruning", "include", self.include))
        object.__setattr__(self, "exclude", check_patterns("pruning", "exclude", self.exclude))
        if self.per_layer is not None:
            self._check_per_layer(mn)
        self._check_global()

    def _check_global(self):
        check_choice("pruning", "scope", self.scope, ("layer", "global"))
        check_choice("pruning", "criterion", self.criterion, ("magnitude", "saliency"))
        check_range("pruning", "max_layer_sparsity", self.max_layer_sparsity, 0, 1, lo_open=True, hi_open=True)
        check_range("pruning", "min_layer_sparsity", self.min_layer_sparsity, 0, 1, hi_open=True)
        check_int("pruning", "saliency_batches", self.saliency_batches)
        for f in ("max_layer_sparsity", "min_layer_sparsity"):
            object.__setattr__(self, f, float(getattr(self, f)))
        if self.scope == "global" and not self.min_layer_sparsity <= self.final_sparsity <= self.max_layer_sparsity:
            raise RecipeError(
                f"pruning.final_sparsity ({self.final_sparsity}) must lie within pruning.min_layer_sparsity "
                f"({self.min_layer_sparsity}) and pruning.max_layer_sparsity ({self.max_layer_sparsity}) "
                "under scope 'global': widen the caps or change the sparsity."
            )
        for on, what in ((self.scope == "global", "scope 'global'"),
                         (self.criterion == "saliency", "criterion 'saliency'")):
            clash = [f for f, bad in (("sparsity_m_by_n", self.sparsity_m_by_n is not None),
                                      ("block_size", tuple(self.block_size) != (1, 1)),
                                      ("a schedule object", self.custom_schedule),
                                      ("per_layer", self.per_layer is not None and self.scope == "global")) if bad]
            if on and clash:
                raise RecipeError(f"pruning {what} cannot be combined with {', '.join(clash)}: "
                                  "drop one (it picks the weights to zero itself).")

    def _check_per_layer(self, mn):
        if not isinstance(self.per_layer, dict) or not self.per_layer:
            raise RecipeError(
                f"pruning.per_layer must be a mapping {{layer name or regex: sparsity}}, got {self.per_layer!r}."
            )
        for k, v in self.per_layer.items():
            check_patterns("pruning", "per_layer", [k])
            if not is_real(v) or not 0 <= v < 1:
                raise RecipeError(f"pruning.per_layer[{k!r}] must be a sparsity in [0, 1), got {v!r}.")
        object.__setattr__(self, "per_layer", {k: float(v) for k, v in self.per_layer.items()})
        if self.custom_schedule:
            raise RecipeError(
                "pruning.per_layer needs the 'polynomial' or 'constant' schedule (a schedule object "
                "has one sparsity): drop per_layer or use a named schedule."
            )
        if mn is not None:
            raise RecipeError("pruning.per_layer does not apply to sparsity_m_by_n (its sparsity is m/n): drop one.")

    @property
    def custom_schedule(self):
        """True when ``schedule`` is a user-supplied PruningSchedule object."""
        return not isinstance(self.schedule, str) and is_schedule_object(self.schedule)

    def steps(self, num_samples, batch_size, epochs=None):
        """Turn ``begin``/``end`` fractions into TF-MOT steps.

        TF-MOT prunes at steps where ``(step - begin_step) % frequency == 0``
        and reaches the final sparsity only on such a step at or after
        ``end_step``; so ``end_step`` is placed exactly ``k * frequency`` steps
        after ``begin_step`` and strictly before the last step of the run.

        Args:
            num_samples: training examples per epoch.
            batch_size: examples per step.
            epochs: overrides :attr:`epochs`. Defaults to `None`.

        Returns:
            A :class:`PruningSteps`.

        Raises:
            RecipeError: when the run is too short to prune at all.

        Example:
            >>> Pruning(begin=0.1, end=0.5, epochs=2).steps(640, 64).end_step
            10
        """
        epochs = self.epochs if epochs is None else epochs
        steps_per_epoch = max(1, math.ceil(num_samples / batch_size))
        total = steps_per_epoch * epochs
        if total < 2:
            raise RecipeError(
                f"pruning needs at least 2 training steps, got {total} "
                f"({num_samples} samples, batch {batch_size}, {epochs} epochs): "
                "use more epochs or a smaller batch size."
            )
        begin = min(int(math.floor(self.begin * total)), total - 2)
        end_target = max(begin + 1, min(int(round(self.end * total)), total - 1))
        span = end_target - begin
        freq = self.frequency or max(1, span // 10)
        freq = min(freq, span)
        k = max(1, span // freq)
        end = begin + k * freq
        return PruningSteps(begin_step=begin, end_step=end, frequency=freq, total_steps=total)



@dataclass(frozen=True)
class Penalty(_Trains):
    """L1/L2 weight penalty stage: fine-tune with ``l1*|w| + l2*w²`` added to
    the loss so that small weights move towards zero before pruning.

    Args:
        l1: L1 factor, in [0, 1]. Defaults to `1e-5`.
        l2: L2 factor, in [0, 1]. Defaults to `0.0`.
        epochs: fine-tuning epochs of this stage. Defaults to `1`.

    Raises:
        RecipeError: both factors are zero, or a value is out of range.

    Example:
        >>> Penalty(l1=1e-4, epochs=2)
        Penalty(l1=0.0001, l2=0.0, epochs=2)
    """

    l1: float = 1e-5
    l2: float = 0.0
    epochs: int = 1

    def __post_init__(self):
        check_range("penalty", "l1", self.l1, 0, 1)
        check_range("penalty", "l2", self.l2, 0, 1)
        if self.l1 == 0 and self.l2 == 0:
            raise RecipeError("penalty needs penalty.l1 or penalty.l2 above 0: set one, or remove the penalty stage.")
        check_int("penalty", "epochs", self.epochs)
        self._check_training("penalty")
