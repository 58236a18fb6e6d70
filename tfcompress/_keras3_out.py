"""Compressed models out: back to Keras 3, and saved to a file that reloads.

tfcompress compresses tf_keras models (TF-MOT needs them); a user who brought a
Keras 3 model gets the result back as Keras 3 with :func:`to_keras3`, wherever
the compressed graph can be expressed there: pruned, clustered, penalised and
channel-pruned models are plain layers holding compressed weights. When the
layers still match the user's original model, the original is cloned and the
weights copied into it (nested sub-models, names and Keras 3-only options
kept); after channel pruning the smaller architecture is rebuilt from the
tf_keras config layer by layer. A QAT model holds TF-MOT fake-quantization
layers that Keras 3 has no equivalent of: its int8 ``.tflite`` is the
deliverable, and :func:`to_keras3` says so.

:func:`save` writes any result to a ``.keras``/``.h5`` file that
:func:`tfcompress.load_model` reads back (and, for a Keras 3 file,
``keras.saving.load_model`` too), atomically.

Example:
    >>> result = tfcompress.optimize(k3_model, (x, y), recipe={"pruning": {}})  # doctest: +SKIP
    >>> k3 = result.to_keras3()  # doctest: +SKIP
    >>> result.save("pruned.keras")  # a Keras 3 file, as the input was  # doctest: +SKIP
"""

import os
import tempfile
import warnings

import numpy as np

from tfcompress._keras import custom_objects, keras
from tfcompress._keras3 import init_keywords
from tfcompress._model import check_model, is_keras3_model
from tfcompress.errors import OutputError, UnsupportedModelError, first_line
from tflite_export._atomic import atomic_write_bytes
from tflite_export.errors import ExportError

__all__ = ["to_keras3", "save", "reloadable_qat", "wrapper_kind", "SAVE_EXTENSIONS"]

#: File endings :func:`save` writes.
SAVE_EXTENSIONS = (".keras", ".h5", ".hdf5")

_QAT = ("QuantizeLayer", "QuantizeWrapper", "QuantizeWrapperV2", "QuantizeAnnotate")
_WRAPPERS = {"PruneLowMagnitude": "pruning", "ClusterWeights": "clustering"}
# tf_keras config keys Keras 3 does not take, dropped when they hold these values.
_DROPPABLE = {"groups": (1,), "time_major": (False,), "implementation": (1, 2), "input_length": (None,),
              "batch_input_shape": None, "ragged": (False,)}
_RENAMED = {("LeakyReLU", "alpha"): "negative_slope"}
# SeparableConv2D's tf_keras config repeats Conv's unused kernel_* options.
_UNUSED = {"SeparableConv2D": ("kernel_initializer", "kernel_regularizer", "kernel_constraint")}


def wrapper_kind(model):
    """``"quantization"``, ``"pruning"``, ``"clustering"`` or None: the TF-MOT
    wrappers ``model`` still holds (QAT first, as it decides what can be done).

    Example:
        >>> wrapper_kind(result.model)  # doctest: +SKIP
        'quantization'
    """
    names = {type(l).__name__ for l in model.submodules if isinstance(l, keras.layers.Layer)}
    if names & set(_QAT):
        return "quantization"
    return next((kind for cls, kind in _WRAPPERS.items() if cls in names), None)


def _qat_error(what):
    return UnsupportedModelError(
        f"{what}: after quantization-aware training the int8 .tflite is the deliverable (export it with "
        "tflite_export.export(result.model, 'm.tflite', mode='int8', representative_data=x) or tfcompress "
        "export); Keras 3 has no equivalent of TF-MOT's fake-quantization layers. Save a reloadable tf_keras "
        "copy with result.save('m.h5'), or leave quantization out of the recipe for a Keras 3 model."
    )


def _plain(v):
    """Config values as plain Python (tf_keras's ListWrapper/tuples → lists)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)) or type(v).__name__ == "ListWrapper":
        return [_plain(x) for x in v]
    return v


def _accepted(cls):
    return init_keywords(cls) | {"name", "trainable", "dtype"}


def _layer_config(layer, cls):
    """``layer``'s tf_keras config in the form ``cls`` (Keras 3) takes."""
    kind = type(layer).__name__
    config = {k: _plain(v) for k, v in layer.get_config().items() if k not in _UNUSED.get(kind, ())}
    if kind == "BatchNormalization" and isinstance(config.get("axis"), list) and len(config["axis"]) == 1:
        config["axis"] = config["axis"][0]  # Keras 3 takes one axis
    ok = _accepted(cls)
    out = {}
    for k, v in config.items():
        k = _RENAMED.get((kind, k), k)
        if k in ok:
            out[k] = v
        elif k in _DROPPABLE and (_DROPPABLE[k] is None or v in _DROPPABLE[k]):
            continue
        elif v is None or v is False:
            continue
        else:
            raise UnsupportedModelError(
                f"layer {layer.name!r} ({kind}): option {k}={v!r} has no Keras 3 equivalent, so the result "
                "cannot be offered as Keras 3; use result.model (tf_keras) or result.save('m.h5')."
            )
    return out


def _keras3_layer(layer, k3):
    kind = type(layer).__name__
    cls = getattr(k3.layers, kind, None)
    if cls is None or not (type(layer).__module__ or "").startswith("tf_keras"):
        raise UnsupportedModelError(
            f"layer {layer.name!r} is a {kind}, which has no Keras 3 counterpart, so the result cannot be "
            "offered as Keras 3; use result.model (tf_keras) or result.save('m.h5')."
        )
    try:
        return cls.from_config(_layer_config(layer, cls))
    except UnsupportedModelError:
        raise
    except Exception as e:  # noqa: BLE001 - Keras 3 raises many types on a config it rejects
        raise UnsupportedModelError(f"layer {layer.name!r} ({kind}) cannot be rebuilt in Keras 3 "
                                    f"({first_line(e)}); use result.model (tf_keras) or result.save('m.h5').") from None


def _rebuild(model, k3):
    """A Keras 3 model with ``model``'s (flat) graph: each tf_keras layer rebuilt from its config."""
    layers = {l.name: l for l in model.layers}
    made = {}
    if isinstance(model, keras.Sequential):
        body = [_keras3_layer(l, k3) for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
        for layer, new in zip([l for l in model.layers if not isinstance(l, keras.layers.InputLayer)], body):
            made[layer.name] = new
        out = k3.Sequential([k3.Input(batch_shape=tuple(model.input_shape))] + body, name=model.name)
        return out, made
    config = model.get_config()
    tensors = {}
    pending = list(config["layers"])
    while pending:
        progressed, rest = False, []
        for entry in pending:
            name = entry["name"]
            layer = layers[name]
            if isinstance(layer, keras.layers.InputLayer):
                tensors[(name, 0, 0)] = k3.Input(batch_shape=tuple(layer.get_config()["batch_input_shape"]),
                                                 dtype=layer.dtype, name=name)
                progressed = True
                continue
            done = [n for n in range(len(entry["inbound_nodes"])) if (name, n, 0) in tensors]
            node_index = len(done)
            node = entry["inbound_nodes"][node_index]
            refs = [(r[0], r[1], r[2]) for r in node]
            if not all(r in tensors for r in refs):
                rest.append(entry)
                continue
            if name not in made:
                made[name] = _keras3_layer(layer, k3)
            new = made[name]
            kwargs = node[0][3] if len(node[0]) > 3 and node[0][3] else {}
            args = [tensors[r] for r in refs]
            outs = new(args if len(args) > 1 else args[0], **kwargs)
            for i, t in enumerate(outs if isinstance(outs, (list, tuple)) else [outs]):
                tensors[(name, node_index, i)] = t
            progressed = True
            if node_index + 1 < len(entry["inbound_nodes"]):
                rest.append(entry)
        if not progressed:
            raise UnsupportedModelError("the compressed graph could not be rebuilt in Keras 3 (a layer input is "
                                        "never produced); use result.model (tf_keras) or result.save('m.h5').")
        pending = rest

    def refs(spec):
        return [tensors[(r[0], r[1], r[2])] for r in (spec if isinstance(spec[0], list) else [spec])]

    inputs, outputs = refs(config["input_layers"]), refs(config["output_layers"])
    out = k3.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0],
                   name=model.name)
    return out, made


def _keras3_leaves(model):
    """name -> layer for every non-model layer of a Keras 3 model, nested models walked."""
    out = {}
    for layer in model.layers:
        if is_keras3_model(layer):
            out.update(_keras3_leaves(layer))
        else:
            out[layer.name] = layer
    return out


def _same_layout(model, leaves):
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        other = leaves.get(layer.name)
        if other is None or type(other).__name__ != type(layer).__name__:
            return False
        if [tuple(w.shape) for w in layer.weights] != [tuple(w.shape) for w in other.weights]:
            return False
    return len([n for n, l in leaves.items() if type(l).__name__ != "InputLayer"]) == len(
        [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)])


def _copy_weights(model, leaves):
    for layer in model.layers:
        target = leaves.get(layer.name)
        if target is None or not layer.weights:
            continue
        values = [np.asarray(v) for v in layer.get_weights()]
        if [v.shape for v in values] != [tuple(w.shape) for w in target.weights]:
            raise UnsupportedModelError(f"layer {layer.name!r}: the compressed weights do not fit the Keras 3 "
                                        "layer; use result.model (tf_keras) or result.save('m.h5').")
        target.set_weights(values)


def to_keras3(model, original=None):
    """The Keras 3 version of a compressed tf_keras model.

    Args:
        model: a tf_keras Sequential or Functional model without TF-MOT
            wrappers (``result.model`` after pruning, clustering, penalty or
            channel pruning).
        original: the Keras 3 model the compression started from. When its
            layers still match (same names and weight shapes), it is cloned
            and the compressed weights copied in, so nested sub-models and
            Keras 3-only options are kept. Defaults to `None` (the
            architecture is rebuilt from ``model``'s config).

    Returns:
        A new Keras 3 model (uncompiled) whose outputs match ``model``'s.

    Raises:
        UnsupportedModelError: a QAT model (its ``.tflite`` is the
            deliverable), a model still holding pruning/clustering wrappers,
            or a layer with no Keras 3 counterpart.

    Example:
        >>> result = tfcompress.optimize(k3_model, (x, y), recipe={"channels": {"ratio": 0.5}})  # doctest: +SKIP
        >>> to_keras3(result.model, original=k3_model).count_params()  # doctest: +SKIP
        1234
    """
    check_model(model)
    kind = wrapper_kind(model)
    if kind == "quantization":
        raise _qat_error("a QAT model cannot be offered as Keras 3")
    if kind is not None:
        raise UnsupportedModelError(f"the model still holds {kind} wrappers: strip them first "
                                    "(tfcompress.optimize returns stripped models).")
    import keras as k3  # Keras 3, only when asked for

    if original is not None and is_keras3_model(original):
        leaves = _keras3_leaves(original)
        if _same_layout(model, leaves):
            copy = k3.models.clone_model(original)
            _copy_weights(model, _keras3_leaves(copy))
            return copy
    rebuilt, made = _rebuild(model, k3)
    _copy_weights(model, made)
    return rebuilt


def _write(path, writer):
    """Let ``writer(tmp_path)`` write a file, then move its bytes to ``path`` atomically."""
    ext = os.path.splitext(path)[1].lower()
    with tempfile.TemporaryDirectory(prefix="tfcompress-save-") as tmp:
        name = os.path.join(tmp, "model" + ext)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*HDF5.*legacy")  # .h5 is what reloads QAT models
            writer(name)
        with open(name, "rb") as f:
            data = f.read()
    try:
        return atomic_write_bytes(path, data)
    except ExportError as e:
        raise OutputError(str(e)) from None


def _basename(weight):
    return weight.name.rsplit("/", 1)[-1]


def reloadable_qat(model):
    """``model`` (a QAT model) in the form its saved config rebuilds.

    TF-MOT's cluster-preserving QAT (CQAT, PCQAT) adds training-only variables
    (centroids, pulling indices, original weights) that its saved config does
    not describe, so the file would not reload. Between training steps the
    layer kernels already hold the clustered values, so the plain QAT model the
    config describes, given the same kernels and quantization ranges, computes
    the same outputs and converts to the same int8 ``.tflite``; only the
    cluster-preserving training state is left out. Other QAT models are
    returned as they are.

    Example:
        >>> plain = reloadable_qat(result.model)  # doctest: +SKIP
    """
    with keras.utils.custom_object_scope(custom_objects()):
        plain = keras.models.clone_model(model)
    if [len(l.weights) for l in plain.layers] == [len(l.weights) for l in model.layers]:
        return model
    for src, dst in zip(model.layers, plain.layers):
        values = {_basename(w): w for w in src.weights}
        missing = [_basename(w) for w in dst.weights if _basename(w) not in values]
        if missing:
            raise UnsupportedModelError(f"layer {src.name!r}: the QAT model cannot be rebuilt for saving "
                                        f"(no {', '.join(missing)}); export its .tflite instead.")
        dst.set_weights([np.asarray(values[_basename(w)].numpy()) for w in dst.weights])
    return plain


def save(model, path, original=None, keras3=None):
    """Save a compressed model to a ``.keras``/``.h5`` file that reloads.

    :func:`tfcompress.load_model` reads every file written here (QAT models
    included: TF-MOT's layers are registered with the loader; CQAT/PCQAT
    models are saved as the plain QAT model with the same outputs, see
    :func:`reloadable_qat`). A Keras 3 file is also read by
    ``keras.saving.load_model``.

    Args:
        model: the compressed tf_keras model (``result.model``).
        path: the file to write; its ending picks the format: ``.keras`` or
            ``.h5``/``.hdf5``.
        original: the Keras 3 model the compression started from, if any.
            Defaults to `None`.
        keras3: write a Keras 3 file (True) or a tf_keras file (False).
            Defaults to `None`: Keras 3 when ``original`` is a Keras 3 model
            and the model is not a QAT model, else tf_keras.

    Returns:
        The absolute path written.

    Raises:
        OutputError: an unknown file ending, a QAT model to a ``.keras``
            file (tf_keras cannot reload those: use ``.h5``), or a folder
            that cannot be written.
        UnsupportedModelError: ``keras3=True`` for a QAT model or a layer
            Keras 3 lacks.

    Example:
        >>> save(result.model, "pruned.h5")  # doctest: +SKIP
        '/home/me/pruned.h5'
    """
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise OutputError(f"save needs a file path ending in .keras or .h5, got {type(path).__name__}.")
    path = os.path.abspath(os.fsdecode(path))
    ext = os.path.splitext(path)[1].lower()
    if ext not in SAVE_EXTENSIONS:
        raise OutputError(f"cannot save to {path}: the file must end in .keras or .h5 (the format is "
                          "chosen by the ending).")
    qat = wrapper_kind(model) == "quantization"
    if keras3 is None:
        keras3 = is_keras3_model(original) and not qat
    if keras3:
        if qat:
            raise _qat_error("cannot save a QAT model as Keras 3")
        k3_model = to_keras3(model, original)
        return _write(path, k3_model.save)
    if qat and ext == ".keras":
        raise OutputError(f"cannot save a QAT model to {path}: tf_keras cannot reload QAT models from .keras "
                          "files; save it to a .h5 file (its int8 .tflite is the deliverable).")
    if qat:
        model = reloadable_qat(model)
    options = {"include_optimizer": False} if ext != ".keras" else {}  # .keras has no such option
    return _write(path, lambda p: model.save(p, **options))
