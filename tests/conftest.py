"""Shared fixtures: everything seeded; small models trained once per session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

import tfcompress
import tflite_export
from tfcompress import datasets, models
from tfcompress._keras import keras
from tflite_export._testing import digits as digits_arrays
from tflite_export._testing import tiny_cnn


@pytest.fixture(autouse=True, scope="session")
def _latency_cache(tmp_path_factory):
    """Budget mode's latency plans cache this machine's op costs: in a session folder, not the user's ~/.cache."""
    old = os.environ.get("TFCOMPRESS_CACHE")
    os.environ["TFCOMPRESS_CACHE"] = str(tmp_path_factory.mktemp("latency-cache"))
    yield
    if old is None:
        os.environ.pop("TFCOMPRESS_CACHE", None)
    else:
        os.environ["TFCOMPRESS_CACHE"] = old


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)


@pytest.fixture(scope="session")
def digits():
    return datasets.load("digits")


@pytest.fixture(scope="session")
def fashion():
    """Fashion-MNIST; in CI (CI=true) a missing dataset fails instead of skipping."""
    try:
        return datasets.load("fashion-mnist")
    except tfcompress.DataError as e:
        if os.environ.get("CI"):
            pytest.fail(f"Fashion-MNIST must be installed in CI (make data): {e}")
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def trained_digits(digits):
    """The reference digits CNN, trained (seeded) to ~97% validation accuracy."""
    keras.utils.set_random_seed(0)
    spec = models.get("digits_cnn")
    model = spec.build()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(*digits.train, epochs=spec.epochs, batch_size=spec.batch_size, verbose=0)
    return model


@pytest.fixture(scope="session")
def optimized_digits(digits, trained_digits):
    """Default recipe (80% pruning then PQAT) applied to the trained digits CNN."""
    keras.utils.set_random_seed(0)
    recipe = models.get("digits_cnn").recipe()
    return tfcompress.optimize(trained_digits, digits.train, digits.validation, recipe=recipe, verbose=0)


@pytest.fixture(scope="session")
def int8_path(tmp_path_factory):
    """tflite_export's tiny CNN as an int8 .tflite file (calibrated on digits), shared by the timing tests."""
    xtr, _, _, _ = digits_arrays()
    p = tmp_path_factory.mktemp("int8") / "m_int8.tflite"
    tflite_export.export(tiny_cnn(), p, representative_data=xtr, num_samples=100)
    return str(p)


@pytest.fixture(scope="module")
def tiny(digits):
    """A small digits CNN (conv, fc1, out), trained 6 epochs: budget-mode tests plan on it."""
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
                          keras.layers.Flatten(), keras.layers.Dense(24, activation="relu", name="fc1"),
                          keras.layers.Dense(10, activation="softmax", name="out")])
    m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", ["accuracy"])
    m.fit(*digits.train, epochs=6, batch_size=64, verbose=0)
    return m


@pytest.fixture(scope="module")
def two_conv(digits):
    """A digits CNN of two 16-channel convolutions (conv, conv2, out), trained 6 epochs: latency plans thin it."""
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(16, 3, activation="relu", name="conv"),
                          keras.layers.Conv2D(16, 3, activation="relu", name="conv2"), keras.layers.Flatten(),
                          keras.layers.Dense(10, activation="softmax", name="out")])
    m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", ["accuracy"])
    m.fit(*digits.train, epochs=6, batch_size=64, verbose=0)
    return m
