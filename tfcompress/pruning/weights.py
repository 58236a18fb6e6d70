"""Which weights pruning acts on, and how sparse they are.

A leaf both the pruning stage and the penalty stage import (the penalty
penalises exactly the weights pruning will zero).

Example:
    >>> from tfcompress import models
    >>> from tfcompress.pruning.weights import layer_sparsity
    >>> sorted(layer_sparsity(models.get("digits_cnn").build()))[:1]
    ['conv1']
"""

import numpy as np

from tfcompress._keras import keras, prune_registry

__all__ = ["prunable_weights", "layer_sparsity"]

_registry = prune_registry.PruneRegistry


def _weight_names(layer):
    try:
        return list(_registry._weight_names(layer))
    except (ValueError, AttributeError, KeyError):  # RNNs and custom layers
        return ["kernel"]


def prunable_weights(layer):
    """The weights pruning acts on (kernels, not biases), through any wrapper."""
    inner = getattr(layer, "layer", layer)  # TF-MOT pruning / QAT wrappers
    if not layer.weights or not _registry.supports(inner):
        return []
    names = set(_weight_names(inner))
    return [w for w in layer.weights if w.name.split("/")[-1].split(":")[0] in names]


def layer_sparsity(model):
    """Share of zeros in the prunable weights of each layer that has some.

    Returns:
        ``{layer_name: sparsity}``.
    """
    out = {}
    for layer in _iter_layers(model):
        ws = prunable_weights(layer)
        if not ws:
            continue
        values = [np.asarray(w.numpy()) for w in ws]
        total = sum(v.size for v in values)
        zeros = sum(int((v == 0).sum()) for v in values)
        out[_base_name(layer)] = zeros / total if total else 0.0
    return out


def _base_name(layer):
    # QAT and pruning wrappers prefix names ("quant_conv1", "prune_low_magnitude_conv1").
    inner = getattr(layer, "layer", None)
    return inner.name if inner is not None else layer.name


def _iter_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _iter_layers(layer)
        else:
            yield layer
