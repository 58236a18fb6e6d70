"""Channel importance criteria: ``l1``, ``l2``, ``bn_gamma``, ``taylor``, ``apoz``,
``mean_activation`` (the last three need data; the activation ones are in
``activations.py``).

Each criterion scores every channel of every prunable group; low scores are
pruned first. For a group with several producer layers (a residual ``Add``),
each member's scores are divided by their mean (so no layer dominates by scale)
and then summed.

Example:
    >>> from tfcompress.channels import prune_channels
    >>> small, report = prune_channels(model, 0.5, criterion="taylor", data=(x, y))
"""

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress._model import onednn_safe_training
from tfcompress.channels.activations import activation_scores
from tfcompress.channels.graph import _key, _kind
from tfcompress.errors import DataError, RecipeError

__all__ = ["CRITERIA", "NEEDS_DATA", "group_importance"]

CRITERIA = ("l1", "l2", "bn_gamma", "taylor", "apoz", "mean_activation")
#: The criteria that score channels on a data sample.
NEEDS_DATA = ("taylor", "apoz", "mean_activation")


def _out_axis_kernel(layer):
    """The (kernel, output axis) of a producer layer."""
    kind = _kind(layer)
    if kind == "separable":
        return layer.pointwise_kernel.numpy(), -1
    if kind == "conv_transpose":
        return layer.kernel.numpy(), -2
    return layer.kernel.numpy(), -1


def _norm_scores(layer, p):
    k, axis = _out_axis_kernel(layer)
    k = np.moveaxis(k, axis, -1).reshape(-1, k.shape[axis])
    return np.abs(k).sum(0) if p == 1 else np.sqrt((k ** 2).sum(0))


def _normalise(s):
    s = np.asarray(s, dtype=np.float64)
    mean = s.mean() if s.size else 0.0
    return s / mean if mean > 0 else s


def _bn_scores(analysis, groups):
    """|gamma| of the BatchNorm layers reading each group's channels."""
    scores = {}
    for layer, ins, _ in analysis.nodes:
        if not isinstance(layer, keras.layers.BatchNormalization) or not ins:
            continue
        if layer.name not in analysis.layer_io:
            continue
        gamma = layer.gamma.numpy() if layer.gamma is not None else np.ones(layer.moving_mean.shape)
        m = analysis.maps[_key(ins[0])]
        for g in np.unique(m.gid):
            r = analysis.find(int(g))
            if r not in groups:
                continue
            sel = m.gid == g
            s = np.zeros(groups[r].channels)
            np.add.at(s, m.ch[sel], np.abs(gamma[sel]))
            scores.setdefault(r, []).append(s)
    return scores


def _as_batches(data, batch_size=64, max_batches=4, what="criterion 'taylor'"):
    """Up to ``max_batches`` (x, y) numpy batches from (x, y), a dataset object
    with ``.train``, or a tf.data.Dataset of (x, y)."""
    if data is None:
        raise DataError(f"{what} needs data: pass data=(x, y) with a few hundred labelled samples.")
    if hasattr(data, "train") and not isinstance(data, tuple):
        data = data.train
    if isinstance(data, tf.data.Dataset):
        out = []
        for xb, yb in data.take(max_batches):
            out.append((np.asarray(xb), np.asarray(yb)))
        if not out:
            raise DataError(f"the data set for {what} is empty: pass a tf.data.Dataset with at least one (x, y) batch.")
        return out
    try:
        x, y = data
    except (TypeError, ValueError):
        raise DataError(
            "data must be (x, y) numpy arrays, a tf.data.Dataset of (x, y) or a dataset with .train."
        ) from None
    x, y = np.asarray(x), np.asarray(y)
    if len(x) == 0 or len(x) != len(y):
        raise DataError(f"data has {len(x)} inputs and {len(y)} labels: pass equally many, at least one.")
    n = min(len(x), batch_size * max_batches)
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]


def _taylor_scores(analysis, groups, data):
    """First-order Taylor importance |sum_spatial(activation x gradient)|, summed
    over samples, of each producer's output channels."""
    model = analysis.model
    producers = []
    for r, g in groups.items():
        for name in g.members:
            producers.append((r, name))
    if not producers:
        return {}
    outputs = {layer.name: outs[0] for layer, _, outs in analysis.nodes if outs}
    tensors = [outputs[n] for _, n in producers]
    probe = keras.Model(model.inputs, tensors + list(model.outputs))
    out_layer = model.outputs[0]._keras_history[0]
    from_logits = getattr(getattr(out_layer, "activation", None), "__name__", "") != "softmax"
    acc = [np.zeros(groups[r].channels) for r, _ in producers]
    for xb, yb in _as_batches(data):
        xb = tf.convert_to_tensor(xb, dtype=model.inputs[0].dtype)
        with onednn_safe_training(probe), tf.GradientTape() as tape:  # gradients: oneDNN's crash too
            res = probe(xb, training=False)
            acts, pred = res[: len(tensors)], res[len(tensors)]
            if yb.ndim == pred.ndim and yb.shape[-1] == pred.shape[-1]:
                loss = keras.losses.categorical_crossentropy(yb, pred, from_logits=from_logits)
            else:
                loss = keras.losses.sparse_categorical_crossentropy(yb, pred, from_logits=from_logits)
            loss = tf.reduce_sum(loss)
        grads = tape.gradient(loss, acts)
        for i, (a, gr) in enumerate(zip(acts, grads)):
            if gr is None:
                continue
            prod = (a * gr).numpy()
            prod = prod.reshape(prod.shape[0], -1, prod.shape[-1]).sum(1)
            acc[i] += np.abs(prod).sum(0)
    scores = {}
    for (r, _), s in zip(producers, acc):
        scores.setdefault(r, []).append(s)
    return scores


def group_importance(analysis, groups, criterion="l1", data=None):
    """Importance of each channel of each prunable group.

    Args:
        analysis: the model's :class:`~tfcompress.channels.graph.Analysis`.
        groups: dict root id -> :class:`Group` (prunable groups only).
        criterion: "l1", "l2", "bn_gamma", "taylor", "apoz" or "mean_activation".
        data: (x, y) labelled samples; needed by the :data:`NEEDS_DATA` criteria.

    Returns:
        (scores, notes): dict root id -> float array (one score per channel),
        and a list of notes (e.g. "no BatchNorm after X, used l1").

    Raises:
        RecipeError: unknown criterion.
        DataError: a data criterion without usable data.
    """
    if criterion not in CRITERIA:
        raise RecipeError(f"criterion={criterion!r} is unknown: use one of {', '.join(CRITERIA)}.")
    notes = []
    model = analysis.model
    per = {}
    if criterion in ("l1", "l2"):
        p = 1 if criterion == "l1" else 2
        for r, g in groups.items():
            per[r] = [_norm_scores(model.get_layer(n), p) for n in g.members]
    elif criterion == "bn_gamma":
        per = _bn_scores(analysis, groups)
        for r, g in groups.items():
            if r not in per:
                notes.append(f"group '{g.name}' has no BatchNormalization: used l1 instead of bn_gamma")
                per[r] = [_norm_scores(model.get_layer(n), 1) for n in g.members]
    elif criterion == "taylor":
        per = _taylor_scores(analysis, groups, data)
    else:
        per, more = activation_scores(analysis, groups, _as_batches(data, what=f"criterion {criterion!r}"), criterion)
        notes += more
    scores = {}
    for r, g in groups.items():
        parts = per.get(r) or [np.ones(g.channels)]
        scores[r] = np.sum([_normalise(s) for s in parts], axis=0)
    return scores, notes
