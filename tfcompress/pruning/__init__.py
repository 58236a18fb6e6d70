"""Magnitude pruning with TF-MOT, with the schedule maths done for you.

Example:
    >>> from tfcompress import Pruning
    >>> from tfcompress.pruning import wrap, strip, layer_sparsity
    >>> wrapped, records = wrap(model, Pruning(final_sparsity=0.5),  # doctest: +SKIP
    ...                         num_samples=1000, batch_size=32)
"""

import numpy as np

from tfcompress._keras import keras, tfmot, clone
from tfcompress.errors import RecipeError

from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

__all__ = ["wrap", "strip", "schedule", "callbacks", "layer_sparsity", "prunable_weights"]

_sparsity = tfmot.sparsity.keras
_registry = prune_registry.PruneRegistry


def schedule(stage, steps):
    """The TF-MOT pruning schedule for a :class:`~tfcompress.Pruning` stage.

    Args:
        stage: the recipe's pruning stage.
        steps: its :class:`~tfcompress.recipe.PruningSteps`.
    """
    if stage.schedule == "constant":
        return _sparsity.ConstantSparsity(
            stage.final_sparsity, begin_step=steps.begin_step,
            end_step=steps.end_step, frequency=steps.frequency,
        )
    return _sparsity.PolynomialDecay(
        initial_sparsity=stage.initial_sparsity, final_sparsity=stage.final_sparsity,
        begin_step=steps.begin_step, end_step=steps.end_step,
        power=stage.power, frequency=steps.frequency,
    )


def why_not_prunable(layer):
    """None when TF-MOT can prune ``layer``, else the reason it is skipped."""
    if isinstance(layer, keras.Model):
        return "nested model: wrap its layers in the outer model instead"
    if not layer.weights:
        return "no weights"
    if not _registry.supports(layer):
        return f"TF-MOT has no pruning rule for {type(layer).__name__}"
    if not _weight_names(layer):
        return "no prunable weights (e.g. only biases or normalisation statistics)"
    return None


def _weight_names(layer):
    try:
        return list(_registry._weight_names(layer))
    except (ValueError, AttributeError, KeyError):  # RNNs and custom layers
        return ["kernel"]


def wrap(model, stage, num_samples, batch_size, epochs=None):
    """Wrap every prunable layer of a copy of ``model`` in TF-MOT's pruning wrapper.

    Args:
        model: a tf_keras Sequential or Functional model (left untouched).
        stage: a :class:`~tfcompress.Pruning` stage.
        num_samples: training examples per epoch (for the step maths).
        batch_size: fine-tuning batch size.
        epochs: overrides ``stage.epochs``. Defaults to `None`.

    Returns:
        ``(wrapped_model, records, steps)``: records map layer name to
        ``"wrapped"`` or ``"skipped: <reason>"``.
    """
    steps = stage.steps(num_samples, batch_size, epochs)
    sched = schedule(stage, steps)
    records = {}

    def clone_fn(layer):
        reason = why_not_prunable(layer)
        if reason is None:
            records[layer.name] = "wrapped"
            return _sparsity.prune_low_magnitude(layer, pruning_schedule=sched)
        if layer.weights:
            records[layer.name] = f"skipped: {reason}"
        return layer

    wrapped = clone(model, clone_fn)
    if "wrapped" not in records.values():
        raise RecipeError(
            "pruning found no prunable layer in the model (no Dense/Conv layers): "
            "remove the pruning stage from the recipe."
        )
    return wrapped, records, steps


def callbacks():
    """Callbacks a pruning fine-tune needs (``UpdatePruningStep``)."""
    return [_sparsity.UpdatePruningStep()]


def strip(model):
    """Remove the pruning wrappers, keeping the pruned weights."""
    return _sparsity.strip_pruning(model)


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
