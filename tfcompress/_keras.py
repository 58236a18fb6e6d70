"""The one Keras boundary of tfcompress.

TF-MOT only works with Keras 2 (``tf_keras``). Every other module imports
``keras``, ``tf`` and ``tfmot`` from here, never ``tensorflow.keras`` or
``keras`` directly, so the choice of Keras lives in one place. This works even
when the user imported TensorFlow (and Keras 3) first: we import ``tf_keras`` by
name instead of going through ``tf.keras``.
"""

import contextlib
import os
import sys
import warnings

# Quiet TensorFlow's C++ logs unless the user asked for them. Must happen before
# TensorFlow is first imported to have any effect.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


@contextlib.contextmanager
def quiet_native_logs():
    """Silence C++ logs written straight to file descriptor 2 (the TFLite
    converter's "fully_quantize: ..." line, LiteRT's "Created TensorFlow Lite
    XNNPACK delegate"), unless TF_CPP_MIN_LOG_LEVEL is set to 0 (``--debug``).
    Python exceptions still propagate normally."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
                yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


# TensorFlow prints C++ start-up lines (oneDNN, CUDA) before any log level
# applies; hide them unless the user asked for logs.
with quiet_native_logs():
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402
    import tensorflow_model_optimization as tfmot  # noqa: E402
    # TF-MOT internals tfcompress builds on (layer registries, 8-bit configs,
    # experimental clustering): imported here only, so a TF-MOT upgrade that
    # moves them breaks one module.
    from tensorflow_model_optimization.python.core.clustering.keras import (  # noqa: E402
        clustering_registry,
    )
    from tensorflow_model_optimization.python.core.clustering.keras.experimental import (  # noqa: E402
        cluster as clustering_experimental,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
        default_8bit_quantize_configs as quantize_configs,
        default_8bit_quantize_registry as quantize_registry,
    )
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry  # noqa: E402


from tfcompress.errors import UnsupportedModelError, first_line  # noqa: E402

tf.get_logger().setLevel("ERROR")
try:  # absl prints "WARNING: All log messages before absl::InitializeLog()".
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
except ImportError:  # pragma: no cover
    pass

__all__ = [
    "tf", "keras", "tfmot", "is_keras3_model", "check_model", "coerce_model", "flatten_nested",
    "custom_objects", "clone", "quiet_native_logs", "clustering_registry", "clustering_experimental",
    "quantize_configs", "quantize_registry", "prune_registry",
]


def is_keras3_model(obj):
    """True when ``obj`` is a Keras 3 (``keras`` package) model."""
    for cls in type(obj).__mro__:
        mod = cls.__module__ or ""
        if cls.__name__ in ("Model", "Sequential", "Functional") and (
            mod == "keras" or mod.startswith("keras.")
        ):
            return True
    return False


def check_model(model):
    """Raise :class:`UnsupportedModelError` unless ``model`` is a tf_keras
    Sequential or Functional model.

    Args:
        model: the object to check.

    Returns:
        The model, unchanged.

    Raises:
        UnsupportedModelError: with a one-line message saying what to do.
    """
    if is_keras3_model(model):
        raise UnsupportedModelError(
            f"{type(model).__name__} is a Keras 3 model; this step needs a tf_keras "
            "(Keras 2) model: tfcompress.optimize and tfcompress.check translate it for you, "
            "or call tfcompress._keras3.to_tf_keras(model) / tfcompress.load_model(path)."
        )
    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(
            f"expected a tf_keras Model, got {type(model).__name__}: pass a "
            "tf_keras Sequential or Functional model."
        )
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise UnsupportedModelError(
            f"{type(model).__name__} is a subclassed model; tfcompress supports "
            "Sequential and Functional tf_keras models: rebuild it with "
            "keras.Sequential([...]) or keras.Model(inputs, outputs)."
        )
    if not model.built or not model.inputs:
        raise UnsupportedModelError(
            "the model has no defined input shape: give its first layer an "
            "Input(shape=...) or call model.build(input_shape) first."
        )
    return model


def custom_objects():
    """Custom objects needed to load models saved mid-compression
    (pruning, clustering and QAT wrappers)."""
    objs = {}
    scopes = (tfmot.quantization.keras.quantize_scope(), tfmot.sparsity.keras.prune_scope(),
              tfmot.clustering.keras.cluster_scope())
    for scope in scopes:
        for d in scope.custom_objects:  # a tuple of dicts
            objs.update(d)
    return objs


def coerce_model(model):
    """The tf_keras model tfcompress works on: Keras 3 models translated
    (:func:`tfcompress._keras3.to_tf_keras`), nested Sequential/Functional
    sub-models flattened into the outer graph (:func:`flatten_nested`).

    Args:
        model: a tf_keras or Keras 3 Sequential or Functional model.

    Returns:
        ``model`` itself when nothing needs changing, else a new model sharing
        or copying its weights (the input is never modified).

    Raises:
        UnsupportedModelError: as :func:`check_model`, with what to do.

    Example:
        >>> flat = coerce_model(transfer_model)  # doctest: +SKIP
        >>> any(isinstance(l, keras.Model) for l in flat.layers)  # doctest: +SKIP
        False
    """
    if is_keras3_model(model):
        from tfcompress._keras3 import to_tf_keras

        model = to_tf_keras(model)
    return flatten_nested(check_model(model))


def _graph_model(layer):
    return isinstance(layer, keras.Model) and (
        isinstance(layer, keras.Sequential) or getattr(layer, "_is_graph_network", False))


def _replay(model, inputs):
    # Re-run model's graph on new symbolic inputs, calling the layers of
    # nested graph models directly instead of the nested model.
    usage = model._tensor_usage_count
    tensors = {}
    for x, y in zip(model.inputs, inputs):
        tensors[str(id(x))] = [y] * usage[str(id(x))]
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or any(t not in tensors for t in node.flat_input_ids):
                continue
            args, kwargs = node.map_arguments(tensors)
            if _graph_model(node.layer):
                outputs = _replay(node.layer, tf.nest.flatten(args[0]))
                outputs = tf.nest.pack_sequence_as(node.layer._nested_outputs, outputs)
            else:
                outputs = node.layer(*args, **kwargs)
            for x_id, y in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
                tensors[x_id] = [y] * usage[x_id]
    return [tensors[str(id(x))].pop() for x in model.outputs]


def flatten_nested(model):
    """``model`` with nested Sequential/Functional sub-models (a transfer-
    learning backbone) replaced by their layers, so pruning and QAT wrap
    the backbone's layers too. Layers (and so weights) are shared with
    ``model``; a model without nested models is returned as is.

    Args:
        model: a tf_keras Sequential or Functional model.

    Returns:
        A flat Functional model named like ``model``.

    Raises:
        UnsupportedModelError: a nested model that cannot be inlined (e.g. a
            layer name used both inside and outside it).

    Example:
        >>> flat = flatten_nested(model)  # doctest: +SKIP
    """
    nested = [l for l in model.layers if _graph_model(l)]
    if not nested:
        return model
    names = [l.name for l in model.layers if not _graph_model(l)]
    for sub in nested:
        names += [l.name for l in flatten_nested(sub).layers if not isinstance(l, keras.layers.InputLayer)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UnsupportedModelError(
            f"cannot flatten nested model(s) {', '.join(l.name for l in nested)}: layer name(s) "
            f"{', '.join(dupes[:5])} are used more than once; give the layers unique names."
        )
    try:
        outs = _replay(model, list(model.inputs))
        flat = keras.Model(model.inputs, outs[0] if len(outs) == 1 else outs, name=model.name)
    except Exception as e:  # noqa: BLE001 - Keras raises many types here
        raise UnsupportedModelError(
            f"cannot flatten nested model(s) {', '.join(l.name for l in nested)} ({first_line(e)}): "
            "rebuild the model as one Functional graph."
        ) from None
    return flat


def clone(model, clone_function=None):
    """A deep copy of ``model`` with its own weights, optionally mapping layers.

    ``keras.models.clone_model`` hands the *original* layers to
    ``clone_function``; wrapping those would share (and so change) the user's
    weights. We first clone plainly, copy weights, then map the copy's layers.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    if clone_function is None:
        return copy
    return keras.models.clone_model(copy, clone_function=clone_function)
