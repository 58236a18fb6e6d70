"""Remove blocks from a model: rebuild its graph without them, weights copied.

The rebuild replays the nodes of the channels dependency analysis
(:attr:`Analysis.nodes <tfcompress.channels.graph.Analysis>` and their Keras
``call_args``) on fresh layers made from each layer's config; a removed
block's output tensor is read from its input instead. A ReLU that read a
removed block's ``Add`` and now reads a tensor already through the same ReLU
(the block's input, ``relu`` after ``relu``) is left out: it computes
nothing, and after QAT it stays in the ``.tflite`` file as its own ``RELU`` op
(ResNet-8 without its first block: 0.055 ms with it, 0.016 without).

Example:
    >>> from tfcompress.depth import find_blocks, rebuild_without
    >>> cands = find_blocks(model)
    >>> smaller = rebuild_without(cands, [cands.blocks[0]])   # doctest: +SKIP
"""

from tfcompress._keras import keras, tf
from tfcompress.channels.graph import _key

__all__ = ["rebuild_without", "fresh_input", "rebuilt_model"]


def fresh_input(layer):
    """A new ``keras.Input`` like the ``InputLayer`` ``layer``: its batch shape, dtype and name."""
    cfg = layer.get_config()
    return keras.Input(batch_shape=cfg["batch_input_shape"], dtype=cfg.get("dtype"), name=layer.name)


def rebuilt_model(model, sub):
    """The Functional model of a rebuild: ``model``'s inputs and outputs mapped by ``sub`` to the new tensors."""
    inputs = tf.nest.map_structure(sub, model._nested_inputs)
    return keras.Model(inputs, tf.nest.map_structure(sub, model._nested_outputs), name=model.name)


def rebuild_without(candidates, blocks):
    """A new Functional model equal to the analysed one without ``blocks``.

    Args:
        candidates: the :class:`~tfcompress.depth.candidates.Candidates` of
            the model.
        blocks: the blocks to remove (non-overlapping).

    Returns:
        an uncompiled tf_keras Functional model with the model's name; every
        kept layer has the original's config and weights.
    """
    a = candidates.analysis
    model = a.model
    drop = {n for b in blocks for n in b.layers}
    redirect = {b.out_key: b.in_key for b in blocks}
    new_tensors, new_layers = {}, {}

    def resolve(key):
        seen = 0
        while key in redirect:
            key = redirect[key]
            seen += 1
            if seen > len(redirect):  # pragma: no cover - blocks would form a cycle
                raise RuntimeError("depth surgery bug: removed blocks redirect into each other")
        return new_tensors[key]

    def sub(x):
        return resolve(_key(x)) if hasattr(x, "_keras_history") and keras.backend.is_keras_tensor(x) else x

    for (layer, _, outs), node in zip(a.nodes, a.keras_nodes):
        if layer.name in drop:
            continue
        given = [x for x in tf.nest.flatten(node.call_args) if keras.backend.is_keras_tensor(x)]
        if len(given) == 1 and _key(given[0]) in redirect and _idempotent_after(layer, resolve(_key(given[0]))):
            res = resolve(_key(given[0]))
        elif node.is_input:
            res = fresh_input(layer)
        else:
            if id(layer) not in new_layers:
                new_layers[id(layer)] = layer.__class__.from_config(layer.get_config())
            args = tf.nest.map_structure(sub, node.call_args)
            kwargs = tf.nest.map_structure(sub, node.call_kwargs)
            res = new_layers[id(layer)](*args, **kwargs)
        for t, r in zip(outs, tf.nest.flatten(res)):
            new_tensors[_key(t)] = r
    new = rebuilt_model(model, sub)
    for old in model.layers:
        if old.name in drop or not old.weights:
            continue
        new.get_layer(old.name).set_weights(old.get_weights())
    return new


def _relu_cap(layer):
    """``(True, max_value)`` when ``layer``'s output is a plain ReLU capped at ``max_value`` (None: no cap), else
    ``(False, None)``: a ``ReLU`` layer (no slope, no threshold), ``Activation("relu")``, or a layer with
    ``activation="relu"``."""
    if isinstance(layer, keras.layers.ReLU):
        cfg = layer.get_config()
        if not cfg.get("negative_slope") and not cfg.get("threshold"):
            cap = cfg.get("max_value")
            return True, (None if cap is None else float(cap))
        return False, None
    act = getattr(layer, "activation", None)
    if act is keras.activations.relu:
        return True, None
    if act is getattr(keras.activations, "relu6", None):
        return True, 6.0
    return False, None


def _idempotent_after(layer, tensor):
    """True when ``layer`` is a ReLU that changes nothing on ``tensor`` (already through a ReLU under its cap)."""
    if not isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
        return False
    mine, cap = _relu_cap(layer)
    history = getattr(tensor, "_keras_history", None)
    theirs, their_cap = _relu_cap(history.layer) if history is not None else (False, None)
    return mine and theirs and (cap is None or (their_cap is not None and their_cap <= cap))
