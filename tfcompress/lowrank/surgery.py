"""Factorise Dense layers (and 1×1 convolutions) by truncated SVD: rebuild the model's graph with each one as two.

``W ≈ U_r S_r V_rᵀ``; the first new layer holds ``A = U_r √S_r`` (``m × r``), the
second ``B = √S_r V_rᵀ`` (``r × n``) with the original bias and activation, so
before any fine-tuning the model computes ``x·W_r + b``, the best rank-``r``
kernel in the Frobenius norm (Eckart-Young). A ``Conv2D`` with a 1×1 kernel,
stride 1 and one group is the same product at every pixel: it becomes a
``Conv2D(r, 1, use_bias=False)`` and itself with ``r`` input channels. The rebuild replays the nodes of
the channels dependency analysis (as :mod:`tfcompress.depth.surgery` does) on
fresh layers made from each layer's config; every other layer keeps its
config and weights.

Example:
    >>> small, report = factorize(model, {"fc1": 16})       # doctest: +SKIP
    >>> report["fc1"]["params_after"] < report["fc1"]["params_before"]   # doctest: +SKIP
    True
"""

import math

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress.channels.graph import _key, analyze
from tfcompress.depth.surgery import fresh_input, rebuilt_model
from tfcompress.errors import RecipeError
from tfcompress.precision.config import matching

__all__ = ["factorize", "rank_of", "svd_factors", "matrix_shape"]


def rank_of(setting, m, n):
    """The rank a ``per_layer`` setting gives an ``m × n`` kernel: an integer as it is (at most ``min(m, n)``),
    a fraction of ``min(m, n)`` rounded up.

    Example:
        >>> rank_of(0.25, 200, 32), rank_of(16, 200, 32), rank_of(64, 200, 32), rank_of(0.1, 30, 40)
        (8, 16, 32, 3)
    """
    full = min(m, n)
    r = setting if isinstance(setting, int) else math.ceil(round(setting * full, 9))  # 0.1 * 30: 3, not 4
    return max(1, min(int(r), full))


def svd_factors(kernel, r):
    """``(A, B)``, ``A @ B`` the best rank-``r`` approximation of the 2-D ``kernel``, the singular values split
    evenly between them (``A = U_r √S_r``, ``B = √S_r V_rᵀ``).

    Example:
        >>> a, b = svd_factors(np.eye(3, dtype="float32"), 3)
        >>> bool(np.allclose(a @ b, np.eye(3)))
        True
    """
    u, s, vt = np.linalg.svd(np.asarray(kernel, dtype=np.float64), full_matrices=False)
    root = np.sqrt(s[:r])
    return (u[:, :r] * root).astype(kernel.dtype), (root[:, None] * vt[:r]).astype(kernel.dtype)


def _why_not(layer, uses):
    kind = type(layer).__name__
    if kind == "Conv2D":
        cfg = layer.get_config()
        if tuple(cfg["kernel_size"]) != (1, 1):
            return f"a {'×'.join(map(str, cfg['kernel_size']))} Conv2D: only 1×1 convolutions are factorised"
        if tuple(cfg["strides"]) != (1, 1) or cfg.get("groups", 1) != 1:
            return "a strided or grouped 1×1 Conv2D: only stride 1, one group are factorised"
    elif kind != "Dense":
        return f"{kind}: only Dense layers and 1×1 Conv2D layers are factorised"
    if not layer.weights:
        return "not built"
    if uses > 1:
        return "a shared layer (called more than once)"
    return None


def matrix_shape(layer):
    """``(m, n)`` of a layer :func:`factorize` can factorise (a Dense layer, a 1×1 stride-1 Conv2D), else None.

    Example:
        >>> conv = keras.layers.Conv2D(8, 1)
        >>> conv.build((None, 4, 4, 3))
        >>> matrix_shape(conv), matrix_shape(keras.layers.Conv2D(8, 3))
        ((3, 8), None)
    """
    if _why_not(layer, 1) is not None:
        return None
    shape = layer.kernel.shape
    return int(shape[-2]), int(shape[-1])


def factorize(model, per_layer):
    """A new model with the Dense (and 1×1 Conv2D) layers ``per_layer`` names factorised, and what happened to each.

    Args:
        model: a tf_keras Sequential or Functional model.
        per_layer: ``{layer name | regular expression | layer type: rank}``
            (:class:`~tfcompress.lowrank.LowRank`'s field), the first matching key winning.

    Returns:
        ``(new_model, report)``: an uncompiled Functional model with the
        model's name, and ``{layer name: {"rank", "params_before",
        "params_after", "kept_energy"}}`` for each factorised layer, or
        ``{"skipped": reason}`` for a matched layer left as it is.

    Raises:
        RecipeError: a ``per_layer`` key that matches no layer of the model (a misspelt name).

    Example:
        >>> small, report = factorize(model, {"Dense": 0.25})   # doctest: +SKIP
    """
    a = analyze(model)
    unmatched = [k for k in per_layer if not any(matching({k: 1}, layer.name, type(layer).__name__)
                                                 for layer, _, _ in a.nodes)]
    if unmatched:
        dense = ", ".join(layer.name for layer, _, _ in a.nodes if matrix_shape(layer)) or "none"
        raise RecipeError(f"lowrank.per_layer key(s) {', '.join(map(repr, unmatched))} match no layer of the model: "
                          f"use layer names, patterns or types (the layers it can factorise: {dense}).")
    uses = {}
    for layer, _, _ in a.nodes:
        uses[id(layer)] = uses.get(id(layer), 0) + 1
    report, plan = {}, {}
    for layer, _, _ in a.nodes:
        setting = matching(per_layer, layer.name, type(layer).__name__)
        if setting is None or layer.name in report:
            continue
        why = _why_not(layer, uses[id(layer)])
        if why is None:
            kernel = layer.get_weights()[0]
            kernel = kernel.reshape(kernel.shape[-2:])  # a 1×1 conv's (1, 1, m, n): the m × n matrix
            m, n = kernel.shape
            r = rank_of(setting, m, n)
            if r * (m + n) >= m * n:
                why = f"rank {r} of a {m}×{n} kernel saves no parameters (r·(m+n) ≥ m·n)"
        if why is not None:
            report[layer.name] = {"skipped": why}
            continue
        s = np.linalg.svd(kernel.astype(np.float64), compute_uv=False)
        plan[layer.name] = svd_factors(kernel, r)
        report[layer.name] = {"rank": r, "shape": [int(m), int(n)], "params_before": int(m * n),
                              "params_after": int(r * (m + n)),
                              "kept_energy": round(float(np.sum(s[:r] ** 2) / max(np.sum(s ** 2), 1e-30)), 4)}
    return _rebuild(a, plan), report


def _free_name(a, name):
    """``<name>_lr``, or ``<name>_lr<k>`` when the model already has a layer of that name."""
    taken = {layer.name for layer, _, _ in a.nodes}
    out, k = f"{name}_lr", 1
    while out in taken:
        out, k = f"{name}_lr{k}", k + 1
    return out


def _first_factor(layer, cfg, r, name):
    """The new layer before ``layer``: ``Dense(r)`` or a 1×1 ``Conv2D(r)`` on the same data format, no bias."""
    if type(layer).__name__ == "Conv2D":
        return keras.layers.Conv2D(r, 1, use_bias=False, padding=cfg["padding"], data_format=cfg["data_format"],
                                   name=name, dtype=cfg.get("dtype"))
    return keras.layers.Dense(r, use_bias=False, name=name, dtype=cfg.get("dtype"))


def _rebuild(a, plan):
    model = a.model
    new_tensors, new_layers, extra = {}, {}, {}

    def sub(x):
        return new_tensors[_key(x)] if hasattr(x, "_keras_history") and keras.backend.is_keras_tensor(x) else x

    for (layer, _, outs), node in zip(a.nodes, a.keras_nodes):
        if node.is_input:
            res = fresh_input(layer)
        else:
            args = tf.nest.map_structure(sub, node.call_args)
            kwargs = tf.nest.map_structure(sub, node.call_kwargs)
            if id(layer) not in new_layers:
                cfg = layer.get_config()
                if layer.name in plan:
                    extra[layer.name] = _first_factor(layer, cfg, plan[layer.name][0].shape[1],
                                                      _free_name(a, layer.name))
                new_layers[id(layer)] = layer.__class__.from_config(cfg)
            if layer.name in plan:
                args = (extra[layer.name](args[0]), *args[1:])
            res = new_layers[id(layer)](*args, **kwargs)
        for t, r in zip(outs, tf.nest.flatten(res)):
            new_tensors[_key(t)] = r
    new = rebuilt_model(model, sub)
    for old in model.layers:
        if not old.weights and old.name not in plan:
            continue
        if old.name in plan:
            first, second = plan[old.name]
            lead = (1, 1) if type(old).__name__ == "Conv2D" else ()  # a 1×1 conv's kernel: (1, 1, in, out)
            extra[old.name].set_weights([first.reshape(lead + first.shape)])
            new_layers[id(old)].set_weights([second.reshape(lead + second.shape), *old.get_weights()[1:]])
        else:
            new.get_layer(old.name).set_weights(old.get_weights())
    return new
