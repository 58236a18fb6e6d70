"""Global (cross-layer) pruning and gradient-based saliency: which weights go, before TF-MOT prunes.

``Pruning(scope="global")`` ranks the weights of every pruned layer together:
one score threshold gives ``final_sparsity`` in total, each layer kept within
``min_layer_sparsity``..``max_layer_sparsity`` (a layer at a cap is pruned to
the cap; the threshold is set over the others). The allocation is made once,
from the weights the stage starts with; each layer then gets its own sparsity
in TF-MOT's schedule (polynomial ramp, magnitude within the layer), so the
wrappers, ``strip_pruning`` and PQAT after it work as for layer scope.

``Pruning(criterion="saliency")`` scores each weight by ``|w * dL/dw|`` summed
over ``saliency_batches`` training batches (first-order Taylor estimate of the
loss change when the weight is removed) instead of ``|w|``. TF-MOT prunes by
magnitude, so the lowest-saliency weights are set to zero first and TF-MOT's
mask is taken once, at step 0, from those zeros and kept through fine-tuning
(``pruning.wrap(..., fixed_mask=True)``).

A layer with several prunable weights (e.g. a recurrent kernel) is scored as
one; TF-MOT then prunes each of its weights to the layer's sparsity.

Example:
    >>> import numpy as np
    >>> counts, t = allocate({"a": np.arange(10.0), "b": np.arange(10.0) + 5}, 0.5)
    >>> counts, t
    ({'a': 8, 'b': 2}, 7.0)
"""

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress._model import clone, onednn_safe_training
from tfcompress.errors import RecipeError
from tfcompress.pruning import selected_layers
from tfcompress.pruning.selection import first_match
from tfcompress.pruning.weights import prunable_weights

__all__ = ["allocate", "magnitude_scores", "saliency_scores", "plan", "describe", "check_column"]


def allocate(scores, total_sparsity, max_layer=1.0, min_layer=0.0):
    """Share ``total_sparsity`` of all weights among layers by one score threshold.

    Each layer first gives up its floor (``ceil(min_layer * n)`` lowest
    scores); the rest of the zeros are the lowest scores over all layers
    together, a layer giving no more than ``floor(max_layer * n)``.

    Args:
        scores: ``{layer name: 1-D array of weight scores}``.
        total_sparsity: share of all the weights to remove, in [0, 1).
        max_layer: cap on a layer's sparsity. Defaults to `1.0`.
        min_layer: floor on a layer's sparsity. Defaults to `0.0`.

    Returns:
        ``(counts, threshold)``: weights removed per layer, and the threshold:
        the removed weights of a layer not held at a cap score below it and
        the kept ones at or above it (ties broken by order); None when every
        layer is held at its cap.

    Example:
        >>> allocate({"a": np.array([1.0, 2, 3, 4]), "b": np.array([0.5, 5, 6, 7])}, 0.375, max_layer=0.5)
        ({'a': 2, 'b': 1}, 5.0)
    """
    names = list(scores)
    flat = {n: np.sort(np.abs(np.asarray(scores[n], np.float64)).ravel()) for n in names}
    total = sum(v.size for v in flat.values())
    want = int(round(total_sparsity * total))
    lo = {n: min(int(np.ceil(min_layer * v.size - 1e-9)), v.size) for n, v in flat.items()}
    hi = {n: max(lo[n], int(np.floor(max_layer * v.size + 1e-9))) for n, v in flat.items()}
    cand = np.concatenate([flat[n][lo[n]:hi[n]] for n in names] or [np.zeros(0)])
    owner = np.concatenate([np.full(hi[n] - lo[n], i) for i, n in enumerate(names)] or [np.zeros(0, int)])
    extra = min(max(want - sum(lo.values()), 0), cand.size)
    order = np.argsort(cand, kind="stable")
    taken = np.bincount(owner[order[:extra]].astype(int), minlength=len(names))
    counts = {n: lo[n] + int(taken[i]) for i, n in enumerate(names)}
    if extra < cand.size:
        threshold = float(cand[order[extra]])
    else:
        threshold = None
    return counts, threshold


def magnitude_scores(layers):
    """``{layer name: |w|}`` over each layer's prunable weights, flattened."""
    return {layer.name: np.concatenate([np.abs(w.numpy()).ravel() for w in prunable_weights(layer)])
            for layer in layers}


def saliency_scores(model, layers, dataset, loss, batches):
    """``{layer name: sum over batches of |w * dL/dw|}`` for each layer's prunable weights.

    Args:
        model: the model (inference mode: dropout off, batch statistics fixed).
        layers: the layers to score (of ``model``).
        dataset: batched ``(x, y)`` training data.
        loss: a Keras loss (the one the stage trains with).
        batches: batches to accumulate over (fewer when the data ends first).

    Returns:
        ``{layer name: flat array of scores}``.
    """
    weights = {layer.name: prunable_weights(layer) for layer in layers}
    variables = [w for ws in weights.values() for w in ws]
    acc = [np.zeros(w.shape, np.float64) for w in variables]
    loss_fn = keras.losses.get(loss)
    seen = 0
    for batch in dataset.take(batches):
        x, y = batch[0], batch[1]
        with onednn_safe_training(model), tf.GradientTape() as tape:  # gradients: oneDNN's crash too
            out = tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), model(x, training=False))
            value = loss_fn(y, out)
            grads = tape.gradient(value, variables)
        for a, w, g in zip(acc, variables, grads):
            if g is not None:
                a += np.abs(tf.cast(w, tf.float32).numpy() * tf.cast(g, tf.float32).numpy())
        seen += 1
    if not seen:
        raise RecipeError("pruning criterion 'saliency' got no training batch to score the weights on: "
                          "give the stage training data.")
    out, i = {}, 0
    for name, ws in weights.items():
        out[name] = np.concatenate([acc[i + k].ravel() for k in range(len(ws))])
        i += len(ws)
    return out


def _layer_targets(layers, stage):
    """Layer scope: ``final_sparsity``, or the first matching ``per_layer`` entry's."""
    out = {}
    for layer in layers:
        hit = first_match(layer, stage.per_layer)
        out[layer.name] = stage.per_layer[hit] if hit is not None else stage.final_sparsity
    return out


def _zero_lowest(layer, layer_scores, sparsity):
    """Zero the lowest-scoring weights of each prunable weight of ``layer`` as TF-MOT will count them."""
    start = 0
    for w in prunable_weights(layer):
        value = w.numpy()
        n = value.size
        s = layer_scores[start:start + n]
        start += n
        drop = n - int(round(n * (1 - sparsity)))  # TF-MOT keeps round(n * (1 - sparsity))
        flat = value.ravel().copy()
        flat[np.argsort(s, kind="stable")[:drop]] = 0
        w.assign(flat.reshape(value.shape))


def plan(model, stage, layers, data=None, loss=None):
    """Each selected layer's sparsity under the stage's scope and criterion.

    Args:
        model: the model the stage starts from (a copy is zeroed for saliency).
        stage: a :class:`~tfcompress.Pruning` with ``scope="global"`` or
            ``criterion="saliency"``.
        layers: the layers of ``model`` the stage prunes
            (:func:`tfcompress.pruning.selected_layers`).
        data: the stage's training data (``.dataset``), for saliency. Defaults to `None`.
        loss: the training loss, for saliency. Defaults to `None`.

    Returns:
        ``(model, targets, info)``: the model to wrap (with the low-saliency
        weights already zero for saliency), ``{layer name: sparsity}`` for
        :func:`tfcompress.pruning.wrap`, and the report entry (scope,
        criterion, threshold, per-layer allocated sparsity).
    """
    if stage.criterion == "saliency":
        scores = saliency_scores(model, layers, data.dataset, loss, stage.saliency_batches)
    else:
        scores = magnitude_scores(layers)
    threshold = None
    if stage.scope == "global":
        counts, threshold = allocate(scores, stage.final_sparsity, stage.max_layer_sparsity,
                                     stage.min_layer_sparsity)
        targets = {n: counts[n] / scores[n].size for n in scores}
    else:
        targets = _layer_targets(layers, stage)
    if stage.criterion == "saliency":
        model = clone(model)
        by_name = {layer.name: layer for layer in model.layers}
        for name, s in targets.items():
            if s > 0:
                _zero_lowest(by_name[name], scores[name], s)
    sizes = {n: int(v.size) for n, v in scores.items()}
    total = sum(sizes.values())
    info = {
        "scope": stage.scope, "criterion": stage.criterion, "threshold": threshold,
        "allocated": {n: round(float(s), 4) for n, s in targets.items()},
        "total_sparsity": sum(targets[n] * sizes[n] for n in sizes) / total if total else 0.0,
    }
    return model, targets, info


def describe(info):
    """The allocation in one line, for the stage's report entry.

    Example:
        >>> describe({"scope": "global", "criterion": "magnitude", "threshold": 0.0123,
        ...           "allocated": {"conv1": 0.2, "fc1": 0.9}, "total_sparsity": 0.85})
        'global magnitude threshold 0.0123 (85.0% in all): conv1 20%, fc1 90%'
    """
    where = f"{info['scope']} {info['criterion']}"
    if info["threshold"] is not None:
        where += f" threshold {info['threshold']:.3g}"
    layers = ", ".join(f"{n} {s:.0%}" for n, s in info["allocated"].items())
    return f"{where} ({info['total_sparsity']:.1%} in all): {layers}"


def check_column(model, recipe):
    """The ``check`` column, computed once per model: the sparsity the recipe's global scope gives each
    layer, or its saliency setting.

    Empty (column hidden) unless the recipe prunes with ``scope: global`` or
    ``criterion: saliency``; the allocation is computed from ``model``'s
    current weights, as the stage will at its start.

    Example:
        >>> from tfcompress import Pruning, Recipe, models
        >>> m = models.get("digits_cnn").build()
        >>> check_column(m, Recipe(pruning=Pruning(scope="global")))["conv1"][-20:]  # doctest: +SKIP
        'global 80%, t=0.0921)'
    """
    stage = getattr(recipe, "pruning", None)
    if stage is None or (stage.scope == "layer" and stage.criterion == "magnitude"):
        return {}
    layers = selected_layers(model, stage)
    if stage.criterion == "saliency":
        targets, threshold = _layer_targets(layers, stage), None
    else:
        _, targets, info = plan(model, stage, layers)
        threshold = info["threshold"]
    out = {}
    for layer in model.layers:
        if not prunable_weights(layer):
            continue
        if layer.name not in targets:
            out[layer.name] = "no: not pruned by this recipe"
        elif stage.criterion == "saliency":
            share = "share" if stage.scope == "global" else f"{targets[layer.name]:.0%}"
            out[layer.name] = f"{stage.scope} saliency: {share} chosen from gradients at run time"
        else:
            t = "" if threshold is None else f", t={threshold:.3g}"
            out[layer.name] = f"{targets[layer.name]:.0%} (of global {stage.final_sparsity:.0%}{t})"
    return out
