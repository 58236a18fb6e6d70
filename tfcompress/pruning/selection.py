"""Per-layer selection shared by the pruning and clustering stages.

A pattern matches a layer when it equals the layer's name, equals its type
name (``"Dense"``), or is a regular expression matching the whole name.

Example:
    >>> from tfcompress.pruning.selection import matches
    >>> class Dense:  # stands in for a Keras layer
    ...     name = "fc1"
    >>> matches(Dense(), "fc.*"), matches(Dense(), "Dense"), matches(Dense(), "fc")
    (True, True, False)
"""

import re

from tfcompress.errors import RecipeError

__all__ = ["matches", "excluded_reason", "check_patterns", "first_match"]


def matches(layer, pattern):
    """True when ``pattern`` names the layer, its type, or fully matches its name."""
    name, kind = layer.name, type(layer).__name__
    if pattern in (name, kind):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def first_match(layer, patterns):
    """The first of ``patterns`` matching ``layer``, else None."""
    for p in patterns or ():
        if matches(layer, p):
            return p
    return None


def excluded_reason(layer, include, exclude):
    """None when ``include``/``exclude`` select ``layer``, else why not."""
    if include and first_match(layer, include) is None:
        return "not in include"
    hit = first_match(layer, exclude)
    if hit is not None:
        return f"excluded by {hit!r}"
    return None


def check_patterns(model_layers, stage, **pattern_lists):
    """Raise RecipeError for a pattern that matches no layer (likely a typo).

    Args:
        model_layers: the layers of the model.
        stage: stage name for the message.
        **pattern_lists: field name → patterns (None allowed).
    """
    layers = list(model_layers)
    for field, patterns in pattern_lists.items():
        for p in patterns or ():
            if not any(matches(l, p) for l in layers):
                names = ", ".join(l.name for l in layers)
                raise RecipeError(
                    f"{stage}.{field}: {p!r} matches no layer name, layer type or name pattern of the model; "
                    f"layers are: {names}."
                )
