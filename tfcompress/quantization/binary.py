"""Binary (±α) and ternary ({-α, 0, +α}) weights for quantization-aware training.

``Quantization(weights="binary")`` trains the kernels of Conv2D and Dense
layers as ``α·sign(w)`` with one α per output channel, the mean ``|w|`` of that
channel (XNOR-Net; one α per kernel on Dense, see :class:`SignQuantizer`);
``weights="ternary"`` zeroes the weights under
``Δ = 0.7·mean|w|`` and sets the others to ``±α``, α the mean ``|w|`` above Δ
(Ternary Weight Networks). Gradients pass straight through to the float
weights (identity where ``|w| <= 1``, zero beyond). Activations stay 8-bit
(TF-MOT's moving-average fake-quant), and the layers named by
``keep_int8`` (by default the first and the last weighted layer, where
binarizing costs most accuracy) keep TF-MOT's 8-bit weights.

Why our own quantizer and not larq (measured in a throwaway venv): larq 0.14
requires ``numpy<2`` (installing it downgrades our numpy 2.4.6 to 1.26.4);
with numpy 1.26 its QuantConv2D trains under ``TF_USE_LEGACY_KERAS=1`` and
larq-compute-engine 0.16 converts and runs the model, but under numpy 2.4 the
LCE interpreter fails ("Expected 256 bytes but got 0 for tensor
serving_default_input_1:0") and LiteRT cannot load its ``LceQuantize`` /
``LceBconv2d`` custom ops.

The export is the ordinary int8 ``.tflite``: each binarized kernel ends in a
per-channel fake-quant over ``[-α, α]``, so the file holds ``±127`` (and ``0``
for ternary) times a per-channel scale ``α/127``: two (three) distinct int8
values per output channel. XNNPACK has no binary kernels, so such a file runs
at int8 speed; the gain is its zipped size. :func:`tflite_levels` reads the
values back from a file.

Example:
    >>> from tfcompress import Quantization
    >>> stage = Quantization(weights="binary")
    >>> stage.keep_int8
    ('first', 'last')
"""

import numpy as np

from tfcompress._keras import keras, tf, tfmot
from tfcompress._keras import quantize_registry as _registry
from tfcompress.pruning.selection import check_patterns, first_match

__all__ = [
    "FORMATS", "SignQuantizer", "SignQuantizeConfig", "kept_reason", "plan", "config_for", "check_answer",
    "kernel_levels", "tflite_levels", "describe",
]

#: The weight formats this module trains.
FORMATS = ("binary", "ternary")
#: ``keep_int8`` words that name a position rather than a layer.
POSITIONS = ("first", "last")
_LAYERS = (keras.layers.Conv2D, keras.layers.Dense)
#: α is widened by this factor in the fake-quant range, so that ±α lie
#: strictly inside it (the straight-through gradient of TF's fake-quant is
#: zero outside its nudged range) and still round to ±127.
_WIDEN = 1.0 + 1e-6
_EPS = 1e-12


def _levels(w, mode, axes):
    """(α per channel, threshold per channel) of kernel ``w`` for ``mode``."""
    a = tf.abs(w)
    mean = tf.reduce_mean(a, axis=axes)
    if mode == "binary":
        return tf.maximum(mean, _EPS), tf.zeros_like(mean)
    delta = 0.7 * mean
    above = tf.cast(a > delta, w.dtype)
    alpha = tf.math.divide_no_nan(tf.reduce_sum(a * above, axis=axes), tf.reduce_sum(above, axis=axes))
    return tf.maximum(alpha, _EPS), delta


def _project(w, mode, alpha, delta, mask):
    """``w`` mapped onto ``{-α, α}`` (binary) or ``{-α, 0, α}`` (ternary)."""
    sign = tf.where(w >= 0, tf.ones_like(w), -tf.ones_like(w))
    if mode == "ternary":
        sign = sign * tf.cast(tf.abs(w) > delta, w.dtype)
    if mask is not None:
        sign = sign * mask
    return alpha * sign


@keras.utils.register_keras_serializable(package="tfcompress")
class SignQuantizer(tfmot.quantization.keras.quantizers.Quantizer):
    """Binarizes or ternarizes a kernel per output channel (last axis).

    Training computes α (and the ternary threshold Δ) from the current
    weights and stores them; inference reuses the stored ones. The result
    passes through TF's per-channel fake-quant over ``[-α, α]`` so that the
    int8 converter stores it as ``±127`` (``0``) times ``α/127``.

    Args:
        mode: ``"binary"`` or ``"ternary"``.
        preserve_zeros: keep the weights that are zero when QAT starts at
            zero (an earlier pruning stage's sparsity). Defaults to `False`.
        per_axis: one α (and one int8 scale) per output channel (Conv2D).
            TFLite's converter refuses per-channel fake-quant on a Dense kernel
            ("tfl.transpose op has mismatched quantized axes"), and one int8
            scale with a different α per channel would store a different
            byte pair per channel (LeNet-5's binary file zipped to 18,853 B
            that way with the quick benchmark settings), so Dense uses one α over the whole kernel:
            every weight is ``±127`` (or 0) in the file. Defaults to `True`.

    Example:
        >>> q = SignQuantizer("ternary")
        >>> q.get_config()
        {'mode': 'ternary', 'preserve_zeros': False, 'per_axis': True}
    """

    def __init__(self, mode, preserve_zeros=False, per_axis=True):
        if mode not in FORMATS:
            raise ValueError(f"mode must be one of {FORMATS}, got {mode!r}")
        self.mode = mode
        self.preserve_zeros = bool(preserve_zeros)
        self.per_axis = bool(per_axis)

    def build(self, tensor_shape, name, layer):
        channels = int(tensor_shape[-1])
        out = {
            "alpha": layer.add_weight(f"{name}_alpha", shape=(channels,), initializer="ones", trainable=False),
            "delta": layer.add_weight(f"{name}_delta", shape=(channels,), initializer="zeros", trainable=False),
        }
        if self.preserve_zeros:
            w = getattr(layer.layer, name.split("/")[-1], None) if hasattr(layer, "layer") else None
            init = (lambda shape, dtype=None: tf.cast(tf.not_equal(w, 0), dtype or tf.float32)) if w is not None \
                else "ones"
            out["mask"] = layer.add_weight(f"{name}_mask", shape=tuple(tensor_shape), initializer=init,
                                           trainable=False)
        return out

    def __call__(self, inputs, training, weights, **kwargs):
        w = inputs
        mask = weights.get("mask")
        if mask is not None:
            w = w * mask
        if training:
            alpha, delta = _levels(w, self.mode, list(range(len(w.shape) - (1 if self.per_axis else 0))))
            alpha, delta = alpha * tf.ones_like(weights["alpha"]), delta * tf.ones_like(weights["delta"])
            with tf.control_dependencies([weights["alpha"].assign(alpha), weights["delta"].assign(delta)]):
                alpha, delta = tf.identity(alpha), tf.identity(delta)
        else:
            alpha, delta = weights["alpha"], weights["delta"]
        alpha = tf.stop_gradient(alpha)
        clipped = tf.clip_by_value(w, -1.0, 1.0)
        # Straight-through: the forward value is the projection, the gradient that of the clipped weights.
        ste = clipped + tf.stop_gradient(_project(w, self.mode, alpha, tf.stop_gradient(delta), mask) - clipped)
        if not self.per_axis:
            bound = alpha[0] * _WIDEN
            return tf.quantization.fake_quant_with_min_max_vars(ste, -bound, bound, num_bits=8, narrow_range=True)
        bound = alpha * _WIDEN
        return tf.quantization.fake_quant_with_min_max_vars_per_channel(ste, -bound, bound, num_bits=8,
                                                                        narrow_range=True)

    def get_config(self):
        return {"mode": self.mode, "preserve_zeros": self.preserve_zeros, "per_axis": self.per_axis}

    def __eq__(self, other):
        return isinstance(other, SignQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


@keras.utils.register_keras_serializable(package="tfcompress")
class SignQuantizeConfig(_registry.Default8BitQuantizeConfig):
    """TF-MOT's 8-bit config of a Conv2D/Dense with the kernel binarized or ternarized.

    Args:
        weight_attrs: the kernel attribute names (``["kernel"]``).
        activation_attrs: ``["activation"]`` when the layer's activation is
            fake-quantized inside it, else ``[]``.
        quantize_output: fake-quantize the layer's output instead.
        mode: ``"binary"`` or ``"ternary"``.
        preserve_zeros: see :class:`SignQuantizer`. Defaults to `False`.
        per_axis: see :class:`SignQuantizer`. Defaults to `True`.

    Example:
        >>> SignQuantizeConfig(["kernel"], ["activation"], False, "binary").weight_quantizer.mode
        'binary'
    """

    def __init__(self, weight_attrs, activation_attrs, quantize_output, mode, preserve_zeros=False, per_axis=True):
        super().__init__(weight_attrs, activation_attrs, quantize_output)
        self.mode = mode
        self.preserve_zeros = preserve_zeros
        self.per_axis = per_axis
        self.weight_quantizer = SignQuantizer(mode, preserve_zeros, per_axis)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "preserve_zeros": self.preserve_zeros,
                "per_axis": self.per_axis}


def _weighted(model):
    from tfcompress.quantization.configs import why_not

    return [l for l in model.layers if l.weights and why_not(l) is None
            and isinstance(l, (*_LAYERS, keras.layers.DepthwiseConv2D))]


def kept_reason(layer, model, keep):
    """Why ``layer`` keeps 8-bit weights under a binary/ternary stage, or None when it is binarized.

    Args:
        layer: a layer of ``model``.
        model: the model (its first and last weighted layers are ``"first"``
            and ``"last"``).
        keep: the stage's ``keep_int8`` patterns.

    Returns:
        None, or a short reason such as ``"kept int8 (first layer)"``.

    Example:
        >>> kept_reason(model.layers[1], model, ("first", "last"))  # doctest: +SKIP
        'kept int8 (first layer)'
    """
    if not isinstance(layer, _LAYERS) or isinstance(layer, keras.layers.Conv2DTranspose):
        kind = type(layer).__name__
        return f"kept int8 ({kind}: only Conv2D and Dense kernels are binarized)"
    weighted = _weighted(model)
    for pos, index in (("first", 0), ("last", -1)):
        if pos in (keep or ()) and weighted and weighted[index] is layer:
            return f"kept int8 ({pos} layer)"
    hit = first_match(layer, [p for p in keep or () if p not in POSITIONS])
    return None if hit is None else f"kept int8 (keep_int8 {hit!r})"


def plan(model, stage):
    """What a binary/ternary stage does to each weighted layer of ``model``.

    Args:
        model: the model to be annotated.
        stage: the :class:`~tfcompress.Quantization` stage (``weights`` and
            ``keep_int8``).

    Returns:
        ``{layer name: "binary" | "ternary" | "kept int8 (<why>)"}`` for the
        layers with weights TF-MOT can quantize; ``{}`` when ``stage.weights``
        is not binary or ternary.

    Example:
        >>> plan(lenet, Quantization(weights="binary"))  # doctest: +SKIP
        {'conv1': 'kept int8 (first layer)', 'conv2': 'binary', ..., 'logits': 'kept int8 (last layer)'}
    """
    if getattr(stage, "weights", None) not in FORMATS:
        return {}
    check_patterns(model.layers, "quantization", keep_int8=[p for p in stage.keep_int8 or () if p not in POSITIONS])
    return {l.name: kept_reason(l, model, stage.keep_int8) or stage.weights for l in _weighted(model)}


def config_for(layer, kind, mode, preserve_zeros):
    """The quantize config of a layer :func:`plan` binarizes.

    Args:
        layer: a Conv2D or Dense layer.
        kind: the layer's kind in :func:`tfcompress.quantization.configs.rule`
            (``"default"``: activation fake-quantized inside the layer,
            ``"weights_output"``: its output instead).
        mode: ``"binary"`` or ``"ternary"``.
        preserve_zeros: keep zero weights at zero (PQAT).

    Example:
        >>> config_for(keras.layers.Dense(2), "default", "binary", False).per_axis
        False
    """
    fused = kind == "default"
    kernel = getattr(layer, "kernel", None)
    preserve_zeros = bool(preserve_zeros) and (kernel is None or bool(np.any(kernel.numpy() == 0)))
    return SignQuantizeConfig(["kernel"], ["activation"] if fused else [], not fused, mode, preserve_zeros,
                              per_axis=not isinstance(layer, keras.layers.Dense))


def check_answer(layer, model, recipe):
    """The ``binary`` column of ``tfcompress check``: None unless the recipe binarizes/ternarizes.

    Example:
        >>> check_answer(model.layers[1], model, recipe)  # doctest: +SKIP
        'kept int8 (first layer)'
    """
    stage = getattr(recipe, "quantization", None) if recipe is not None else None
    if stage is None or getattr(stage, "weights", None) not in FORMATS or not layer.weights:
        return None
    from tfcompress.quantization.configs import why_not

    reason = why_not(layer)
    if reason is not None:
        return f"no: {reason}"
    return kept_reason(layer, model, stage.keep_int8) or stage.weights


def kernel_levels(qat_model):
    """The binarized kernels of a QAT model and their distinct values per output channel.

    Args:
        qat_model: a model from :func:`tfcompress.quantization.wrap` with a
            binary or ternary stage.

    Returns:
        ``{layer name: (kernel as trained and exported, max distinct values in one output channel)}``
        for each binarized layer.

    Example:
        >>> {k: n for k, (_, n) in kernel_levels(qat).items()}  # doctest: +SKIP
        {'conv2': 2, 'fc1': 2}
    """
    out = {}
    for layer in qat_model.layers:
        cfg = getattr(layer, "quantize_config", None)
        if not isinstance(cfg, SignQuantizeConfig):
            continue
        for weight, quantizer, variables in layer._weight_vars:  # noqa: SLF001 - TF-MOT keeps them only here
            k = quantizer(weight, False, variables).numpy()
            flat = k.reshape(-1, k.shape[-1])
            out[layer.layer.name] = (k, max(len(np.unique(flat[:, c])) for c in range(flat.shape[1])))
    return out


def tflite_levels(path):
    """Distinct int8 weight values per output channel of each Conv/FC op in a ``.tflite``.

    Args:
        path: the ``.tflite`` file.

    Returns:
        ``{weight tensor name: max distinct int8 values in one output channel}``.

    Example:
        >>> tflite_levels("model_int8.tflite")  # doctest: +SKIP
        {'sequential/conv1/Conv2D': 17, 'sequential/conv2/Conv2D': 2, ...}
    """
    from tflite_export._runtime import open_interpreter

    it = open_interpreter(path, use_xnnpack=False)
    details = {d["index"]: d for d in it.get_tensor_details()}
    out = {}
    for op in it._get_ops_details():  # noqa: SLF001 - the one way LiteRT lists op inputs
        if op["op_name"] not in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D") or len(op["inputs"]) < 2:
            continue
        d = details[op["inputs"][1]]
        if d["dtype"] != np.int8:
            continue
        w = it.get_tensor(d["index"])
        axis = d["quantization_parameters"]["quantized_dimension"]
        per = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        out[d["name"]] = max(len(np.unique(row)) for row in per)
    return out


def describe(stage, scheme="qat"):
    """One line for the report: what the weights were trained as.

    Example:
        >>> describe(Quantization(weights="ternary"), "pqat")  # doctest: +SKIP
        'ternary weights ({-α, 0, +α}), 8-bit activations, kept int8: first, last, zeros kept'
    """
    what = {"binary": "binary weights (±α)", "ternary": "ternary weights ({-α, 0, +α})"}[stage.weights]
    keep = ", ".join(stage.keep_int8 or ())
    return (f"{what}, 8-bit activations" + (f", kept int8: {keep}" if keep else ", every layer binarized")
            + (", zeros kept" if scheme == "pqat" else ""))
