"""Compression recipes: frozen dataclasses that validate themselves.

A :class:`Recipe` is a list of optional stages applied in a fixed order
(pruning, then quantization-aware training), each stage keeping what the earlier
ones made, plus the fine-tuning settings shared by every stage. Recipes load
from and save to YAML; a wrong key, type or value raises :class:`RecipeError`
naming the field and what is allowed.

Example:
    >>> from tfcompress import Recipe, Pruning
    >>> r = Recipe(pruning=Pruning(final_sparsity=0.9, epochs=3))
    >>> Recipe.from_yaml_string(r.to_yaml()) == r
    True
"""

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field

import yaml

from tfcompress.errors import RecipeError

__all__ = ["Pruning", "Quantization", "Recipe", "PruningSteps"]

OPTIMIZERS = ("adam", "sgd", "rmsprop")


def _check_range(stage, name, value, lo, hi, lo_open=False, hi_open=False):
    ok_lo = value > lo if lo_open else value >= lo
    ok_hi = value < hi if hi_open else value <= hi
    if not (ok_lo and ok_hi):
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise RecipeError(f"{stage}.{name} must be in {interval}, got {value!r}.")


def _check_choice(stage, name, value, choices):
    if value not in choices:
        raise RecipeError(f"{stage}.{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")


@dataclass(frozen=True)
class PruningSteps:
    """The pruning schedule in optimizer steps, derived from fractions."""

    begin_step: int
    end_step: int
    frequency: int
    total_steps: int


@dataclass(frozen=True)
class Pruning:
    """Gradual magnitude pruning (TF-MOT ``prune_low_magnitude``).

    ``begin`` and ``end`` are fractions of this stage's fine-tuning run; they
    are turned into optimizer steps from the dataset size, batch size and
    epochs by :meth:`steps`, so the final sparsity is really reached.

    Args:
        final_sparsity: share of weights set to zero in each pruned layer, in
            [0, 1). Defaults to `0.8`.
        initial_sparsity: sparsity at ``begin`` (polynomial schedule only).
            Defaults to `0.0`.
        schedule: ``"polynomial"`` (ramps up) or ``"constant"``. Defaults to
            `"polynomial"`.
        begin: fraction of the stage at which pruning starts. Defaults to `0.0`.
        end: fraction of the stage at which ``final_sparsity`` is reached.
            Defaults to `0.7`.
        frequency: prune every this many steps; ``None`` picks about 10 pruning
            events between ``begin`` and ``end``. Defaults to `None`.
        power: exponent of the polynomial schedule. Defaults to `3`.
        epochs: fine-tuning epochs of this stage. Defaults to `4`.

    Example:
        >>> Pruning(final_sparsity=0.8).steps(num_samples=1000, batch_size=32)
        PruningSteps(begin_step=0, end_step=90, frequency=9, total_steps=128)
    """

    final_sparsity: float = 0.8
    initial_sparsity: float = 0.0
    schedule: str = "polynomial"
    begin: float = 0.0
    end: float = 0.7
    frequency: typing.Optional[int] = None
    power: float = 3.0
    epochs: int = 4

    def __post_init__(self):
        _check_range("pruning", "final_sparsity", self.final_sparsity, 0, 1, hi_open=True)
        _check_range("pruning", "initial_sparsity", self.initial_sparsity, 0, 1, hi_open=True)
        if self.initial_sparsity > self.final_sparsity:
            raise RecipeError(
                f"pruning.initial_sparsity ({self.initial_sparsity}) must not exceed "
                f"pruning.final_sparsity ({self.final_sparsity})."
            )
        _check_choice("pruning", "schedule", self.schedule, ("polynomial", "constant"))
        _check_range("pruning", "begin", self.begin, 0, 1, hi_open=True)
        _check_range("pruning", "end", self.end, 0, 1, lo_open=True)
        if self.end <= self.begin:
            raise RecipeError(
                f"pruning.end ({self.end}) must be greater than pruning.begin ({self.begin})."
            )
        if self.frequency is not None and self.frequency < 1:
            raise RecipeError(f"pruning.frequency must be a positive integer or null, got {self.frequency!r}.")
        _check_range("pruning", "power", self.power, 0, 100, lo_open=True)
        if self.epochs < 1:
            raise RecipeError(f"pruning.epochs must be at least 1, got {self.epochs!r}.")

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
class Quantization:
    """Quantization-aware training (TF-MOT ``quantize_apply``), 8-bit.

    Args:
        epochs: fine-tuning epochs of QAT. Defaults to `2`.
        preserve_sparsity: keep the zeros an earlier pruning stage made
            (PQAT, TF-MOT's ``Default8BitPrunePreserveQuantizeScheme``).
            Defaults to `True`.
        learning_rate_scale: QAT fine-tunes at ``recipe.learning_rate`` times
            this. Defaults to `0.1`.

    Example:
        >>> Quantization(epochs=1)
        Quantization(epochs=1, preserve_sparsity=True, learning_rate_scale=0.1)
    """

    epochs: int = 2
    preserve_sparsity: bool = True
    learning_rate_scale: float = 0.1

    def __post_init__(self):
        if self.epochs < 1:
            raise RecipeError(f"quantization.epochs must be at least 1, got {self.epochs!r}.")
        _check_range("quantization", "learning_rate_scale", self.learning_rate_scale, 0, 10, lo_open=True)


@dataclass(frozen=True)
class Recipe:
    """What :func:`tfcompress.optimize` does: stages plus fine-tuning settings.

    Stages run in the order of the fields (pruning, then quantization); a stage
    set to ``None`` is skipped.

    Args:
        pruning: a :class:`Pruning` stage or None. Defaults to `Pruning()`.
        quantization: a :class:`Quantization` stage or None. Defaults to
            `Quantization()`.
        batch_size: fine-tuning batch size. Defaults to `32`.
        learning_rate: fine-tuning learning rate. Defaults to `1e-3`.
        optimizer: ``"adam"``, ``"sgd"`` (momentum 0.9) or ``"rmsprop"``.
            Defaults to `"adam"`.

    Example:
        >>> recipe = Recipe.from_dict({"pruning": {"final_sparsity": 0.5}, "quantization": None})
        >>> recipe.pruning.final_sparsity
        0.5
    """

    pruning: typing.Optional[Pruning] = field(default_factory=Pruning)
    quantization: typing.Optional[Quantization] = field(default_factory=Quantization)
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"

    def __post_init__(self):
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise RecipeError(f"batch_size must be a positive integer, got {self.batch_size!r}.")
        _check_range("recipe", "learning_rate", self.learning_rate, 0, 10, lo_open=True)
        _check_choice("recipe", "optimizer", self.optimizer, OPTIMIZERS)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            stage_cls = _stage_class(f)
            if stage_cls is not None and value is not None and not isinstance(value, stage_cls):
                raise RecipeError(f"{f.name} must be a {stage_cls.__name__} or None, got {type(value).__name__}.")

    @property
    def stages(self):
        """The enabled stages, in the order they run, as ``(name, stage)``."""
        return [
            (f.name, getattr(self, f.name))
            for f in dataclasses.fields(self)
            if _stage_class(f) is not None and getattr(self, f.name) is not None
        ]

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # --- serialisation -------------------------------------------------
    def to_dict(self):
        """A plain dict (stages as dicts, disabled stages as None)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Build a recipe from a dict; unknown keys and wrong types raise RecipeError."""
        return _from_dict(cls, data, "recipe")

    def to_yaml(self):
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml_string(cls, text):
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


def _stage_class(f):
    """The stage dataclass of an Optional[Stage] field, else None."""
    args = typing.get_args(f.type) if not isinstance(f.type, str) else ()
    for a in args:
        if dataclasses.is_dataclass(a):
            return a
    return None


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
        return isinstance(value, origin)
    return isinstance(value, tp)


def _type_name(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
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
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        stage = next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)
        if stage is not None:
            if value is None or value is False:
                kwargs[name] = None
            elif value is True:
                kwargs[name] = stage()
            else:
                kwargs[name] = _from_dict(stage, value, name)
            continue
        if not _type_ok(value, tp):
            raise RecipeError(
                f"{where}.{name} must be {_type_name(tp)}, got {type(value).__name__} {value!r}."
            )
        if tp is float or (typing.get_origin(tp) in (typing.Union, types.UnionType) and float in typing.get_args(tp)):
            value = float(value) if value is not None else None
        kwargs[name] = value
    return cls(**kwargs)
