"""The model and the data of a search: resolved, checked against each other
once, and made into something every trial process can rebuild.

:func:`search_inputs` is what :func:`tfcompress.tuning.tune` does before its
first trial: it takes everything :func:`tfcompress.optimize` takes (a
reference name, a tf_keras or Keras 3 model or file, a function or a
``"module:function"`` builder; a built-in dataset, a ``.npz`` file, an image
folder, ``(x, y)`` arrays, a ``tf.data.Dataset`` or a
:class:`~tfcompress.datasets.Dataset`), checks the data against the model
with :func:`tfcompress._data.prepare` (input shape, label range against the
outputs, dtypes, NaN/Inf), names the metric trials are scored by (accuracy
for a classifier, else the task's headline metric, see :func:`quality_metric`)
and hands the trials numpy arrays and a picklable builder.
:func:`check_builder` refuses, with what to do, a builder that a child
process cannot import (one defined in the user's script).

Example:
    >>> inputs = search_inputs("digits_cnn", "digits")  # doctest: +SKIP
    >>> inputs.data.describe()  # doctest: +SKIP
"""

import os
import pickle
import types
from dataclasses import dataclass
from typing import Any

from tfcompress._data import prepare
from tfcompress._model import coerce_model
from tfcompress.errors import TuningError
from tfcompress.io import Builder, ModelBuilder, resolve_inputs
from tfcompress.recipe import Recipe
from tfcompress.task import compile_config_of, headline, task_for
from tfcompress.tuning.objectives import reserved_metric

__all__ = ["SearchInputs", "search_inputs", "check_builder", "save_model_object", "MODEL_FILE", "first",
           "first_array", "take", "quality_metric"]

# Where a model object given to tune() is saved, in the search folder, for the trials to load.
MODEL_FILE = "model.keras"

_FIX = ("move it into a module of its own (e.g. mymodels.py, importable from the folder you run in or "
        "on PYTHONPATH), import it from there and pass it or 'mymodels:build_model'; or pass "
        "isolation='session' (--isolation session) to run trials in this process")


@dataclass
class SearchInputs:
    """What a search trains on.

    Attributes:
        source: the :class:`~tfcompress.io.ModelSource`.
        data: the :class:`~tfcompress.datasets.Dataset`.
        train: checked ``(x, y)`` numpy arrays (``train_subset`` applied).
        validation: checked ``(x, y)`` numpy arrays, labels in the training labels' form.
        build: the trials' builder (None for a model object until
            :func:`save_model_object` writes it to the search folder).
        name: what the settings call the model.
        default_recipe: the reference model's recipe, else None.
        from_scratch: trials start from fresh random weights.
        metric: what trials are scored by: ``accuracy`` for a classifier,
            else the task's headline metric (an ``evaluate`` key, e.g. ``mae``).
    """

    source: Any
    data: Any
    train: tuple
    validation: tuple
    build: Any
    name: str
    default_recipe: Recipe | None
    from_scratch: bool = False
    metric: str = "accuracy"


def first(data, n):
    """The first ``n`` examples of an array, or of each array of a dict or list (several inputs or outputs).

    Example:
        >>> import numpy as np
        >>> first({"a": np.arange(5), "b": np.arange(5)}, 2)["b"].tolist()
        [0, 1]
    """
    if isinstance(data, dict):
        return {k: v[:n] for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(v[:n] for v in data)
    return data[:n]


def take(data, rows):
    """The examples ``rows`` (an index array) of an array, or of each array of a dict or list.

    Example:
        >>> import numpy as np
        >>> take([np.arange(5), np.arange(5) * 2], np.array([1, 3]))[1].tolist()
        [2, 6]
    """
    if isinstance(data, dict):
        return {k: v[rows] for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(v[rows] for v in data)
    return data[rows]


def first_array(data):
    """The first array of ``data`` (an array, or a dict or list of arrays): what counts its examples."""
    if isinstance(data, dict):
        return next(iter(data.values()))
    return data[0] if isinstance(data, (list, tuple)) else data


def quality_metric(task, model, x, y):
    """The metric a search scores trials by, as :func:`tfcompress.optimize`'s report names it:
    ``accuracy`` for a classifier; else the task's headline metric (its first compiled metric,
    ``loss`` without one), read from the task's own ``evaluate`` keys on a few predictions.

    Raises:
        TuningError: a metric named like one of a trial's own measurements (``size_kb``, ``score``, ...).

    Example:
        >>> zoo = task_zoo.regression()  # doctest: +SKIP
        >>> quality_metric(task_for(zoo.model), zoo.model, *zoo.validation)  # doctest: +SKIP
        'mae'
    """
    if task.classifier:
        return "accuracy"
    xs, ys = first(x, 4), first(y, 4)
    names = list(getattr(model, "output_names", None) or []) or None
    metric = headline(task.score(ys, model.predict(xs, verbose=0), names=names))
    if reserved_metric(metric):
        raise TuningError(f"the model's metric is named {metric!r}, which is also the name of one of the tuner's own "
                          "measurements: compile it with the metric under another name.")
    return metric


def _main_references(obj):
    """Names of the functions and classes in ``obj`` that live in ``__main__``,
    and whether ``obj`` pickles at all."""
    found = []

    class Probe(pickle.Pickler):
        def reducer_override(self, o):
            if isinstance(o, (type, types.FunctionType)) and getattr(o, "__module__", None) == "__main__":
                found.append(getattr(o, "__qualname__", repr(o)))
            return NotImplemented

    class Sink:
        def write(self, _):
            pass

    try:
        Probe(Sink(), protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    except Exception:  # noqa: BLE001 - pickle raises many kinds of errors
        return found, False
    return found, True


def check_builder(build):
    """Refuse a builder a child process cannot rebuild, saying how to fix it.

    Args:
        build: the trials' model builder.

    Raises:
        TuningError: ``build`` cannot be pickled (a lambda, a nested
            function) or refers to functions defined in ``__main__`` (the
            user's script, which trial processes do not run).

    Example:
        >>> check_builder(ModelBuilder("digits_cnn"))
    """
    target = build.target if isinstance(build, Builder) else build
    what = getattr(target, "__qualname__", None) or repr(target)
    main, picklable = _main_references(build)
    if main:
        raise TuningError(f"the model builder {what} is defined in __main__ (your script), which trial processes "
                          f"cannot import: {_FIX}.")
    if not picklable:
        raise TuningError(f"the model builder {what} cannot be pickled, so trial processes cannot rebuild the "
                          f"model (a lambda or a function nested in another): {_FIX}.")


def save_model_object(inputs, directory):
    """Save a model object given to ``tune()`` as ``directory/model.keras``
    (tf_keras, atomically) and set ``inputs.build`` to load it.

    Example:
        >>> save_model_object(inputs, "tune-out")  # doctest: +SKIP
    """
    if inputs.build is not None:
        return inputs.build
    model = coerce_model(inputs.source.model())
    path = os.path.join(directory, MODEL_FILE)
    tmp = os.path.join(directory, "model.tmp.keras")  # tf_keras picks the format from the extension
    model.save(tmp)
    os.replace(tmp, path)
    inputs.build = Builder(ModelBuilder(path, safe_mode=False), from_scratch=inputs.from_scratch)
    return inputs.build


def _builder(source, from_scratch):
    if source.kind in ("reference", "application"):
        return source.build  # untrained anyway: every trial trains it from scratch
    if source.kind == "object":
        return None  # saved into the search folder once it exists
    return Builder(source.build.target if isinstance(source.build, Builder) else source.build, from_scratch)


def search_inputs(model, data, scale="auto", seed=0, from_scratch=False, train_subset=None,
                  isolation="process", safe_mode=True):
    """Resolve the model and the data and check them against each other, once.

    Args:
        model: anything :func:`tfcompress.io.resolve_model` takes.
        data: anything :func:`tfcompress.datasets.as_dataset` takes.
        scale: input scaling (see :func:`tfcompress.datasets.from_arrays`).
            Defaults to `"auto"`.
        seed: seed of carved splits. Defaults to `0`.
        from_scratch: trials start from fresh random weights instead of the
            model's own (a trained file or object is fine-tuned by default).
            Defaults to `False`.
        train_subset: use only the first N training examples. Defaults to `None`.
        isolation: ``"process"`` checks that child processes can rebuild
            the model. Defaults to `"process"`.
        safe_mode: refuse a model file with ``Lambda`` layers (see
            :func:`tfcompress.load_model`); trials load it the same way. Defaults to `True`.

    Returns:
        A :class:`SearchInputs`.

    Raises:
        UnsupportedModelError: a model tfcompress cannot take.
        DataError: data that does not fit the model (shape, labels, dtypes).
        TuningError: a builder child processes cannot import, or a model
            metric named like one of a trial's measurements.

    Example:
        >>> search_inputs("digits_cnn", "digits", train_subset=100).train[0].shape  # doctest: +SKIP
        (100, 8, 8, 1)
    """
    source, dataset = resolve_inputs(model, "digits" if data is None else data, scale=scale, seed=seed,
                                     safe_mode=safe_mode)
    original = source.model()
    tf_model = coerce_model(original)
    task = task_for(tf_model, compiled=compile_config_of(original))
    x, y = dataset.train
    if train_subset:
        x, y = first(x, train_subset), first(y, train_subset)
    train = prepare((x, y), tf_model, 32, what="train data", classifier=task.classifier)
    val = prepare(dataset.validation, tf_model, 32, what="validation data", sparse_labels=train.sparse_labels,
                  classifier=task.classifier)
    metric = quality_metric(task, tf_model, val.x, val.y)
    build = _builder(source, from_scratch)
    if build is not None and isolation == "process":
        check_builder(build)
    name = source.name if source.kind != "object" else f"model object {source.name}"
    inputs = SearchInputs(source=source, data=dataset, train=(train.x, train.y), validation=(val.x, val.y),
                          build=build, name=name,
                          default_recipe=source.spec.recipe() if source.spec is not None else None,
                          from_scratch=bool(from_scratch), metric=metric)
    return inputs
