"""Quantize configs for layers TF-MOT's default 8-bit scheme rejects.

TF-MOT's registry knows Conv/Dense/Add/Concatenate/pooling and a few more;
real models also use ``Rescaling`` and ``Normalization`` (preprocessing),
``Multiply`` (squeeze-and-excitation), activations such as ``hard_sigmoid``
and ``TFOpLambda`` ops (``tf.nn.relu6``, ``tf.math.sigmoid``). This module is a
registry of data, not a monkey-patch: a dict from layer type to the config to
use, and for every layer it cannot handle, the reason (the layer is then left
in float during QAT; the int8 converter still quantizes it from the
representative data where TFLite has an int8 kernel).

Kinds of config:

* ``"default"``: TF-MOT's own config.
* ``"output"``: quantize only the layer's output (like ``Add``); TF-MOT's
  ``Default8BitOutputQuantizeConfig``.
* ``"noop"``: no fake quantization (shape-only ops); TF-MOT's
  ``NoOpQuantizeConfig``.
* ``"weights_output"``: a Conv/Dense whose fused ``activation`` TF-MOT
  cannot fake-quantize (``hard_sigmoid``, ``relu6``, ...): its weights as
  TF-MOT would, its output after the activation.
* ``"fold"``: a ``BatchNormalization`` right after a convolution, annotated
  so TF-MOT's graph rewrite folds it into the convolution's quantization.
* ``"separable"``: a ``SeparableConv2D``, annotated without a config so that
  TF-MOT's layout transform splits it into a ``DepthwiseConv2D`` and a 1×1
  ``Conv2D`` with a fake-quant between them. Left in float instead, the
  converter calibrated that inner tensor from data alone; in pruned Xception and
  NASNetMobile some came out all-zero (scale 7.8e-9), and XNNPACK refused the
  resulting int8 files ("failed to create XNNPACK runtime": requantization
  scale outside [2^-32, 256)).

Both provided configs are TF-MOT classes known to ``quantize_scope()``, so
saved QAT models reload without extra custom objects.

Example:
    >>> from tfcompress._keras import keras
    >>> from tfcompress.quantization import configs
    >>> configs.rule(keras.layers.Multiply())
    ('output', None)
    >>> configs.rule(keras.layers.GRU(4))[0] is None
    True
"""

from tfcompress._keras import keras
from tfcompress._keras import quantize_configs as _configs
from tfcompress._keras import quantize_registry as _default_registry

__all__ = ["rule", "config_for", "why_not", "describe", "guard_scheme", "KINDS"]

KINDS = {
    "default": "TF-MOT default",
    "fold": "folded into its conv (TF-MOT)",
    "separable": "split into depthwise + 1×1 conv (TF-MOT)",
    "weights_output": "weights + output, float activation (tfcompress)",
    "output": "output-only (tfcompress)",
    "noop": "no-op (tfcompress)",
}

_registry = _default_registry.Default8BitQuantizeRegistry()
L = keras.layers

# Layer type -> kind, for weightless (or statistics-only) layers TF-MOT rejects.
LAYER_KINDS = {
    L.Rescaling: "output",
    L.Normalization: "output",
    L.Multiply: "output",
    L.Subtract: "output",
    L.Average: "output",
    L.Maximum: "output",
    L.Minimum: "output",
    L.ELU: "output",
    L.PReLU: None,  # has an alpha weight TF-MOT cannot quantize
    L.ThresholdedReLU: "output",
    L.RepeatVector: "noop",
    L.Cropping2D: "noop",
    L.Resizing: "output",
    L.CenterCrop: "noop",
}
# Layers TF-MOT configures in a way TFLite rejects: its AveragePooling config
# gives the output its own scale, but TFLite's int8 AVERAGE_POOL_2D needs the
# input's ("same scale constraint" at conversion, e.g. DenseNet).
_OVERRIDES = {L.AveragePooling2D: "noop", L.AveragePooling1D: "noop"}
# Activations TF-MOT's Activation config raises on; their outputs are quantized.
_ACTIVATION_OK = {"relu", "swish", "gelu", "relu6", "linear", "softmax", "sigmoid", "tanh"}
# Activations TF-MOT's QuantizeAwareActivation handles inside Conv/Dense.
_FUSED_OK = {"softmax", "sigmoid", "tanh", "gelu", "linear", "relu", "swish"}
_WEIGHTED = (L.Conv2D, L.DepthwiseConv2D, L.Dense)
_RNN = (L.GRU, L.LSTM, L.SimpleRNN, L.RNN, L.Bidirectional, L.ConvLSTM2D)


def _oplambda_rule(layer):
    # TF-MOT's wrapper breaks TFOpLambda layers in its graph rewrite (outputs
    # gain a batch-of-one axis), so they stay float during QAT; the converter
    # still quantizes them to int8 from the representative data.
    symbol = getattr(layer, "symbol", None) or layer.name
    return None, (f"TFOpLambda tf.{symbol}: TF-MOT cannot wrap TF ops, left in float during QAT "
                  "(the int8 converter calibrates it from representative data)")


def _activation_name(layer):
    return getattr(getattr(layer, "activation", None), "__name__", "linear")


def _bn_rule(layer):
    nodes = getattr(layer, "_inbound_nodes", [])
    producers = [l for n in nodes for l in _as_list(n.inbound_layers)]
    if producers and all(isinstance(l, (L.Conv2D, L.DepthwiseConv2D)) for l in producers):
        return "fold", None
    return None, ("BatchNormalization not right after a Conv2D/DepthwiseConv2D: TF-MOT cannot "
                  "quantize it alone; left in float (the converter folds or quantizes it)")


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def rule(layer):
    """How ``layer`` is quantized: ``(kind, None)`` or ``(None, reason)``.

    Args:
        layer: a tf_keras layer (not a wrapper).

    Returns:
        ``("default" | "fold" | "separable" | "weights_output" | "output" | "noop", None)`` when it can be
        annotated for QAT, else ``(None, reason)``.

    Example:
        >>> rule(keras.layers.Dense(2))
        ('default', None)
    """
    if isinstance(layer, keras.Model):
        return None, "nested model: flatten it first (tfcompress.optimize does)"
    if isinstance(layer, L.InputLayer):
        return None, "input layer"
    if isinstance(layer, L.Activation):
        name = getattr(layer.activation, "__name__", None)
        return ("default" if name in _ACTIVATION_OK else "output"), None
    if type(layer).__name__ == "TFOpLambda":
        return _oplambda_rule(layer)
    if isinstance(layer, L.BatchNormalization):
        return _bn_rule(layer)
    if (isinstance(layer, _WEIGHTED) and not isinstance(layer, L.Conv2DTranspose)
            and _activation_name(layer) not in _FUSED_OK):
        return "weights_output", None
    if isinstance(layer, L.SeparableConv2D):
        if _activation_name(layer) not in _FUSED_OK:
            return None, (f"SeparableConv2D with activation {_activation_name(layer)}: TF-MOT's split "
                          "cannot fake-quantize it; left in float")
        return "separable", None
    if isinstance(layer, _RNN):
        return None, (f"{type(layer).__name__}: TF-MOT's 8-bit QAT has no recurrent-layer support; left "
                      "in float (the int8 converter may still quantize it, see `tfcompress check`)")
    if type(layer) in _OVERRIDES:
        return _OVERRIDES[type(layer)], None
    if _registry.supports(layer):
        return "default", None
    kind = LAYER_KINDS.get(type(layer), "missing")
    if kind == "missing":
        return None, f"TF-MOT's 8-bit scheme has no quantize config for {type(layer).__name__}"
    if kind is None:
        return None, f"{type(layer).__name__} has weights TF-MOT cannot quantize: left in float"
    return kind, None


def why_not(layer):
    """None when ``layer`` can be annotated for QAT, else the reason it is skipped."""
    return rule(layer)[1]


def config_for(layer):
    """The ``QuantizeConfig`` to annotate ``layer`` with (None: TF-MOT's default).

    Raises:
        ValueError: ``layer`` cannot be quantized (check :func:`why_not` first).
    """
    kind, reason = rule(layer)
    if kind is None:
        raise ValueError(reason)
    if kind == "output":
        return _configs.Default8BitOutputQuantizeConfig()
    if kind == "noop":
        return _configs.NoOpQuantizeConfig()
    if kind == "weights_output":
        if isinstance(layer, L.DepthwiseConv2D):
            return _default_registry.Default8BitConvQuantizeConfig(["depthwise_kernel"], [], True)
        if isinstance(layer, L.Conv2D):
            return _default_registry.Default8BitConvQuantizeConfig(["kernel"], [], True)
        return _default_registry.Default8BitQuantizeConfig(["kernel"], [], True)
    return None


def describe(layer):
    """A short label for reports: which config quantizes ``layer``, or why not."""
    kind, reason = rule(layer)
    return KINDS[kind] if kind else f"no: {reason}"


class _GuardedRegistry:
    """A scheme's registry that never claims a layer TF-MOT's default
    registry cannot configure.

    The prune- and cluster-preserving registries report every weightless
    layer as supported, then fail in ``get_quantize_config`` when such a layer
    (``Rescaling``, ``TFOpLambda``) feeds an annotated one. Layers we configure
    ourselves carry their config in the annotation and never reach here.
    """

    def __init__(self, inner):
        self._inner = inner

    def supports(self, layer):
        return _registry.supports(layer) and self._inner.supports(layer)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def guard_scheme(scheme):
    """``scheme`` with its registry guarded (see :class:`_GuardedRegistry`).

    Example:
        >>> from tfcompress.quantization import scheme_for
        >>> s = guard_scheme(scheme_for("pqat"))  # doctest: +SKIP
    """
    get = scheme.get_quantize_registry
    if getattr(get, "_tfcompress_guarded", False):
        return scheme

    def guarded():
        return _GuardedRegistry(get())

    guarded._tfcompress_guarded = True
    scheme.get_quantize_registry = guarded
    return scheme
