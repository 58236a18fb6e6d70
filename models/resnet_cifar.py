"""A CIFAR-style ResNet (He et al. 2016, section 4.2) for small grey images.

Three stages of ``blocks`` basic residual blocks (two 3x3 Conv-BN, identity
``Add`` shortcut; a strided 1x1 projection where the width doubles) at widths
16/32/64, global average pooling and a softmax ``Dense``. ``blocks=3`` is
ResNet-20 (0.27M parameters); ``blocks=1`` is ResNet-8. At 28x28x1 (Fashion-MNIST
as given, no resizing) the stages run at 28x28, 14x14 and 7x7.

The trained benchmark model of the realistic benchmarks (``benchmarks/_realistic.py``), and
the ``resnet8`` reference model (``tfcompress optimize --model resnet8``).
BatchNorm momentum is 0.9 so the moving statistics keep up in short runs.

Example:
    >>> from tfcompress.models import resnet_cifar
    >>> model = resnet_cifar.build((28, 28, 1), 10, blocks=1)
    >>> model.count_params() > 70000
    True
"""

__all__ = ["build"]


def build(input_shape=(28, 28, 1), num_classes=10, blocks=1, widths=(16, 32, 64)):
    """Build the ResNet.

    Args:
        input_shape: (H, W, C) of the input. Defaults to `(28, 28, 1)`.
        num_classes: output classes (softmax). Defaults to `10`.
        blocks: residual blocks per stage (1: ResNet-8, 3: ResNet-20). Defaults to `1`.
        widths: channels of the three stages. Defaults to `(16, 32, 64)`.

    Returns:
        An uncompiled tf_keras Functional model.
    """
    from tfcompress._keras import keras

    L = keras.layers

    def conv_bn(x, filters, stride, name, relu=True, kernel=3):
        x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = L.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return L.ReLU(name=f"{name}_relu")(x) if relu else x

    inp = L.Input(input_shape, name="input")
    x = conv_bn(inp, widths[0], 1, "stem")
    for s, width in enumerate(widths):
        for b in range(blocks):
            stride = 2 if s > 0 and b == 0 else 1
            name = f"s{s}b{b}"
            y = conv_bn(x, width, stride, f"{name}a")
            y = conv_bn(y, width, 1, f"{name}b", relu=False)
            if stride != 1 or x.shape[-1] != width:
                x = conv_bn(x, width, stride, f"{name}p", relu=False, kernel=1)
            x = L.Add(name=f"{name}_add")([x, y])
            x = L.ReLU(name=f"{name}_out")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inp, out, name=f"resnet{6 * blocks + 2}")
