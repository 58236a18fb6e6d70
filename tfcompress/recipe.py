"""Compression recipes: frozen dataclasses that validate themselves.

A :class:`Recipe` is a list of optional stages applied in a fixed order —
``channels`` (structured pruning), ``penalty`` (L1/L2 weight decay towards
zero), ``pruning``, ``clustering``, then ``quantization`` (QAT) — each stage
keeping what the earlier ones made, plus the fine-tuning settings shared by
every stage (batch size, learning rate, optimizer, knowledge distillation,
mixed precision). Recipes load from and save to YAML; a wrong key, type or
value, or stages written in an order that would undo earlier work, raises
:class:`RecipeError` naming the field and what is allowed.

Example:
    >>> from tfcompress.recipe import Clustering, Distillation, Pruning, Recipe
    >>> r = Recipe(pruning=Pruning(final_sparsity=0.5, epochs=3),
    ...            clustering=Clustering(number_of_clusters=16),
    ...            distillation=Distillation(alpha=0.3))
    >>> Recipe.from_yaml_string(r.to_yaml()) == r
    True
    >>> [name for name, _ in r.stages]
    ['pruning', 'clustering', 'quantization']
    >>> r.quantization_scheme()
    'pcqat'
"""

import dataclasses
import math
import numbers
import os
import re
import types
import typing
from dataclasses import dataclass, field

import yaml

from tfcompress.errors import RecipeError

from tfcompress.channels.config import Channels

__all__ = [
    "Channels", "Penalty", "Pruning", "Clustering", "Quantization", "Distillation",
    "Recipe", "PruningSteps", "STAGE_ORDER", "CENTROID_INITS", "QUANTIZATION_SCHEMES",
]

OPTIMIZERS = ("adam", "sgd", "rmsprop")
#: The order stages run in; a YAML recipe must list them in this order.
STAGE_ORDER = ("channels", "penalty", "pruning", "clustering", "quantization")
CENTROID_INITS = ("kmeans_plus_plus", "linear", "density_based", "random")
QUANTIZATION_SCHEMES = ("auto", "qat", "pqat", "cqat", "pcqat")
PRUNING_POLICIES = (None, "xnnpack")


def _check_range(stage, name, value, lo, hi, lo_open=False, hi_open=False):
    ok_lo = value > lo if lo_open else value >= lo
    ok_hi = value < hi if hi_open else value <= hi
    if not (ok_lo and ok_hi):
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise RecipeError(f"{stage}.{name} must be in {interval}, got {value!r}.")


def _check_choice(stage, name, value, choices):
    if value not in choices:
        raise RecipeError(f"{stage}.{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_epochs(stage, value):
    if not _is_int(value) or value < 1:
        raise RecipeError(f"{stage}.epochs must be an integer of at least 1, got {value!r}.")


def _check_bool(stage, name, value, optional=False):
    if not (isinstance(value, bool) or (optional and value is None)):
        raise RecipeError(f"{stage}.{name} must be true or false{' or null' if optional else ''}, got {value!r}.")


def _int_pair(obj, stage, name, value, positive=True):
    """Validate a pair of integers (YAML gives a list) and store it as a tuple."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
        _is_int(v) and (v >= 1 if positive else v >= 0) for v in value
    ):
        raise RecipeError(f"{stage}.{name} must be a pair of positive integers like [2, 4], got {value!r}.")
    pair = tuple(int(v) for v in value)
    object.__setattr__(obj, name, pair)
    return pair


def _patterns(obj, stage, name, value):
    """Validate a list of layer names / regexes / layer types and store it as a tuple."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and p for p in value):
        raise RecipeError(
            f"{stage}.{name} must be a list of layer names, regular expressions or layer types, got {value!r}."
        )
    for p in value:
        try:
            re.compile(p)
        except re.error as e:
            raise RecipeError(f"{stage}.{name}: {p!r} is not a valid regular expression ({e}); escape it or fix it.") from None
    object.__setattr__(obj, name, tuple(value))
    return value


def _is_schedule_object(value):
    # A tfmot.sparsity.keras.PruningSchedule, checked by shape so that this
    # module does not import TensorFlow.
    return callable(value) and hasattr(value, "get_config") and not isinstance(value, type)


@dataclass(frozen=True)
class PruningSteps:
    """The pruning schedule in optimizer steps, derived from fractions."""

    begin_step: int
    end_step: int
    frequency: int
    total_steps: int


@dataclass(frozen=True)
class Penalty:
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
        for name in ("l1", "l2"):
            v = getattr(self, name)
            if not _is_real(v):
                raise RecipeError(f"penalty.{name} must be a number in [0, 1], got {v!r}.")
            _check_range("penalty", name, v, 0, 1)
        if self.l1 == 0 and self.l2 == 0:
            raise RecipeError("penalty needs penalty.l1 or penalty.l2 above 0: set one, or remove the penalty stage.")
        _check_epochs("penalty", self.epochs)


@dataclass(frozen=True)
class Pruning:
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
    frequency: typing.Optional[int] = None
    power: float = 3.0
    epochs: int = 4
    sparsity_m_by_n: typing.Optional[typing.Sequence[int]] = None
    block_size: typing.Sequence[int] = (1, 1)
    pruning_policy: typing.Optional[str] = None
    include: typing.Optional[typing.Sequence[str]] = None
    exclude: typing.Optional[typing.Sequence[str]] = None
    per_layer: typing.Optional[typing.Dict[str, float]] = None

    def __post_init__(self):
        _check_range("pruning", "final_sparsity", self.final_sparsity, 0, 1, hi_open=True)
        _check_range("pruning", "initial_sparsity", self.initial_sparsity, 0, 1, hi_open=True)
        if self.initial_sparsity > self.final_sparsity:
            raise RecipeError(
                f"pruning.initial_sparsity ({self.initial_sparsity}) must not exceed "
                f"pruning.final_sparsity ({self.final_sparsity})."
            )
        if not self.custom_schedule:
            _check_choice("pruning", "schedule", self.schedule, ("polynomial", "constant"))
        _check_range("pruning", "begin", self.begin, 0, 1, hi_open=True)
        _check_range("pruning", "end", self.end, 0, 1, lo_open=True)
        if self.end <= self.begin:
            raise RecipeError(
                f"pruning.end ({self.end}) must be greater than pruning.begin ({self.begin})."
            )
        if self.frequency is not None and (not _is_int(self.frequency) or self.frequency < 1):
            raise RecipeError(f"pruning.frequency must be a positive integer or null, got {self.frequency!r}.")
        _check_range("pruning", "power", self.power, 0, 100, lo_open=True)
        _check_epochs("pruning", self.epochs)
        mn = _int_pair(self, "pruning", "sparsity_m_by_n", self.sparsity_m_by_n)
        if mn is not None and mn[0] >= mn[1]:
            raise RecipeError(
                f"pruning.sparsity_m_by_n {list(mn)} must have m < n (m zeros in every n weights), e.g. [2, 4]."
            )
        block = _int_pair(self, "pruning", "block_size", self.block_size)
        if mn is not None and block != (1, 1):
            raise RecipeError(
                "pruning.sparsity_m_by_n and pruning.block_size cannot be combined: "
                "use M:N sparsity or block sparsity, not both."
            )
        _check_choice("pruning", "pruning_policy", self.pruning_policy, PRUNING_POLICIES)
        _patterns(self, "pruning", "include", self.include)
        _patterns(self, "pruning", "exclude", self.exclude)
        if self.per_layer is not None:
            if not isinstance(self.per_layer, dict) or not self.per_layer:
                raise RecipeError(
                    f"pruning.per_layer must be a mapping {{layer name or regex: sparsity}}, got {self.per_layer!r}."
                )
            for k, v in self.per_layer.items():
                _patterns(types.SimpleNamespace(), "pruning", "per_layer", [k])
                if not _is_real(v) or not 0 <= v < 1:
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
        return not isinstance(self.schedule, str) and _is_schedule_object(self.schedule)

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
class Clustering:
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
    preserve_sparsity: typing.Optional[bool] = None
    per_channel: bool = False
    epochs: int = 2
    learning_rate_scale: float = 0.5
    include: typing.Optional[typing.Sequence[str]] = None
    exclude: typing.Optional[typing.Sequence[str]] = None

    def __post_init__(self):
        if not _is_int(self.number_of_clusters) or self.number_of_clusters < 2:
            raise RecipeError(
                f"clustering.number_of_clusters must be an integer of at least 2, got {self.number_of_clusters!r}."
            )
        _check_choice("clustering", "centroid_init", self.centroid_init, CENTROID_INITS)
        _check_bool("clustering", "preserve_sparsity", self.preserve_sparsity, optional=True)
        _check_bool("clustering", "per_channel", self.per_channel)
        _check_epochs("clustering", self.epochs)
        _check_range("clustering", "learning_rate_scale", self.learning_rate_scale, 0, 10, lo_open=True)
        _patterns(self, "clustering", "include", self.include)
        _patterns(self, "clustering", "exclude", self.exclude)


@dataclass(frozen=True)
class Quantization:
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
        _check_epochs("quantization", self.epochs)
        _check_bool("quantization", "preserve_sparsity", self.preserve_sparsity)
        _check_range("quantization", "learning_rate_scale", self.learning_rate_scale, 0, 10, lo_open=True)
        _check_choice("quantization", "scheme", self.scheme, QUANTIZATION_SCHEMES)


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
        if not _is_real(self.alpha):
            raise RecipeError(f"distillation.alpha must be a number in [0, 1], got {self.alpha!r}.")
        _check_range("distillation", "alpha", self.alpha, 0, 1)
        if not _is_real(self.temperature):
            raise RecipeError(f"distillation.temperature must be a number > 0, got {self.temperature!r}.")
        _check_range("distillation", "temperature", self.temperature, 0, 100, lo_open=True)


_STAGE_CLASSES = {
    "channels": Channels, "penalty": Penalty, "pruning": Pruning,
    "clustering": Clustering, "quantization": Quantization,
}


@dataclass(frozen=True)
class Recipe:
    """What :func:`tfcompress.optimize` does: stages plus fine-tuning settings.

    Stages run in the order of :data:`STAGE_ORDER` (channels, penalty,
    pruning, clustering, quantization); a stage set to ``None`` is skipped.

    Args:
        channels: a :class:`~tfcompress.channels.Channels` stage (structured
            pruning) or None. Defaults to `None`.
        penalty: a :class:`Penalty` stage or None. Defaults to `None`.
        pruning: a :class:`Pruning` stage or None. Defaults to `Pruning()`.
        clustering: a :class:`Clustering` stage or None. Defaults to `None`.
        quantization: a :class:`Quantization` stage or None. Defaults to
            `Quantization()`.
        batch_size: fine-tuning batch size. Defaults to `32`.
        learning_rate: fine-tuning learning rate. Defaults to `1e-3`.
        optimizer: ``"adam"``, ``"sgd"`` (momentum 0.9) or ``"rmsprop"``.
            Defaults to `"adam"`.
        distillation: a :class:`Distillation` applied to every fine-tuning
            run (teacher: the model before compression), or None for plain
            fine-tuning. Defaults to `None`.
        mixed_precision: fine-tune with the ``mixed_float16`` policy where it
            is valid (not during QAT; the report says where it was skipped).
            Defaults to `False`.

    Raises:
        RecipeError: a bad value, or a quantization scheme whose earlier stage
            is missing.

    Example:
        >>> recipe = Recipe.from_dict({"pruning": {"final_sparsity": 0.5}, "quantization": None})
        >>> recipe.pruning.final_sparsity
        0.5
    """

    channels: typing.Optional[Channels] = None
    penalty: typing.Optional[Penalty] = None
    pruning: typing.Optional[Pruning] = field(default_factory=Pruning)
    clustering: typing.Optional[Clustering] = None
    quantization: typing.Optional[Quantization] = field(default_factory=Quantization)
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    distillation: typing.Optional[Distillation] = None
    mixed_precision: bool = False

    def __post_init__(self):
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise RecipeError(f"batch_size must be a positive integer, got {self.batch_size!r}.")
        if not _is_real(self.learning_rate):
            raise RecipeError(f"recipe.learning_rate must be a number in (0, 10], got {self.learning_rate!r}.")
        _check_range("recipe", "learning_rate", self.learning_rate, 0, 10, lo_open=True)
        _check_choice("recipe", "optimizer", self.optimizer, OPTIMIZERS)
        _check_bool("recipe", "mixed_precision", self.mixed_precision)
        for name, cls in list(_STAGE_CLASSES.items()) + [("distillation", Distillation)]:
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                raise RecipeError(f"{name} must be a {cls.__name__} or None, got {type(value).__name__}.")
        q = self.quantization
        if q is not None and q.scheme != "auto":
            needs = {"pqat": ("pruning",), "cqat": ("clustering",), "pcqat": ("pruning", "clustering")}
            missing = [s for s in needs.get(q.scheme, ()) if getattr(self, s) is None]
            if missing:
                raise RecipeError(
                    f"quantization.scheme {q.scheme!r} preserves what the {' and '.join(missing)} stage makes, "
                    f"but the recipe has no {' or '.join(missing)} stage: add it or use scheme 'auto' or 'qat'."
                )
        c = self.clustering
        if c is not None and c.preserve_sparsity and self.pruning is None and self.channels is None:
            raise RecipeError(
                "clustering.preserve_sparsity is true but the recipe has no pruning stage: "
                "add one or set preserve_sparsity to null."
            )

    @property
    def stages(self):
        """The enabled stages, in the order they run, as ``(name, stage)``."""
        return [(n, getattr(self, n)) for n in STAGE_ORDER if getattr(self, n) is not None]

    def quantization_scheme(self):
        """The QAT variant the quantization stage will run (None without one).

        Returns:
            ``"qat"``, ``"pqat"``, ``"cqat"`` or ``"pcqat"``: ``scheme`` when
            set, else chosen from the earlier stages.

        Example:
            >>> Recipe(pruning=Pruning(), clustering=None).quantization_scheme()
            'pqat'
        """
        q = self.quantization
        if q is None:
            return None
        if q.scheme != "auto":
            return q.scheme
        sparse = self.pruning is not None and q.preserve_sparsity
        if self.clustering is not None:
            return "pcqat" if sparse else "cqat"
        return "pqat" if sparse else "qat"

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # --- serialisation -------------------------------------------------
    def to_dict(self):
        """A plain dict (stages as dicts, disabled stages as None, pairs as lists).

        A user-supplied pruning schedule object appears as the string
        ``"custom: <class name>"``, which :meth:`from_dict` rejects.
        """
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                value = {g.name: _plain(getattr(value, g.name)) for g in dataclasses.fields(value)}
            out[f.name] = _plain(value)
        return out

    @classmethod
    def from_dict(cls, data):
        """Build a recipe from a dict; unknown keys, wrong types and stages out
        of order raise RecipeError."""
        if isinstance(data, dict):
            _check_stage_order(list(data))
        return _from_dict(cls, data, "recipe")

    def to_yaml(self):
        """The recipe as YAML text.

        Raises:
            RecipeError: the pruning schedule is a Python object (YAML can
                only name ``polynomial`` or ``constant``).
        """
        if self.pruning is not None and self.pruning.custom_schedule:
            raise RecipeError(
                f"pruning.schedule is a {type(self.pruning.schedule).__name__} object, which YAML cannot "
                "hold: use schedule 'polynomial' or 'constant' to save the recipe, or keep it in Python."
            )
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml_string(cls, text):
        """Build a recipe from YAML text (see :meth:`from_dict`)."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RecipeError(f"recipe is not valid YAML: {str(e).splitlines()[0]}") from None
        return cls.from_dict(data or {})

    @classmethod
    def from_yaml(cls, path):
        """Load a recipe from a YAML file.

        Example:
            >>> Recipe.from_yaml("recipe.yaml")  # doctest: +SKIP
        """
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise RecipeError(f"cannot read recipe {path}: {e.strerror}.") from None
        return cls.from_yaml_string(text)

    def save_yaml(self, path):
        """Write the recipe as YAML, atomically."""
        from tfcompress.report import atomic_write_text

        atomic_write_text(path, self.to_yaml())


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if _is_schedule_object(value):
        return f"custom: {type(value).__name__}"
    return value


def _check_stage_order(keys):
    given = [k for k in keys if k in STAGE_ORDER]
    want = sorted(given, key=STAGE_ORDER.index)
    if given != want:
        first_bad = next(g for g, w in zip(given, want) if g != w)
        raise RecipeError(
            f"recipe stages are out of order ({' → '.join(given)}): '{first_bad}' would undo the stages "
            f"written after it; list them in the order they run: {' → '.join(want)}."
        )


def _type_ok(value, tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin) and not (origin is not str and isinstance(value, str))
    return isinstance(value, tp)


def _type_name(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is dict:
        return "a mapping"
    if origin is not None:
        return "a list"
    return getattr(tp, "__name__", str(tp))


def _from_dict(cls, data, where):
    if not isinstance(data, dict):
        raise RecipeError(f"{where} must be a mapping, got {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in {where}: "
            f"allowed keys are {', '.join(sorted(known))}."
        )
    none_default = {f.name for f in dataclasses.fields(cls) if f.default is None}
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if value is None and name in none_default:  # e.g. ``per_layer: dict = None``
            kwargs[name] = None
            continue
        sub = next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)
        if sub is not None:
            if value is None or value is False:
                kwargs[name] = None
            elif value is True:
                kwargs[name] = sub()
            else:
                kwargs[name] = _from_dict(sub, value, name)
            continue
        if not _type_ok(value, tp):
            raise RecipeError(
                f"{where}.{name} must be {_type_name(tp)}, got {type(value).__name__} {value!r}."
            )
        if tp is float or (typing.get_origin(tp) in (typing.Union, types.UnionType) and float in typing.get_args(tp)):
            value = float(value) if value is not None else None
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:  # a stage class defined elsewhere with other rules
        raise RecipeError(f"{where}: {e}") from None
