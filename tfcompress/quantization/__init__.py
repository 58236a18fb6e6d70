"""Quantization-aware training (TF-MOT), keeping what earlier stages made.

Example:
    >>> from tfcompress import Quantization
    >>> from tfcompress.quantization import wrap
    >>> qat_model, records = wrap(pruned_model, Quantization())  # doctest: +SKIP
"""

import warnings

from tfcompress._keras import keras, tfmot
from tfcompress._model import clone
from tfcompress.errors import RecipeError, UnsupportedModelError, first_line
from tfcompress.quantization import binary, configs, nbit
from tfcompress.quantization.config import qat_scheme

__all__ = ["wrap", "why_not_quantizable", "scheme_for", "layer_classes"]

_q = tfmot.quantization.keras


def why_not_quantizable(layer):
    """None when TF-MOT's default 8-bit scheme can quantize ``layer``, else why not."""
    if isinstance(layer, keras.Model):
        return "nested model: not quantized"
    if isinstance(layer, keras.layers.InputLayer):
        return "input layer"
    return configs.why_not(layer)  # TF-MOT's registry plus tfcompress's own configs


def scheme_for(name):
    """The TF-MOT quantize scheme of a QAT variant.

    Args:
        name: ``"qat"``, ``"pqat"`` (keeps zeros), ``"cqat"`` (keeps clusters)
            or ``"pcqat"`` (keeps both).

    Example:
        >>> type(scheme_for("cqat")).__name__
        'Default8BitClusterPreserveQuantizeScheme'
    """
    combine = tfmot.experimental.combine
    if name == "pqat":
        return combine.Default8BitPrunePreserveQuantizeScheme()
    if name == "cqat":
        return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False)
    if name == "pcqat":
        return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)
    return _q.default_8bit.Default8BitQuantizeScheme()


def wrap(model, stage, preserve_sparsity=None, scheme=None):
    """Annotate the quantizable layers of a copy of ``model`` and apply QAT.

    Args:
        model: a tf_keras model without pruning wrappers (strip them first).
        stage: a :class:`~tfcompress.Quantization` stage.
        preserve_sparsity: overrides ``stage.preserve_sparsity``; use it to
            turn sparsity preservation off when no pruning ran. Defaults to
            `None`.
        scheme: ``"qat"``, ``"pqat"``, ``"cqat"`` or ``"pcqat"``; overrides
            ``preserve_sparsity`` (see :func:`scheme_for`). Defaults to `None`
            (:func:`tfcompress.quantization.config.qat_scheme` chooses: ``stage.scheme``
            when it names one, else PQAT with sparsity preservation, QAT
            without).

    Returns:
        ``(qat_model, records)``: records map layer name to ``"quantized"``
        (``"quantized: binary"`` / ``"quantized: ternary"`` / ``"quantized: kept
        int8 (<why>)"`` under ``weights: binary|ternary``, see
        :mod:`tfcompress.quantization.binary`) or ``"skipped: <reason>"``.

    Raises:
        RecipeError: no layer can be quantized.
        UnsupportedModelError: TF-MOT fails even with only its own configs.
            When it fails with tfcompress's extra configs (output-only,
            no-op, separable, ...), it is retried with TF-MOT's own configs
            only and a warning says so: the other layers stay float.
    """
    # wrap cannot see which stages ran: it takes the model as possibly sparse and
    # lets preserve_sparsity (and stage.scheme) decide.
    scheme = scheme or qat_scheme(stage, pruned=True, clustered=False, preserve_sparsity=preserve_sparsity)
    if getattr(stage, "weights", "int8") in nbit.BITS:  # int4 / int2: TF-MOT's n-bit scheme (quantization/nbit.py)
        return nbit.wrap(model, stage, scheme, why_not_quantizable, layer_classes)
    planned = binary.plan(model, stage)
    if scheme in ("cqat", "pcqat") and planned:
        raise RecipeError(f"quantization.weights {stage.weights!r} cannot keep an earlier clustering's clusters "
                          "(binary/ternary weights replace them): remove the clustering stage or use weights int8.")
    try:
        return _apply(model, scheme, only_default=False, planned=planned)
    except _TfMotError as first:
        # Fallback: only the layers TF-MOT configures itself (Conv, Dense, ...);
        # the rest stay float, each with the reason, instead of no QAT at all.
        try:
            qat, records = _apply(model, scheme, only_default=True, planned=planned)
        except (_TfMotError, RecipeError):
            raise UnsupportedModelError(
                f"TF-MOT could not apply QAT to this model ({first.cause}); remove the quantization "
                "stage or run `tfcompress check` to see which layers it skips."
            ) from None
        warnings.warn(f"TF-MOT could not apply QAT with tfcompress's extra quantize configs ({first.cause}); "
                      "only the layers TF-MOT configures itself are quantized, the others stay float.",
                      UserWarning, stacklevel=2)
        return qat, records


class _TfMotError(Exception):
    def __init__(self, e):
        super().__init__(f"{type(e).__name__}: {first_line(e, 300)}")
        self.cause = str(self)


def _apply(model, scheme, only_default, planned=None):
    records = {}
    planned = planned or {}

    def annotate(layer):
        reason = why_not_quantizable(layer)
        if reason is None and only_default and configs.rule(layer)[0] != "default":
            reason = "left in float: TF-MOT failed with tfcompress's extra configs (see the warning)"
        if reason is None:
            mode = planned.get(layer.name, "")
            records[layer.name] = f"quantized: {mode}" if mode else "quantized"
            config = (binary.config_for(layer, configs.rule(layer)[0], mode, scheme == "pqat")
                      if mode in binary.FORMATS else configs.config_for(layer))
            return _q.quantize_annotate_layer(layer, config)
        if layer.weights or not isinstance(layer, keras.layers.InputLayer):
            records[layer.name] = f"skipped: {reason}"
        return layer

    annotated = clone(model, annotate)
    if not any(r.startswith("quantized") for r in records.values()):
        raise RecipeError("quantization found no quantizable layer: remove the quantization stage.")
    try:
        # TF-MOT rebuilds the model from its config: layer classes outside
        # tf_keras.layers (ConvNeXt's LayerScale) must be in scope, or their
        # names come back as strings ("'str' object has no attribute 'name'").
        with _q.quantize_scope(), keras.utils.custom_object_scope(layer_classes(annotated)):
            return _q.quantize_apply(annotated, configs.guard_scheme(scheme_for(scheme))), records
    except Exception as e:  # noqa: BLE001 - TF-MOT must never crash the caller with its own error
        raise _TfMotError(e) from None


def layer_classes(model):
    """``{class name: class}`` of the layers of ``model`` that ``tf_keras.layers`` does not export.

    Keras rebuilds a model from its config by class name; application-private
    layers (ConvNeXt's ``LayerScale``, ``StochasticDepth``) are found only
    when they are in a custom-object scope.

    Example:
        >>> from tfcompress._keras import keras
        >>> layer_classes(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
        {}
    """
    out = {}
    for layer in model.layers:
        layers = layer.layers if isinstance(layer, keras.Model) else [layer]
        for l in layers:
            for cls in (type(l), type(getattr(l, "layer", None))):  # a wrapper and what it wraps
                if cls is not type(None) and getattr(keras.layers, cls.__name__, None) is not cls:
                    out[cls.__name__] = cls
    return out
