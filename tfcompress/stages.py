"""The recipe stages: frozen dataclasses that validate themselves.

One class per stage of a :class:`~tfcompress.recipe.Recipe` — :class:`Train`,
:class:`Penalty`, :class:`Pruning`, :class:`Clustering`, :class:`Quantization` — plus
:class:`Distillation` (applied to every fine-tuning stage); the ``channels``
stage lives with its technique (:class:`tfcompress.channels.Channels`).
Every training stage may set its own ``learning_rate``, ``optimizer`` and
``lr_schedule`` (:mod:`tfcompress.schedules`) or inherit the recipe's.
Each checks its fields with :mod:`tfcompress._checks` and raises
:class:`~tfcompress.errors.RecipeError` naming the field and what is allowed.
:func:`qat_scheme` is where the QAT variant (QAT, PQAT, CQAT, PCQAT) is chosen.

Example:
    >>> from tfcompress.stages import Clustering, Quantization, qat_scheme
    >>> Clustering(number_of_clusters=8).number_of_clusters
    8
    >>> qat_scheme(Quantization(), pruned=True, clustered=False)
    'pqat'
"""

import math
import typing
from dataclasses import dataclass, field

from tfcompress._checks import (
    check_bool,
    check_choice,
    check_int,
    check_int_pair,
    check_patterns,
    check_range,
    is_real,
)
from tfcompress.channels.config import Channels
from tfcompress.errors import RecipeError
from tfcompress.schedules import Optimizer, Schedule

__all__ = [
    "Train", "Channels", "Penalty", "Pruning", "Clustering", "Quantization", "Distillation", "PruningSteps",
    "STAGE_CLASSES", "CENTROID_INITS", "QUANTIZATION_SCHEMES", "PRUNING_POLICIES", "SCHEME_NEEDS",
    "qat_scheme", "is_schedule_object",
]

CENTROID_INITS = ("kmeans_plus_plus", "linear", "density_based", "random")
QUANTIZATION_SCHEMES = ("auto", "qat", "pqat", "cqat", "pcqat")
PRUNING_POLICIES = (None, "xnnpack")
#: The stages whose work a QAT scheme preserves (and so needs in the recipe).
SCHEME_NEEDS = {"qat": (), "pqat": ("pruning",), "cqat": ("clustering",), "pcqat": ("pruning", "clustering")}


def is_schedule_object(value):
    # A tfmot.sparsity.keras.PruningSchedule, checked by shape so that this
    # module does not import TensorFlow.
    return callable(value) and hasattr(value, "get_config") and not isinstance(value, type)


@dataclass(frozen=True)
class _Trains:
    """The training fields every training stage has (keyword-only, after the stage's own).

    ``learning_rate``: this stage's rate (None: the recipe's, times the
    stage's ``learning_rate_scale`` where it has one); ``optimizer`` and
    ``lr_schedule``: an :class:`~tfcompress.schedules.Optimizer` /
    :class:`~tfcompress.schedules.Schedule`, a name or a mapping (None: the
    recipe's).
    """

    learning_rate: float | None = field(default=None, kw_only=True, repr=False)
    optimizer: Optimizer | None = field(default=None, kw_only=True, repr=False)
    lr_schedule: Schedule | None = field(default=None, kw_only=True, repr=False)

    def _check_training(self, where):
        if self.learning_rate is not None:
            check_range(where, "learning_rate", self.learning_rate, 0, 10, lo_open=True)
            object.__setattr__(self, "learning_rate", float(self.learning_rate))
        object.__setattr__(self, "optimizer", Optimizer.coerce(self.optimizer, f"{where}.optimizer"))
        object.__setattr__(self, "lr_schedule", Schedule.coerce(self.lr_schedule, f"{where}.lr_schedule"))


@dataclass(frozen=True)
class Train(_Trains):
    """Train (or continue training) the model before any compression stage.

    With a freshly built model this is the whole training run; with a trained
    one it continues. The tuner's trials train through this stage, so a
    trial's recipe holds its training schedule.

    Args:
        epochs: training epochs. Defaults to `1`.
        learning_rate: overrides ``recipe.learning_rate``. Defaults to `None`.
        optimizer: overrides ``recipe.optimizer``. Defaults to `None`.
        lr_schedule: overrides ``recipe.lr_schedule``. Defaults to `None`.

    Example:
        >>> Train(epochs=5, lr_schedule={"kind": "cosine", "warmup_epochs": 1}).lr_schedule.warmup_epochs
        1.0
    """

    epochs: int = 1

    def __post_init__(self):
        check_int("train", "epochs", self.epochs)
        self._check_training("train")


@dataclass(frozen=True)
class PruningSteps:
    """The pruning schedule in optimizer steps, derived from fractions."""

    begin_step: int
    end_step: int
    frequency: int
    total_steps: int


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
class Clustering(_Trains):
    """Weight clustering (TF-MOT ``cluster_weights``): each kernel keeps at most
    ``number_of_clusters`` distinct values (per output channel with
    ``per_channel``), fine-tuned, then the wrappers are stripped.

    Args:
        number_of_clusters: distinct values per kernel, at least 2. Defaults
            to `16`.
        centroid_init: ``"kmeans_plus_plus"``, ``"linear"``,
            ``"density_based"`` or ``"random"``. Defaults to
            `"kmeans_plus_plus"`.
        preserve_sparsity: keep the zeros of an earlier pruning stage
            (sparsity-preserving clustering); None turns it on exactly when a
            pruning stage ran. Defaults to `None`.
        per_channel: cluster each output channel of Conv2D kernels separately
            (TF-MOT ``cluster_per_channel``). Defaults to `False`.
        epochs: fine-tuning epochs of this stage. Defaults to `2`.
        learning_rate_scale: fine-tunes at ``recipe.learning_rate`` times
            this. Defaults to `0.5`.
        include: cluster only layers matching one of these names, regular
            expressions or layer types. Defaults to `None` (all).
        exclude: never cluster layers matching one of these. Defaults to `None`.

    Raises:
        RecipeError: fewer than 2 clusters, or another bad value.

    Example:
        >>> Clustering(number_of_clusters=8, centroid_init="linear").number_of_clusters
        8
    """

    number_of_clusters: int = 16
    centroid_init: str = "kmeans_plus_plus"
    preserve_sparsity: bool | None = None
    per_channel: bool = False
    epochs: int = 2
    learning_rate_scale: float = 0.5
    include: typing.Sequence[str] | None = None
    exclude: typing.Sequence[str] | None = None

    def __post_init__(self):
        check_int("clustering", "number_of_clusters", self.number_of_clusters, minimum=2)
        check_choice("clustering", "centroid_init", self.centroid_init, CENTROID_INITS)
        check_bool("clustering", "preserve_sparsity", self.preserve_sparsity, optional=True)
        check_bool("clustering", "per_channel", self.per_channel)
        check_int("clustering", "epochs", self.epochs)
        self._check_training("clustering")
        check_range("clustering", "learning_rate_scale", self.learning_rate_scale, 0, 10, lo_open=True)
        object.__setattr__(self, "include", check_patterns("clustering", "include", self.include))
        object.__setattr__(self, "exclude", check_patterns("clustering", "exclude", self.exclude))


@dataclass(frozen=True)
class Quantization(_Trains):
    """Quantization-aware training (TF-MOT ``quantize_apply``), 8-bit.

    The scheme follows from the earlier stages unless ``scheme`` names one:
    QAT; PQAT (pruning ran: zeros kept); CQAT (clustering ran: clusters kept);
    PCQAT (both: clusters and zeros kept).

    Args:
        epochs: fine-tuning epochs of QAT. Defaults to `2`.
        preserve_sparsity: with ``scheme: auto``, keep the zeros an earlier
            pruning stage made (PQAT / PCQAT). Defaults to `True`.
        learning_rate_scale: QAT fine-tunes at ``recipe.learning_rate`` times
            this. Defaults to `0.1`.
        scheme: ``"auto"``, ``"qat"``, ``"pqat"`` (needs a pruning stage),
            ``"cqat"`` (needs clustering) or ``"pcqat"`` (needs both).
            Defaults to `"auto"`.

    Example:
        >>> Quantization(epochs=1)
        Quantization(epochs=1, preserve_sparsity=True, learning_rate_scale=0.1, scheme='auto')
    """

    epochs: int = 2
    preserve_sparsity: bool = True
    learning_rate_scale: float = 0.1
    scheme: str = "auto"

    def __post_init__(self):
        check_int("quantization", "epochs", self.epochs)
        self._check_training("quantization")
        check_bool("quantization", "preserve_sparsity", self.preserve_sparsity)
        check_range("quantization", "learning_rate_scale", self.learning_rate_scale, 0, 10, lo_open=True)
        check_choice("quantization", "scheme", self.scheme, QUANTIZATION_SCHEMES)


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation from the model before compression, applied to
    every fine-tuning stage: ``loss = alpha * task + (1 - alpha) * T² * KL``.

    Args:
        alpha: weight of the task loss, in [0, 1]. Defaults to `0.5`.
        temperature: softening temperature, > 0. Defaults to `4.0`.

    Example:
        >>> Distillation(alpha=0.2, temperature=2)
        Distillation(alpha=0.2, temperature=2)
    """

    alpha: float = 0.5
    temperature: float = 4.0

    def __post_init__(self):
        check_range("distillation", "alpha", self.alpha, 0, 1)
        check_range("distillation", "temperature", self.temperature, 0, 100, lo_open=True)




#: Recipe field name -> stage class, in the order the stages run.
STAGE_CLASSES = {
    "train": Train, "channels": Channels, "penalty": Penalty, "pruning": Pruning,
    "clustering": Clustering, "quantization": Quantization,
}


def qat_scheme(stage, pruned, clustered, preserve_sparsity=None):
    """The QAT variant a quantization stage runs: the one place it is chosen.

    ``stage.scheme`` wins when it names one; with ``"auto"`` the variant keeps
    what the earlier stages made: clusters when clustering ran, zeros when
    pruning ran and ``preserve_sparsity`` is on.

    Args:
        stage: a :class:`Quantization` stage.
        pruned: a (magnitude) pruning stage ran, or will run, before QAT.
            Channel pruning does not count: it leaves no zero weights.
        clustered: a clustering stage ran, or will run, before QAT.
        preserve_sparsity: overrides ``stage.preserve_sparsity``. Defaults to
            `None`.

    Returns:
        ``"qat"``, ``"pqat"``, ``"cqat"`` or ``"pcqat"``.

    Example:
        >>> qat_scheme(Quantization(), pruned=True, clustered=True)
        'pcqat'
        >>> qat_scheme(Quantization(preserve_sparsity=False), pruned=True, clustered=False)
        'qat'
    """
    if stage.scheme != "auto":
        return stage.scheme
    preserve = stage.preserve_sparsity if preserve_sparsity is None else preserve_sparsity
    sparse = bool(pruned and preserve)
    if clustered:
        return "pcqat" if sparse else "cqat"
    return "pqat" if sparse else "qat"
