"""Where models come from: the one resolver and the one loader of tfcompress.

:func:`resolve_model` turns any model argument (a reference model name, a
``.keras``/``.h5`` file, a SavedModel folder, a tf_keras or Keras 3 model, a
function building one) into a :class:`ModelSource`; every command and API
function that takes a model goes through it. :func:`load_model` reads files and
folders through :mod:`tflite_export.loader`, the one loading code path of both
packages, with its one safety check: by default nothing in the file can run
Python code (a ``Lambda`` layer is refused before any model is built).

Importing this module registers tfcompress's custom objects (TF-MOT wrappers)
and its Keras 3 -> tf_keras translation with that loader, so
``tflite_export.export(path)`` loads files the same way when tfcompress is
present.

Example:
    >>> import tfcompress
    >>> model = tfcompress.load_model("trained.keras")  # doctest: +SKIP
    >>> resolve_model("digits_cnn").model().output_shape  # doctest: +SKIP
    (None, 10)
"""

import dataclasses
import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tfcompress import datasets, models  # type: ignore[attr-defined]  # models: the models/ folder
from tfcompress._keras import custom_objects, keras
from tfcompress._keras3 import to_tf_keras
from tfcompress._model import check_model, coerce_model, is_keras3_model, own_scaling
from tfcompress.errors import DataError, UnsupportedModelError, first_line
from tfcompress.task import remember_file_compile
from tflite_export import loader
from tflite_export._userfiles import check_model_file
from tflite_export.errors import ExportError

__all__ = ["load_model", "file_info", "resolve_model", "resolve_inputs", "ModelSource", "ModelBuilder", "Builder",
           "import_builder"]

_MODELS = ("Functional", "Sequential", "Model")

loader.register(custom_objects=custom_objects, translate_keras3=to_tf_keras)


def file_info(path):
    """What a model file holds, read without building the model.

    Args:
        path: a ``.keras`` or ``.h5`` file (or a SavedModel folder).

    Returns:
        ``(format, keras_version, config)``, as
        :func:`tflite_export.loader.read_config` returns it.

    Raises:
        UnsupportedModelError: the file is not a Keras model file.

    Example:
        >>> file_info("m.keras")[1]  # doctest: +SKIP
        '3.15.0'
    """
    try:
        check_model_file(os.fspath(path), UnsupportedModelError)
        return loader.read_config(path)
    except ExportError as e:
        raise UnsupportedModelError(str(e)) from None


def _refuse_subclassed(path, fmt, config):
    cls = config.get("class_name") if isinstance(config, dict) else None
    if cls is not None and cls not in _MODELS:
        raise UnsupportedModelError(
            f"{path} holds a subclassed model ({cls}); tfcompress supports Sequential and Functional "
            "models: rebuild it with keras.Sequential([...]) or keras.Model(inputs, outputs), or load "
            "it in your own code and pass the rebuilt model."
        )


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
            would run while loading (in all three formats). Set it to False
            only for files you trust. Defaults to `True`.

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
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise UnsupportedModelError(f"load_model needs the path of a model file or SavedModel folder, "
                                    f"got {type(path).__name__}.")
    check_model_file(os.fsdecode(path), UnsupportedModelError)
    seen = {}

    def check(p, fmt, config):
        _refuse_subclassed(p, fmt, config)
        seen.update(fmt=fmt, config=config)

    try:
        model = loader.load_model(os.fsdecode(path), safe_mode=safe_mode, check=check)
    except ExportError as e:
        raise UnsupportedModelError(str(e)) from None
    model = check_model(model)
    remember_file_compile(model, seen.get("fmt"), seen.get("config"), os.fsdecode(path))  # the user's task
    return model


# --------------------------------------------------------------------------- resolver


def _is_file_spec(ref):
    return os.path.exists(ref) or os.path.splitext(ref)[1].lower() in loader.MODEL_EXTENSIONS or os.sep in ref


def _is_application(ref):
    return ref[:1].isupper() and callable(getattr(keras.applications, ref, None))


def _is_keras_object(obj):
    # Models and layers of either Keras are callable too, but never builders.
    return isinstance(obj, keras.layers.Layer) or is_keras3_model(obj) or any(
        (c.__module__ or "") == "keras" or (c.__module__ or "").startswith("keras.") for c in type(obj).__mro__)


def _reference(ref):
    name = ref.replace("-", "_")
    return name if name in models.names() else None


class ModelBuilder:
    """A picklable "build a fresh model" callable for a reference model name, a
    keras.applications name or a model file, so trial processes can rebuild it.

    Args:
        ref: reference model name (``digits_cnn``, ``lenet5``), a
            keras.applications name (``MobileNetV2``) or a ``.keras``/``.h5``
            file or SavedModel folder.
        input_shape: input shape for a reference or application model.
            Defaults to `None` (the model's own).
        num_classes: classes for a reference model. Defaults to `10`.
        safe_mode: for a file, refuse Lambda layers (see :func:`load_model`).
            Defaults to `True`.

    Example:
        >>> ModelBuilder("digits_cnn")().output_shape  # doctest: +SKIP
        (None, 10)
    """

    def __init__(self, ref, input_shape=None, num_classes=10, safe_mode=True):
        self.ref, self.input_shape, self.num_classes = os.fsdecode(ref), input_shape, num_classes
        self.safe_mode = safe_mode

    @property
    def kind(self):
        """``"reference"``, ``"application"`` or ``"file"``."""
        if _reference(self.ref):
            return "reference"
        if not _is_file_spec(self.ref) and _is_application(self.ref):
            return "application"
        return "file"

    @property
    def is_file(self):
        return self.kind == "file"

    def __call__(self):
        kind = self.kind
        if kind == "file":
            return load_model(self.ref, safe_mode=self.safe_mode)
        if kind == "reference":
            spec = models.get(self.ref)
            try:
                return spec.build(self.input_shape, self.num_classes)
            except ValueError as e:  # e.g. LeNet-5's 5x5 convolutions on 8x8 digits
                shape = "x".join(str(d) for d in self.input_shape or spec.input_shape)
                why = next((f" ({ln.split(' for ')[0].strip()})" for ln in str(e).splitlines()
                            if "dimension" in ln), "")
                raise UnsupportedModelError(
                    f"the reference model {self.ref} cannot take {shape} inputs{why}; it is built for "
                    f"{spec.dataset} ({'x'.join(map(str, spec.input_shape))}): use that dataset or another --model "
                    f"({', '.join(models.names())})") from None
        kwargs = {"weights": None}
        if self.input_shape:
            kwargs["input_shape"] = tuple(self.input_shape)
        try:
            return getattr(keras.applications, self.ref)(**kwargs)
        except ValueError as e:
            raise UnsupportedModelError(f"cannot build {self.ref}: {first_line(e)}") from None

    def __repr__(self):
        return f"ModelBuilder({self.ref!r})"


_BUILDER_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _is_builder_ref(ref):
    return bool(_BUILDER_REF.match(ref)) and not os.path.exists(ref)


def import_builder(ref):
    """The function a ``"module:function"`` reference names, imported now.

    Raises:
        UnsupportedModelError: the module cannot be imported or has no such
            callable; the message says how to make it importable.

    Example:
        >>> import_builder("tfcompress.models:names")()[:2]  # doctest: +SKIP
    """
    module, _, qualname = ref.partition(":")
    try:
        obj = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's to fix
        raise UnsupportedModelError(
            f"cannot import {module!r} for the model builder {ref!r} ({first_line(e)}): put the module's folder "
            "on PYTHONPATH (or run from that folder) so trial processes can import it too.") from None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise UnsupportedModelError(f"{module!r} has no function {qualname!r} for the model builder {ref!r}: "
                                    "name a module-level function returning a new model.")
    return obj


class Builder:
    """A picklable model builder for trials: calls a function (or imports a
    ``"module:function"`` reference in the process that builds), translates
    a Keras 3 model to tf_keras, and with ``from_scratch`` re-initialises
    the weights.

    Args:
        build: a callable returning a model, or a ``"module:function"`` string.
        from_scratch: give the model fresh random weights (its initialisers)
            instead of the ones it was built or loaded with. Defaults to `False`.

    Example:
        >>> Builder("mymodels:small_cnn")().output_shape  # doctest: +SKIP
        (None, 10)
    """

    def __init__(self, build, from_scratch=False):
        self.build, self.from_scratch = build, bool(from_scratch)

    @property
    def target(self):
        """The function, a :class:`ModelBuilder`, or the reference string."""
        return self.build

    def __call__(self):
        fn = import_builder(self.build) if isinstance(self.build, str) else self.build
        model = coerce_model(fn())
        if self.from_scratch:
            model = keras.models.clone_model(model)  # the layers' initialisers, not the trained weights
        return model

    def __repr__(self):
        return f"Builder({self.build!r}{', from_scratch=True' if self.from_scratch else ''})"


_UNSET = object()


@dataclass
class ModelSource:
    """A model argument, resolved once.

    Attributes:
        kind: ``"reference"`` (a model of :mod:`tfcompress.models`),
            ``"application"`` (keras.applications, ``weights=None``),
            ``"file"`` (a ``.keras``/``.h5`` file or SavedModel folder),
            ``"builder"`` (a function returning a model) or ``"object"`` (a
            model, or anything else, passed as is).
        name: what reports call it (a file's absolute path).
        build: a function returning a fresh model: a picklable
            :class:`ModelBuilder` for references, applications and files, the
            caller's function for a builder, None for an object.
        spec: the :class:`~tfcompress.models.ModelSpec` of a reference model
            (its default recipe and training settings), else None.
    """

    kind: str
    name: str
    build: Callable | None = None
    spec: Any = None
    _model: Any = field(default=_UNSET, repr=False)

    def model(self):
        """The model: the object itself, the file loaded once, or a fresh build."""
        if self._model is _UNSET:
            self._model = self.build()
        return self._model


def _unknown(ref, applications):
    apps = ", or a keras.applications name such as MobileNetV2" if applications else ""
    return UnsupportedModelError(
        f"unknown reference model {ref!r}: it is neither a model file nor a known model name; pass a "
        f".keras/.h5 file, a SavedModel folder, a module:function builder, one of "
        f"{', '.join(models.names())}{apps}."
    )


def resolve_model(model, input_shape=None, num_classes=10, safe_mode=True, applications=False):
    """The one resolver of model arguments, used by every command and API function.

    Args:
        model: a reference model name (``digits_cnn``, ``lenet5``) or its
            ``ModelSpec``; a ``.keras``/``.h5`` file or SavedModel folder
            (loaded now, so a bad file fails here with a clear message); a
            :class:`ModelBuilder`; a tf_keras or Keras 3 model; a function
            returning a fresh model, or a ``"module:function"`` reference to
            one (imported now; trial processes import it again); with ``applications``, a
            keras.applications name (``MobileNetV2``, built with
            ``weights=None``).
        input_shape: input shape for a reference or application model.
            Defaults to `None` (the model's own).
        num_classes: classes for a reference model. Defaults to `10`.
        safe_mode: for a file, refuse Lambda layers (see :func:`load_model`).
            Defaults to `True`.
        applications: accept keras.applications names. Defaults to `False`.

    Returns:
        A :class:`ModelSource`.

    Raises:
        UnsupportedModelError: an unknown name, or a file that cannot be
            loaded (as :func:`load_model`).

    Example:
        >>> src = resolve_model("lenet5", input_shape=(28, 28, 1))
        >>> src.kind, src.spec.name
        ('reference', 'lenet5')
    """
    if isinstance(model, ModelBuilder):
        safe_mode, model = model.safe_mode, model.ref
    elif isinstance(model, models.ModelSpec):
        model = model.name
    if isinstance(model, (str, bytes, os.PathLike)):
        ref = os.fsdecode(model)
        name = _reference(ref)
        if name:
            builder = ModelBuilder(name, input_shape, num_classes)
            return ModelSource("reference", name, builder, models.get(name))
        if _is_file_spec(ref):
            loaded = load_model(ref, safe_mode=safe_mode)  # fails now, with a clear message
            path = os.path.abspath(ref)
            return ModelSource("file", path, ModelBuilder(path, safe_mode=safe_mode), _model=loaded)
        if applications and _is_application(ref):
            return ModelSource("application", ref, ModelBuilder(ref, input_shape, num_classes))
        if _is_builder_ref(ref):
            import_builder(ref)  # an unimportable module fails now, with what to do
            return ModelSource("builder", ref, Builder(ref))
        raise _unknown(ref, applications)
    if callable(model) and not _is_keras_object(model):
        return ModelSource("builder", getattr(model, "__name__", "model"), model)
    return ModelSource("object", getattr(model, "name", type(model).__name__), _model=model)


def _data_first(model):
    """Whether the model is built from the data's shape (a reference or application name)."""
    if isinstance(model, models.ModelSpec):
        return True
    if isinstance(model, ModelBuilder):
        return model.kind != "file"
    if isinstance(model, (str, bytes, os.PathLike)):
        ref = os.fsdecode(model)
        return bool(_reference(ref)) or (not _is_file_spec(ref) and _is_application(ref))
    return False


def resolve_inputs(model, data, scale="auto", seed=0, safe_mode=True, applications=False, validation=None):
    """The model and the data together: each sized by the other, the data as a Dataset.

    A reference model name is built for the data's input shape and classes;
    any other model (a file, an object, a builder) is resolved first and an
    image folder is read at its input size.

    Args:
        model: anything :func:`resolve_model` takes.
        data: anything :func:`tfcompress.datasets.as_dataset` takes (a
            Dataset, a built-in name, a ``.npz`` file, an image folder, an
            ``(x, y)`` pair, a ``tf.data.Dataset``).
        scale: see :func:`tfcompress.datasets.from_arrays`. Defaults to `"auto"`.
        seed: seed of carved splits. Defaults to `0`.
        safe_mode: see :func:`load_model`. Defaults to `True`.
        applications: accept keras.applications names. Defaults to `False`.
        validation: validation split for ``(x, y)`` or tf.data data.
            Defaults to `None` (carved).

    Returns:
        ``(ModelSource, Dataset)``.

    Raises:
        UnsupportedModelError: as :func:`resolve_model`.
        DataError: data the constructors refuse.

    Example:
        >>> source, data = resolve_inputs("digits_cnn", "digits")
        >>> source.model().input_shape[1:] == data.input_shape
        True
    """
    if data is None:
        raise DataError("no data given: pass a built-in name (digits, fashion-mnist), a .npz file, an image "
                        "folder, an (x, y) pair or a tf.data.Dataset.")
    if _data_first(model):
        data = datasets.as_dataset(data, scale=scale, seed=seed, validation=validation)
        if data.num_classes < 2:  # a reference classifier built for one class learns nothing and scores 100 %
            raise DataError(f"{data.name}: every label is class 0, one class: a classifier needs labels of at "
                            "least two classes; check the labels (or the .npz keys) you passed.")
        source = resolve_model(model, input_shape=data.input_shape, num_classes=data.num_classes,
                               safe_mode=safe_mode, applications=applications)
        return source, data
    source = resolve_model(model, safe_mode=safe_mode, applications=applications)
    built = source.model()
    shape = getattr(built, "input_shape", None)
    shape = tuple(shape[1:]) if isinstance(shape, tuple) else None
    own = own_scaling(built) if scale == "auto" else None
    out = getattr(built, "output_shape", None)
    data = datasets.as_dataset(data, input_shape=shape, scale=None if own else scale, seed=seed,
                               validation=validation, output_shape=tuple(out[1:]) if isinstance(out, tuple) else None)
    if own and isinstance(data, datasets.Dataset) and data.scale is None:
        data = dataclasses.replace(data, scaled_by=own)
    return source, data
