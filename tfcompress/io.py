"""Loading saved models safely.

Example:
    >>> import tfcompress
    >>> model = tfcompress.load_model("trained.keras")  # doctest: +SKIP
"""

import os

from tfcompress._keras import check_model, custom_objects, keras
from tfcompress.errors import UnsupportedModelError

__all__ = ["load_model"]


def load_model(path, safe_mode=True):
    """Load a tf_keras model from a ``.keras`` or ``.h5`` file.

    Models saved mid-compression (pruning or QAT wrappers) load without the
    caller naming custom objects. ``safe_mode`` refuses ``Lambda`` layers
    holding pickled Python code.

    Args:
        path: the model file.
        safe_mode: refuse to deserialise arbitrary code. Defaults to `True`.

    Returns:
        The tf_keras model (uncompiled).

    Raises:
        UnsupportedModelError: missing file, not a Keras model file, or a
            model tfcompress cannot handle.
    """
    if not os.path.exists(path):
        raise UnsupportedModelError(f"model file {path} does not exist: check the path.")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".keras", ".h5", ".hdf5") and not os.path.isdir(path):
        raise UnsupportedModelError(f"{path} is not a .keras or .h5 model file: save the model with model.save('m.keras').")
    kwargs = {"compile": False, "custom_objects": custom_objects()}
    if ext == ".keras":
        kwargs["safe_mode"] = safe_mode
    try:
        model = keras.models.load_model(path, **kwargs)
    except Exception as e:  # Keras raises many types for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UnsupportedModelError(f"cannot load {path} as a tf_keras model ({first}).") from None
    return check_model(model)
