"""Channel (filter / neuron) merging: fold near-duplicate channels into the one
they duplicate instead of deleting them.

For each prunable group, every channel ``j`` is compared with every other
channel ``i``: ``s = max(0, <v_j, v_i> / |v_i|²)`` is the scale that best makes
``v_j ≈ s·v_i`` and ``|v_j - s·v_i|`` (= ``|v_j|·sin(angle)`` when ``s > 0``:
the cosine similarity weighted by the removed channel's size) is the error of
replacing ``j`` by ``s·i``. The channel with the smallest error goes first
(greedily, until the group's ratio is met; a channel already merged into stays
available as a target); its contribution moves into the next layers' input
weights of channel ``i`` (``W_next[..., i, :] += s·W_next[..., j, :]``), and the
surgery of :mod:`~tfcompress.channels.surgery` removes it. With ``s = 0`` (no
positive match) that is plain pruning by the L2 norm of ``v_j``.

What ``v`` is (``similarity``):

* ``"weights"``: the producer's kernel column and bias, with a BatchNorm that
  alone reads the producer's (linear) output *folded in* (``γ/σ·(w, b - μ) + β``), so
  channels equal after their BatchNorm match; for a residual group, its
  producers' vectors stacked (one ``s`` for all of them).
* ``"activations"``: the channel's values on a data sample where the next
  Conv/Dense reads them (after BatchNorm, activation, pooling, ``Add``).

When it is exact: the merged model equals the original when ``v_j = s·v_i``
exactly and what lies between the producer and the next Conv/Dense is linear
or positively homogeneous (ReLU, LeakyReLU, max/average pooling, ``Add``,
``Flatten``, ``Concatenate``), since then ``relu(s·x) = s·relu(x)`` for
``s > 0``. It is approximate through other activations (sigmoid, tanh, ...)
and ``Multiply``/``Maximum``/``Minimum`` merges,
through a BatchNorm that is not directly after the producer (not folded), and
when channels are only nearly proportional. A group read by a depthwise,
separable or transposed convolution cannot move a channel into another (each
channel has its own filter there): it is pruned (L2) instead, with a note.

Example:
    >>> from tfcompress.channels.merge import merge_channels
    >>> small, report = merge_channels(model, 0.5)
    >>> len(report.merges) > 0
    True
"""

import numpy as np

from tfcompress._checks import check_choice
from tfcompress.channels.activations import _consumers, channel_positions, consumer_activations
from tfcompress.channels.graph import _activation_name, _key, _kind
from tfcompress.channels.importance import _as_batches, _out_axis_kernel
from tfcompress.channels.surgery import Plan, check_targets, make_report, resolve_targets

__all__ = ["MODES", "SIMILARITIES", "merge_channels", "choose_merges"]

#: What ``Channels.mode`` may take.
MODES = ("prune", "merge")
#: What ``Channels.merge_similarity`` may take.
SIMILARITIES = ("weights", "activations")

_READERS = ("conv", "dense", "depthwise", "separable", "conv_transpose")


def choose_merges(vectors, n_remove, merge=True):
    """Greedy choice of the channels to remove and where each one goes.

    Args:
        vectors: (features, channels) matrix, one column per channel.
        n_remove: how many channels to remove (< channels).
        merge: False prunes by L2 norm (every scale 0).

    Returns:
        list of (j removed, i kept target or None, scale s >= 0), in removal order.

    Example:
        >>> v = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
        >>> choose_merges(v, 1)
        [(0, 2, 0.5)]
    """
    v = np.asarray(vectors, dtype=np.float64)
    n = v.shape[1]
    norm2 = (v * v).sum(0)
    gram = v.T @ v
    safe = np.where(norm2 > 0, norm2, 1.0)
    scale = np.where(norm2[None, :] > 0, gram / safe[None, :], 0.0)  # scale[j, i]: v_j ≈ s v_i
    scale = np.clip(scale, 0.0, None) if merge else np.zeros_like(scale)
    resid = np.maximum(norm2[:, None] - 2 * scale * gram + scale * scale * norm2[None, :], 0.0)
    np.fill_diagonal(resid, np.inf)
    alive = np.ones(n, dtype=bool)
    out = []
    for _ in range(min(n_remove, n - 1)):
        masked = np.where(alive[None, :], resid, np.inf)
        target = masked.argmin(1)
        err = np.where(alive, masked[np.arange(n), target], np.inf)
        j = int(np.lexsort((norm2, err))[0])  # ties: the smaller channel goes
        i = int(target[j])
        s = float(scale[j, i])
        out.append((j, i if s > 0 else None, s))
        alive[j] = False
    return out


def _bn_affine(bn):
    """(scale, shift) of an inference-mode BatchNormalization: y = scale·x + shift."""
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    gamma = bn.gamma.numpy() if bn.gamma is not None else np.ones_like(mean)
    beta = bn.beta.numpy() if bn.beta is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - mean * scale


def _weight_vectors(analysis, group, consumers):
    """(features, channels) matrix of a group: each producer's kernel columns and
    bias, a BatchNorm that alone reads the producer folded in."""
    parts = []
    for name in group.members:
        layer = analysis.model.get_layer(name)
        k, axis = _out_axis_kernel(layer)
        k = np.moveaxis(k, axis, -1).reshape(-1, k.shape[axis]).astype(np.float64)
        bias = getattr(layer, "bias", None)
        b = bias.numpy().astype(np.float64) if bias is not None else np.zeros(k.shape[1])
        nxt = consumers.get(_key(layer.output), [])
        linear = _activation_name(layer) in ("", "linear")
        if linear and len(nxt) == 1 and nxt[0][0].__class__.__name__ == "BatchNormalization":
            scale, shift = _bn_affine(nxt[0][0])
            k, b = k * scale, b * scale + shift
        parts.append(np.vstack([k, b[None, :]]))
    return np.vstack(parts)


def _readers(analysis, roots):
    """root -> [(layer name, kind, input key)] of the layers with weights that read its channels."""
    out = {r: [] for r in roots}
    for layer, ins, _ in analysis.nodes:
        kind = _kind(layer)
        if kind not in _READERS or layer.name not in analysis.layer_io or not ins:
            continue
        key = _key(ins[0])
        for g in np.unique(analysis.maps[key].gid):
            r = analysis.find(int(g))
            if r in out and all(n != layer.name for n, _, _ in out[r]):
                out[r].append((layer.name, kind, key))
    return out


def merge_channels(model, ratio=None, *, per_layer=None, flops=None, params=None,
                   similarity="weights", data=None, sensitivity=None):
    """Remove channels by merging each into its nearest duplicate: a smaller,
    dense tf_keras model.

    Args:
        model: a tf_keras Sequential or Functional model (not modified).
        ratio: fraction of channels removed from every prunable group, in [0, 1).
        per_layer: {layer name: ratio} overrides (any Conv/Dense member of a group).
        flops: fraction of FLOPs to keep, in (0, 1] (as :func:`prune_channels`).
        params: fraction of parameters to keep, in (0, 1].
        similarity: ``"weights"`` or ``"activations"`` (needs ``data``).
        data: (x, y) samples for ``"activations"`` (labels unused).
        sensitivity: a :class:`SensitivityReport` for a ``flops``/``params`` budget.

    Returns:
        (new_model, ChannelReport) with ``mode="merge"`` and ``merges``: one
        dict per removed channel (group, removed, into, scale; into None where
        it was pruned). The new model is not compiled.

    Raises:
        RecipeError: a bad target or similarity.
        UnsupportedModelError: Keras 3, subclassed or unbuilt model.
        DataError: ``"activations"`` without data.

    Example:
        >>> small, rep = merge_channels(model, 0.25, similarity="activations", data=(x, y))
    """
    ratio, flops, params = check_targets(model, ratio, per_layer, flops, params)
    check_choice(None, "similarity", similarity, SIMILARITIES)
    batches = _as_batches(data, what="merge_similarity 'activations'") if similarity == "activations" else None
    plan = Plan(model, "l2")
    notes = list(plan.notes)
    ratios = resolve_targets(plan, ratio, per_layer, flops, params, sensitivity, notes)
    counts = {r: plan.n_remove(r, v, notes) for r, v in ratios.items()}
    counts = {r: n for r, n in counts.items() if n > 0}
    a = plan.analysis
    acts = consumer_activations(a, {r: plan.groups[r] for r in counts}, batches) if batches else {}
    readers, consumers = _readers(a, counts), _consumers(a)
    weights, keep, merges = {}, {}, []
    for r, n_remove in counts.items():
        g = plan.groups[r]
        blocked = [name for name, kind, _ in readers[r] if kind not in ("conv", "dense")]
        if blocked:
            notes.append(f"group '{g.name}' feeds {', '.join(blocked)} (one filter per channel): pruned (l2), "
                         "not merged")
        vectors = acts[r] if r in acts else _weight_vectors(a, g, consumers)
        chosen = choose_merges(vectors, n_remove, merge=not blocked)
        mask = np.ones(g.channels, dtype=bool)
        for j, i, s in chosen:
            mask[j] = False
            merges.append({"group": g.name, "removed": j, "into": i, "scale": round(s, 6)})
        keep[r] = mask
        for name, _, key in readers[r]:
            if blocked:
                break
            w = weights.setdefault(name, a.model.get_layer(name).get_weights())
            for j, i, s in chosen:
                if i is not None:
                    pj, pi = channel_positions(a, key, r, j), channel_positions(a, key, r, i)
                    w[0][..., pi, :] += s * w[0][..., pj, :]
    new = plan.build(keep, weights=weights)
    target = {"ratio": ratio, "per_layer": dict(per_layer or {}), "flops": flops, "params": params,
              "similarity": similarity}
    rep = make_report(plan, ratios, keep, new, target, notes)
    rep.criterion, rep.mode, rep.merges = f"{similarity} similarity", "merge", merges
    n = sum(m["into"] is not None for m in merges)
    rep.notes.append(f"{n} channel(s) merged into a kept one, {len(merges) - n} pruned")
    return new, rep
