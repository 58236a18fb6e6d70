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
    arrays = lambda v: tf.nest.map_structure(np.asarray, v)  # noqa: E731 - several inputs/outputs keep their structure
    if isinstance(data, tf.data.Dataset):
        out = []
        for xb, yb in data.take(max_batches):
            out.append((arrays(xb), arrays(yb)))
        if not out:
            raise DataError(f"the data set for {what} is empty: pass a tf.data.Dataset with at least one (x, y) batch.")
        return out
    try:
        x, y = data
    except (TypeError, ValueError):
        raise DataError(
            "data must be (x, y) numpy arrays, a tf.data.Dataset of (x, y) or a dataset with .train."
        ) from None
    x, y = arrays(x), arrays(y)
    nx, ny = (len(tf.nest.flatten(v)[0]) for v in (x, y))
    if nx == 0 or nx != ny:
        raise DataError(f"data has {nx} inputs and {ny} labels: pass equally many, at least one.")
    n = min(nx, batch_size * max_batches)
    part = lambda v, i: tf.nest.map_structure(lambda a: a[i:i + batch_size], v)  # noqa: E731
    return [(part(x, i), part(y, i)) for i in range(0, n, batch_size)]


def _taylor_scores(analysis, groups, data, loss_fn=None):
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
        xb = tf.nest.map_structure(lambda a: tf.convert_to_tensor(a, dtype=model.inputs[0].dtype), xb)
        with onednn_safe_training(probe), tf.GradientTape() as tape:  # gradients: oneDNN's crash too
            res = probe(xb, training=False)
            acts, pred = res[: len(tensors)], res[len(tensors)]
            if loss_fn is not None:  # the user's task: maps, regressions, several outputs
                loss = loss_fn(yb, list(res[len(tensors):]) if len(model.outputs) > 1 else pred)
            elif yb.ndim == pred.ndim and yb.shape[-1] == pred.shape[-1]:
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


def group_importance(analysis, groups, criterion="l1", data=None, loss_fn=None):
    """Importance of each channel of each prunable group.

    Args:
        analysis: the model's :class:`~tfcompress.channels.graph.Analysis`.
        groups: dict root id -> :class:`Group` (prunable groups only).
        criterion: "l1", "l2", "bn_gamma", "taylor", "apoz" or "mean_activation".
        data: (x, y) labelled samples; needed by the :data:`NEEDS_DATA` criteria.
        loss_fn: the task's loss for ``taylor`` (:meth:`tfcompress.task.Task.loss_fn`).
            Defaults to `None` (cross-entropy of a classifier's one output).

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
        per = _taylor_scores(analysis, groups, data, loss_fn)
    else:
        per, more = activation_scores(analysis, groups, _as_batches(data, what=f"criterion {criterion!r}"), criterion)
        notes += more
    scores = {}
    for r, g in groups.items():
        parts = per.get(r) or [np.ones(g.channels)]
        scores[r] = np.sum([_normalise(s) for s in parts], axis=0)
    return scores, notes
