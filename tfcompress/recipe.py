"""Compression recipes: frozen dataclasses that validate themselves.

A :class:`Recipe` is a list of optional stages applied in a fixed order —
``train`` (train or continue training first), ``depth`` (remove
residual blocks / same-shape layers), ``channels`` (structured
pruning), ``lowrank`` (Dense layers as two of low rank), ``penalty``
(L1/L2 weight decay towards zero), ``pruning``, ``clustering``, then
``quantization`` (QAT) — each stage keeping what the earlier ones made,
plus the training settings shared by every stage (batch size, learning
rate, optimizer, learning-rate schedule, knowledge distillation, mixed precision, seed); a stage may set its own
``learning_rate``, ``optimizer`` and ``lr_schedule``. Recipes load from and
save to YAML; a wrong key, type or value, or stages written in an order that
would undo earlier work, raises
:class:`RecipeError` naming the field and what is allowed. Each stage class
lives with its technique (``Pruning`` in :mod:`tfcompress.pruning.config`, ...)
and the stage order is the registry's (:mod:`tfcompress.techniques`); a
technique registered at run time is a stage of the recipe too (see
:meth:`Recipe.replace`).

Example:
    >>> from tfcompress import Clustering, Distillation, Pruning, Recipe
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
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from tfcompress import techniques
from tfcompress._checks import brief, check_bool, check_int, check_range
from tfcompress._defaults import BATCH_SIZE, LEARNING_RATE
from tfcompress._stagebase import is_schedule_object
from tfcompress._yaml import load_file, load_text
from tfcompress.channels.config import Channels
from tfcompress.clustering.config import Clustering
from tfcompress.depth.config import Depth
from tfcompress.errors import RecipeError
from tfcompress.lowrank.config import LowRank
from tfcompress.precision.config import Precision
from tfcompress.pruning.config import Penalty, Pruning
from tfcompress.quantization.config import Quantization, qat_scheme
from tfcompress.schedules import Optimizer, Schedule
from tfcompress.train.config import Train

__all__ = ["Recipe", "Distillation", "STAGE_ORDER"]

#: The order the built-in stages run in; a YAML recipe must list them in this order
#: (:func:`tfcompress.techniques.names` also has the ones registered at run time).
STAGE_ORDER = techniques.names()


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


@dataclass(frozen=True)
class Recipe:
    """What :func:`tfcompress.optimize` does: stages plus fine-tuning settings.

    Stages run in the order of :data:`STAGE_ORDER` (train, depth, channels,
    lowrank, penalty, pruning, clustering, quantization); a stage set to ``None`` is
    skipped. Every training stage uses the recipe's ``learning_rate``,
    ``optimizer`` and ``lr_schedule`` unless it sets its own; schedule steps
    are computed from the data size, batch size and the stage's epochs.

    Args:
        train: a :class:`Train` stage (train or continue training before
            compression) or None. Defaults to `None`.
        depth: a :class:`~tfcompress.depth.Depth` stage (residual block /
            same-shape layer removal) or None. Defaults to `None`.
        channels: a :class:`~tfcompress.channels.Channels` stage (structured
            pruning) or None. Defaults to `None`.
        lowrank: a :class:`~tfcompress.lowrank.LowRank` stage (Dense layers
            factorised by truncated SVD) or None. Defaults to `None`.
        penalty: a :class:`Penalty` stage or None. Defaults to `None`.
        pruning: a :class:`Pruning` stage or None. Defaults to `Pruning()`.
        clustering: a :class:`Clustering` stage or None. Defaults to `None`.
        quantization: a :class:`Quantization` stage or None. Defaults to
            `Quantization()`.
        precision: a :class:`~tfcompress.precision.Precision` stage (per-layer
            precision of the exported file, from a sensitivity scan) or None;
            ``optimize`` refuses it beside a quantization stage. Defaults to `None`.
        batch_size: fine-tuning batch size. Defaults to `32`.
        learning_rate: fine-tuning learning rate. Defaults to `1e-3`.
        optimizer: an :class:`Optimizer`, its name (``"sgd"`` (momentum
            0.9), ``"momentum"``, ``"nesterov"``, ``"adagrad"``,
            ``"rmsprop"``, ``"adam"``, ``"adamw"``) or a mapping. Defaults to
            `"adam"`.
        lr_schedule: a :class:`Schedule`, its kind or a mapping; None keeps the
            rate constant. Defaults to `None`.
        distillation: a :class:`Distillation` applied to every fine-tuning
            run (teacher: the model before compression), or None for plain
            fine-tuning. Defaults to `None`.
        mixed_precision: fine-tune with the ``mixed_float16`` policy where it
            is valid (not during QAT; the report says where it was skipped).
            Defaults to `False`.
        seed: seeds Python, NumPy and TensorFlow when :func:`tfcompress.optimize`
            starts (its ``seed=`` argument wins), so a run is repeatable; the
            tuner writes each trial's seed here. Defaults to `None`.
        more_stages: the stages of techniques registered at run time
            (:func:`tfcompress.techniques.register`), as ``(name, stage)``
            pairs; read as ``recipe.<name>``, written by :meth:`replace` or
            YAML under the technique's name. Defaults to `()`.

    Raises:
        RecipeError: a bad value, or a quantization scheme whose earlier stage
            is missing.

    Example:
        >>> recipe = Recipe.from_dict({"pruning": {"final_sparsity": 0.5}, "quantization": None})
        >>> recipe.pruning.final_sparsity
        0.5
    """

    train: Train | None = None
    depth: Depth | None = None
    channels: Channels | None = None
    lowrank: LowRank | None = None
    penalty: Penalty | None = None
    pruning: Pruning | None = field(default_factory=Pruning)
    clustering: Clustering | None = None
    quantization: Quantization | None = field(default_factory=Quantization)
    precision: Precision | None = None
    batch_size: int = BATCH_SIZE
    learning_rate: float = LEARNING_RATE
    optimizer: Optimizer | str = "adam"
    lr_schedule: Schedule | None = None
    distillation: Distillation | None = None
    mixed_precision: bool = False
    seed: int | None = None
    #: the stages of techniques registered at run time (not fields): ``((name, stage), ...)`` in run order;
    #: a mapping is accepted. Read them as attributes (``recipe.<name>``), set them with :meth:`replace`.
    more_stages: tuple[tuple[str, Any], ...] = field(default=(), kw_only=True, repr=False)

    def __getattr__(self, name):
        # Only reached when normal lookup fails: a registered technique's stage (None when absent).
        if name.startswith("_") or name == "more_stages" or name not in techniques.names():
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return dict(self.more_stages).get(name)

    def __post_init__(self):
        check_int(None, "batch_size", self.batch_size, phrase="a positive integer")
        check_range("recipe", "learning_rate", self.learning_rate, 0, 10, lo_open=True)
        object.__setattr__(self, "learning_rate", float(self.learning_rate))
        object.__setattr__(self, "optimizer", Optimizer.coerce(self.optimizer, "recipe.optimizer"))
        object.__setattr__(self, "lr_schedule", Schedule.coerce(self.lr_schedule, "recipe.lr_schedule"))
        check_bool("recipe", "mixed_precision", self.mixed_precision)
        check_int("recipe", "seed", self.seed, minimum=0, optional=True, maximum=2**32 - 1)
        object.__setattr__(self, "more_stages", self._more_stages(self.more_stages))
        for name, cls in list(techniques.stage_classes().items()) + [("distillation", Distillation)]:
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                raise RecipeError(f"{name} must be a {cls.__name__} or None, got {type(value).__name__}.")
        self._check_stages()

    @classmethod
    def _more_stages(cls, more):
        """``more_stages`` as ``((name, stage), ...)`` in run order, registered names only, Nones dropped."""
        try:
            more = dict(more or ())
        except (TypeError, ValueError):
            raise RecipeError(f"more_stages must be a mapping of registered stage name to stage, got "
                              f"{type(more).__name__} {brief(more)}.") from None
        fields = {f.name for f in dataclasses.fields(cls)}
        order = techniques.names()
        bad = sorted(n for n in more if n in fields or n not in order)
        if bad:
            raise RecipeError(f"more_stages holds {', '.join(map(brief, bad))}: only stages of techniques "
                              f"registered at run time go there (registered: {', '.join(order)}).")
        return tuple((n, more[n]) for n in order if more.get(n) is not None)

    def _check_stages(self):
        """Each stage's own rule about the others (``Technique.check_recipe``), in run order."""
        for name, stage in self.stages:
            rule = techniques.get(name).check_recipe
            if rule is not None:
                rule(self, stage)

    @property
    def stages(self) -> list[tuple[str, Any]]:
        """The enabled stages, in the order they run, as ``(name, stage)``."""
        return [(n, getattr(self, n)) for n in techniques.names() if getattr(self, n) is not None]

    def quantization_scheme(self) -> str | None:
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
        return qat_scheme(q, pruned=self.pruning is not None, clustered=self.clustering is not None)

    def replace(self, **changes: Any) -> "Recipe":
        """A copy with some fields changed (validated again); a registered technique's stage too.

        Example:
            >>> Recipe().replace(quantization=None).quantization is None
            True
        """
        fields = {f.name for f in dataclasses.fields(self)}
        more = {n: changes.pop(n) for n in list(changes) if n not in fields}
        if more:
            changes["more_stages"] = {**dict(self.more_stages), **more}
        return dataclasses.replace(self, **changes)

    # --- serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dict (stages as dicts, disabled stages as None, pairs as lists).

        A user-supplied pruning schedule object appears as the string
        ``"custom: <class name>"``, which :meth:`from_dict` rejects.
        """
        out = {name: _plain(getattr(self, name)) for name in techniques.names()}
        for f in dataclasses.fields(self):
            if f.name not in out and f.name != "more_stages":
                out[f.name] = _plain(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        """Build a recipe from a dict; unknown keys, wrong types and stages out
        of order raise RecipeError."""
        if not isinstance(data, dict):
            return _from_dict(cls, data, "recipe")
        _check_stage_order(list(data))
        fields = {f.name for f in dataclasses.fields(cls)} - {"more_stages"}
        more = {n: data[n] for n in techniques.names() if n in data and n not in fields}
        recipe = _from_dict(cls, {k: v for k, v in data.items() if k not in more}, "recipe",
                            also=tuple(n for n in techniques.names() if n not in fields))
        if not more:
            return recipe
        return recipe.replace(**{n: _stage_from(techniques.get(n).recipe_class, v, n) for n, v in more.items()})

    def to_yaml(self) -> str:
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
    def from_yaml_string(cls, text: str) -> "Recipe":
        """Build a recipe from YAML text (see :meth:`from_dict`).

        Raises:
            RecipeError: invalid YAML, a key written twice in one mapping, no
                content at all (write ``{}`` for the default recipe), or a
                bad recipe.
        """
        return cls.from_dict(_parse_yaml(text, "recipe"))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "Recipe":
        """Load a recipe from a YAML file (UTF-8, at most 1 MiB).

        Raises:
            RecipeError: the file cannot be read, is binary or not UTF-8, is
                empty (delete it to get the default recipe), has a key twice,
                or holds a bad recipe.

        Example:
            >>> Recipe.from_yaml("recipe.yaml")  # doctest: +SKIP
        """
        return cls.from_dict(_parse_yaml(None, f"recipe {path}", empty_file=True, path=path))

    def save_yaml(self, path: str | os.PathLike) -> None:
        """Write the recipe as YAML, atomically."""
        from tfcompress.report import atomic_write_text

        atomic_write_text(path, self.to_yaml())


def _parse_yaml(text, source, empty_file=False, path=None):
    """YAML text (or the file at ``path``) -> Python data, through the one bounded reader
    (:mod:`tfcompress._yaml`), refusing empty documents."""
    data = load_file(path, "recipe", RecipeError) if path is not None else load_text(text, source, RecipeError)
    if data is None:
        if empty_file:
            raise RecipeError(
                f"{source} is empty: delete the file to use the default recipe, or write a stage "
                "(e.g. `pruning: {final_sparsity: 0.5}`)."
            )
        raise RecipeError(f"{source} is empty: write a stage (e.g. `pruning: {{}}`), or `{{}}` for the default recipe.")
    return data


def _plain(value):
    if hasattr(value, "to_dict") and dataclasses.is_dataclass(value):  # Optimizer, Schedule: compact
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A stage's training fields (keyword-only) are written only when set.
        return {g.name: _plain(getattr(value, g.name)) for g in dataclasses.fields(value)
                if not (g.kw_only and getattr(value, g.name) is None)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if is_schedule_object(value):
        return f"custom: {type(value).__name__}"
    return value


def _check_stage_order(keys):
    order = techniques.names()
    given = [k for k in keys if k in order]
    want = sorted(given, key=order.index)
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


def _stage_from(cls, value, where):
    """A stage from its YAML form: a mapping, or false/null (no stage) / true (the defaults)."""
    if value is None or value is False:
        return None
    if value is True:
        return cls()
    return _from_dict(cls, value, where)


def _from_dict(cls, data, where, also=()):
    if not isinstance(data, dict):
        raise RecipeError(f"{where} must be a mapping, got {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)} - {"more_stages"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(brief, unknown))} in {where}: "
            f"allowed keys are {', '.join(sorted(known | set(also)))}."
        )
    none_default = {f.name for f in dataclasses.fields(cls) if f.default is None}
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if value is None and name in none_default:  # e.g. ``per_layer: dict = None``
            kwargs[name] = None
            continue
        sub = next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)
        if sub is not None and hasattr(sub, "coerce"):  # Optimizer, Schedule: a name or a mapping
            kwargs[name] = sub.coerce(value, f"{where}.{name}")
            continue
        if sub is not None:
            kwargs[name] = _stage_from(sub, value, name)
            continue
        if not _type_ok(value, tp):
            raise RecipeError(
                f"{where}.{name} must be {_type_name(tp)}, got {type(value).__name__} {brief(value)}."
            )
        if tp is float or (typing.get_origin(tp) in (typing.Union, types.UnionType) and float in typing.get_args(tp)):
            value = float(value) if value is not None else None
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:  # a stage class defined elsewhere with other rules
        raise RecipeError(f"{where}: {e}") from None
