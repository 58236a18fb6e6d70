"""The one model loader of tflite_export and tfcompress, safe by default.

A saved model is read in three steps: :func:`read_config` reads its description
without building anything (the ``config.json`` of a ``.keras`` zip, the
``model_config`` attribute of an ``.h5`` file, the Keras metadata of a
SavedModel folder), :func:`check_safe` refuses what would run code while the model is
rebuilt (a ``Lambda`` layer however it is spelled, a module outside Keras:
see :mod:`tflite_export.trust`), unless the caller opts in, and
:func:`load_model` builds the tf_keras model. :func:`open_source` is the
exporter's entry: a SavedModel folder passes the same safety check and is then
converted from its graph (which runs no Python code of the file).

tflite_export works on its own: it knows TF-MOT's wrappers when TF-MOT is
installed, and refuses files saved by Keras 3. tfcompress, when imported,
registers what only it knows with :func:`register`: its custom objects and its
Keras 3 -> tf_keras translation, so both packages load every file through this
one path.

Example:
    >>> from tflite_export import loader
    >>> model = loader.load_model("trained.h5")  # doctest: +SKIP
"""

import json
import os
import zipfile

from .errors import ExportError, first_line
from .trust import unsafe_entries

__all__ = ["MODEL_EXTENSIONS", "register", "is_keras3_model", "read_config", "check_safe",
           "load_model", "open_source", "translate_keras3"]

#: File name endings of Keras model files.
MODEL_EXTENSIONS = (".keras", ".h5", ".hdf5")

_HOOKS = {"custom_objects": None, "translate_keras3": None}
_MODEL_CLASSES = ("Functional", "Sequential", "Model")


def register(custom_objects=None, translate_keras3=None):
    """Plug a caller's knowledge into the loader (tfcompress does it on import).

    Args:
        custom_objects: a function returning the ``{name: class}`` dict needed
            to rebuild saved layers. Defaults to `None` (TF-MOT's pruning,
            clustering and QAT wrappers when TF-MOT is installed).
        translate_keras3: a function turning a Keras 3 model into a tf_keras
            model. Defaults to `None` (Keras 3 models and files are refused).

    Example:
        >>> register(translate_keras3=my_translator)  # doctest: +SKIP
    """
    if custom_objects is not None:
        _HOOKS["custom_objects"] = custom_objects
    if translate_keras3 is not None:
        _HOOKS["translate_keras3"] = translate_keras3


def is_keras3_model(obj):
    """True when ``obj`` is a Keras 3 (``keras`` package) model.

    Example:
        >>> is_keras3_model(object())
        False
    """
    for cls in type(obj).__mro__:
        mod = cls.__module__ or ""
        if cls.__name__ in ("Model", "Sequential", "Functional") and (mod == "keras" or mod.startswith("keras.")):
            return True
    return False


def translate_keras3(model):
    """The tf_keras translation of a Keras 3 model, by the registered translator.

    Raises:
        ExportError: no translator is registered (tflite_export alone), or the
            translation failed (its one-line message).
    """
    translate = _HOOKS["translate_keras3"]
    if translate is None:
        raise ExportError("model is a Keras 3 model; build it with tf_keras (import tf_keras as keras), "
                          "or import tfcompress, which translates Keras 3 models")
    try:
        return translate(model)
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - the translator's own error, kept to one line
        raise ExportError(first_line(e, 400)) from None


def _custom_objects():
    if _HOOKS["custom_objects"] is not None:
        return dict(_HOOKS["custom_objects"]())
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError:  # pragma: no cover - TF-MOT is optional for tflite_export
        return {}
    objs = {}
    for scope in (tfmot.quantization.keras.quantize_scope(), tfmot.sparsity.keras.prune_scope(),
                  tfmot.clustering.keras.cluster_scope()):
        for d in scope.custom_objects:  # a tuple of dicts
            objs.update(d)
    return objs


def _decode(v):
    # As Keras reads it: bytes decoded as UTF-8, then json.loads (which takes
    # leading whitespace, so nothing here may decide on the first character).
    if isinstance(v, bytes):
        v = v.decode("utf-8")
    return json.loads(v) if isinstance(v, str) else v


def _json(path, what, v):
    try:
        return _decode(v)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ExportError(f"cannot load {path}: its {what} is not valid JSON ({first_line(e)}); "
                          "the file is damaged, save the model again.") from None


def _read_zip(path):
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise ExportError(f"cannot load {path}: a zip file without config.json is not a Keras model; "
                                  "save the model with model.save('m.keras').")
            config = _json(path, "config.json", z.read("config.json"))
            meta = _json(path, "metadata.json", z.read("metadata.json")) if "metadata.json" in names else {}
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as e:
        raise ExportError(f"cannot load {path}: a damaged .keras file ({first_line(e)}).") from None
    if not isinstance(config, dict):
        raise ExportError(f"cannot load {path}: its config.json is not a model config; save the model again.")
    return "keras", str(meta.get("keras_version", "") if isinstance(meta, dict) else ""), config


def _read_h5(path):
    import h5py

    with h5py.File(path, "r") as f:
        config = f.attrs.get("model_config")
        version = f.attrs.get("keras_version", b"")
    if config is None:
        raise ExportError(f"{path} holds weights only, no model: build the model in code and call "
                          "model.load_weights(path), or save the whole model with model.save('m.keras').")
    config = _json(path, "model_config", config)
    if not isinstance(config, dict):
        raise ExportError(f"cannot load {path}: its model_config is not a model config; save the model again.")
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    try:
        version = _decode(version)
    except ValueError:
        pass  # a version string that is not JSON ("2.21.0") is kept as written
    return "h5", str(version), config


def _read_saved_model(path):
    """The Keras metadata of a SavedModel's objects, or None (a graph without Keras metadata)."""
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise ExportError(f"{path} is a folder without saved_model.pb; pass a SavedModel folder, "
                          "a .keras/.h5 file or a tf_keras model")
    blobs = []
    meta_file = os.path.join(path, "keras_metadata.pb")
    try:
        # Both places: tf_keras reads keras_metadata.pb and, when it holds no
        # nodes, the metadata older writers kept in the object graph itself.
        if os.path.exists(meta_file):
            from tf_keras.protobuf import saved_metadata_pb2

            meta = saved_metadata_pb2.SavedMetadata()
            with open(meta_file, "rb") as f:
                meta.ParseFromString(f.read())
            blobs = [n.metadata for n in meta.nodes]
        from tensorflow.core.protobuf import saved_model_pb2

        sm = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
        blobs += [n.user_object.metadata for g in sm.meta_graphs for n in g.object_graph_def.nodes
                  if n.HasField("user_object") and n.user_object.metadata]
        nodes = [_decode(b) for b in blobs if b]
    except Exception as e:  # noqa: BLE001 - protobuf and JSON raise many types on a damaged file
        raise ExportError(f"cannot read the Keras metadata of {path} ({first_line(e)}); the SavedModel "
                          "is damaged, save it again") from None
    return "saved_model", "", nodes or None


def read_config(path):
    """What a model file or SavedModel folder holds, read without building it.

    Args:
        path: a ``.keras`` or ``.h5`` file or a SavedModel folder.

    Returns:
        ``(format, keras_version, config)``: format ``"keras"``, ``"h5"`` or
        ``"saved_model"``; the saving Keras version (``""`` when unknown); the
        model config (for a SavedModel, the list of its objects' Keras
        metadata, or None when it has none).

    Raises:
        ExportError: a missing path, or a file that is not a Keras model.

    Example:
        >>> read_config("m.keras")[1]  # doctest: +SKIP
        '3.15.0'
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ExportError(f"model file {path} does not exist: check the path.")
    if os.path.isdir(path):
        return _read_saved_model(path)
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    try:
        with open(path, "rb") as f:
            is_h5 = f.read(8) == b"\x89HDF\r\n\x1a\n"
        if is_h5:
            return _read_h5(path)
    except OSError as e:
        raise ExportError(f"cannot read {path}: {first_line(e)}.") from None
    raise ExportError(f"cannot load {path}: it is not a Keras model file (neither a .keras zip nor HDF5); "
                      "save the model with model.save('m.keras').")


def _walk(obj):
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def check_safe(path, config, safe_mode=True):
    """Refuse a model whose rebuilding would run code of the file.

    Decided on what Keras would deserialize (:mod:`tflite_export.trust`): a
    ``Lambda`` layer however its config spells it, a module outside Keras,
    TF-MOT and tfcompress, a Python built-in as a function, a TensorFlow call
    outside the numeric namespaces.

    Args:
        path: the file or folder (for the message).
        config: its config, as :func:`read_config` returns it.
        safe_mode: refuse Lambda layers. Defaults to `True`.

    Raises:
        ExportError: a Lambda layer in safe mode, naming the layer and the opt-in.

    Example:
        >>> check_safe("m.h5", {"class_name": "Lambda", "config": {"name": "f"}})  # doctest: +SKIP
        Traceback (most recent call last):
        ExportError: m.h5 has Lambda layer(s) f whose Python code would run while loading: ...
    """
    found = unsafe_entries(config) if safe_mode else []
    if not found:
        return
    if all(why == "a Lambda layer" for _, why in found):
        what = f"Lambda layer(s) {', '.join(n for n, _ in found[:3])} whose Python code"
    else:
        what = "layer(s) " + ", ".join(f"{n} ({why})" for n, why in found[:3]) + " whose code"
    raise ExportError(f"{path} has {what} would run while loading: refused in safe mode; "
                      "if you trust the file, pass safe_mode=False (--unsafe on the command line).")


def _build(path, fmt, version, config, safe_mode):
    if version.startswith("3"):
        return _load_keras3(path, safe_mode)
    import tf_keras as keras

    try:
        return keras.models.load_model(path, compile=False, custom_objects=_custom_objects(), safe_mode=safe_mode)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad file
        hint = ""
        qat = any(d.get("class_name") in ("QuantizeLayer", "QuantizeWrapperV2") for d in _walk(config))
        if qat and fmt == "keras" and "variables" in str(e):
            # TF-MOT's quantize layers save fewer variables than they rebuild
            # in the .keras format; HDF5 round-trips them.
            hint = "; tf_keras cannot reload QAT models from .keras files: save them with model.save('m.h5')"
        elif qat and "weight" in str(e).lower() and "mismatch" in str(e).lower():
            # Cluster-preserving QAT (CQAT, PCQAT) keeps training-only variables its config does not describe.
            hint = ("; a cluster-preserving QAT model saved with model.save does not reload: save it with "
                    "tfcompress's result.save('m.h5'), or export its .tflite")
        raise ExportError(f"cannot load {path} as a tf_keras model ({first_line(e)}){hint}.") from None


def _load_keras3(path, safe_mode):
    if _HOOKS["translate_keras3"] is None:
        raise ExportError(f"{path} was saved by Keras 3; re-save it with tf_keras, or import tfcompress, "
                          "which translates Keras 3 models")
    import keras as k3  # Keras 3, only for files it saved

    try:
        model = k3.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as e:  # noqa: BLE001 - Keras 3 raises many types for a bad file
        msg = first_line(e)
        hint = " (a custom layer must be registered with keras.saving.register_keras_serializable)" \
            if "locate" in msg or "Unknown" in msg else ""
        raise ExportError(f"cannot load {path} with Keras 3 ({msg}){hint}.") from None
    return translate_keras3(model)


def load_model(path, safe_mode=True, check=None):
    """Load a ``.keras``/``.h5`` file or a SavedModel folder as a tf_keras model.

    Args:
        path: the file or folder.
        safe_mode: refuse models with ``Lambda`` layers, whose Python code
            would run while loading. Set it to False only for files you trust.
            Defaults to `True`.
        check: called as ``check(path, format, config)`` after the safety
            check and before building, to refuse what the caller cannot use.
            Defaults to `None`.

    Returns:
        The tf_keras model (uncompiled).

    Raises:
        ExportError: a missing or unreadable file, a Lambda layer in safe mode,
            or a model tf_keras cannot rebuild (one-line message).

    Example:
        >>> load_model("trained.h5").output_shape  # doctest: +SKIP
        (None, 10)
    """
    path = os.fspath(path)
    fmt, version, config = read_config(path)
    check_safe(path, config, safe_mode)
    if check is not None:
        check(path, fmt, config)
    return _build(path, fmt, version, config, safe_mode)


def open_source(path, safe_mode=True):
    """What the exporter converts from ``path``: ``("saved_model", path)`` for a
    SavedModel folder (converted from its graph), else ``("keras", model)``.

    Both pass :func:`check_safe` first, so a file answers the same everywhere.

    Raises:
        ExportError: as :func:`load_model`.

    Example:
        >>> open_source("exported_dir")  # doctest: +SKIP
        ('saved_model', 'exported_dir')
    """
    path = os.fspath(path)
    fmt, version, config = read_config(path)
    check_safe(path, config, safe_mode)
    if fmt == "saved_model":
        return "saved_model", path
    return "keras", _build(path, fmt, version, config, safe_mode)
