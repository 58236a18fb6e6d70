"""Activation-based channel statistics over a data sample.

* ``apoz`` — average percentage of zeros of each producer's *post-activation*
  output (the producer's own activation, or the BatchNorm / activation layers
  that follow it alone); score ``1 - APoZ``, so a channel that is almost always
  zero after its ReLU is pruned first;
* ``mean_activation`` — the mean ``|activation|`` of the same tensor;
* :func:`consumer_activations` — each channel's values where a following
  Conv/Dense reads them (what ``Channels(mode="merge",
  merge_similarity="activations")`` compares).

The data come as the ``(x, y)`` batches of ``importance._as_batches`` (labels unused).

Example:
    >>> from tfcompress.channels import prune_channels
    >>> small, report = prune_channels(model, 0.5, criterion="apoz", data=(x, y))
"""

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress.channels.graph import _activation_name, _key, _kind

__all__ = ["activation_scores", "consumer_activations", "post_activation"]

_ACTIVATION_LAYERS = tuple(
    getattr(keras.layers, n) for n in ("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "ThresholdedReLU")
    if hasattr(keras.layers, n)
)


def _consumers(analysis):
    out = {}
    for layer, ins, outs in analysis.nodes:
        for t in ins:
            out.setdefault(_key(t), []).append((layer, outs))
    return out


def post_activation(analysis, name, consumers=None):
    """The output tensor of producer ``name`` after its activation.

    Follows the BatchNorm / activation layers that alone read the producer's
    output, up to the first activation (the producer's own, when it has one).

    Args:
        analysis: the model's :class:`~tfcompress.channels.graph.Analysis`.
        name: a producer (Conv/Dense) layer name.
        consumers: a cache of ``_consumers(analysis)``.

    Returns:
        (tensor, activated): ``activated`` is False when no activation follows
        (the raw or BatchNorm-ed output is returned).
    """
    consumers = _consumers(analysis) if consumers is None else consumers
    layer = analysis.model.get_layer(name)
    t = layer.output
    if _activation_name(layer) not in ("", "linear"):
        return t, True
    while True:
        nxt = consumers.get(_key(t), [])
        if len(nxt) != 1 or len(nxt[0][1]) != 1:
            return t, False
        layer, outs = nxt[0]
        if isinstance(layer, _ACTIVATION_LAYERS):
            return outs[0], True
        if not isinstance(layer, keras.layers.BatchNormalization):
            return t, False
        t = outs[0]


def _run(model, tensors, batches):
    """Yield the values of ``tensors`` on each batch's inputs."""
    probe = keras.Model(model.inputs, list(tensors))
    for xb, _ in batches:
        res = probe(tf.convert_to_tensor(xb, dtype=model.inputs[0].dtype), training=False)
        res = res if isinstance(res, (list, tuple)) else [res]
        yield [np.asarray(r) for r in res]


def activation_scores(analysis, groups, batches, criterion):
    """Per-group lists of channel scores (one per producer) for ``apoz`` or
    ``mean_activation``.

    Args:
        analysis: the model's Analysis.
        groups: dict root id -> prunable :class:`Group`.
        batches: list of (x, y) numpy batches.
        criterion: ``"apoz"`` or ``"mean_activation"``.

    Returns:
        (scores, notes): dict root -> list of float arrays (high = keep), notes.
    """
    consumers = _consumers(analysis)
    producers, tensors, notes = [], [], []
    for r, g in groups.items():
        for name in g.members:
            t, activated = post_activation(analysis, name, consumers)
            if not activated and criterion == "apoz":
                notes.append(f"no activation after '{name}': APoZ measured on its raw output")
            producers.append(r)
            tensors.append(t)
    if not tensors:
        return {}, notes
    zeros = [np.zeros(groups[r].channels) for r in producers]
    absum = [np.zeros(groups[r].channels) for r in producers]
    count = [0] * len(producers)
    for values in _run(analysis.model, tensors, batches):
        for k, v in enumerate(values):
            v = v.reshape(-1, v.shape[-1])
            zeros[k] += (v == 0).sum(0)
            absum[k] += np.abs(v).sum(0)
            count[k] += v.shape[0]
    scores = {}
    for k, r in enumerate(producers):
        n = max(count[k], 1)
        s = 1.0 - zeros[k] / n if criterion == "apoz" else absum[k] / n
        scores.setdefault(r, []).append(s)
    return scores, notes


def _reader_tensor(analysis, root):
    """(input key, input tensor) of the first Conv/Dense that reads group ``root``'s channels."""
    for layer, ins, _ in analysis.nodes:
        if _kind(layer) not in ("conv", "dense") or layer.name not in analysis.layer_io or not ins:
            continue
        key = _key(ins[0])
        m = analysis.maps[key]
        if any(analysis.find(int(g)) == root for g in np.unique(m.gid)):
            return key, ins[0]
    return None, None


def channel_positions(analysis, key, root, c):
    """Positions along a tensor's last axis that carry channel ``c`` of group ``root``."""
    m = analysis.maps[key]
    roots = np.array([analysis.find(int(g)) for g in m.gid])
    return np.flatnonzero((roots == root) & (m.ch == c))


def consumer_activations(analysis, groups, batches, max_rows=8192):
    """Each group's channels as a (samples, channels) matrix of the values a
    following Conv/Dense reads (one column per channel, spatial positions and
    Flatten tiles as rows).

    Args:
        analysis: the model's Analysis.
        groups: dict root id -> prunable :class:`Group`.
        batches: list of (x, y) numpy batches.
        max_rows: at most this many rows per batch (samples x spatial
            positions; a seeded subset of the positions beyond it).

    Returns:
        dict root -> float64 matrix; groups no Conv/Dense reads are left out.
    """
    readers = {}
    for r in groups:
        key, t = _reader_tensor(analysis, r)
        if key is not None:
            readers[r] = (key, t)
    if not readers:
        return {}
    roots = list(readers)
    pos = {r: [channel_positions(analysis, readers[r][0], r, c) for c in range(groups[r].channels)]
           for r in roots}
    cols = {r: [] for r in roots}
    rng = np.random.default_rng(0)
    for values in _run(analysis.model, [readers[r][1] for r in roots], batches):
        for r, v in zip(roots, values):
            v = v.reshape(v.shape[0], -1, v.shape[-1])  # (N, spatial, C) or (N, 1, F)
            if v.shape[0] * v.shape[1] > max_rows:  # big feature maps: a seeded subset of positions
                keep = max(1, max_rows // v.shape[0])
                v = v[:, np.sort(rng.choice(v.shape[1], keep, replace=False)), :]
            cols[r].append(np.stack([v[:, :, p].reshape(-1) for p in pos[r]], axis=1))
    return {r: np.concatenate(c, axis=0).astype(np.float64) for r, c in cols.items()}
