"""A tiny residual CNN (Functional, ~20k parameters) with identity ``Add`` shortcuts.

Used to test channel pruning across residual dependency groups: the stem conv
and the second conv of every block share one channel group.

Example:
    >>> from tfcompress.models import resnet_tiny
    >>> model = resnet_tiny.build((8, 8, 1), 10)
"""

__all__ = ["build"]


def build(input_shape=(8, 8, 1), num_classes=10, width=16, blocks=2):
    """Build the tiny ResNet.

    Args:
        input_shape: (H, W, C) of the input.
        num_classes: output classes (softmax).
        width: channels of the residual stream.
        blocks: number of residual blocks.

    Returns:
        An uncompiled tf_keras Functional model.
    """
    from tfcompress._keras import keras

    L = keras.layers
    inp = L.Input(input_shape, name="input")
    x = L.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    for b in range(blocks):
        y = L.Conv2D(width, 3, padding="same", use_bias=False, name=f"b{b}_conv1")(x)
        y = L.BatchNormalization(name=f"b{b}_bn1")(y)
        y = L.ReLU(name=f"b{b}_relu1")(y)
        y = L.Conv2D(width, 3, padding="same", use_bias=False, name=f"b{b}_conv2")(y)
        y = L.BatchNormalization(name=f"b{b}_bn2")(y)
        x = L.Add(name=f"b{b}_add")([x, y])
        x = L.ReLU(name=f"b{b}_out")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inp, out, name="resnet_tiny")
