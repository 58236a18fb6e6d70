"""Datasets: the offline built-ins and the user's own data, as one :class:`Dataset`.

Built-ins: scikit-learn's digits (embedded) and Fashion-MNIST (read from the
idx ``.gz`` files of the Debian package ``dataset-fashion-mnist``); nothing is
downloaded at run time.

The user's data: numpy arrays (:func:`from_arrays`), ``.npz`` files
(:func:`from_npz`), image folders with one subfolder per class
(:func:`from_directory`) and ``tf.data`` datasets (:func:`from_tf_dataset`).
:func:`load` takes a built-in name or a path; :func:`as_dataset` takes
anything. Scaling is explicit (``scale="auto"``: uint8 images divided by 255)
and recorded in :attr:`Dataset.scale`.

Example:
    >>> from tfcompress import datasets
    >>> data = datasets.load("digits")
    >>> data.train[0].shape[1:]
    (8, 8, 1)
"""

import dataclasses
import gzip
import os
import struct

import numpy as np

from tfcompress._maskfolders import from_mask_folders, mask_roots
from tfcompress._model import own_scaling
from tfcompress._userdata import (
    NPZ_KEYS,
    Dataset,
    carve,
    check_fraction,
    from_arrays,
    from_directory,
    from_npz,
    from_tf_dataset,
)
from tfcompress.errors import DataError
from tflite_export._userfiles import check_model_file, refuse_special

__all__ = ["Dataset", "load", "as_dataset", "from_arrays", "from_npz", "from_directory", "from_tf_dataset",
           "NAMES", "FASHION_MNIST_DIRS", "NPZ_KEYS", "add_data_options", "cli_data", "parse_scale"]

NAMES = ("digits", "fashion-mnist")

# Where Debian's dataset-fashion-mnist puts its files; TFCOMPRESS_FASHION_MNIST
# overrides it for other layouts.
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)

def load(name, validation_fraction=0.1, seed=0, input_shape=None, scale="auto", test_fraction=0.2, model=None,
         output_shape=None):
    """Load a built-in dataset by name, or the user's data from a path.

    Args:
        name: ``"digits"``, ``"fashion-mnist"``, a ``.npz`` file (see
            :func:`from_npz`) or an image folder (see :func:`from_directory`).
        validation_fraction: share of the training split held out for
            validation when none is given. Defaults to `0.1`.
        seed: seed of the split. Defaults to `0`.
        input_shape: the model's input shape; an image folder is read at
            that size and channel count. Defaults to `None`.
        scale: for a path, see :func:`from_arrays`. Defaults to `"auto"`.
        test_fraction: for a path without a test split, the share carved
            out for testing. Defaults to `0.2`.
        model: a model file whose input shape an image folder is read at
            when ``input_shape`` is not given (``tfcompress export --data``).
            Defaults to `None`.
        output_shape: the model's output shape; a folder of ``images/`` and
            ``masks/`` (segmentation, :mod:`tfcompress._maskfolders`) has its
            masks read at it. Defaults to `None` (``model``'s, if given).

    Returns:
        A :class:`Dataset`.

    Raises:
        DataError: unknown name, missing file, or Fashion-MNIST files missing.

    Example:
        >>> data = load("digits")
        >>> x, y = data.test
    """
    if isinstance(name, os.PathLike) or (isinstance(name, str) and _looks_like_path(name)):
        path = os.fsdecode(name)
        refuse_special(path, "data", DataError)
        shape, own, out_shape = _model_facts(model) if model is not None else (None, None, None)
        if own and scale == "auto":  # the model divides raw pixels itself: not a second time
            scale = None
        kw = dict(validation_fraction=validation_fraction, test_fraction=test_fraction, seed=seed, scale=scale)
        data = None
        if os.path.isdir(path) and mask_roots(path):  # images/ + masks/: segmentation
            data = from_mask_folders(path, input_shape or shape, output_shape or out_shape, **kw)
        elif os.path.isdir(path):
            data = from_directory(path, input_shape=input_shape or shape, **kw)
        elif os.path.isfile(path):
            data = from_npz(path, **kw)
        if data is not None:
            return dataclasses.replace(data, scaled_by=own) if own and data.scale is None else data
        raise DataError(f"data {path} does not exist: pass an existing .npz file or image folder, "
                        f"or one of {', '.join(NAMES)}.")
    key = str(name).lower().replace("_", "-")
    if key == "digits":
        x, y, xt, yt, names = _digits(seed)
        factor = 1 / 16
    elif key in ("fashion-mnist", "fashion"):
        x, y, xt, yt = _fashion_mnist()
        names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
        key, factor = "fashion-mnist", 1 / 255
    else:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(NAMES)}, "
                        "or pass a .npz file or an image folder.")
    check_fraction("validation_fraction", validation_fraction)
    (tr, val) = carve(len(x), validation_fraction, seed)
    return Dataset(
        name=key,
        train=(x[tr], y[tr]),
        validation=(x[val], y[val]),
        test=(xt, yt),
        num_classes=int(max(y.max(), yt.max()) + 1),
        class_names=tuple(names),
        scale=factor,
        splits={"validation": "carved", "test": "given"},
    )


def _model_facts(model):
    """A model file's input shape, the layer with which it scales raw inputs itself, and
    its output shape (``(None, None, None)`` when it cannot be read: the images' own size is used, the export
    itself reports a bad model file)."""
    from tflite_export import loader

    try:
        check_model_file(os.fsdecode(model))  # a FIFO would block Keras for ever
        loaded = loader.load_model(os.fsdecode(model))
    except Exception:  # noqa: BLE001 - the export itself reports a bad model file
        return None, None, None
    shape, out = loaded.input_shape, loaded.output_shape
    return ((tuple(shape[1:]) if isinstance(shape, tuple) else None), own_scaling(loaded),
            tuple(out[1:]) if isinstance(out, tuple) else None)


def _looks_like_path(name):
    return os.path.exists(name) or os.sep in name or name.lower().endswith(".npz")


def _digits(seed):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype("float32") / 16.0)[..., None]
    y = bunch.target.astype("int64")
    # A fixed, stratified 80/20 test split: digits has no official one.
    rng = np.random.default_rng(seed + 12345)
    test_idx = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test_idx.extend(rng.choice(idx, size=len(idx) // 5, replace=False))
    test = np.zeros(len(y), bool)
    test[test_idx] = True
    return x[~test], y[~test], x[test], y[test], tuple(str(i) for i in range(10))


def _find_fashion_dir():
    # An explicit TFCOMPRESS_FASHION_MNIST is the only place looked at.
    override = os.environ.get("TFCOMPRESS_FASHION_MNIST")
    dirs = [override] if override else list(FASHION_MNIST_DIRS)
    for d in dirs:
        if os.path.exists(os.path.join(d, "train-images-idx3-ubyte.gz")):
            return d
    raise DataError(
        "Fashion-MNIST not found (looked in "
        f"{', '.join(dirs)}): install it with "
        "`sudo apt-get install dataset-fashion-mnist` or set TFCOMPRESS_FASHION_MNIST "
        "to a folder holding its idx .gz files."
    )


def _read_idx(path):
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}; reinstall dataset-fashion-mnist.") from None
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path} is not an idx uint8 file; reinstall dataset-fashion-mnist.")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated; reinstall dataset-fashion-mnist.")
    return arr.reshape(dims)


def _fashion_mnist():
    d = _find_fashion_dir()
    def images(f):
        return (_read_idx(os.path.join(d, f)).astype("float32") / 255.0)[..., None]
    def labels(f):
        return _read_idx(os.path.join(d, f)).astype("int64")
    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


def as_dataset(data, input_shape=None, scale="auto", seed=0, validation=None, output_shape=None):
    """Any data argument as a :class:`Dataset`.

    Args:
        data: a :class:`Dataset`; a built-in name or a path (as :func:`load`);
            an ``(x, y)`` pair (as :func:`from_arrays`); a ``tf.data.Dataset``.
        input_shape: the model's input shape (image folders are read at it).
            Defaults to `None`.
        scale: as :func:`from_arrays` (ignored for a :class:`Dataset`).
            Defaults to `"auto"`.
        seed: seed of carved splits. Defaults to `0`.
        validation: a validation split to use with ``(x, y)`` or tf.data
            training data. Defaults to `None` (carved).
        output_shape: the model's output shape (masks of a segmentation
            folder are read at it). Defaults to `None`.

    Returns:
        A :class:`Dataset`.

    Raises:
        DataError: data of another kind, or data the constructor refuses.

    Example:
        >>> import numpy as np
        >>> as_dataset((np.zeros((10, 4)), np.arange(10) % 2)).source
        'arrays'
    """
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        return load(data, seed=seed, input_shape=input_shape, scale=scale, output_shape=output_shape)
    if type(data).__module__.startswith("tensorflow") and hasattr(data, "element_spec"):
        return from_tf_dataset(data, validation, input_shape=input_shape, seed=seed, scale=scale)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return from_arrays(data[0], data[1], validation=validation, seed=seed, scale=scale)
    raise DataError(f"data must be a Dataset, a built-in name ({', '.join(NAMES)}), a .npz file or image folder, "
                    f"an (x, y) pair of arrays or a tf.data.Dataset, got {type(data).__name__}.")


# --------------------------------------------------------------------------- the command line


def add_data_options(parser):
    """Add ``--data PATH`` and ``--scale`` to a command that also has ``--dataset NAME``.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser(); add_data_options(p)
        >>> p.parse_args(["--data", "mine.npz"]).scale
        'auto'
    """
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="your own data: a .npz file (x_train/y_train, optionally x_val/y_val and "
                        "x_test/y_test; or x/y; a model with several inputs or outputs: one array each, "
                        "named x_train/<input name>, y_train/<output name>), an image folder with one "
                        "subfolder per class, or a folder of images/ and masks/ (segmentation) "
                        "(optionally inside train/, val/, test/); missing splits are carved, seeded")
    parser.add_argument("--scale", default="auto",
                        help="input scaling of --data: auto (uint8 divided by 255, other dtypes kept), "
                        "none, or a factor such as 1/255 (default: %(default)s)")


def cli_data(dataset=None, data=None):
    """The one data argument of a command from ``--dataset NAME`` and ``--data PATH``
    (a path given to ``--dataset`` is taken as ``--data``).

    Raises:
        DataError: both or neither given.

    Example:
        >>> cli_data("digits"), cli_data(data="mine.npz")
        ('digits', 'mine.npz')
    """
    if dataset and data:
        raise DataError(f"give --dataset {dataset} or --data {data}, not both.")
    if not dataset and not data:
        raise DataError(f"no data: give --dataset ({', '.join(NAMES)}) or --data PATH (a .npz file or an "
                        "image folder).")
    return data or dataset


def parse_scale(text):
    """``--scale`` as :func:`from_arrays` takes it: ``"auto"``, None or a positive factor.

    Raises:
        DataError: anything else.

    Example:
        >>> parse_scale("auto"), parse_scale("none"), round(parse_scale("1/255") * 255, 9)
        ('auto', None, 1.0)
    """
    t = str(text).strip().lower()
    if t in ("auto", "none"):
        return None if t == "none" else "auto"
    try:
        num, _, den = t.partition("/")
        value = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        value = None
    if value is None or not np.isfinite(value) or value <= 0:
        raise DataError(f"--scale must be auto, none or a positive factor such as 1/255, got {text!r}.")
    tiny, most = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
    if not tiny <= value <= most:  # float32 inputs times it would be all zeros or infinities
        raise DataError(f"--scale {text} is {'0' if value < tiny else 'infinite'} in float32 (inputs are "
                        f"scaled in float32, which holds {tiny:.3g}..{most:.3g}): give a factor such as 1/255.")
    return value

