"""Reference models and their default recipes (installed as ``tfcompress.models``).

Each :class:`ModelSpec` knows how to build a fresh tf_keras model, the dataset
and training settings it was designed for, and the recipe tfcompress applies
to it by default (``recipes/<name>.yaml`` beside this file).

Example:
    >>> from tfcompress import models
    >>> spec = models.get("digits_cnn")
    >>> model = spec.build()
    >>> model.output_shape
    (None, 10)
"""

import os
from collections.abc import Callable
from dataclasses import dataclass

from tfcompress.errors import UnsupportedModelError

__all__ = ["ModelSpec", "get", "names", "digits_cnn", "lenet5", "resnet8"]

_RECIPES = os.path.join(os.path.dirname(__file__), "recipes")


@dataclass(frozen=True)
class ModelSpec:
    """A reference model: builder, intended dataset and training settings."""

    name: str
    builder: Callable
    dataset: str
    input_shape: tuple
    epochs: int
    batch_size: int = 64
    learning_rate: float = 1e-3
    description: str = ""

    def build(self, input_shape=None, num_classes=10, seed=0):
        """A freshly initialised, uncompiled tf_keras model."""
        from tfcompress._keras import keras

        keras.utils.set_random_seed(seed)
        return self.builder(tuple(input_shape or self.input_shape), num_classes)

    def recipe(self):
        """The default :class:`tfcompress.Recipe` of this model."""
        from tfcompress.recipe import Recipe

        return Recipe.from_yaml(os.path.join(_RECIPES, f"{self.name}.yaml"))


def digits_cnn(input_shape=(8, 8, 1), num_classes=10):
    """A small CNN (~25k parameters) for 8×8 digit images."""
    from tfcompress._keras import keras

    L = keras.layers
    return keras.Sequential(
        [
            L.Input(input_shape),
            L.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            L.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            L.MaxPooling2D(2, name="pool"),
            L.Flatten(name="flatten"),
            L.Dense(64, activation="relu", name="fc1"),
            L.Dense(num_classes, activation="softmax", name="logits"),
        ],
        name="digits_cnn",
    )


def lenet5(input_shape=(28, 28, 1), num_classes=10):
    """A LeNet-5-style CNN (~62k parameters) for 28×28 grey images."""
    from tfcompress._keras import keras

    L = keras.layers
    return keras.Sequential(
        [
            L.Input(input_shape),
            L.Conv2D(6, 5, padding="same", activation="relu", name="conv1"),
            L.MaxPooling2D(2, name="pool1"),
            L.Conv2D(16, 5, activation="relu", name="conv2"),
            L.MaxPooling2D(2, name="pool2"),
            L.Flatten(name="flatten"),
            L.Dense(120, activation="relu", name="fc1"),
            L.Dense(84, activation="relu", name="fc2"),
            L.Dense(num_classes, activation="softmax", name="logits"),
        ],
        name="lenet5",
    )


def resnet8(input_shape=(28, 28, 1), num_classes=10):
    """A CIFAR-style ResNet-8 (~78k parameters, 16/32/64 channels); see ``resnet_cifar``."""
    from tfcompress.models import resnet_cifar

    return resnet_cifar.build(input_shape, num_classes, blocks=1)


_SPECS = {
    "digits_cnn": ModelSpec(
        "digits_cnn", digits_cnn, "digits", (8, 8, 1), epochs=20, batch_size=32,
        description="small CNN for scikit-learn digits (8×8)",
    ),
    "lenet5": ModelSpec(
        "lenet5", lenet5, "fashion-mnist", (28, 28, 1), epochs=8, batch_size=64,
        description="LeNet-5-style CNN for Fashion-MNIST (28×28)",
    ),
    "resnet8": ModelSpec(
        "resnet8", resnet8, "fashion-mnist", (28, 28, 1), epochs=3, batch_size=128,
        description="CIFAR-style ResNet-8 (16/32/64, residual Add) for Fashion-MNIST (28×28)",
    ),
}


def names():
    """Names of the reference models."""
    return sorted(_SPECS)


def get(name):
    """The :class:`ModelSpec` called ``name``.

    Raises:
        UnsupportedModelError: unknown name.
    """
    try:
        return _SPECS[name.replace("-", "_")]
    except KeyError:
        raise UnsupportedModelError(
            f"unknown reference model {name!r}: choose one of {', '.join(names())}, "
            "or pass a .keras/.h5 file."
        ) from None
