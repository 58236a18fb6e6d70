"""What tfcompress does with a model object: check it, coerce it, flatten it, clone it.

:func:`check_model` says whether tfcompress can work on a model;
:func:`coerce_model` gives the tf_keras model it works on (Keras 3 translated
by :mod:`tfcompress._keras3`, nested sub-models flattened by
:func:`flatten_nested`); :func:`clone` copies a model with its own weights.
Getting a model from a name or a file is :mod:`tfcompress.io`'s job.

Example:
    >>> from tfcompress._model import coerce_model
    >>> flat = coerce_model(model)  # doctest: +SKIP
"""

import contextlib
import functools
import gc

from tfcompress._keras import keras, tf, weights_h5_bytes
from tfcompress._keras3 import is_keras3_model, to_tf_keras
from tfcompress.errors import UnsupportedModelError, first_line
from tflite_export._atomic import atomic_write_bytes
from tflite_export.convert import LARGE_MODEL_BYTES  # one threshold for both packages

__all__ = ["save_weights", "is_keras3_model", "check_model", "coerce_model", "flatten_nested", "clone",
           "onednn_safe_training", "onednn_crash_layers", "release_memory", "own_scaling"]


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


def release_memory(model):
    """Free the models, optimizer slots and gradients a step left behind, when ``model`` is large.

    Keras models are reference cycles, so a stage's wrapped copies stay in
    memory until Python's cycle collector happens to run; for a large model
    that is several copies of its weights (VGG19 in ``optimize``: peak 2.15 GiB
    above the built model without, 1.98 with; 1.77 and 1.31 GiB held after;
    ``benchmarks/bench_memory.py``). A collection costs ~0.3 s whatever it finds, so models
    under :data:`LARGE_MODEL_BYTES` of weights are left to the collector.

    Example:
        >>> release_memory(model)  # doctest: +SKIP
    """
    if model is not None and 4 * model.count_params() >= LARGE_MODEL_BYTES:
        gc.collect()


def onednn_crash_layers(model):
    """Names of the layers TensorFlow 2.21's oneDNN kernels crash on while training:
    Conv1D/Conv2D with a kernel of size 1 and a stride above 1 (nested models included)."""
    return [m.name for m in getattr(model, "submodules", ()) if _at_risk(m)]


def _at_risk(layer):
    conv = isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D)) and not isinstance(
        layer, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose))
    return (conv and set(layer.kernel_size) == {1} and max(layer.strides) > 1
            and set(layer.dilation_rate) == {1})


def _sliced_convolution(layer, inputs, kernel):
    """A Conv1D/Conv2D of kernel size 1 and stride s whose kernel gradient is taken on the strided slice of its input.

    Of the strided convolution's three kernels only the kernel gradient
    (``Conv2DBackpropFilter``; a Conv1D is a Conv2D of height 1) crashes under oneDNN. The forward pass and
    the input gradient keep their strided kernels (measured safe on 100 shapes, 7-112 pixels, 3-64
    channels, both paddings), and the kernel gradient is the stride-1 one on the slice
    ``x[:, ::s, ::s, :]``: the same numbers (a size-1 kernel reads one pixel; "same" and "causal" pad
    nothing for it). An earlier form ran the whole convolution on the slice, whose own gradient (a
    full-size scatter) cost ResNet-8 about 12 % an epoch.
    """
    strides, fmt = list(layer.strides), layer._tf_data_format
    last = fmt.endswith("C")
    s2 = strides if len(strides) == 2 else [1] + strides  # a Conv1D as a Conv2D of height 1
    full = [1, *s2, 1] if last else [1, 1, *s2]

    @tf.custom_gradient
    def convolution(x, k):
        def grad(dy):
            x2, k2, dy2 = x, k, dy
            if len(strides) == 1:  # (N, W, C) -> (N, 1, W, C); (N, C, W) -> (N, C, 1, W)
                x2, k2, dy2 = tf.expand_dims(x, 1 if last else 2), k[None], tf.expand_dims(dy, 1 if last else 2)
            f2 = "NHWC" if last else "NCHW"
            dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x2), filter=k2, out_backprop=dy2, strides=full,
                                                padding="VALID", data_format=f2)
            sliced = x2[:, ::s2[0], ::s2[1], :] if last else x2[:, :, ::s2[0], ::s2[1]]
            dk = tf.raw_ops.Conv2DBackpropFilter(input=sliced, filter_sizes=tf.shape(k2), out_backprop=dy2,
                                                 strides=[1, 1, 1, 1], padding="VALID", data_format=f2)
            return (tf.reshape(dx, tf.shape(x)), tf.reshape(dk, tf.shape(k)))

        return tf.nn.convolution(x, k, strides=strides, padding="VALID", data_format=fmt), grad

    return convolution(inputs, kernel)


@contextlib.contextmanager
def onednn_safe_training(model):
    """Train ``model`` without the oneDNN kernel TensorFlow 2.21 crashes on (SIGSEGV while training
    a 1x1 convolution with stride 2 on AVX-512 CPUs, for some input sizes).

    For the ``with`` block every such convolution, inside pruning, clustering or QAT wrappers, a
    Distiller or a nested model included, takes its kernel gradient as a stride-1 convolution's on
    the strided slice of its input (:func:`_sliced_convolution`): exactly the same outputs and
    gradients; the forward pass and the input gradient keep their strided kernels. The
    layers themselves, their configs and weights do not change, so the deployable model and its
    ``.tflite`` file keep the original strided convolution. oneDNN stays on for everything else.

    Yields:
        The names of the convolutions computed that way.

    Example:
        >>> with onednn_safe_training(model):  # doctest: +SKIP
        ...     model.fit(x, y)
    """
    layers = [m for m in getattr(model, "submodules", ()) if _at_risk(m)]
    for layer in layers:  # an instance attribute: Conv.call uses self.convolution_op
        layer.convolution_op = functools.partial(_sliced_convolution, layer)
    try:
        yield [layer.name for layer in layers]
    finally:
        for layer in layers:
            layer.__dict__.pop("convolution_op", None)


def own_scaling(model):
    """The layer with which ``model`` scales its raw inputs itself, in words, or None.

    A model that starts with ``Rescaling(1/255)`` (the ``image_dataset_from_directory``
    pattern) or a ``Normalization`` takes raw pixels: ``scale="auto"`` must not
    divide them by 255 a second time. Layers without weights before it (resizing,
    cropping, augmentation) are looked through.

    Example:
        >>> from tfcompress._keras import keras
        >>> m = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten()])
        >>> own_scaling(m)
        "Rescaling layer 'rescaling'"
    """
    for layer in getattr(model, "layers", []):
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind in ("Rescaling", "Normalization"):
            return f"{kind} layer '{layer.name}'"
        if layer.weights or isinstance(layer, keras.Model):
            return None
    return None


def save_weights(model, path):
    """Save ``model``'s weights as the ``.weights.h5`` file ``path``, atomically and space-checked.

    The HDF5 image is built in memory (:func:`tfcompress._keras.weights_h5_bytes`), so
    a full disk fails the one write with an ``ExportError`` carrying ``ENOSPC``, never
    HDF5 inside this process. ``model.load_weights(path)`` reads it.

    Example:
        >>> save_weights(model, "trial_0/trained.weights.h5")  # doctest: +SKIP
    """
    return atomic_write_bytes(path, weights_h5_bytes(model))
