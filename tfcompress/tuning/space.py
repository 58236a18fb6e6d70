"""The search space: training and compression hyperparameters, in Python or YAML.

A space maps parameter names to what they may take:

* a list → a choice (``batch_size: [32, 64, 128]``);
* a mapping with ``min``/``max`` → a range; integers when both bounds are
  integers, ``sampling: log`` for log-uniform, optional ``step``;
* a scalar → a fixed value.

Every name is a field of the trial's recipe (:func:`targets` says which): a
trial *is* a recipe, and its training run is that recipe's ``train`` stage.
Training parameters: ``learning_rate``, ``batch_size``, ``optimizer`` and
its ``momentum`` / ``weight_decay`` (the recipe's, so fine-tuning uses them
too); ``lr_decay`` (the train stage's ``lr_schedule`` kind: ``none``,
``exponential``, ``step``, ``inverse_time``, ``polynomial``, ``cosine``,
``plateau``) and its ``decay_rate`` / ``step_drop`` / ``step_every`` /
``cosine_alpha`` / ``warmup_epochs`` / ``decay_power`` / ``plateau_factor``
/ ``plateau_patience``. Compression parameters: ``final_sparsity``,
``pruning_begin``, ``pruning_end``, ``pruning_frequency``,
``pruning_scope`` (``layer`` or ``global``), ``pruning_criterion`` (``magnitude`` or ``saliency``),
``pruning_epochs``, ``qat_epochs``, ``qat_weights`` (``int8``/``int4``/``int2``/``ternary``/``binary``),
``precision_max_drop``, ``cluster_count``, ``distill_alpha``,
``distill_temperature``, ``channel_ratio``, ``channel_mode`` (``prune`` or
``merge``), ``depth_remove`` (blocks the
depth stage removes). Every value a space allows is
checked when the space is made, by building the recipe it would give, so a
value the recipe refuses fails before any trial runs.

Example:
    >>> space = SearchSpace.from_dict({"learning_rate": {"min": 1e-4, "max": 1e-2,
    ...                                                  "sampling": "log"},
    ...                                "final_sparsity": [0.5, 0.8]})
    >>> sorted(space.names)
    ['final_sparsity', 'learning_rate']
    >>> space.recipe({"learning_rate": 0.003, "final_sparsity": 0.5}).pruning.final_sparsity
    0.5
"""

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

import yaml

from tfcompress import techniques
from tfcompress._checks import brief
from tfcompress._yaml import load_file, load_text
from tfcompress.errors import RecipeError, TuningError
from tfcompress.recipe import Distillation, Recipe
from tfcompress.schedules import SCHEDULES, Optimizer, Schedule

__all__ = ["Param", "SearchSpace", "DECAYS", "targets", "default_space", "recipe_for"]


#: What ``lr_decay`` may take: ``none`` (a constant rate) or a schedule kind.
DECAYS = ("none",) + tuple(k for k in SCHEDULES if k != "constant")
# Space value -> recipe value where they differ.
_VALUES = {"lr_decay": {"none": "constant"}}

# Schedule and optimizer parameters are active only for the schedule / optimizer they apply to.
CONDITIONS = {
    "decay_rate": ("lr_decay", ["exponential", "inverse_time"]),
    "step_drop": ("lr_decay", ["step"]),
    "step_every": ("lr_decay", ["step"]),
    "cosine_alpha": ("lr_decay", ["cosine"]),
    "warmup_epochs": ("lr_decay", ["cosine"]),
    "decay_power": ("lr_decay", ["polynomial"]),
    "plateau_factor": ("lr_decay", ["plateau"]),
    "plateau_patience": ("lr_decay", ["plateau"]),
    "momentum": ("optimizer", ["sgd", "momentum", "nesterov", "rmsprop"]),
}

# The training knobs: space name -> (recipe stage, or None for a top-level Recipe field; the field
# it sets, dotted for a field of the recipe's or stage's optimizer / lr_schedule). Each technique's
# own knobs are in its registry entry (Technique.knobs), distillation's here: see targets().
_TRAINING = {
    "learning_rate": (None, "learning_rate"),
    "batch_size": (None, "batch_size"),
    "optimizer": (None, "optimizer.name"),
    "momentum": (None, "optimizer.momentum"),
    "weight_decay": (None, "optimizer.weight_decay"),
    "lr_decay": ("train", "lr_schedule.kind"),
    "decay_rate": ("train", "lr_schedule.decay_rate"),
    "step_drop": ("train", "lr_schedule.drop"),
    "step_every": ("train", "lr_schedule.every"),
    "cosine_alpha": ("train", "lr_schedule.alpha"),
    "warmup_epochs": ("train", "lr_schedule.warmup_epochs"),
    "decay_power": ("train", "lr_schedule.power"),
    "plateau_factor": ("train", "lr_schedule.factor"),
    "plateau_patience": ("train", "lr_schedule.patience"),
}
_DISTILLATION = {"distill_alpha": ("distillation", "alpha"), "distill_temperature": ("distillation", "temperature")}
_INTEGER = ("batch_size", "step_every", "plateau_patience")
_DEFAULT_TRAINING = {
    "learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
    "batch_size": [32, 64, 128],
    "optimizer": ["adam", "sgd", "rmsprop"],
    "lr_decay": list(DECAYS),
    "decay_rate": {"min": 0.5, "max": 0.95},
    "step_drop": {"min": 0.1, "max": 0.5},
    "step_every": [1, 2],
    "cosine_alpha": {"min": 0.0, "max": 0.2},
}
_DEFAULT_DISTILLATION = {"distill_alpha": {"min": 0.1, "max": 0.9}, "distill_temperature": {"min": 1.0, "max": 8.0}}
_KEYS = {Optimizer: "name", Schedule: "kind"}


def targets():
    """Every space name -> (recipe stage or None, the field it sets): the training knobs, each
    registered technique's (:func:`tfcompress.techniques.knobs`), then distillation's.

    Example:
        >>> targets()["final_sparsity"]
        ('pruning', 'final_sparsity')
    """
    knobs = {name: (stage, k.field) for name, (stage, k) in techniques.knobs().items()}
    return {**_TRAINING, **knobs, **_DISTILLATION}


def default_space():
    """The default space: short, cheap trials on small models (the training knobs, each technique's
    knobs with a default, distillation's); :meth:`SearchSpace.default` keeps the stages a recipe has."""
    knobs = {name: k.default for name, (_, k) in techniques.knobs().items() if k.default is not None}
    return {**_DEFAULT_TRAINING, **knobs, **_DEFAULT_DISTILLATION}


def _integer(name):
    knob = techniques.knobs().get(name)
    return name in _INTEGER or (knob is not None and knob[1].integer)


def _classes():
    # Recipe field -> the class a nested change builds; the field whose change starts a fresh object.
    return {**techniques.stage_classes(), "distillation": Distillation, "optimizer": Optimizer,
            "lr_schedule": Schedule}


def supported_names():
    """Every name a search space can hold."""
    return list(targets())


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter.

    Args:
        name: the space name, e.g. ``"learning_rate"``.
        kind: ``"float"``, ``"int"``, ``"choice"`` or ``"fixed"``.
        min: lower bound of a range. Defaults to `None`.
        max: upper bound of a range. Defaults to `None`.
        sampling: ``"linear"`` or ``"log"``. Defaults to `"linear"`.
        step: grid step of a range. Defaults to `None`.
        choices: values of a choice. Defaults to `()`.
        value: value of a fixed parameter. Defaults to `None`.

    Example:
        >>> Param.parse("batch_size", [32, 64]).kind
        'choice'
    """

    name: str
    kind: str
    min: object = None
    max: object = None
    sampling: str = "linear"
    step: object = None
    choices: tuple = ()
    value: object = None

    @classmethod
    def parse(cls, name, spec):
        """Build a Param from its YAML form; raises TuningError on bad input."""
        where = f"search space: {name}"
        if isinstance(spec, (list, tuple)):
            if not spec:
                raise TuningError(f"{where} is an empty list: give at least one value.")
            if len(set(map(repr, spec))) != len(spec):
                raise TuningError(f"{where} lists a value twice: {brief(list(spec))}.")
            return cls(name, "choice", choices=tuple(spec))
        if isinstance(spec, dict):
            unknown = sorted(map(str, set(spec) - {"min", "max", "sampling", "step"}))
            if unknown or "min" not in spec or "max" not in spec:
                raise TuningError(f"{where} must be a list, a value, or a mapping with min, max "
                                  "and optionally sampling (linear or log) and step; got keys "
                                  f"{brief(sorted(map(str, spec)))}.")
            lo, hi = spec["min"], spec["max"]
            for b in (lo, hi):
                if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b):
                    raise TuningError(f"{where}: min and max must be finite numbers, got {brief(lo)} and {brief(hi)}.")
            if lo > hi:
                raise TuningError(f"{where}: min ({lo}) is greater than max ({hi}).")
            sampling = spec.get("sampling", "linear")
            if sampling not in ("linear", "log"):
                raise TuningError(f"{where}: sampling must be linear or log, got {brief(sampling)}.")
            if sampling == "log" and lo <= 0:
                raise TuningError(f"{where}: log sampling needs min > 0, got {lo}.")
            step = spec.get("step")
            if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
                raise TuningError(f"{where}: step must be a positive number, got {brief(step)}.")
            if lo == hi:
                return cls(name, "fixed", value=lo)
            ints = isinstance(lo, int) and isinstance(hi, int) and (step is None or isinstance(step, int))
            kind = "int" if ints else "float"
            if kind == "float":
                lo, hi = float(lo), float(hi)
            return cls(name, kind, min=lo, max=hi, sampling=sampling, step=step)
        if spec is None or isinstance(spec, (bool, int, float, str)):
            return cls(name, "fixed", value=spec)
        raise TuningError(f"{where} must be a list, a value or a min/max mapping, got {type(spec).__name__}.")

    def values(self):
        """Every value a choice or fixed parameter can take (ranges: the bounds)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "fixed":
            return [self.value]
        return [self.min, self.max]

    def to_spec(self):
        """The YAML form (inverse of :meth:`parse`)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "fixed":
            return self.value
        d = {"min": self.min, "max": self.max}
        if self.sampling != "linear":
            d["sampling"] = self.sampling
        if self.step is not None:
            d["step"] = self.step
        return d

    def declare(self, hp, parent=None):
        """Declare this parameter on a keras_tuner ``HyperParameters``."""
        kw = {}
        if parent is not None:
            kw = {"parent_name": parent[0], "parent_values": parent[1]}
        if self.kind == "choice":
            return hp.Choice(self.name, list(self.choices), **kw)
        if self.kind == "fixed":
            return hp.Fixed(self.name, self.value, **kw)
        if self.kind == "int":
            return hp.Int(self.name, self.min, self.max, step=self.step, sampling=self.sampling, **kw)
        return hp.Float(self.name, self.min, self.max, step=self.step, sampling=self.sampling, **kw)


class SearchSpace:
    """What the tuner searches: validated :class:`Param` objects by name.

    Args:
        params: mapping of name → YAML form (list, min/max mapping, or value).

    Raises:
        TuningError: an empty space, an unknown name, a range with min > max,
            or a value (choice, fixed value or range bound) that makes no
            valid recipe or training schedule.

    Example:
        >>> space = SearchSpace({"optimizer": ["adam", "sgd"], "qat_epochs": 1})
        >>> space.to_dict()
        {'optimizer': ['adam', 'sgd'], 'qat_epochs': 1}
    """

    def __init__(self, params):
        if not isinstance(params, dict):
            raise TuningError(f"search space must be a mapping of name to values, got {type(params).__name__}.")
        if not params:
            raise TuningError("search space is empty: give at least one parameter "
                              f"(supported: {', '.join(supported_names())}).")
        known = supported_names()
        self.params = {}
        for name, spec in params.items():
            if name not in known:
                raise TuningError(f"search space: unknown parameter {brief(name)}; supported: {', '.join(known)}.")
            self.params[name] = Param.parse(name, spec)
        self._validate()

    def _validate(self):
        p = self.params
        for name, param in p.items():
            for v in param.values():
                _check_value(name, v)
        if "pruning_begin" in p and "pruning_end" in p:
            b, e = max(p["pruning_begin"].values()), min(p["pruning_end"].values())
            if b >= e:
                raise TuningError(f"search space: pruning_begin can reach {b} but pruning_end can be as low "
                                  f"as {e}; keep every pruning_begin below every pruning_end.")
        for child, (parent, _) in CONDITIONS.items():
            if child in p and parent not in p:
                raise TuningError(f"search space: {child} is used only with {parent}; add {parent} to the space.")

    # --- construction ----------------------------------------------------
    @classmethod
    def default(cls, recipe=None):
        """The default space, keeping only stages the (base) Recipe has.

        Args:
            recipe: the base recipe; stages it disables are not searched.
                Defaults to `None` (the default Recipe).

        Returns:
            A :class:`SearchSpace`.
        """
        recipe = recipe or Recipe()
        keep = {}
        where = targets()
        for name, spec in default_space().items():
            stage = where.get(name, (None,))[0]
            # every trial trains (its recipe gets a train stage): the schedule is always searched
            if stage in (None, "train") or getattr(recipe, stage) is not None:
                keep[name] = spec
        return cls(keep)

    @classmethod
    def from_dict(cls, data):
        """Same as the constructor; ``None`` gives the default space."""
        return cls.default() if data is None else cls(data)

    @classmethod
    def from_yaml_string(cls, text):
        """Build a space from YAML text, read by the one bounded reader (:mod:`tfcompress._yaml`).

        Raises:
            TuningError: invalid YAML, a key written twice, nesting, aliases or
                size beyond the reader's limits, or no content.
        """
        return cls._from_data(load_text(text, "search space", TuningError))

    @classmethod
    def from_yaml(cls, path):
        """Load a space from a YAML file (UTF-8, at most 1 MiB).

        Raises:
            TuningError: as :meth:`from_yaml_string`, or a file that cannot be
                read, is not a regular file (a FIFO), binary or not UTF-8.

        Example:
            >>> SearchSpace.from_yaml("space.yaml")  # doctest: +SKIP
        """
        return cls._from_data(load_file(path, "search space", TuningError))

    @classmethod
    def _from_data(cls, data):
        if data is None:
            raise TuningError("search space is empty: give at least one parameter.")
        return cls(data)

    def to_dict(self):
        return {n: p.to_spec() for n, p in self.params.items()}

    def to_yaml(self):
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def fingerprint(self):
        """A short hash identifying the space (order-independent)."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def names(self):
        return list(self.params)

    def __eq__(self, other):
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"SearchSpace({self.to_dict()!r})"

    # --- keras tuner -----------------------------------------------------
    def hyperparameters(self):
        """A keras_tuner ``HyperParameters`` with every parameter declared."""
        import keras_tuner

        hp = keras_tuner.HyperParameters()
        order = [n for n in self.params if n not in CONDITIONS] + [n for n in self.params if n in CONDITIONS]
        for name in order:
            self.params[name].declare(hp, CONDITIONS.get(name))
        return hp

    # --- values -> recipe / training --------------------------------------
    def recipe(self, values, base=None):
        """The recipe a trial's values give, starting from ``base``.

        Args:
            values: parameter name → value (``trial.hyperparameters.values``).
            base: the recipe whose other fields are kept. Defaults to `None`
                (the default Recipe).

        Returns:
            A validated :class:`~tfcompress.Recipe`.

        Raises:
            RecipeError: the values make an invalid recipe.
        """
        return recipe_for(values, base)


def recipe_for(values, base=None):
    """The recipe search-space values give, starting from ``base`` (see
    :meth:`SearchSpace.recipe`); names that are not recipe fields are ignored.

    Example:
        >>> recipe_for({"cluster_count": 8.0}).clustering.number_of_clusters
        8
        >>> recipe_for({"lr_decay": "cosine", "optimizer": "sgd", "momentum": 0.5}).optimizer.momentum
        0.5
    """
    base = base or Recipe()
    changes = {}
    where = targets()
    for name, value in plain_values(values).items():
        if name not in where:
            continue
        stage, path = where[name]
        if isinstance(value, float) and _integer(name):
            value = int(round(value))
        value = _VALUES.get(name, {}).get(value, value)
        node = changes if stage is None else changes.setdefault(stage, {})
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return _apply(base, changes) if changes else base


def _apply(current, changes, cls=None, where="recipe"):
    """``current`` (a recipe, stage, optimizer or schedule; None builds one) with nested changes.

    A new optimizer name or schedule kind starts from that one's defaults
    (an Adam ``beta_1`` must not follow the optimizer to SGD).
    """
    kw = {}
    for name, value in changes.items():
        if isinstance(value, dict):
            sub = f"{where}.{name}" if where != "recipe" or name in _KEYS_OF_RECIPE else name
            value = _apply(getattr(current, name, None) if current is not None else None, value, _classes()[name], sub)
        kw[name] = value
    key = _KEYS.get(cls)
    if key is not None:  # Optimizer, Schedule: validated with the field named where it sits
        if current is not None and kw.get(key, getattr(current, key)) == getattr(current, key):
            kw = {**{f.name: getattr(current, f.name) for f in dataclasses.fields(current)}, **kw}
        return cls.coerce(kw, where)
    if current is None:
        return cls(**kw)
    if isinstance(current, Recipe):  # a registered technique's stage is not a dataclass field
        return current.replace(**kw)
    return dataclasses.replace(current, **kw)


# The recipe's own optimizer / lr_schedule are named ``recipe.optimizer`` in messages, as Recipe does.
_KEYS_OF_RECIPE = ("optimizer", "lr_schedule")


def _check_value(name, value):
    """Check one value (a choice, a fixed value or a range bound) of ``name`` by
    building the recipe of a trial from the default Recipe (the other fields
    of its stage at their loosest, a conditional one under the first value of
    the parameter it depends on).

    Raises:
        TuningError: the value makes no valid recipe; the message names the
            parameter and quotes the recipe's rule.
    """
    if value is None:
        raise TuningError(f"search space: {name} value None is not allowed; give a value.")
    knob = techniques.knobs().get(name)
    context = dict(knob[1].loosest) if knob is not None else {}
    if name in CONDITIONS:
        parent, allowed = CONDITIONS[name]
        context[parent] = allowed[0]
    try:
        recipe_for({**context, name: value})
    except RecipeError as e:
        raise TuningError(f"search space: {name} value {brief(value)} is not allowed: {e}") from None


def plain_values(values):
    """Trial values as Python scalars: Bayesian optimisation proposes numpy
    ones (``np.int64`` batch sizes, pruning frequencies), which TF-MOT's
    schedule ops reject with a TypeError."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in values.items()}
