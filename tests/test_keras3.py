"""Keras 3 models are translated to tf_keras with the same outputs."""

import numpy as np
import pytest

k3 = pytest.importorskip("keras")
if not k3.__version__.startswith("3"):  # pragma: no cover
    pytest.skip("Keras 3 is not installed as `keras`", allow_module_level=True)

import tfcompress  # noqa: E402
from tfcompress._keras import keras  # noqa: E402
from tfcompress._keras3 import to_tf_keras  # noqa: E402
from tfcompress._model import coerce_model

L = k3.layers


def _same(k3_model, x, atol=1e-5):
    tfk = to_tf_keras(k3_model)
    assert type(tfk).__module__.startswith("tf_keras")
    got, want = tfk(x), k3_model(x)
    for a, b in zip(np.atleast_1d(got) if not isinstance(got, list) else got,
                    np.atleast_1d(want) if not isinstance(want, list) else want):
        assert np.abs(np.asarray(a) - np.asarray(b)).max() <= atol
    return tfk


def _images(n=4, size=8):
    return np.random.RandomState(0).rand(n, size, size, 3).astype("float32") * 255


def test_functional_residual_concat_matches():
    k3.utils.set_random_seed(0)
    inp = k3.Input((8, 8, 3))
    x = L.Rescaling(1 / 127.5, offset=-1)(inp)
    x = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    y = L.Conv2D(4, 1, use_bias=False)(x)
    x = L.Add()([x, y])
    x = L.BatchNormalization()(x)
    z = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.Concatenate()([x, z])
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    x = L.Multiply()([x, L.Activation("sigmoid")(s)])
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(3, activation="softmax")(L.Dropout(0.2)(x))
    tfk = _same(k3.Model(inp, out, name="residual"), _images())
    assert tfk.name == "residual"
    assert [l.name for l in tfk.layers][1] == "rescaling" or "rescaling" in tfk.layers[1].name


def test_sequential_normalization_and_recurrent_match():
    k3.utils.set_random_seed(0)
    m = k3.Sequential([
        k3.Input((10,)), L.Normalization(mean=0.5, variance=2.0), L.Dense(8, activation="relu"),
        L.Reshape((2, 4)), L.GRU(3, return_sequences=True), L.LSTM(2), L.Dense(2),
    ])
    _same(m, np.random.RandomState(1).rand(4, 10).astype("float32"))


def test_nested_backbone_matches_and_flattens():
    k3.utils.set_random_seed(0)
    bi = k3.Input((8, 8, 3))
    backbone = k3.Model(bi, L.Conv2D(4, 3, activation="relu")(bi), name="backbone")
    head = k3.Sequential([k3.Input((4,)), L.Dense(5)], name="head")
    inp = k3.Input((8, 8, 3))
    f = backbone(inp)
    out = head(L.GlobalAveragePooling2D()(f))
    model = k3.Model(inp, [out, f])
    x = _images()
    tfk = _same(model, x)
    flat = coerce_model(model)
    assert not any(isinstance(l, keras.Model) for l in flat.layers)
    for a, b in zip(flat(x), model(x)):
        assert np.abs(a.numpy() - np.asarray(b)).max() <= 1e-5
    assert isinstance(tfk.get_layer("backbone"), keras.Model)


def test_subclassed_keras3_model_is_refused():
    class Net(k3.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(tfcompress.UnsupportedModelError, match="subclassed.*Sequential"):
        to_tf_keras(net)


def test_lambda_and_ops_are_refused_with_what_to_do():
    inp = k3.Input((4,))
    with pytest.raises(tfcompress.UnsupportedModelError, match="Lambda layer"):
        to_tf_keras(k3.Model(inp, L.Lambda(lambda t: t * 2)(inp)))
    with pytest.raises(tfcompress.UnsupportedModelError, match="keras.ops"):
        to_tf_keras(k3.Model(inp, k3.ops.mean(inp, axis=-1)))


def test_optimize_accepts_a_keras3_model():
    k3.utils.set_random_seed(0)
    m = k3.Sequential([k3.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu", name="conv"), L.Flatten(), L.Dense(3)])
    rng = np.random.RandomState(0)
    x, y = rng.rand(32, 8, 8, 1).astype("float32"), rng.randint(0, 3, 32)
    result = tfcompress.optimize(m, (x, y), recipe={"pruning": {"epochs": 1, "final_sparsity": 0.5}},
                                 batch_size=16, verbose=0)
    assert isinstance(result.model, keras.Model)
    assert result.report.layer("conv").stages["pruning"] == "wrapped"
