"""Sub-8-bit weight QAT: ``quantization.weights: int4 | int2`` (TF-MOT's n-bit scheme).

TF-MOT's experimental ``DefaultNBitQuantizeScheme`` fake-quantizes weights to
``num_bits_weight`` bits (4: 15 levels, symmetric narrow range, per output
channel for Conv2D/DepthwiseConv2D, per tensor for Dense) and activations to
8 bits. The TFLite converter (TF 2.21) writes those weights as **INT4**
tensors, two values a byte, in a full-integer int8 file; 2-bit weights (3
levels) are stored in the same int4 tensors: LiteRT has no int2 kernels.
``tflite_export.export(..., mode="int4")`` writes and checks that file.

With pruning and clustering (TF-MOT's preserving schemes are 8-bit only):

- sparsity: the zeros an earlier pruning stage made are kept by
  :func:`zero_keeper`, a callback that writes them back after every batch
  (a zero kernel value fake-quantizes to exactly 0: the file keeps them);
- clusters are *not* kept: the n-bit quantizer re-grids every channel onto
  its own 15 (or 3) levels, which already bounds the distinct values more
  tightly than a 16-cluster clustering would.

Example:
    >>> from tfcompress import Quantization
    >>> from tfcompress.quantization import nbit
    >>> nbit.BITS["int4"]
    4
    >>> qat, records = wrap(model, Quantization(weights="int4"))   # doctest: +SKIP
"""

import numpy as np

from tfcompress._keras import keras, tf, tfmot
from tfcompress._model import clone
from tfcompress.errors import RecipeError, UnsupportedModelError, first_line

__all__ = ["BITS", "INT4_LAYERS", "wrap", "zero_keeper", "cluster_keeper", "describe", "low_bit_answer"]

#: ``Quantization.weights`` -> weight bits of the n-bit scheme.
BITS = {"int4": 4, "int2": 2}
#: The layer types whose weights the n-bit scheme quantizes and LiteRT runs
#: with int4 weights (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED: measured on
#: ai-edge-litert 2.3, XNNPACK and builtin kernels, outputs equal).
INT4_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")

_nb = tfmot.quantization.keras.experimental.default_n_bit
_q = tfmot.quantization.keras


def _registry(bits):
    return _nb.DefaultNBitQuantizeScheme(num_bits_weight=bits, num_bits_activation=8).get_quantize_registry()


def wrap(model, stage, scheme, why_not, classes_of):
    """Annotate and apply n-bit QAT (``stage.weights`` bits) to a copy of ``model``.

    Args:
        model: a tf_keras model without pruning wrappers.
        stage: a :class:`~tfcompress.Quantization` stage with ``weights``
            ``"int4"`` or ``"int2"``.
        scheme: the QAT variant (:func:`~tfcompress.quantization.config.qat_scheme`):
            ``"pqat"``/``"pcqat"`` keep zeros (use :func:`zero_keeper` while
            training), clusters are not kept.
        why_not: ``layer -> None | reason`` (quantization.why_not_quantizable).
        classes_of: ``model -> {name: class}`` (quantization.layer_classes).

    Returns:
        ``(qat_model, records)``: records map each layer with weights to
        ``"quantized: int4"`` (``int2``) or ``"skipped: <reason>"``.

    Raises:
        RecipeError: no layer the n-bit scheme quantizes.
        UnsupportedModelError: TF-MOT fails to apply the scheme.

    Example:
        >>> qat, records = wrap(model, Quantization(weights="int4"), "qat",
        ...                     why_not_quantizable, layer_classes)            # doctest: +SKIP
        >>> records["dense"]                                                   # doctest: +SKIP
        'quantized: int4'
    """
    bits = BITS[stage.weights]
    registry = _registry(bits)
    records = {}

    def annotate(layer):
        reason = why_not(layer)
        if reason is None and not registry.supports(layer):
            reason = f"{type(layer).__name__}: TF-MOT's n-bit scheme has no config for it, kept float"
        if reason is None:
            if type(layer).__name__ in INT4_LAYERS:
                records[layer.name] = f"quantized: {stage.weights}"
            return _q.quantize_annotate_layer(layer)
        if layer.weights:
            records[layer.name] = f"skipped: {reason}"
        return layer

    annotated = clone(model, annotate)
    if not any(r.startswith("quantized") for r in records.values()):
        raise RecipeError(f"quantization.weights {stage.weights!r} found no Conv2D, DepthwiseConv2D or Dense "
                          "layer to quantize: use weights int8 or remove the quantization stage.")
    scheme_obj = _nb.DefaultNBitQuantizeScheme(num_bits_weight=bits, num_bits_activation=8)
    try:
        with _q.quantize_scope(), keras.utils.custom_object_scope(classes_of(annotated)):
            return _q.quantize_apply(annotated, scheme_obj), records
    except Exception as e:  # noqa: BLE001 - TF-MOT must never crash the caller with its own error
        raise UnsupportedModelError(
            f"TF-MOT's {bits}-bit QAT failed on this model ({type(e).__name__}: {first_line(e, 200)}); "
            "use quantization.weights int8 or run `tfcompress check`.") from None


def _kernels(qat_model, quantized=True):
    # The wrapper swaps the inner layer's ``kernel`` for the fake-quant output:
    # the variables are in its ``_weight_vars`` (variable, quantizer, quantizer vars).
    # quantized=False: the kernels of the layers QAT left in float (no quantize config).
    for layer in qat_model.layers:
        if hasattr(layer, "_weight_vars"):
            if quantized:
                yield from (var for var, _, _ in layer._weight_vars if "kernel" in var.name)
        elif not quantized and not isinstance(layer, keras.Model):
            yield from (var for var in layer.trainable_weights if "kernel" in var.name)


class _KeepZeros(keras.callbacks.Callback):
    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs

    def on_train_batch_end(self, batch, logs=None):
        for var, mask in self.pairs:
            var.assign(var * mask)


def zero_keeper(qat_model, min_sparsity=0.05, quantized=True):
    """A callback that keeps the kernels' zeros through n-bit QAT, or None.

    TF-MOT's sparsity-preserving QAT is 8-bit only, and keeps the zeros of the
    layers it quantizes only; here every kernel with at least ``min_sparsity``
    zeros gets its zeros written back after each training batch. Zero
    fake-quantizes to exactly 0, so the file keeps them.

    Args:
        qat_model: the model :func:`wrap` returned, before training.
        min_sparsity: kernels with fewer zeros are left alone. Defaults to `0.05`.
        quantized: the quantized layers' kernels too (n-bit QAT), not only those
            of the layers QAT leaves in float (a pruned ``Conv1D``, which 8-bit
            PQAT would train dense again). Defaults to `True`.

    Returns:
        A ``keras.callbacks.Callback``, or None when no kernel is sparse.

    Example:
        >>> cb = zero_keeper(qat)                                  # doctest: +SKIP
        >>> qat.fit(x, y, callbacks=[cb] if cb else [])            # doctest: +SKIP
    """
    pairs = []
    for var in [*_kernels(qat_model, quantized=False), *(_kernels(qat_model) if quantized else ())]:
        w = var.numpy()
        if w.size and np.mean(w == 0) >= min_sparsity:
            pairs.append((var, (w != 0).astype(w.dtype)))
    return _KeepZeros(pairs) if pairs else None


class _KeepClusters(keras.callbacks.Callback):
    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs  # (variable, its weights' cluster ids, cluster count)

    def on_train_batch_end(self, batch, logs=None):
        for var, ids, k in self.pairs:  # each cluster moves to the mean of its trained weights (as CQAT does)
            flat = tf.reshape(var, [-1])
            var.assign(tf.reshape(tf.gather(tf.math.unsorted_segment_mean(flat, ids, k), ids), var.shape))


def cluster_keeper(qat_model, max_clusters=256):
    """A callback that keeps the clusters of the kernels QAT leaves in float through CQAT, or None.

    TF-MOT's cluster-preserving QAT keeps the clusters of the layers it
    quantizes only: a clustered ``Conv1D`` (no quantize config) came out of
    CQAT with 96 distinct values where the report said 8. Here every such
    kernel with at most ``max_clusters`` distinct values (fewer than its
    weights) keeps each weight's cluster: after each training batch a cluster's
    weights all take their mean. Run it before :func:`zero_keeper`, which then
    puts the pruned zeros back.

    Args:
        qat_model: the QAT model, before training.
        max_clusters: kernels with more distinct values are not clustered. Defaults to `256`.

    Returns:
        A ``keras.callbacks.Callback``, or None when no float kernel is clustered.

    Example:
        >>> cb = cluster_keeper(qat)                               # doctest: +SKIP
    """
    pairs = []
    for var in _kernels(qat_model, quantized=False):
        values, ids = np.unique(var.numpy().ravel(), return_inverse=True)
        if 1 < len(values) <= max_clusters and len(values) < var.numpy().size:
            pairs.append((var, tf.constant(ids.astype("int32")), len(values)))
    return _KeepClusters(pairs) if pairs else None


def describe(stage, scheme):
    """The report's one-line summary of an n-bit QAT stage.

    Example:
        >>> from tfcompress import Quantization
        >>> describe(Quantization(weights="int4"), "pqat")
        '4-bit weights QAT (8-bit activations), sparsity preserved'
    """
    text = f"{BITS[stage.weights]}-bit weights QAT (8-bit activations)"
    if scheme in ("pqat", "pcqat"):
        text += ", sparsity preserved"
    if scheme in ("cqat", "pcqat"):
        text += ", clusters not kept (TF-MOT keeps clusters at 8 bits only)"
    return text


def low_bit_answer(layer, model, recipe):
    """``check``'s "low-bit" column: are this layer's weights stored sub-8-bit?

    Returns:
        None when the recipe asks for no sub-8-bit weights or the layer has no
        weights; ``"int4"`` (``"int4 (2-bit values)"``) where the file stores
        int4 weights; ``"no: <why>"`` otherwise.

    Example:
        >>> from tfcompress import Recipe, Quantization
        >>> from tfcompress._keras import keras
        >>> low_bit_answer(keras.layers.Dense(2), None, Recipe(quantization=Quantization(weights="int4")))
        'int4'
    """
    q = getattr(recipe, "quantization", None)
    if q is None or getattr(q, "weights", "int8") not in BITS:
        return None
    if isinstance(layer, keras.Model) or (layer.built and not layer.weights):
        return None
    name = type(layer).__name__
    if name in INT4_LAYERS:
        return "int4" if q.weights == "int4" else "int4 (2-bit values)"
    if not _registry(BITS[q.weights]).supports(layer):
        return f"no: {name} has no n-bit config, kept float"
    return f"no: {name} weights stay int8/float (LiteRT has int4 only for conv, depthwise conv, dense)"
