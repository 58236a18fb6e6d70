"""Weight clustering with TF-MOT: each kernel keeps a few shared values.

Clustered kernels compress well (a handful of distinct values zip to a few
bits each) and survive int8 quantization when the QAT stage uses a
cluster-preserving scheme (CQAT / PCQAT). With ``preserve_sparsity`` the
zeros of an earlier pruning stage stay zeros.

Example:
    >>> from tfcompress import Clustering
    >>> from tfcompress import clustering
    >>> wrapped, records = clustering.wrap(model, Clustering(number_of_clusters=16))  # doctest: +SKIP
    >>> model = clustering.strip(wrapped)  # doctest: +SKIP
    >>> clustering.unique_values(model)["fc1"]  # doctest: +SKIP
    16
"""

import numpy as np

from tfcompress._keras import clustering_experimental as _experimental
from tfcompress._keras import clustering_registry, keras, tfmot
from tfcompress._model import clone
from tfcompress.errors import RecipeError
from tfcompress.pruning.selection import check_patterns, excluded_reason

__all__ = ["wrap", "strip", "why_not_clusterable", "unique_values", "describe"]

_cluster = tfmot.clustering.keras
_registry = clustering_registry.ClusteringRegistry
_INITS = {
    "kmeans_plus_plus": _cluster.CentroidInitialization.KMEANS_PLUS_PLUS,
    "linear": _cluster.CentroidInitialization.LINEAR,
    "density_based": _cluster.CentroidInitialization.DENSITY_BASED,
    "random": _cluster.CentroidInitialization.RANDOM,
}


def _kernels(layer):
    """The weights TF-MOT clusters in ``layer`` (kernels, not biases)."""
    inner = getattr(layer, "layer", layer)
    try:
        names = _registry._LAYERS_WEIGHTS_MAP.get(type(inner))
    except AttributeError:  # pragma: no cover - other TF-MOT versions
        names = None
    names = names or ["kernel"]
    return [w for w in layer.weights if w.name.split("/")[-1].split(":")[0] in names and len(w.shape) >= 2]


def why_not_clusterable(layer, number_of_clusters, per_channel=False, preserve_sparsity=False):
    """None when TF-MOT can cluster ``layer``, else the reason it is skipped.

    Example:
        >>> from tfcompress._keras import keras
        >>> d = keras.layers.Dense(2); d.build((None, 3))
        >>> why_not_clusterable(d, 16)
        'kernel has 6 weights, not more than 16 clusters'
    """
    if isinstance(layer, keras.Model):
        return "nested model: cluster its layers in the outer model instead"
    if not layer.trainable_weights:
        return "no trainable weights"
    if not _registry.supports(layer):
        return f"TF-MOT has no clustering rule for {type(layer).__name__}"
    kernels = _kernels(layer)
    if not kernels:
        return "no clusterable kernel"
    size = int(np.prod(kernels[0].shape))
    if per_channel and isinstance(layer, keras.layers.Conv2D):
        per = size // int(kernels[0].shape[-1])
        if per <= number_of_clusters:
            return f"{per} weights per channel, not more than {number_of_clusters} clusters"
    elif size <= number_of_clusters:
        return f"kernel has {size} weights, not more than {number_of_clusters} clusters"
    if preserve_sparsity:
        values = np.asarray(kernels[0].numpy())
        channels = [values[..., c] for c in range(values.shape[-1])] if (
            per_channel and isinstance(layer, keras.layers.Conv2D)) else [values]
        for v in channels:
            short = _too_few_nonzero(v, number_of_clusters)
            if short:
                return short
    return None


def _too_few_nonzero(values, number_of_clusters):
    """Why sparsity-preserving clustering cannot seed its clusters on ``values``, or None.

    TF-MOT keeps one cluster at zero and splits the others between the negative
    and the positive weights in proportion to their counts (rounded half to even);
    k-means++ then fails inside TensorFlow when a side has fewer weights than clusters.
    """
    neg, pos = int((values < 0).sum()), int((values > 0).sum())
    if neg + pos == 0:
        return None  # TF-MOT keeps the zero centroid alone
    n_neg = int(np.round((number_of_clusters - 1) * neg / (neg + pos)))
    n_pos = number_of_clusters - 1 - n_neg
    if n_neg > neg or n_pos > pos:
        return (f"{neg + pos} non-zero weights left after pruning ({pos} positive, {neg} negative) "
                f"cannot seed {number_of_clusters} sparsity-preserving clusters")
    return None


def wrap(model, stage, preserve_sparsity=False):
    """Wrap the selected clusterable layers of a copy of ``model`` for clustering.

    Args:
        model: a tf_keras model without pruning wrappers (left untouched).
        stage: a :class:`~tfcompress.recipe.Clustering` stage.
        preserve_sparsity: keep existing zeros (sparsity-preserving
            clustering); used when ``stage.preserve_sparsity`` is None.
            Defaults to `False`.

    Returns:
        ``(wrapped_model, records)``: records map layer name to
        ``"wrapped"`` or ``"skipped: <reason>"``.

    Raises:
        RecipeError: a pattern matches no layer, or nothing is clusterable.

    Example:
        >>> from tfcompress import models
        >>> from tfcompress import Clustering
        >>> _, rec = wrap(models.get("digits_cnn").build(), Clustering(number_of_clusters=8))
        >>> rec["fc1"], "pool" in rec
        ('wrapped', False)
    """
    check_patterns(model.layers, "clustering", include=stage.include, exclude=stage.exclude)
    preserve = stage.preserve_sparsity if stage.preserve_sparsity is not None else preserve_sparsity
    init = _INITS[stage.centroid_init]
    records = {}

    def clone_fn(layer):
        if not layer.weights or isinstance(layer, keras.layers.InputLayer):
            return layer
        reason = why_not_clusterable(layer, stage.number_of_clusters, stage.per_channel, bool(preserve))
        if reason is None:
            reason = excluded_reason(layer, stage.include, stage.exclude)
        if reason is not None:
            records[layer.name] = f"skipped: {reason}"
            return layer
        note = ""
        if stage.per_channel and not isinstance(layer, keras.layers.Conv2D):
            note = " (per-channel applies to Conv2D only: per-tensor here)"
        records[layer.name] = "wrapped" + note
        return _experimental.cluster_weights(
            layer, number_of_clusters=stage.number_of_clusters, cluster_centroids_init=init,
            preserve_sparsity=bool(preserve), cluster_per_channel=bool(stage.per_channel),
        )

    wrapped = clone(model, clone_fn)
    if not any(v.startswith("wrapped") for v in records.values()):
        raise RecipeError(
            "clustering found no layer to cluster ("
            + ("; ".join(f"{k}: {v[9:]}" for k, v in records.items()) or "no Dense/Conv layers")
            + "): lower clustering.number_of_clusters, widen include/exclude, or remove the stage."
        )
    return wrapped, records


def strip(model):
    """Remove the clustering wrappers, keeping the clustered weights."""
    return _cluster.strip_clustering(model)


def unique_values(model, per_channel=False):
    """Distinct values in the kernel of each layer that has one.

    Args:
        model: a tf_keras model (wrappers allowed).
        per_channel: report the largest count over output channels instead.
            Defaults to `False`.

    Returns:
        ``{layer_name: count}``.

    Example:
        >>> from tfcompress import models
        >>> unique_values(models.get("digits_cnn").build())["conv1"]
        144
    """
    out = {}
    for layer in model.layers:
        ks = _kernels(layer) if not isinstance(layer, keras.Model) else []
        if not ks:
            continue
        k = np.asarray(ks[0].numpy())
        name = getattr(getattr(layer, "layer", None), "name", layer.name)
        if per_channel and k.ndim == 4:
            out[name] = max(len(np.unique(k[..., c])) for c in range(k.shape[-1]))
        else:
            out[name] = int(len(np.unique(k)))
    return out


def describe(stage, preserve):
    """One line saying what a clustering stage does, for the report."""
    return (f"{stage.number_of_clusters} clusters, {stage.centroid_init} init"
            + (", per channel" if stage.per_channel else "")
            + (", sparsity preserved" if preserve else ""))
