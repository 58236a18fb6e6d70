import gzip

import numpy as np
import pytest

from tfcompress import DataError, datasets


def test_digits_splits(digits):
    x, y = digits.train
    assert x.shape[1:] == (8, 8, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert len(digits.train[0]) + len(digits.validation[0]) + len(digits.test[0]) == 1797
    assert digits.num_classes == 10 and set(np.unique(digits.test[1])) == set(range(10))
    # splits are disjoint: no test image appears in train
    train_rows = {r.tobytes() for r in x}
    overlap = sum(r.tobytes() in train_rows for r in digits.test[0])
    assert overlap < 5  # a few digits images are exact duplicates in the source data


def test_fashion_mnist(fashion):
    assert fashion.input_shape == (28, 28, 1)
    assert len(fashion.train[0]) + len(fashion.validation[0]) == 60000
    assert len(fashion.test[0]) == 10000
    assert fashion.class_names[9] == "Ankle boot"


def test_fashion_missing_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIRS", (str(tmp_path),))
    monkeypatch.delenv("TFCOMPRESS_FASHION_MNIST", raising=False)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        datasets.load("fashion-mnist")


def test_truncated_idx_file(monkeypatch, tmp_path):
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with gzip.open(tmp_path / f, "wb") as g:
            g.write(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 10)
    monkeypatch.setenv("TFCOMPRESS_FASHION_MNIST", str(tmp_path))
    with pytest.raises(DataError, match="truncated"):
        datasets.load("fashion-mnist")


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        datasets.load("cifar")
