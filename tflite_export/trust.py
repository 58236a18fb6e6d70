"""Whether a saved model's config would run code while Keras rebuilds it.

Decided on what Keras will deserialize, not on how the file spells it. Both
tf_keras and Keras 3 find a class or function from up to three strings of a
config entry: ``class_name``, ``registered_name`` (looked up in the custom
objects, then in the entry's module: a ``registered_name`` of ``"Lambda"``
under ``module: "tf_keras.layers"`` builds a Lambda whatever the
``class_name``), and ``module``, which they *import* when it is not Keras's own
(``"pydoc"`` gives ``pydoc.pipepager``, a shell). A dotted name is followed
attribute by attribute (``layers.Lambda`` under ``tf_keras``).

So every entry of the config that has a ``class_name``, at any depth (nested
models, wrappers, functions, initializers), is refused in safe mode when:

- any dotted or ``>``-separated part of its ``class_name`` or
  ``registered_name`` names a layer class that runs code or loads another
  model: ``Lambda`` (Python functions), ``TorchModuleWrapper`` (a pickle),
  ``JaxLayer``/``FlaxLayer`` (functions), ``TFSMLayer`` (another SavedModel),
  or it is a serialized Python lambda (``__lambda__``);
- its ``module`` is outside Keras, tf_keras, TF-MOT and tfcompress (nothing
  else is imported for it), or a function is looked up in ``builtins``
  without being a Keras built-in (``exec``, ``breakpoint``, ``exit``);
- it is a ``TFOpLambda``/``SlicingOpLambda`` (a TensorFlow call recorded by
  tf_keras) whose TensorFlow function is outside the numeric namespaces
  (``tf.io.gfile.remove``, ``tf.load_op_library``, ``tf.py_function``), or a
  ``ClassMethod`` of a class other than ``RaggedTensor``/``SparseTensor``.

Any dictionary holding ``function_type`` (the legacy Lambda format) is refused
too, whatever its class. tests/test_untrusted_disguises.py builds the known
disguises and fuzzes more, and checks that no marker file appears on any
entry point; it also checks that no module of Keras, tf_keras or TF-MOT exports
a Lambda under another name (the premise of deciding by name).

Example:
    >>> unsafe_entries({"class_name": "Dense", "config": {"name": "d"}})
    []
    >>> unsafe_entries({"class_name": "NoOpActivation", "registered_name": "Lambda",
    ...                 "module": "tf_keras.layers", "config": {"name": "f"}})
    [('f', "a Lambda layer spelled 'NoOpActivation'")]
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

__all__ = ["unsafe_entries", "CODE_LAYERS", "SAFE_MODULE_ROOTS"]

#: Layer classes whose rebuilding runs code of the file or loads another model.
CODE_LAYERS = {
    "Lambda": "a Lambda layer",
    "__lambda__": "a Python lambda",
    "TorchModuleWrapper": "a TorchModuleWrapper (a pickled torch module)",
    "JaxLayer": "a JaxLayer (Python functions)",
    "FlaxLayer": "a FlaxLayer (Python functions)",
    "TFSMLayer": "a TFSMLayer (loads another SavedModel)",
}

#: Packages whose modules a config may name: nothing else is imported for it.
SAFE_MODULE_ROOTS = ("keras", "tf_keras", "tensorflow_model_optimization", "tfcompress")

# TensorFlow namespaces a TFOpLambda may call: numeric ops only, no file, library or Python-call APIs.
_TF_OP_NAMESPACES = {"math", "nn", "image", "linalg", "signal", "bitwise", "__operators__", "random", "sparse",
                     "ragged", "dtypes", "experimental.numpy"}
_TF_OP_DENIED = {"print", "Print", "py_function", "numpy_function", "py_func", "load_op_library", "load_library",
                 "function", "Module", "Variable", "init_scope", "device", "name_scope", "get_logger",
                 "control_dependencies", "custom_gradient", "recompute_grad", "vectorized_map", "map_fn",
                 "while_loop", "cond", "case", "switch_case", "scan", "foldl", "foldr", "write_file", "read_file",
                 "matching_files", "ensure_shape_fn", "py_func_with_gradient"}
_CLASS_METHOD_CLASSES = {"RaggedTensor", "SparseTensor"}
_MAX_DEPTH = 200


def _parts(name: str) -> list[str]:
    return [p for p in re.split(r"[.>]", name) if p]


def _module_safe(module: str) -> bool:
    root = module.split(".", 1)[0]
    return root in SAFE_MODULE_ROOTS and all(p.isidentifier() for p in module.split("."))


def _keras_builtin_function(name: str) -> bool:
    """True when tf_keras finds ``name`` in its built-in function modules
    (activations, losses, metrics, ...) before it falls back to ``builtins``."""
    try:
        from tensorflow.python.util import tf_export
        from tf_keras.src.saving.serialization_lib import BUILTIN_MODULES
    except ImportError:  # pragma: no cover - tf_keras is a dependency
        return False
    return any(tf_export.get_symbol_from_name(f"keras.{m}.{name}") is not None for m in BUILTIN_MODULES)


def _tf_op_safe(symbol: Any) -> bool:
    if not isinstance(symbol, str):
        return False
    for prefix in ("compat.v1.", "compat.v2."):
        if symbol.startswith(prefix):
            symbol = symbol[len(prefix):]
    namespace, _, name = symbol.rpartition(".")
    if not name.isidentifier():
        return False
    if not namespace:
        return name not in _TF_OP_DENIED
    return namespace in _TF_OP_NAMESPACES and name not in _TF_OP_DENIED


def _entries(obj: Any, layer: str, depth: int = 0) -> Iterator[tuple[dict, str]]:
    """Every dict of the config with the name of the layer it belongs to."""
    if depth > _MAX_DEPTH:
        yield {"class_name": "__too_deep__"}, layer
        return
    if isinstance(obj, dict):
        cfg = obj.get("config")
        name = obj.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None)
        if "class_name" in obj and isinstance(name, str):
            layer = name
        yield obj, layer
        for v in obj.values():
            yield from _entries(v, layer, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            yield from _entries(v, layer, depth + 1)


def _why(d: dict) -> str | None:
    """Why Keras rebuilding this config entry would run code, or None."""
    if "function_type" in d:
        return "a Lambda-style function (function_type)"
    if "class_name" not in d:
        return None
    cls, reg, module = d.get("class_name"), d.get("registered_name"), d.get("module")
    if cls == "__too_deep__":
        return f"a config nested over {_MAX_DEPTH} levels"
    for field, value in (("class_name", cls), ("registered_name", reg), ("module", module)):
        if value is not None and not isinstance(value, str):
            return f"a {field} that is not a string ({type(value).__name__})"
    for name in (cls, reg):
        for part in _parts(name or ""):
            if part in CODE_LAYERS:
                spelled = f" spelled {cls!r}" if cls != part else ""
                return CODE_LAYERS[part] + spelled
    if module is not None and module != "builtins" and not _module_safe(module):
        return f"a {cls} from module {module!r}, outside Keras, TF-MOT and tfcompress (importing it runs its code)"
    if cls == "function":
        fn = d.get("config")
        if not isinstance(fn, str) or not all(p.isidentifier() for p in fn.split(".")):
            return "a function whose name is not a plain identifier"
        if module == "builtins" and not _keras_builtin_function(fn):
            return f"the Python built-in {fn!r} (not a Keras function)"
    if cls in ("TFOpLambda", "SlicingOpLambda"):
        fn = (d.get("config") or {}).get("function") if isinstance(d.get("config"), dict) else None
        if not _tf_op_safe(fn):
            return f"a TensorFlow call tf.{fn} outside the numeric namespaces"
    if cls == "ClassMethod":
        config = d.get("config")
        cfg: dict[str, Any] = config if isinstance(config, dict) else {}
        if cfg.get("cls_symbol") not in _CLASS_METHOD_CLASSES:
            return f"a class method of tf.{cfg.get('cls_symbol')} (only RaggedTensor/SparseTensor)"
    return None


def _printable(text: str, limit: int = 80) -> str:
    """``text`` for a one-line message: control characters, line breaks and lone surrogates
    (which a config's JSON may hold in names) escaped, and cut to ``limit`` characters."""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                  for c in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def unsafe_entries(config: Any) -> list[tuple[str, str]]:
    """The config entries whose rebuilding would run code, as ``(layer, why)``.

    Args:
        config: a model config as Keras will parse it (a dict, or the list of a
            SavedModel's Keras metadata nodes). Anything else, a string that
            did not parse for instance, is reported as unsafe: nothing is
            decided on a spelling Keras may read differently.

    Returns:
        One ``(layer name, reason)`` per entry (first reason only), in config
        order, each layer once; empty when the model is safe to rebuild. Both
        strings are one printable line (names from the file are escaped).

    Example:
        >>> unsafe_entries({"class_name": "Lambda", "config": {"name": "double"}})
        [('double', 'a Lambda layer')]
    """
    if config is None:
        return []
    if not isinstance(config, (dict, list)):
        return [("?", f"a model config that is not JSON Keras would read ({type(config).__name__})")]
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for d, layer in _entries(config, "?"):
        why = _why(d)
        if why and layer not in seen:
            seen.add(layer)
            out.append((_printable(layer), _printable(why, 300)))
    return out
