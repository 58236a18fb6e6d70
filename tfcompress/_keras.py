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


from tfcompress.errors import UnsupportedModelError  # noqa: E402

tf.get_logger().setLevel("ERROR")
try:  # absl prints "WARNING: All log messages before absl::InitializeLog()".
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
except ImportError:  # pragma: no cover
    pass

__all__ = ["tf", "keras", "tfmot", "is_keras3_model", "check_model", "custom_objects", "clone", "quiet_native_logs"]


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
            f"{type(model).__name__} is a Keras 3 model; tfcompress needs a tf_keras "
            "(Keras 2) model: build it with `import tf_keras as keras` or load it "
            "with tfcompress.load_model()."
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
    for scope in (tfmot.quantization.keras.quantize_scope(), tfmot.sparsity.keras.prune_scope()):
        for d in scope.custom_objects:  # a tuple of dicts
            objs.update(d)
    return objs


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
