"""Turn what users pass as data into batched ``tf.data`` pipelines, checked
against the model so mistakes fail early with a clear message.

Data is checked here once, before any work: numeric values only, no NaN or
Inf in the inputs or labels, as many labels as inputs, inputs of the model's
shape, labels in range of the model's output units (class ids) or valid
one-hot rows. The checks themselves live in :mod:`tfcompress._checks`.
"""

import numpy as np

from tfcompress._checks import check_array, check_class_ids, check_finite, check_probabilities
from tfcompress._keras import tf
from tfcompress.errors import DataError

__all__ = ["Data", "prepare", "check_arrays", "check_splits", "check_spec"]


class Data:
    """Checked training or evaluation data.

    Attributes:
        dataset: a batched ``tf.data.Dataset`` of ``(x, y)``.
        num_samples: examples in one pass.
        sparse_labels: True when labels are class indices (not one-hot).
        x: the inputs as numpy when the user passed numpy (else None).
        y: the labels as numpy when the user passed numpy (else None).
    """

    def __init__(self, dataset, num_samples, sparse_labels, x=None, y=None):
        self.dataset = dataset
        self.num_samples = num_samples
        self.sparse_labels = sparse_labels
        self.x = x
        self.y = y

    def inputs(self, limit=None):
        """Inputs as one numpy array (up to ``limit`` examples)."""
        if self.x is not None:
            return self.x if limit is None else self.x[:limit]
        xs, n = [], 0
        for x, _ in self.dataset:
            xs.append(x.numpy())
            n += len(xs[-1])
            if limit is not None and n >= limit:
                break
        out = np.concatenate(xs)
        return out if limit is None else out[:limit]

    def arrays(self):
        """``(x, y)`` as numpy arrays."""
        if self.x is not None:
            return self.x, self.y
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in self.dataset])
        return np.concatenate(xs), np.concatenate(ys)


def _shape_ok(got, want):
    return len(got) == len(want) and all(w is None or g is None or g == w for g, w in zip(got, want))


def _output_units(model, what):
    out = model.output_shape
    if isinstance(out, list):
        raise DataError(f"{what}: models with several outputs are not supported yet; give the model one output.")
    return out[-1]


def _labels(y, units, what, offset=0):
    """Checked labels and their form: ``(y, sparse)``; sparse means class ids."""
    if units == 1:  # one sigmoid/logit unit: class ids 0/1, or (n, 1) probabilities
        if y.ndim == 1:
            return check_class_ids(what, "labels", y, units, offset), True
        if y.ndim == 2 and y.shape[1] == 1:
            return check_probabilities(what, "labels", y, offset, rows=False), False
    elif y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        return check_class_ids(what, "labels", y.reshape(-1), units, offset), True
    elif y.ndim == 2 and y.shape[1] == units:
        return check_probabilities(what, "labels", y, offset), False
    raise DataError(
        f"{what}: labels of shape {y.shape[1:]} do not fit the model output {(units,)}: "
        "give class ids (shape (n,)) or one-hot rows."
    )


def _converter(sparse, want_sparse, units):
    """A function turning labels of form ``sparse`` into ``want_sparse`` (None: nothing to do).

    Validation labels are converted to the training labels' form, because
    the loss and the accuracy metric are chosen from the training labels.
    One sigmoid unit takes both forms as they are.
    """
    if want_sparse is None or sparse == want_sparse or units == 1:
        return None
    if want_sparse:
        return lambda y: tf.argmax(y, axis=-1, output_type=tf.int64)
    return lambda y: tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), units)


def check_arrays(data, model, what="train_data", sparse_labels=None):
    """Check ``(x, y)`` numpy data against ``model`` without batching it (see :func:`prepare`).

    Returns:
        ``(x as float32, y checked (and converted to sparse_labels' form), sparse)``.

    Raises:
        DataError: as :func:`prepare`.

    Example:
        >>> x, y, sparse = check_arrays((x, y), model)  # doctest: +SKIP
    """
    units = _output_units(model, what)
    want = tuple(model.input_shape[1:])
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise DataError(f"{what} must be an (x, y) tuple of arrays or a tf.data.Dataset, got {type(data).__name__}.")
    x = check_array(what, "x", data[0])
    y = check_array(what, "y", data[1])
    if len(x) == 0:
        raise DataError(f"{what} is empty: pass at least one example.")
    if len(x) != len(y):
        raise DataError(f"{what}: x has {len(x)} examples but y has {len(y)}; they must match.")
    if not _shape_ok(x.shape[1:], want):
        raise DataError(
            f"{what}: inputs have shape {x.shape[1:]} but the model expects {want}: "
            "reshape the data or rebuild the model for this input."
        )
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become Inf: refused next
        x = x.astype("float32", copy=False)
    check_finite(what, "x", x)
    y, sparse = _labels(y, units, what)
    convert = _converter(sparse, sparse_labels, units)
    if convert is not None:
        y, sparse = convert(y).numpy(), sparse_labels
    return x, y, sparse


def check_splits(data, model):
    """Check every split of a :class:`~tfcompress.datasets.Dataset` against
    ``model`` (input shape, labels against the outputs, dtypes, NaN/Inf),
    before any training.

    Raises:
        DataError: the first split that does not fit, named.

    Example:
        >>> check_splits(datasets.load("digits"), model)  # doctest: +SKIP
    """
    _, _, sparse = check_arrays(data.train, model, "train data")
    for name in ("validation", "test"):
        split = getattr(data, name, None)
        if split is not None and len(split[0]):
            check_arrays(split, model, f"{name} data", sparse_labels=sparse)


def prepare(data, model, batch_size, shuffle=False, seed=0, what="train_data", sparse_labels=None):
    """Check ``data`` against ``model`` and batch it.

    Numpy data is checked whole. A ``tf.data.Dataset`` is read once here, to
    count its examples, and every batch of that pass is checked; a dataset
    that yields different data on each pass (random augmentation) is checked
    on that pass only, and one that repeats forever is refused.

    Args:
        data: ``(x, y)`` numpy arrays, or a finite ``tf.data.Dataset`` of
            ``(x, y)`` (batched or not).
        model: the tf_keras model the data feeds.
        batch_size: batch size for numpy data and unbatched datasets.
        shuffle: shuffle numpy data every epoch. Defaults to `False`.
        seed: shuffle seed. Defaults to `0`.
        what: the argument name used in error messages.
        sparse_labels: the label form to convert to: True for class ids,
            False for one-hot rows (validation data takes the training
            data's form this way). Defaults to `None` (the form given).

    Returns:
        A :class:`Data`.

    Raises:
        DataError: empty data, non-numeric values, NaN/Inf, wrong input
            shape, as many labels as inputs, or labels that do not fit the
            model's outputs.
    """
    if isinstance(data, tf.data.Dataset):
        units = _output_units(model, what)
        return _prepare_dataset(data, units, batch_size, tuple(model.input_shape[1:]), what, sparse_labels)
    x, y, sparse = check_arrays(data, model, what, sparse_labels)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(min(len(x), 10000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return Data(ds, len(x), sparse, x=x, y=y)


def check_spec(ds, what):
    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise DataError(f"{what}: the dataset must yield (x, y) pairs.")
    for part, s in zip(("x", "y"), spec):
        if not isinstance(s, tf.TensorSpec):
            raise DataError(
                f"{what}: the dataset's {part} is a {type(s).__name__}, not one tensor: "
                "tfcompress takes models with one input and one output, fed (x, y) pairs of tensors."
            )
        if s.dtype.is_complex or not (s.dtype.is_floating or s.dtype.is_integer or s.dtype.is_bool):
            raise DataError(
                f"{what}: the dataset's {part} has dtype {s.dtype.name}, not real numbers: "
                "map it to numbers first (class ids for labels)."
            )
        if s.shape.rank is None:
            raise DataError(f"{what}: the dataset's {part} has no known rank: give its shape (tf.ensure_shape).")
    if int(ds.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise DataError(f"{what}: the dataset repeats forever: drop .repeat(), optimize runs the epochs itself.")
    return spec


def _prepare_dataset(ds, units, batch_size, want, what, sparse_labels):
    spec = check_spec(ds, what)
    xshape = tuple(spec[0].shape)
    if _shape_ok(xshape, want):
        ds = ds.batch(batch_size)
    elif not _shape_ok(xshape[1:], want):
        raise DataError(
            f"{what}: dataset inputs have shape {xshape} but the model expects {want} "
            "(optionally with a batch dimension)."
        )
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    n, sparse = 0, None
    for x, y in ds:  # the one pass that counts the examples checks each batch
        x = check_finite(what, "x", x.numpy(), offset=n)
        y = check_array(what, "y", y.numpy())
        if len(x) != len(y):
            raise DataError(f"{what}: a batch has {len(x)} inputs but {len(y)} labels; they must match.")
        _, form = _labels(y, units, what, offset=n)
        if sparse is not None and form != sparse:
            raise DataError(f"{what}: labels change form at example {n} (class ids and one-hot rows mixed).")
        sparse = form
        n += len(x)
    if n == 0:
        raise DataError(f"{what} is empty: the dataset yielded no examples.")
    convert = _converter(sparse, sparse_labels, units)
    if convert is not None:
        ds, sparse = ds.map(lambda x, y: (x, convert(y))), sparse_labels
    return Data(ds.prefetch(tf.data.AUTOTUNE), n, sparse)
