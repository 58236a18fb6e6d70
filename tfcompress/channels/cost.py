"""The cost model of channel pruning: FLOPs and parameters per layer.

A layer's cost is computed for any input/output channel counts, so the
channel search can price a plan before cutting anything.

Example:
    >>> from tfcompress import models
    >>> from tfcompress.channels.cost import count_flops
    >>> count_flops(models.get("digits_cnn").build()) > 0
    True
"""

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress.channels.graph import _kind, _shape

__all__ = ["layer_cost", "layer_costs", "count_flops", "count_params"]

L = keras.layers


def layer_cost(layer, in_ch, out_ch, in_shape, out_shape):
    """FLOPs (2 x multiply-adds of conv/dense layers) and parameters of one layer
    for the given input/output channel counts."""
    kind = _kind(layer)
    cfg = layer.get_config() if kind != "unknown" else {}
    bias = 1 if cfg.get("use_bias", False) else 0

    def spatial(shape):
        return int(np.prod([d for d in shape[1:-1] if d is not None])) if len(shape) > 2 else 1

    if kind == "conv":
        k = int(np.prod(cfg["kernel_size"]))
        g = cfg.get("groups", 1) or 1
        return 2 * spatial(out_shape) * k * in_ch * out_ch // g, k * in_ch * out_ch // g + bias * out_ch
    if kind == "conv_transpose":
        k = int(np.prod(cfg["kernel_size"]))
        return 2 * spatial(in_shape) * k * in_ch * out_ch, k * in_ch * out_ch + bias * out_ch
    if kind == "depthwise":
        k = int(np.prod(cfg["kernel_size"]))
        return 2 * spatial(out_shape) * k * out_ch, k * out_ch + bias * out_ch
    if kind == "separable":
        k = int(np.prod(cfg["kernel_size"]))
        mult = int(cfg.get("depth_multiplier", 1))
        mid = in_ch * mult
        return (
            2 * spatial(out_shape) * (k * mid + mid * out_ch),
            k * mid + mid * out_ch + bias * out_ch,
        )
    if kind == "dense":
        return 2 * spatial(in_shape) * in_ch * out_ch, in_ch * out_ch + bias * out_ch
    if isinstance(layer, keras.Model):
        return count_flops(layer), layer.count_params()
    if isinstance(layer, L.BatchNormalization):
        return 0, 4 * out_ch
    if isinstance(layer, L.PReLU):
        full = layer.count_params()
        n = layer.weights[0].shape[-1] if layer.weights else 1
        return 0, full if n in (1, None) or not full else full // n * out_ch
    return 0, layer.count_params()


def count_flops(model):
    """Floating-point operations of one forward pass of one sample.

    Counts 2 x multiply-adds of Conv*, DepthwiseConv, SeparableConv and Dense
    layers (the usual convention); other layers are ignored. Nested models are
    counted recursively.

    Args:
        model: a built tf_keras model.

    Returns:
        int FLOPs.

    Example:
        >>> count_flops(model) / 1e6   # MFLOPs
    """
    total = 0
    for layer, ins, outs in _nodes(model):
        if not ins or not outs:
            continue
        in_shape, out_shape = _shape(ins[0]), _shape(outs[0])
        total += layer_cost(layer, in_shape[-1] or 0, out_shape[-1] or 0, in_shape, out_shape)[0]
    return int(total)


def layer_costs(model):
    """{layer name: (FLOPs, params)} of every layer node that has either.

    Args:
        model: a built tf_keras model.

    Returns:
        dict name -> (int FLOPs, int params); a shared layer sums its uses.
    """
    out = {}
    for layer, ins, outs in _nodes(model):
        if not ins or not outs:
            continue
        in_shape, out_shape = _shape(ins[0]), _shape(outs[0])
        f, p = layer_cost(layer, in_shape[-1] or 0, out_shape[-1] or 0, in_shape, out_shape)
        if f or p:
            f0, p0 = out.get(layer.name, (0, 0))
            out[layer.name] = (int(f0 + f), int(max(p0, p)))
    return out


def count_params(model):
    """Number of parameters (trainable and not) of ``model``.

    Args:
        model: a built tf_keras model.

    Returns:
        int parameter count.
    """
    return int(model.count_params())


def _nodes(model):
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            ins = list(node.keras_inputs) if not node.is_input else []
            yield node.layer, ins, tf.nest.flatten(node.outputs)
