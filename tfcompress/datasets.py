"""Offline datasets: scikit-learn's digits (embedded) and Fashion-MNIST (Debian).

Nothing is downloaded at run time. Digits ships inside scikit-learn; Fashion-MNIST
is read from the idx ``.gz`` files of the Debian package ``dataset-fashion-mnist``.

Example:
    >>> from tfcompress import datasets
    >>> data = datasets.load("digits")
    >>> data.train[0].shape[1:]
    (8, 8, 1)
"""

import gzip
import os
import struct
from dataclasses import dataclass

import numpy as np

from tfcompress.errors import DataError

__all__ = ["Dataset", "load", "NAMES", "FASHION_MNIST_DIRS"]

NAMES = ("digits", "fashion-mnist")

# Where Debian's dataset-fashion-mnist puts its files; TFCOMPRESS_FASHION_MNIST
# overrides it for other layouts.
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits as ``(x, y)`` numpy tuples.

    ``x`` is float32 NHWC in [0, 1]; ``y`` holds int64 class labels.
    """

    name: str
    train: tuple
    validation: tuple
    test: tuple
    num_classes: int
    class_names: tuple = ()

    @property
    def input_shape(self):
        return tuple(self.train[0].shape[1:])

    def describe(self):
        return (
            f"{self.name}: {len(self.train[0])} train / {len(self.validation[0])} "
            f"validation / {len(self.test[0])} test, input {self.input_shape}, "
            f"{self.num_classes} classes"
        )


def load(name, validation_fraction=0.1, seed=0):
    """Load a dataset by name, with a seeded validation split carved from train.

    Args:
        name: ``"digits"`` or ``"fashion-mnist"``.
        validation_fraction: share of the training split held out for
            validation. Defaults to `0.1`.
        seed: seed of the split. Defaults to `0`.

    Returns:
        A :class:`Dataset`.

    Raises:
        DataError: unknown name, or Fashion-MNIST files missing.

    Example:
        >>> data = load("digits")
        >>> x, y = data.test
    """
    key = str(name).lower().replace("_", "-")
    if key == "digits":
        x, y, xt, yt, names = _digits(seed)
    elif key in ("fashion-mnist", "fashion"):
        x, y, xt, yt = _fashion_mnist()
        names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
        key = "fashion-mnist"
    else:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(NAMES)}.")
    if not 0 < validation_fraction < 1:
        raise DataError(f"validation_fraction must be in (0, 1), got {validation_fraction}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_val = max(1, int(round(len(x) * validation_fraction)))
    val, tr = order[:n_val], order[n_val:]
    return Dataset(
        name=key,
        train=(x[tr], y[tr]),
        validation=(x[val], y[val]),
        test=(xt, yt),
        num_classes=int(max(y.max(), yt.max()) + 1),
        class_names=tuple(names),
    )


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
