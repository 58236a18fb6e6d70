"""The one Keras boundary of tfcompress.

TF-MOT only works with Keras 2 (``tf_keras``). Every other module imports
``keras``, ``tf`` and ``tfmot`` from here, never ``tensorflow.keras`` or
``keras`` directly, so the choice of Keras lives in one place. This works even
when the user imported TensorFlow (and Keras 3) first: we import ``tf_keras`` by
name instead of going through ``tf.keras``.

It is a leaf: it imports nothing of tfcompress. What tfcompress does with a
model (checks, Keras 3 translation, flattening, cloning) is in
:mod:`tfcompress._model`.
"""

import contextlib
import logging
import os
import sys
import warnings

# Quiet TensorFlow's C++ logs unless the user asked for them. Must happen before
# TensorFlow is first imported to have any effect.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# TensorFlow 2.21's oneDNN kernels kill the process (SIGSEGV) while training a 1x1
# convolution with stride 2 on AVX-512 CPUs. oneDNN stays on (it is 1.5-2x faster per
# epoch): the training of exactly those layers goes around the kernel instead
# (_model.onednn_safe_training). A TF_ENABLE_ONEDNN_OPTS the user set is theirs.
ONEDNN_ON = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")


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
    import tensorflow_model_optimization as tfmot  # noqa: E402
    import tf_keras as keras  # noqa: E402

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
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as quantize_registry,
    )
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry  # noqa: E402


tf.get_logger().setLevel("ERROR")


class _TfmotChatter(logging.Filter):
    """TF-MOT's sparsity-preserving QAT logs on the root logger, once per layer without zeros, that it quantizes
    that layer as plain cluster-preserving QAT: the right thing, nothing for the user to do."""

    def filter(self, record):
        return "does not contain zero weights, so apply CQAT instead" not in record.getMessage()


logging.getLogger().addFilter(_TfmotChatter())
try:  # absl prints "WARNING: All log messages before absl::InitializeLog()".
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
except ImportError:  # pragma: no cover
    pass

__all__ = [
    "tf", "keras", "tfmot", "custom_objects", "quiet_native_logs", "clustering_registry",
    "clustering_experimental", "quantize_configs", "quantize_registry", "prune_registry", "weights_h5_bytes",
    "forget_custom_gradients",
]


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


@contextlib.contextmanager
def forget_custom_gradients():
    """Around a ``fit``: afterwards, unregister the gradient functions its tracing registered.

    Every trace of a train step registers a gradient function in TensorFlow's
    global gradient registry (``tf.custom_gradient`` in graph mode, used by the
    optimizer's gradient all-reduce) under a new ``CustomGradient-<uid>`` name,
    and never removes it: its closure holds the traced graph, so each ``fit`` of
    a new model keeps that model's whole train graph for the life of the
    process (tf-keras issue #286; MobileNetV2 alpha 0.35 at 32x32: ~67 MB a
    fit, which stopped a budget plan tuning 185 candidates at 19 GB). The
    entries are used while the step is traced, not when it runs, so dropping
    the ones registered inside the block keeps memory flat. A new trace (a
    recompile, a new input shape) registers its own.

    Example:
        >>> with forget_custom_gradients():  # doctest: +SKIP
        ...     model.fit(x, y, epochs=1)
    """
    from tensorflow.python.framework import ops

    entries = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    before = set(entries) if isinstance(entries, dict) else None
    try:
        yield
    finally:
        if before is not None:
            for name in [k for k in entries if k not in before and str(k).startswith("CustomGradient-")]:
                del entries[name]


class _Bytes:
    """What ``H5IOStore`` writes its finished HDF5 image into instead of a zip archive."""

    data = b""

    def writestr(self, name, data):
        self.data = data


def weights_h5_bytes(model):
    """The model's weights as the bytes of a ``.weights.h5`` file, built in memory.

    ``model.save_weights("x.weights.h5")`` has HDF5 write the file itself; on a full
    disk HDF5 fails in its destructors and the process can die (SIGSEGV). Built in
    memory, the bytes go through one atomic, space-checked write instead, and
    ``model.load_weights`` reads the file as usual.

    Example:
        >>> data = weights_h5_bytes(model)  # doctest: +SKIP
        >>> data[:8]                         # doctest: +SKIP
        b'\\x89HDF\\r\\n\\x1a\\n'
    """
    from tf_keras.src.saving import saving_lib

    sink = _Bytes()
    store = saving_lib.H5IOStore("model.weights.h5", archive=sink, mode="w")
    try:
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                               visited_trackables=set())
    finally:
        store.close()
    return sink.data
