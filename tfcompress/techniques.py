"""The registry: every compression technique, in the order its stage runs.

A stage of a :class:`~tfcompress.Recipe` is one :class:`~tfcompress.technique.Technique`
listed here; the stage order, the recipe's stage classes, ``check``'s columns,
the stages that run on one replica under ``tf.distribute``, where mixed
precision is valid and the tuner's knobs are all read from this list. A new
technique is a folder (its recipe class and a ``TECHNIQUE`` object) and one
line in :data:`BUILT_IN`; a test or a plug-in can :func:`register` one at run time.

Example:
    >>> from tfcompress import techniques
    >>> techniques.names()
    ('train', 'depth', 'channels', 'lowrank', 'penalty', 'pruning', 'clustering', 'quantization', 'precision')
    >>> techniques.get("clustering").recipe_class.__name__
    'Clustering'
"""

from __future__ import annotations

from tfcompress.channels.stage import TECHNIQUE as CHANNELS
from tfcompress.clustering.stage import TECHNIQUE as CLUSTERING
from tfcompress.depth.stage import TECHNIQUE as DEPTH
from tfcompress.errors import RecipeError
from tfcompress.lowrank.stage import TECHNIQUE as LOWRANK
from tfcompress.precision.stage import TECHNIQUE as PRECISION
from tfcompress.pruning.stage import PENALTY, PRUNING
from tfcompress.quantization.stage import TECHNIQUE as QUANTIZATION
from tfcompress.technique import CheckColumn, Knob, Technique
from tfcompress.train.stage import TECHNIQUE as TRAIN

__all__ = ["BUILT_IN", "register", "unregister", "names", "get", "all_techniques", "stage_classes", "columns",
           "single_replica", "mixed_precision_invalid", "knobs"]

#: The built-in techniques, in the order their stages run.
BUILT_IN: tuple[Technique, ...] = (TRAIN, DEPTH, CHANNELS, LOWRANK, PENALTY, PRUNING, CLUSTERING, QUANTIZATION,
                                   PRECISION)

_REGISTRY: list[Technique] = list(BUILT_IN)


def register(technique: Technique, after: str | None = None) -> Technique:
    """Add a technique to the run order (after the stage ``after``; None: last).

    Raises:
        RecipeError: the name is taken, or ``after`` is not a registered stage.

    Example:
        >>> register(my_technique, after="pruning")  # doctest: +SKIP
    """
    if any(t.name == technique.name for t in _REGISTRY):
        raise RecipeError(f"a technique named {technique.name!r} is already registered.")
    if after is None:
        _REGISTRY.append(technique)
    else:
        _REGISTRY.insert(names().index(get(after).name) + 1, technique)
    return technique


def unregister(name: str) -> None:
    """Remove a technique :func:`register` added (the built-in ones stay)."""
    if any(t.name == name for t in BUILT_IN):
        raise RecipeError(f"{name!r} is a built-in technique and cannot be unregistered.")
    _REGISTRY[:] = [t for t in _REGISTRY if t.name != name]


def all_techniques() -> tuple[Technique, ...]:
    """Every registered technique, in run order."""
    return tuple(_REGISTRY)


def names() -> tuple[str, ...]:
    """The stage names in run order (a YAML recipe lists its stages in this order)."""
    return tuple(t.name for t in _REGISTRY)


def get(name: str) -> Technique:
    """The technique whose stage is ``name`` (RecipeError if none)."""
    for t in _REGISTRY:
        if t.name == name:
            return t
    raise RecipeError(f"no technique named {name!r}; registered: {', '.join(names())}.")


def stage_classes() -> dict[str, type]:
    """Stage name -> its recipe class, in run order."""
    return {t.name: t.recipe_class for t in _REGISTRY}


def columns() -> tuple[CheckColumn, ...]:
    """Every ``check`` column, in run order of the techniques."""
    return tuple(c for t in _REGISTRY for c in t.columns)


def single_replica() -> dict[tuple[str, str | None], str]:
    """``(stage, condition) -> why`` the stage runs on one replica under a multi-replica strategy."""
    return {(t.name, cond): why for t in _REGISTRY for cond, why in t.single_replica.items()}


def mixed_precision_invalid(name: str) -> str | None:
    """Why ``mixed_float16`` is not valid for stage ``name`` (None: it is)."""
    return get(name).mixed_precision


def knobs() -> dict[str, tuple[str, Knob]]:
    """Tuner space name -> (stage, :class:`~tfcompress.technique.Knob`), in run order."""
    return {knob_name: (t.name, k) for t in _REGISTRY for knob_name, k in t.knobs.items()}
