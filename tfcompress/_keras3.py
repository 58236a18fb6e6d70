"""The Keras 3 → tf_keras bridge.

TF-MOT only works with tf_keras (Keras 2). A Keras 3 Sequential or Functional
model built from built-in layers is translated here: its config is rewritten
in the tf_keras format (dtype policies, input shapes, serialised initialisers,
inbound nodes), the tf_keras model is built from it, and the weights are copied
layer by layer. Anything that cannot be translated faithfully (subclassed
models, Lambda layers, ``keras.ops`` calls in a Functional graph, custom
layers) raises :class:`~tfcompress.errors.UnsupportedModelError` saying what to
do. Data-augmentation layers (``RandomFlip``, ``RandomRotation``, ``RandomCrop``,
``MixUp``, ...) are identity at inference in Keras 3, so they are dropped, with
a warning naming them (:func:`augmentation_layers` lists them for reports);
nothing else is dropped.

Example:
    >>> import keras  # Keras 3
    >>> from tfcompress._keras3 import to_tf_keras
    >>> k3 = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> type(to_tf_keras(k3)).__module__.split(".")[0]
    'tf_keras'
"""

import inspect
import warnings

import numpy as np

from tfcompress._keras import keras
from tfcompress.errors import UnsupportedModelError, first_line
from tflite_export.loader import is_keras3_model  # one predicate for both packages

__all__ = ["to_tf_keras", "translate_config", "is_keras3_model", "augmentation_layers", "AUGMENTATION"]

# Keys every tf_keras layer accepts through ``Layer.__init__(**kwargs)``.
_BASE_KWARGS = {
    "name", "trainable", "dtype", "dynamic", "input_dim", "input_shape",
    "batch_input_shape", "batch_size", "weights", "activity_regularizer", "autocast",
}
# Keras 3-only keys that are safe to drop when they hold these values.
_DROPPABLE = {
    "optional": (False,),
    "use_cudnn": ("auto", True, False),
    "quantization_config": (None,),
    "lora_rank": (None,),
    "lora_alpha": (None,),
    "input_axes": (None,),
    "output_axes": (None,),
}
_OBJECT_MODULES = {
    "keras.initializers": "initializers",
    "keras.regularizers": "regularizers",
    "keras.constraints": "constraints",
}
_MODEL_CLASSES = ("Functional", "Sequential", "Model")
# Keras 3 layers that only act in training and return their input unchanged at
# inference (checked on Keras 3.15, RandomCrop included: it crops only when
# training). They are dropped in translation: the tf_keras model is the
# inference graph. AutoContrast, Equalization, Rescaling, Normalization and
# Resizing change inference outputs and are kept (or refused).
AUGMENTATION = frozenset({
    "RandomBrightness", "RandomColorDegeneration", "RandomColorJitter", "RandomContrast", "RandomCrop",
    "RandomElasticTransform", "RandomErasing", "RandomFlip", "RandomGaussianBlur", "RandomGrayscale",
    "RandomHue", "RandomInvert", "RandomPerspective", "RandomPosterization", "RandomRotation",
    "RandomSaturation", "RandomSharpness", "RandomShear", "RandomTranslation", "RandomZoom",
    "MixUp", "CutMix", "RandAugment", "AugMix", "Solarization",
})


def _fail(msg):
    raise UnsupportedModelError(msg)


def init_keywords(cls):
    """The named constructor keywords of ``cls`` and its bases (either Keras)."""
    names = set()
    for c in cls.__mro__:
        if c is object or "__init__" not in vars(c):
            continue
        try:
            params = inspect.signature(c.__init__).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins
            continue
        names.update(p for p, v in params.items() if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL))
    names.discard("self")
    return names


def _accepted(cls):
    """Constructor keywords a tf_keras class accepts (through its MRO)."""
    names = init_keywords(cls)
    if issubclass(cls, keras.layers.Layer):
        names |= _BASE_KWARGS
    return names


def _filter(cls, config, where):
    """Drop Keras 3-only keys tf_keras does not know, when that is harmless."""
    ok = _accepted(cls)
    out = {}
    for k, v in config.items():
        if k in ok:
            out[k] = v
        elif k in _DROPPABLE and (v in _DROPPABLE[k] or v is None):
            continue
        elif v is None or v is False or v == {} or v == []:
            continue
        else:
            _fail(
                f"{where}: Keras 3 option {k}={v!r} has no tf_keras equivalent; "
                "rebuild the model with `import tf_keras as keras` or without that option."
            )
    return out


def _dtype(value):
    if isinstance(value, dict):  # DTypePolicy / FloatDTypePolicy
        return (value.get("config") or {}).get("name", "float32")
    return value


def _object(d, where):
    """A serialised initializer / regularizer / constraint in tf_keras form."""
    module = d.get("module") or ""
    kind = _OBJECT_MODULES.get(module)
    if kind is None:
        _fail(f"{where}: {d.get('class_name')} from {module or 'an unknown module'} has no tf_keras "
              "equivalent; use built-in Keras objects.")
    cls = getattr(getattr(keras, kind), d["class_name"], None)
    if cls is None:
        _fail(f"{where}: {kind[:-1]} {d['class_name']} does not exist in tf_keras; use a built-in one.")
    return {"class_name": d["class_name"], "config": _filter(cls, _values(d.get("config") or {}, where), where)}


def _values(config, where):
    out = {}
    for k, v in config.items():
        if k == "dtype":
            out[k] = _dtype(v)
        elif isinstance(v, dict) and "class_name" in v and "module" in v:
            if v["module"] == "keras.layers" or v["class_name"] in _MODEL_CLASSES:
                out[k] = _layer(v, f"{where}.{k}")  # Bidirectional / TimeDistributed / RNN cells
            else:
                out[k] = _object(v, f"{where}.{k}")
        elif isinstance(v, list) and v and all(isinstance(i, dict) and "class_name" in i for i in v):
            out[k] = [_layer(i, f"{where}.{k}") for i in v]  # StackedRNNCells
        else:
            out[k] = v
    return out


def _layer(entry, where=None):
    """One serialised Keras 3 layer (or model) in the tf_keras format."""
    cls_name = entry.get("class_name")
    where = where or f"layer {entry.get('name') or (entry.get('config') or {}).get('name')!r}"
    config = entry.get("config") or {}
    if cls_name in _MODEL_CLASSES:
        return {"class_name": cls_name, "config": translate_config(config, cls_name)}
    if cls_name == "Lambda":
        _fail(f"{where} is a Lambda layer (Python code): replace it with built-in layers; "
              "tfcompress cannot translate or compress code it cannot read.")
    module = entry.get("module") or ""
    cls = getattr(keras.layers, cls_name, None) if module.startswith("keras.layers") or not module else None
    if cls is None:
        what = f"keras.ops call ({cls_name})" if ".ops." in module else f"{cls_name} ({module or 'custom'})"
        _fail(f"{where} is a {what} with no tf_keras equivalent: build the model from built-in "
              "layers (use layers instead of keras.ops in Functional models) or with `import tf_keras`.")
    config = dict(config)
    if cls_name == "InputLayer":
        if "batch_shape" in config:
            config["batch_input_shape"] = config.pop("batch_shape")
        elif "shape" in config:
            config["batch_input_shape"] = [None] + list(config.pop("shape"))
    return {"class_name": cls_name, "config": _filter(cls, _values(config, where), where)}


def _tensor_ref(arg, kwargs, where, nested):
    if not (isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__"):
        _fail(f"{where} takes a constant or non-tensor positional argument; tfcompress can only "
              "translate layers called on Keras tensors.")
    name, node, index = arg["config"]["keras_history"]
    # tf_keras counts a nested model's own input node as node 0; Keras 3 does not.
    return [name, node + (name in nested), index, kwargs]


def _inbound(nodes, where, nested):
    out = []
    for node in nodes:
        if isinstance(node, list):  # already in the tf_keras format
            out.append(node)
            continue
        args, kwargs = node.get("args", []), dict(node.get("kwargs") or {})
        if len(args) != 1:
            _fail(f"{where} is called with {len(args)} positional inputs; tfcompress translates "
                  "layers called on one tensor or one list of tensors.")
        if any(isinstance(v, dict) and v.get("class_name") == "__keras_tensor__" for v in kwargs.values()):
            _fail(f"{where} takes a tensor as a keyword argument (e.g. mask=); tfcompress cannot translate it.")
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        arg = args[0]
        if isinstance(arg, (list, tuple)):
            out.append([_tensor_ref(a, kwargs, where, nested) for a in arg])
        else:
            out.append([_tensor_ref(arg, kwargs, where, nested)])
    return out


def _io_layers(value, nested):
    # Keras 3 numbers a nested model's nodes here by its own node list: a
    # Functional's construction node counts, a Sequential has none. tf_keras
    # always counts the nested model's own node first.
    if isinstance(value, dict):  # named inputs or outputs: {name: [layer, node, tensor]}
        return {k: _io_layers(v, nested)[0] for k, v in value.items()}
    if value and isinstance(value[0], str):  # a single [name, node, tensor]
        value = [value]
    return [[v[0], v[1] + (nested.get(v[0]) == "Sequential"), v[2]] for v in value]


def _history(value):
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return value["config"]["keras_history"]
    return None


def _is_augmentation(entry):
    # An augmentation layer, or a nested model made only of them (the usual
    # ``data_augmentation = keras.Sequential([RandomFlip(), ...])``).
    if entry.get("class_name") in AUGMENTATION:
        return True
    if entry.get("class_name") in _MODEL_CLASSES:
        inner = [e for e in (entry.get("config") or {}).get("layers", []) if e.get("class_name") != "InputLayer"]
        return bool(inner) and all(_is_augmentation(e) for e in inner)
    return False


def _drop_augmentation(config, class_name):
    """``config`` without its augmentation layers (see :data:`AUGMENTATION`):
    every use of one's output is rewired to its input."""
    drop = [e for e in config["layers"] if _is_augmentation(e)]
    if not drop:
        return config
    keep = [e for e in config["layers"] if not _is_augmentation(e)]
    if class_name == "Sequential":
        return {**config, "layers": keep}
    source = {}  # (layer name, node index) -> the keras tensor it was called on
    for e in drop:
        name = e.get("name") or (e.get("config") or {}).get("name")
        for i, node in enumerate(e.get("inbound_nodes", [])):
            args = node.get("args", []) if isinstance(node, dict) else []
            if len(args) != 1 or _history(args[0]) is None:
                _fail(f"layer {name!r} ({e['class_name']}) is not called on one Keras tensor; "
                      "remove it from the model before compressing (it only acts in training).")
            source[(name, i)] = args[0]

    def resolve(v):
        h = _history(v)
        while h is not None and (h[0], h[1]) in source:
            v = source[(h[0], h[1])]
            h = _history(v)
        return v

    def rewire(v):
        if _history(v) is not None:
            return resolve(v)
        if isinstance(v, dict):
            return {k: rewire(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):  # Keras 3 configs hold both
            return [rewire(x) for x in v]
        return v

    layers = [{**e, "inbound_nodes": rewire(e.get("inbound_nodes", []))} for e in keep]
    outputs = config["output_layers"]
    single = bool(outputs) and isinstance(outputs[0], str)
    refs = [outputs] if single else outputs
    new = []
    for ref in refs:
        if (ref[0], ref[1]) in source:
            ref = list(resolve(source[(ref[0], ref[1])])["config"]["keras_history"])
        new.append(ref)
    return {**config, "layers": layers, "output_layers": new[0] if single else new}


def augmentation_layers(model):
    """``[(name, class name)]`` of the augmentation layers a Keras 3 model
    loses in translation (nested models included).

    Example:
        >>> import keras
        >>> k3 = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.RandomFlip(name="flip")])
        >>> augmentation_layers(k3)
        [('flip', 'RandomFlip')]
    """
    out = []
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ in AUGMENTATION:
            out.append((layer.name, type(layer).__name__))
        elif hasattr(layer, "layers"):
            out.extend(augmentation_layers(layer))
    return out


def translate_config(config, class_name="Functional"):
    """Rewrite a Keras 3 ``Functional``/``Sequential`` config for tf_keras.

    Args:
        config: ``model.get_config()`` of a Keras 3 model.
        class_name: ``"Functional"`` or ``"Sequential"``. Defaults to
            `"Functional"`.

    Returns:
        A config ``tf_keras.Model.from_config`` (or ``Sequential.from_config``)
        accepts.

    Raises:
        UnsupportedModelError: a layer or option with no tf_keras equivalent.

    Example:
        >>> cfg = translate_config(k3_model.get_config())  # doctest: +SKIP
        >>> tf_keras.Model.from_config(cfg)  # doctest: +SKIP
    """
    if "layers" not in config:
        _fail("the model config has no layers: only Sequential and Functional models can be translated.")
    config = _drop_augmentation(config, class_name)
    nested = {e.get("name") or (e.get("config") or {}).get("name"): e["class_name"]
              for e in config["layers"] if e.get("class_name") in _MODEL_CLASSES}
    layers = []
    for entry in config["layers"]:
        t = _layer(entry)
        if class_name != "Sequential":
            t["name"] = entry.get("name") or t["config"].get("name")
            t["inbound_nodes"] = _inbound(entry.get("inbound_nodes", []), f"layer {t['name']!r}", nested)
        layers.append(t)
    out = {"name": config.get("name"), "layers": layers}
    if class_name == "Sequential":
        if config.get("build_input_shape") is not None:
            out["build_input_shape"] = config["build_input_shape"]
    else:
        out["input_layers"] = _io_layers(config["input_layers"], {})
        out["output_layers"] = _io_layers(config["output_layers"], nested)
    return out


def _kind(model):
    """"Sequential", "Functional", or None for a subclassed Keras 3 model."""
    import keras as k3  # only imported when a Keras 3 model is at hand

    if type(model) is k3.Sequential:
        return "Sequential"
    if type(model).__name__ == "Functional" and type(model).__module__.startswith("keras."):
        return "Functional"
    return None


def _copy_weights(src, dst, where=""):
    """Copy weights layer by layer (recursing into nested models)."""
    by_name = {l.name: l for l in src.layers}
    for layer in dst.layers:
        s = by_name.get(layer.name)
        if s is None:
            _fail(f"layer {where}{layer.name} has no Keras 3 counterpart after translation; "
                  "please report this model.")
        if isinstance(layer, keras.Model):
            _copy_weights(s, layer, f"{where}{layer.name}/")
            continue
        values = [np.asarray(v) for v in s.get_weights()]
        targets = layer.weights
        if len(values) != len(targets) or any(tuple(v.shape) != tuple(t.shape) for v, t in zip(values, targets)):
            _fail(
                f"layer {where}{layer.name} ({type(layer).__name__}): Keras 3 weights "
                f"{[tuple(v.shape) for v in values]} do not match tf_keras "
                f"{[tuple(t.shape) for t in targets]}; rebuild it with `import tf_keras as keras`."
            )
        layer.set_weights(values)


def to_tf_keras(model):
    """Translate a Keras 3 Sequential or Functional model to tf_keras.

    The tf_keras model has the same layers, names and weights, less the
    augmentation layers (identity at inference, dropped with a warning); its
    outputs match the Keras 3 model's inference outputs to float rounding. A
    tf_keras model is returned unchanged.

    Args:
        model: a Keras 3 (``keras`` package) Sequential or Functional model of
            built-in layers, built (it has an input shape).

    Returns:
        The equivalent tf_keras model (uncompiled).

    Raises:
        UnsupportedModelError: subclassed models, Lambda layers, ``keras.ops``
            calls, custom layers or options with no tf_keras equivalent.

    Example:
        >>> import keras
        >>> k3 = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> to_tf_keras(k3).output_shape
        (None, 2)
    """
    if isinstance(model, keras.Model):
        return model
    if not is_keras3_model(model):
        _fail(f"expected a Keras model, got {type(model).__name__}: pass a Sequential or Functional model.")
    kind = _kind(model)
    if kind is None:
        _fail(
            f"{type(model).__name__} is a subclassed Keras 3 model: tfcompress can only translate "
            "Sequential and Functional models; rebuild it with keras.Sequential([...]) or "
            "keras.Model(inputs, outputs) (or with `import tf_keras as keras`)."
        )
    if not model.built or (kind == "Functional" and not model.inputs):
        _fail("the Keras 3 model is not built: give it an Input(shape=...) or call model.build(shape) first.")
    try:
        config = model.get_config()
    except NotImplementedError:
        _fail(f"{type(model).__name__} cannot describe itself (get_config): rebuild it as a Sequential "
              "or Functional model of built-in layers.")
    translated = translate_config(config, kind)
    cls = keras.Sequential if kind == "Sequential" else keras.Model
    try:
        tfk = cls.from_config(translated)
    except UnsupportedModelError:
        raise
    except Exception as e:  # tf_keras raises many types on a config it rejects
        _fail(f"tf_keras could not rebuild the Keras 3 model ({first_line(e)}); rebuild it with "
              "`import tf_keras as keras`.")
    if kind == "Sequential" and not tfk.built:
        tfk.build((None,) + tuple(model.input_shape[1:]))
    _copy_weights(model, tfk)
    dropped = augmentation_layers(model)
    if dropped:
        warnings.warn("Keras 3 augmentation layers dropped (identity at inference): "
                      + ", ".join(f"{n} ({c})" for n, c in dropped), UserWarning, stacklevel=2)
    return tfk
