"""Small trained models of every task kind, with their data: what a user brings that is not a classifier.

Each builder trains its model here (seeded, seconds on a CPU) on synthetic
data it can learn, compiled with the loss and metrics of its task, and
returns a :class:`Task` holding the model and ``train`` / ``validation`` /
``test`` splits in the structure the model takes (dicts for named heads,
dicts for named inputs). The tests (tests/test_any_model.py) and the task
benchmark (benchmarks/bench_tasks.py) use the same builders.

Example:
    >>> from tfcompress.models import task_zoo
    >>> zoo = task_zoo.regression()  # doctest: +SKIP
    >>> zoo.model.evaluate(*zoo.test, return_dict=True, verbose=0)["mae"] < 0.2  # doctest: +SKIP
    True
"""

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["Zoo", "regression", "sigmoid_classifier", "two_heads", "segmenter", "two_inputs",
           "keras3_rescaling_folder", "KINDS"]


@dataclass
class Zoo:
    """A trained model of one task kind and its data splits (``(x, y)`` each)."""

    name: str
    model: object
    train: tuple
    validation: tuple
    test: tuple
    description: str = ""


def _split(x, y, n_train, n_val):
    def part(a, sl):
        return {k: v[sl] for k, v in a.items()} if isinstance(a, dict) else a[sl]

    cuts = (slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None))
    return [(part(x, c), part(y, c)) for c in cuts]


def _trained(name, m, x, y, n_train, n_val, description, epochs, batch_size=32):
    """Split (train / validation / test), fit ``m`` on the training split, and wrap it as a :class:`Zoo`."""
    train, val, test = _split(x, y, n_train, n_val)
    m.fit(*train, epochs=epochs, batch_size=batch_size, verbose=0)
    return Zoo(name, m, train, val, test, description)


def regression(seed=0, n=256):
    """A CNN regressing two brightness averages of 8x8 images (MSE loss, MAE metric)."""
    from tfcompress._keras import keras

    L = keras.layers
    keras.utils.set_random_seed(seed)
    x = np.random.RandomState(seed).uniform(0, 1, (n, 8, 8, 1)).astype("float32")
    y = (np.stack([x[:, :4].mean(axis=(1, 2, 3)), x[:, :, :4].mean(axis=(1, 2, 3))], axis=1) * 4).astype("float32")
    m = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(16, 3, activation="relu", name="c1"),
                          L.Flatten(), L.Dense(32, activation="relu", name="d1"), L.Dense(2, name="out")],
                         name="regression_cnn")
    m.compile(keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    return _trained("regression", m, x, y,
                    int(n * 0.625), int(n * 0.125), "CNN regression, 2 outputs (MSE, MAE)", epochs=40)


def sigmoid_classifier(seed=2, n=320, compiled=True):
    """One sigmoid unit: which half of a 64-vector is brighter (binary cross-entropy, accuracy)."""
    from tfcompress._keras import keras

    L = keras.layers
    keras.utils.set_random_seed(seed)
    x = np.random.RandomState(seed).uniform(0, 1, (n, 64)).astype("float32")
    y = (x[:, :32].mean(1) > x[:, 32:].mean(1)).astype("int64")
    m = keras.Sequential([keras.Input((64,)), L.Dense(16, activation="relu"), L.Dense(1, activation="sigmoid")],
                         name="sigmoid_classifier")
    m.compile(keras.optimizers.Adam(0.01), loss=keras.losses.BinaryCrossentropy(), metrics=["accuracy"])
    train, val, test = _split(x, y, int(n * 0.625), int(n * 0.175))
    m.fit(*train, epochs=30, verbose=0)
    if not compiled:  # the same weights, as a file saved without its compile would give
        bare = keras.models.clone_model(m)
        bare.set_weights(m.get_weights())
        m = bare
    return Zoo("sigmoid", m, train, val, test, "one sigmoid unit (binary cross-entropy, accuracy)")


def two_heads(seed=3, n=256):
    """A classifier head and a box-regression head with loss weights (like a detector's)."""
    from tfcompress._keras import keras

    L = keras.layers
    keras.utils.set_random_seed(seed)
    x = np.random.RandomState(seed).uniform(0, 1, (n, 8, 8, 1)).astype("float32")
    cls = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype("int64")
    box = np.stack([x.mean(axis=(1, 2, 3)), x[:, :, :4].mean(axis=(1, 2, 3))], 1).astype("float32")
    inp = keras.Input((8, 8, 1))
    h = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, activation="relu", name="c1")(inp))
    h = L.Dense(32, activation="relu", name="shared")(L.Concatenate()([h, L.Flatten()(inp)]))
    m = keras.Model(inp, {"cls": L.Dense(2, activation="softmax", name="cls")(h), "box": L.Dense(2, name="box")(h)},
                    name="two_heads")
    m.compile(keras.optimizers.Adam(0.01), loss={"cls": "sparse_categorical_crossentropy", "box": "mse"},
              loss_weights={"cls": 1.0, "box": 5.0}, metrics={"cls": ["accuracy"], "box": ["mae"]})
    return _trained("two_heads", m, x, {"cls": cls, "box": box},
                    int(n * 0.625), int(n * 0.125), "classifier + box regressor, loss weights 1:5", epochs=40)


def segmenter(seed=4, n=240):
    """A U-Net-style segmenter: a bright square's mask (sigmoid map, binary cross-entropy, IoU)."""
    from tfcompress._keras import keras

    L = keras.layers
    keras.utils.set_random_seed(seed)
    rng = np.random.RandomState(seed)
    x = rng.uniform(0, 1, (n, 16, 16, 1)).astype("float32")
    x[:, 4:12, 4:12] += rng.uniform(0.5, 1.0, (n, 1, 1, 1)).astype("float32")
    mask = (x > 1.0).astype("float32")
    inp = keras.Input((16, 16, 1))
    e = L.Conv2D(8, 3, padding="same", activation="relu", name="enc")(inp)
    d = L.Conv2D(8, 3, padding="same", activation="relu", name="mid")(L.MaxPooling2D()(e))
    u = L.Concatenate()([L.UpSampling2D()(d), e])
    m = keras.Model(inp, L.Conv2D(1, 1, activation="sigmoid", name="mask")(u), name="unet_segmenter")
    m.compile(keras.optimizers.Adam(0.01), loss="binary_crossentropy",
              metrics=[keras.metrics.BinaryIoU(target_class_ids=[1], name="iou")])
    return _trained("segmenter", m, x, mask,
                    int(n * 0.55), int(n * 0.125), "U-Net-style segmenter, 16x16 sigmoid map (BCE, IoU)",
                    epochs=15, batch_size=16)


def two_inputs(seed=5, n=224):
    """Two named inputs (6 and 3 features) into one softmax classifier."""
    from tfcompress._keras import keras

    L = keras.layers
    keras.utils.set_random_seed(seed)
    rng = np.random.RandomState(seed)
    a, b = rng.normal(size=(n, 6)).astype("float32"), rng.normal(size=(n, 3)).astype("float32")
    y = ((a[:, 0] + b[:, 0]) > 0).astype("int64")
    ia, ib = keras.Input((6,), name="a"), keras.Input((3,), name="b")
    h = L.Dense(16, activation="relu", name="h")(L.Concatenate()([ia, ib]))
    m = keras.Model([ia, ib], L.Dense(2, activation="softmax", name="out")(h), name="two_inputs")
    m.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return _trained("two_inputs", m, {"a": a, "b": b}, y,
                    int(n * 0.57), int(n * 0.14), "two named inputs, softmax classifier", epochs=30)


def keras3_rescaling_folder(folder, seed=6, per_class=60):
    """A Keras 3 CNN that starts with ``Rescaling(1/255)``, and an image folder of dark and light
    8x8 PNGs written to ``folder`` (the ``image_dataset_from_directory`` pattern). Returns the
    model, trained on the raw pixels, and the folder's path."""
    import keras as k3
    from PIL import Image

    rng = np.random.RandomState(seed)
    for cls, light in (("dark", False), ("light", True)):
        os.makedirs(os.path.join(folder, cls), exist_ok=True)
        for i in range(per_class):
            px = rng.randint(150, 256, (8, 8, 3)) if light else rng.randint(0, 106, (8, 8, 3))
            Image.fromarray(px.astype("uint8")).save(os.path.join(folder, cls, f"{i}.png"))
    k3.utils.set_random_seed(seed)
    inp = k3.Input((8, 8, 3))
    h = k3.layers.Rescaling(1 / 255)(inp)
    h = k3.layers.GlobalAveragePooling2D()(k3.layers.Conv2D(4, 3, activation="relu")(h))
    model = k3.Model(inp, k3.layers.Dense(2, activation="softmax")(h), name="keras3_rescaling")
    model.compile(k3.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, folder


#: The kinds the task benchmark runs, by name.
KINDS = {"regression": regression, "sigmoid": sigmoid_classifier, "two_heads": two_heads,
         "segmenter": segmenter, "two_inputs": two_inputs}
