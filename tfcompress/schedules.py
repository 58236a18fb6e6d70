"""How a stage trains: the optimizer and the learning-rate schedule, as recipe fields.

:class:`Optimizer` names a Keras optimizer and its fields; :class:`Schedule`
names a learning-rate schedule and its fields, in epochs (the steps are
computed from the data size, batch size and the stage's epochs when the
stage runs: :mod:`tfcompress.training` builds tf_keras's own objects). Both
are frozen dataclasses that validate themselves like the stages: a field
left ``None`` takes the default of the chosen optimizer or schedule, a field
that does not apply to it raises :class:`~tfcompress.errors.RecipeError`. In
YAML either is a name (``optimizer: adam``, ``schedule: cosine``) or a
mapping (``optimizer: {name: sgd, momentum: 0.8, nesterov: true}``).

Example:
    >>> Optimizer("nesterov")
    Optimizer(name='nesterov', momentum=0.9, nesterov=True, weight_decay=0.0)
    >>> Schedule("cosine", warmup_epochs=1).alpha
    0.0
    >>> Schedule.coerce("exponential", "recipe.schedule").decay_rate
    0.9
"""

import dataclasses
from dataclasses import dataclass

from tfcompress._checks import brief, check_bool, check_choice, check_int, check_range, is_real
from tfcompress.errors import RecipeError

__all__ = ["Optimizer", "Schedule", "OPTIMIZERS", "SCHEDULES"]

#: Optimizer name -> {field: default}: the fields each optimizer takes (``weight_decay``
#: and ``clipnorm`` apply to every one). ``sgd`` keeps tfcompress's long-standing
#: momentum 0.9; ``sgd`` with ``momentum: 0`` is plain SGD.
_OPTIMIZER_FIELDS = {
    "sgd": {"momentum": 0.9, "nesterov": False},
    "momentum": {"momentum": 0.9, "nesterov": False},
    "nesterov": {"momentum": 0.9, "nesterov": True},
    "adagrad": {"epsilon": 1e-7},
    "rmsprop": {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7},
    "adam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "adamw": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
}
OPTIMIZERS = tuple(_OPTIMIZER_FIELDS)

#: Schedule kind -> {field: default}; ``plateau``'s ``monitor`` None is
#: ``val_loss`` with validation data, ``loss`` without.
_SCHEDULE_FIELDS = {
    "constant": {},
    "exponential": {"decay_rate": 0.9, "decay_epochs": 1.0, "staircase": False},
    "inverse_time": {"decay_rate": 0.5, "decay_epochs": 1.0, "staircase": False},
    "step": {"drop": 0.5, "every": 1},
    "polynomial": {"alpha": 0.0, "power": 1.0},
    "cosine": {"alpha": 0.0, "warmup_epochs": 0.0},
    "plateau": {"factor": 0.1, "patience": 2, "min_lr": 0.0, "monitor": None},
}
SCHEDULES = tuple(_SCHEDULE_FIELDS)


def _resolve(obj, where, key, table):
    """Fill the fields the chosen variant takes with its defaults; refuse the others."""
    chosen = getattr(obj, key)
    own = table[chosen]
    for f in dataclasses.fields(obj):
        if f.name == key or f.name in _EVERY:
            continue
        value = getattr(obj, f.name)
        if f.name in own:
            if value is None:
                object.__setattr__(obj, f.name, own[f.name])
        elif value is not None:
            takers = [k for k, fields in table.items() if f.name in fields]
            raise RecipeError(
                f"{where}.{f.name} does not apply to {key} {chosen!r} (it applies to {', '.join(takers)}): "
                f"remove it or choose one of those."
            )


# Fields every optimizer takes (not in the per-name tables).
_EVERY = ("weight_decay", "clipnorm", "boundaries")


def _compact(obj, key):
    """The name alone when every other field has its default, else a mapping."""
    name = getattr(obj, key)
    if obj == type(obj)(name):
        return name
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items() if v is not None}


def _coerce(cls, value, where, key):
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, str):
        value = {key: value}
    if not isinstance(value, dict):
        raise RecipeError(
            f"{where} must be a {key} ({', '.join(cls._CHOICES)}) or a mapping with a {key}, "
            f"got {type(value).__name__} {brief(value)}."
        )
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(value) - set(names), key=str)
    if unknown:
        raise RecipeError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in {where}: "
            f"allowed keys are {', '.join(names)}."
        )
    if key not in value:
        raise RecipeError(f"{where} needs a {key} (one of {', '.join(cls._CHOICES)}).")
    try:
        return cls(**value)
    except RecipeError as e:  # name the field where the user wrote it (``pruning.optimizer.momentum``)
        raise RecipeError(str(e).replace(f"{cls._WHERE}.", f"{where}.")) from None


def _repr_set_fields(self):
    """``Name(field=value, ...)`` with the fields left None (not applicable) omitted."""
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                      if getattr(self, f.name) is not None)
    return f"{type(self).__name__}({shown})"


@dataclass(frozen=True)
class Optimizer:
    """The optimizer of a training run (tf_keras's own classes).

    Args:
        name: ``"sgd"`` (momentum 0.9 unless set: ``momentum: 0`` is plain
            SGD), ``"momentum"``, ``"nesterov"`` (SGD with Nesterov momentum),
            ``"adagrad"``, ``"rmsprop"``, ``"adam"`` or ``"adamw"``. Defaults
            to `"adam"`.
        momentum: SGD / RMSprop momentum in [0, 1). Defaults to `None`
            (0.9 for the SGD family, 0 for RMSprop).
        nesterov: Nesterov momentum (SGD family). Defaults to `None` (true
            only for ``"nesterov"``).
        weight_decay: decoupled weight decay, in [0, 1). Defaults to `None`
            (0.004 for AdamW, as Keras; 0 otherwise).
        beta_1: Adam/AdamW first-moment decay. Defaults to `None` (0.9).
        beta_2: Adam/AdamW second-moment decay. Defaults to `None` (0.999).
        epsilon: Adam/AdamW/RMSprop/AdaGrad epsilon. Defaults to `None` (1e-7).
        rho: RMSprop discounting factor. Defaults to `None` (0.9).
        clipnorm: clip each gradient to this norm; None does not clip.
            Defaults to `None`.

    Raises:
        RecipeError: an unknown name, a value out of range, or a field the
            optimizer does not take (``beta_1`` on SGD).

    Example:
        >>> Optimizer("sgd", momentum=0.8, nesterov=True).momentum
        0.8
        >>> Optimizer("adamw").weight_decay
        0.004
    """

    name: str = "adam"
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    beta_1: float | None = None
    beta_2: float | None = None
    epsilon: float | None = None
    rho: float | None = None
    clipnorm: float | None = None

    _WHERE = "optimizer"
    _CHOICES = OPTIMIZERS

    __repr__ = _repr_set_fields

    def __post_init__(self):
        w = self._WHERE
        check_choice(w, "name", self.name, OPTIMIZERS)
        _resolve(self, w, "name", _OPTIMIZER_FIELDS)
        if self.weight_decay is None:
            object.__setattr__(self, "weight_decay", 0.004 if self.name == "adamw" else 0.0)
        for name, lo, hi, lo_open, hi_open in (("momentum", 0, 1, False, True), ("weight_decay", 0, 1, False, True),
                                               ("beta_1", 0, 1, False, True), ("beta_2", 0, 1, False, True),
                                               ("epsilon", 0, 1, True, False), ("rho", 0, 1, False, True),
                                               ("clipnorm", 0, 1e9, True, False)):
            value = getattr(self, name)
            if value is not None:
                check_range(w, name, value, lo, hi, lo_open=lo_open, hi_open=hi_open)
                object.__setattr__(self, name, float(value))
        check_bool(w, "nesterov", self.nesterov, optional=True)
        if self.nesterov and not self.momentum:
            raise RecipeError(f"{w}.nesterov needs {w}.momentum above 0: set momentum (e.g. 0.9) or drop nesterov.")

    @classmethod
    def coerce(cls, value, where="optimizer"):
        """An Optimizer from a name, a mapping or an Optimizer (None passes).

        Example:
            >>> Optimizer.coerce({"name": "rmsprop", "rho": 0.8}).rho
            0.8
        """
        return _coerce(cls, value, where, "name")

    def to_dict(self):
        """The name alone when every field has its default, else a mapping of the set fields."""
        return _compact(self, "name")


@dataclass(frozen=True)
class Schedule:
    """How the learning rate moves during a training run; fields in epochs.

    Args:
        kind: ``"constant"``; ``"exponential"`` (times ``decay_rate`` every
            ``decay_epochs``); ``"step"`` (times ``drop`` every ``every``
            epochs, or at the epochs in ``boundaries``); ``"inverse_time"``
            (``lr / (1 + decay_rate * epoch / decay_epochs)``, time-based
            decay); ``"polynomial"`` (to ``alpha * lr`` at the end, with
            ``power``); ``"cosine"`` (to ``alpha * lr``, after an optional
            linear warm-up of ``warmup_epochs`` from 0); ``"plateau"``
            (Keras ``ReduceLROnPlateau``: times ``factor`` after ``patience``
            epochs without improvement of ``monitor``). Defaults to
            `"constant"`.
        decay_rate: exponential (in (0, 1]) / inverse-time (> 0) rate.
            Defaults to `None` (0.9 / 0.5).
        decay_epochs: epochs per decay period. Defaults to `None` (1).
        staircase: decay in whole periods. Defaults to `None` (false).
        drop: step: factor at each boundary, in (0, 1]. Defaults to `None` (0.5).
        every: step: epochs between drops. Defaults to `None` (1).
        boundaries: step: the epochs at which the rate drops (replaces
            ``every``). Defaults to `None`.
        alpha: polynomial/cosine: final rate as a share of the initial one,
            in [0, 1]. Defaults to `None` (0).
        power: polynomial exponent. Defaults to `None` (1, linear).
        warmup_epochs: cosine: linear warm-up epochs (may be fractional).
            Defaults to `None` (0).
        factor: plateau: multiply by this, in (0, 1). Defaults to `None` (0.1).
        patience: plateau: epochs without improvement. Defaults to `None` (2).
        min_lr: plateau: lower bound. Defaults to `None` (0).
        monitor: plateau: the metric watched. Defaults to `None` (``val_loss``,
            or ``loss`` without validation data).

    Raises:
        RecipeError: an unknown kind, a value out of range, or a field the
            kind does not take.

    Example:
        >>> Schedule("step", drop=0.1, every=2)
        Schedule(kind='step', drop=0.1, every=2)
        >>> Schedule("step", boundaries=[3, 6]).boundaries
        (3.0, 6.0)
    """

    kind: str = "constant"
    decay_rate: float | None = None
    decay_epochs: float | None = None
    staircase: bool | None = None
    drop: float | None = None
    every: int | None = None
    boundaries: list | None = None
    alpha: float | None = None
    power: float | None = None
    warmup_epochs: float | None = None
    factor: float | None = None
    patience: int | None = None
    min_lr: float | None = None
    monitor: str | None = None

    _WHERE = "schedule"
    _CHOICES = SCHEDULES

    __repr__ = _repr_set_fields

    def __post_init__(self):
        w = self._WHERE
        check_choice(w, "kind", self.kind, SCHEDULES)
        if self.boundaries is not None and self.kind != "step":
            raise RecipeError(f"{w}.boundaries does not apply to kind {self.kind!r} (it applies to step): remove it.")
        _resolve(self, w, "kind", _SCHEDULE_FIELDS)
        hi_rate = 1 if self.kind == "exponential" else 1e6
        for name, lo, hi, lo_open, hi_open in (("decay_rate", 0, hi_rate, True, False),
                                               ("decay_epochs", 0, 1e6, True, False), ("drop", 0, 1, True, False),
                                               ("alpha", 0, 1, False, False), ("power", 0, 100, True, False),
                                               ("warmup_epochs", 0, 1e6, False, False),
                                               ("factor", 0, 1, True, True), ("min_lr", 0, 10, False, False)):
            value = getattr(self, name)
            if value is not None:
                check_range(w, name, value, lo, hi, lo_open=lo_open, hi_open=hi_open)
                object.__setattr__(self, name, float(value))
        check_bool(w, "staircase", self.staircase, optional=True)
        check_int(w, "every", self.every, optional=True)
        check_int(w, "patience", self.patience, minimum=0, optional=True)
        if self.monitor is not None and not (isinstance(self.monitor, str) and self.monitor):
            raise RecipeError(f"{w}.monitor must be a metric name such as 'val_loss', got {brief(self.monitor)}.")
        if self.boundaries is not None:
            b = self.boundaries
            if isinstance(b, str) or not isinstance(b, (list, tuple)) or not b or not all(
                    is_real(v) and v > 0 for v in b) or list(b) != sorted(set(b)):
                raise RecipeError(f"{w}.boundaries must be increasing epochs above 0 like [2, 4], got {brief(b)}.")
            object.__setattr__(self, "boundaries", tuple(float(v) for v in b))
            object.__setattr__(self, "every", None)

    @classmethod
    def coerce(cls, value, where="schedule"):
        """A Schedule from a kind, a mapping or a Schedule (None passes).

        Example:
            >>> Schedule.coerce({"kind": "plateau", "patience": 1}).factor
            0.1
        """
        return _coerce(cls, value, where, "kind")

    def to_dict(self):
        """The kind alone when every field has its default, else a mapping of the set fields."""
        return _compact(self, "kind")
