"""Loading saved models safely, from either Keras.

:func:`load_model` reads ``.keras`` files (saved by tf_keras or Keras 3) and
``.h5`` files (either Keras), translating Keras 3 models to tf_keras, and
reloads tfcompress's own intermediate models (pruning, clustering and QAT
wrappers) without the caller naming custom objects. By default nothing in the
file can run Python code: a ``Lambda`` layer is refused before any loader sees
it.

Example:
    >>> import tfcompress
    >>> model = tfcompress.load_model("trained.keras")  # doctest: +SKIP
"""

import json
import os
import zipfile

from tfcompress._keras import check_model, custom_objects, keras
from tfcompress.errors import UnsupportedModelError, first_line

__all__ = ["load_model", "file_info"]

_MODELS = ("Functional", "Sequential", "Model")


def _decode(v):
    if isinstance(v, bytes):
        v = v.decode("utf-8")
    return json.loads(v) if isinstance(v, str) and v[:1] in "{[" else v


def file_info(path):
    """What a model file holds, read without building the model.

    Args:
        path: a ``.keras`` or ``.h5`` file.

    Returns:
        ``(format, keras_version, config)``: format ``"keras"`` or ``"h5"``,
        the saving Keras version (``""`` when unknown) and the model config.

    Raises:
        UnsupportedModelError: the file is not a Keras model file.

    Example:
        >>> file_info("m.keras")[1]  # doctest: +SKIP
        '3.15.0'
    """
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
                if "config.json" not in names:
                    raise UnsupportedModelError(
                        f"cannot load {path}: a zip file without config.json is not a Keras model; save the model "
                        "with model.save('m.keras')."
                    )
                config = json.loads(z.read("config.json"))
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
        except (zipfile.BadZipFile, ValueError, KeyError) as e:
            raise UnsupportedModelError(f"cannot load {path}: a damaged .keras file ({first_line(e)}).") from None
        return "keras", str(meta.get("keras_version", "")), config
    try:
        import h5py

        with open(path, "rb") as f:
            is_h5 = f.read(8) == b"\x89HDF\r\n\x1a\n"
        if is_h5:
            with h5py.File(path, "r") as f:
                config = f.attrs.get("model_config")
                version = f.attrs.get("keras_version", b"")
            if config is None:
                raise UnsupportedModelError(
                    f"{path} holds weights only, no model: build the model in code and call "
                    "model.load_weights(path), or save the whole model with model.save('m.keras')."
                )
            return "h5", str(_decode(version)), _decode(config)
    except OSError as e:
        raise UnsupportedModelError(f"cannot read {path}: {first_line(e)}.") from None
    raise UnsupportedModelError(
        f"cannot load {path}: it is not a Keras model file (neither a .keras zip nor HDF5); save the model with "
        "model.save('m.keras')."
    )


def _walk(obj):
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def _lambda_layers(config):
    names = []
    for d in _walk(config):
        if d.get("class_name") == "Lambda":
            names.append((d.get("config") or {}).get("name") or d.get("name") or "?")
    return names


def _top_class(config):
    return config.get("class_name") if isinstance(config, dict) else None


def load_model(path, safe_mode=True):
    """Load a model file as a tf_keras model tfcompress can compress.

    Accepts ``.keras`` files saved by tf_keras or Keras 3, ``.h5`` files
    saved by either, and SavedModel folders saved by tf_keras. Keras 3 models
    are translated (config and weights) to tf_keras. Models saved
    mid-compression (pruning, clustering or QAT wrappers) load without the
    caller naming custom objects.

    Args:
        path: the model file (or SavedModel folder).
        safe_mode: refuse files whose ``Lambda`` layers hold Python code that
            would run while loading. Set it to False only for files you trust.
            Defaults to `True`.

    Returns:
        The tf_keras model (uncompiled).

    Raises:
        UnsupportedModelError: a missing file, a file that is not a Keras
            model, a Lambda layer in safe mode, a subclassed model, or layers
            tf_keras cannot rebuild; the message says what to do.

    Example:
        >>> import keras  # Keras 3
        >>> keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save("k3.keras")  # doctest: +SKIP
        >>> load_model("k3.keras").output_shape  # doctest: +SKIP
        (None, 2)
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UnsupportedModelError(f"model file {path} does not exist: check the path.")
    if os.path.isdir(path):
        return _load_tf_keras(path, {"compile": False, "custom_objects": custom_objects()})
    fmt, version, config = file_info(path)
    lambdas = _lambda_layers(config)
    if lambdas and safe_mode:
        raise UnsupportedModelError(
            f"{path} has Lambda layer(s) {', '.join(lambdas[:3])} whose Python code would run while "
            "loading; if you trust the file, load it with tfcompress.load_model(path, safe_mode=False)."
        )
    cls = _top_class(config)
    if cls is not None and cls not in _MODELS:
        raise UnsupportedModelError(
            f"{path} holds a subclassed model ({cls}); tfcompress supports Sequential and Functional "
            "models: rebuild it with keras.Sequential([...]) or keras.Model(inputs, outputs), or load "
            "it in your own code and pass the rebuilt model."
        )
    if version.startswith("3"):
        return _load_keras3(path, safe_mode)
    kwargs = {"compile": False, "custom_objects": custom_objects()}
    if fmt == "keras":
        kwargs["safe_mode"] = safe_mode
    qat = any(d.get("class_name") in ("QuantizeLayer", "QuantizeWrapperV2") for d in _walk(config))
    return _load_tf_keras(path, kwargs, qat and fmt == "keras")


def _load_tf_keras(path, kwargs, qat_keras=False):
    try:
        model = keras.models.load_model(path, **kwargs)
    except Exception as e:  # Keras raises many types for a bad file
        hint = ""
        if qat_keras and "variables" in str(e):
            # TF-MOT's quantize layers save fewer variables than they rebuild
            # in the .keras format; HDF5 round-trips them.
            hint = "; tf_keras cannot reload QAT models from .keras files: save them with model.save('m.h5')"
        raise UnsupportedModelError(
            f"cannot load {path} as a tf_keras model ({first_line(e)}){hint}.") from None
    return check_model(model)


def _load_keras3(path, safe_mode):
    import keras as k3  # Keras 3, only for files it saved

    from tfcompress._keras3 import to_tf_keras

    try:
        model = k3.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as e:  # Keras 3 raises many types for a bad file
        msg = first_line(e)
        hint = " (a custom layer must be registered with keras.saving.register_keras_serializable)" \
            if "locate" in msg or "Unknown" in msg else ""
        raise UnsupportedModelError(f"cannot load {path} with Keras 3 ({msg}){hint}.") from None
    return check_model(to_tf_keras(model))
