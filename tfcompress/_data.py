"""Turn what users pass as data into batched ``tf.data`` pipelines, checked
against the model so mistakes fail early with a clear message."""

import numpy as np

from tfcompress._keras import tf
from tfcompress.errors import DataError

__all__ = ["Data", "prepare"]


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


def _check_labels(y, model, what):
    out = model.output_shape
    if isinstance(out, list):
        raise DataError(f"{what}: models with several outputs are not supported yet; give the model one output.")
    n_out = out[-1]
    y = np.asarray(y)
    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and n_out != 1):
        y = y.reshape(-1)
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.equal(np.mod(y, 1), 0)):
                raise DataError(f"{what}: labels must be integer class ids or one-hot rows, got non-integer values.")
            y = y.astype("int64")
        if y.min() < 0 or (n_out and y.max() >= max(n_out, 2)):
            raise DataError(
                f"{what}: labels span {int(y.min())}..{int(y.max())} but the model has {n_out} "
                f"output unit(s): labels must be in 0..{max(n_out, 2) - 1}."
            )
        return y, True
    if y.ndim == 2 and y.shape[1] == n_out:
        return y.astype("float32"), False
    raise DataError(
        f"{what}: labels of shape {y.shape[1:]} do not fit the model output {tuple(out[1:])}: "
        "give class ids (shape (n,)) or one-hot rows."
    )


def prepare(data, model, batch_size, shuffle=False, seed=0, what="train_data"):
    """Check ``data`` against ``model`` and batch it.

    Args:
        data: ``(x, y)`` numpy arrays, or a ``tf.data.Dataset`` of ``(x, y)``
            (batched or not).
        model: the tf_keras model the data feeds.
        batch_size: batch size for numpy data and unbatched datasets.
        shuffle: shuffle numpy data every epoch. Defaults to `False`.
        seed: shuffle seed. Defaults to `0`.
        what: the argument name used in error messages.

    Returns:
        A :class:`Data`.

    Raises:
        DataError: empty data, wrong input shape, or labels that do not fit.
    """
    want = tuple(model.input_shape[1:])
    if isinstance(data, tf.data.Dataset):
        return _prepare_dataset(data, model, batch_size, want, what)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise DataError(f"{what} must be an (x, y) tuple of arrays or a tf.data.Dataset, got {type(data).__name__}.")
    try:
        x = np.asarray(data[0], dtype="float32")
    except (TypeError, ValueError):
        raise DataError(f"{what}: x must be a numeric array.") from None
    y = np.asarray(data[1])
    if len(x) == 0:
        raise DataError(f"{what} is empty: pass at least one example.")
    if len(x) != len(y):
        raise DataError(f"{what}: x has {len(x)} examples but y has {len(y)}; they must match.")
    if not _shape_ok(x.shape[1:], want):
        raise DataError(
            f"{what}: inputs have shape {x.shape[1:]} but the model expects {want}: "
            "reshape the data or rebuild the model for this input."
        )
    y, sparse = _check_labels(y, model, what)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(min(len(x), 10000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return Data(ds, len(x), sparse, x=x, y=y)


def _prepare_dataset(ds, model, batch_size, want, what):
    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise DataError(f"{what}: the dataset must yield (x, y) pairs.")
    xshape = tuple(spec[0].shape)
    if _shape_ok(xshape, want):
        ds = ds.batch(batch_size)
    elif not _shape_ok(xshape[1:], want):
        raise DataError(
            f"{what}: dataset inputs have shape {xshape} but the model expects {want} "
            "(optionally with a batch dimension)."
        )
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    n = 0
    y_probe = None
    for _, y in ds:
        n += int(y.shape[0])
        if y_probe is None:
            y_probe = y.numpy()
    if n == 0:
        raise DataError(f"{what} is empty: the dataset yielded no examples.")
    _, sparse = _check_labels(y_probe, model, what)
    return Data(ds.prefetch(tf.data.AUTOTUNE), n, sparse)
