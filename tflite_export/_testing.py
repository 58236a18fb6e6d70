"""Tiny seeded models and data used by the tflite_export tests and examples (private)."""

import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

_CACHE: dict[str, Any] = {}


def digits():
    if "digits" not in _CACHE:
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images / 16.0).astype("float32")[..., None]
        y = d.target.astype("int64")
        rng = np.random.default_rng(0)
        idx = rng.permutation(len(x))
        x, y = x[idx], y[idx]
        _CACHE["digits"] = (x[:1400], y[:1400], x[1400:], y[1400:])
    return _CACHE["digits"]


def tiny_cnn(train=True):
    """A ~1.5k-parameter seeded CNN trained briefly on 8x8 digits."""
    key = ("cnn", train)
    if key in _CACHE:
        return _CACHE[key]
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    m = keras.Sequential(
        [
            keras.layers.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(2, name="pool"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    m.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    if train:
        xtr, ytr, _, _ = digits()
        m.fit(xtr, ytr, epochs=12, batch_size=64, verbose=0)
    _CACHE[key] = m
    return m


def keras_accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
