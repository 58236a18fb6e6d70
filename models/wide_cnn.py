"""A wider reference CNN (Conv-BN-ReLU 64/128/256, ~59 MFLOPs at 28x28x1).

BatchNorm momentum is 0.9 (not 0.99) so the moving statistics keep up in
short training runs.

The benchmark model for channel pruning: wide enough that removing filters
gives real latency gains on CPUs.

Example:
    >>> from tfcompress.models import wide_cnn
    >>> model = wide_cnn.build((28, 28, 1), 10)
"""

__all__ = ["build"]


def build(input_shape=(28, 28, 1), num_classes=10):
    """Build the wide CNN.

    Args:
        input_shape: (H, W, C) of the input.
        num_classes: output classes (softmax).

    Returns:
        An uncompiled tf_keras Sequential model.
    """
    from tfcompress._keras import keras

    L = keras.layers
    layers = [L.Input(input_shape)]
    for i, filters in enumerate((64, 128, 256), start=1):
        layers += [
            L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}"),
            L.BatchNormalization(momentum=0.9, name=f"bn{i}"),
            L.ReLU(name=f"relu{i}"),
            L.MaxPooling2D(2, name=f"pool{i}"),
        ]
    layers += [
        L.Flatten(name="flatten"),
        L.Dropout(0.3, name="dropout"),
        L.Dense(128, activation="relu", name="fc1"),
        L.Dense(num_classes, activation="softmax", name="logits"),
    ]
    return keras.Sequential(layers, name="wide_cnn")
