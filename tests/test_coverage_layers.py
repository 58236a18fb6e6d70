"""Layers TF-MOT rejects and nested models, through optimize, int8 export and LiteRT."""

import numpy as np
import pytest

import tfcompress
import tflite_export
from tfcompress import Quantization
from tfcompress._keras import keras, tf
from tfcompress._model import flatten_nested
from tfcompress.quantization import configs, why_not_quantizable, wrap

L = keras.layers
RECIPE = {"pruning": {"epochs": 1, "final_sparsity": 0.5}, "quantization": {"epochs": 1}}


def _data(shape, n=32, classes=3):
    rng = np.random.RandomState(0)
    return (rng.rand(n, *shape) * 255).astype("float32"), rng.randint(0, classes, n)


def _backbone():
    """Rescaling, Normalization, SE Multiply, TF ops, hard_sigmoid, residual Add and Concatenate."""
    inp = keras.Input((16, 16, 3))
    x = L.Rescaling(1 / 127.5, offset=-1)(inp)
    x = L.Normalization(mean=0.0, variance=1.0)(x)
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = L.BatchNormalization()(x)
    x = tf.nn.relu6(x)
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = tf.reduce_mean(s, axis=[1, 2], keepdims=True)
    s = L.Conv2D(8, 1, activation="hard_sigmoid", name="se")(s)
    x = L.Multiply()([x, s])
    y = L.Conv2D(8, 1, name="pw")(x)
    x = L.Add()([x, y])
    x = L.Concatenate()([x, tf.math.sigmoid(y)])
    return keras.Model(inp, x, name="backbone")


def _transfer_model():
    inp = keras.Input((16, 16, 3))
    f = _backbone()(inp)
    f = L.Reshape((-1, 16))(f)
    f = L.GlobalAveragePooling1D()(f)
    head = keras.Sequential([keras.Input((16,)), L.Dense(8, activation="relu", name="fc")], name="head")
    return keras.Model(inp, L.Dense(3, name="logits")(head(f)), name="transfer")


def test_nested_transfer_model_prunes_quantizes_and_exports(tmp_path):
    keras.utils.set_random_seed(0)
    model = _transfer_model()
    x, y = _data((16, 16, 3))
    result = tfcompress.optimize(model, (x, y), recipe=RECIPE, batch_size=16, verbose=0)
    rep = result.report
    for name in ("stem", "se", "pw", "fc", "logits"):  # inside both nested models too
        assert rep.layer(name).stages == {"pruning": "wrapped", "quantization": "quantized"}, name
    by_type = {}
    for r in rep.layers:
        by_type.setdefault(r.type, []).append(r.stages.get("quantization"))
    for t in ("Rescaling", "Normalization", "Multiply", "Add", "Concatenate", "Reshape", "BatchNormalization"):
        assert by_type[t] == ["quantized"], t
    assert all(s.startswith("skipped: TFOpLambda") for s in by_type["TFOpLambda"])
    assert not any(isinstance(l, keras.Model) for l in result.model.layers)
    assert model.get_layer("backbone") is not None  # the user's model is untouched
    path = str(tmp_path / "transfer.tflite")
    tflite_export.export(result.model, path, mode="int8", representative_data=x[:16], num_samples=16)
    assert np.isfinite(tflite_export.predict(path, x[:2])).all()


def test_flatten_keeps_outputs_and_weights():
    keras.utils.set_random_seed(0)
    model = _transfer_model()
    x, _ = _data((16, 16, 3), n=4)
    flat = flatten_nested(model)
    assert np.abs(flat(x).numpy() - model(x).numpy()).max() <= 1e-5
    assert len(flat.weights) == len(model.weights)


@pytest.mark.parametrize("rnn", [L.GRU, L.LSTM])
def test_recurrent_layers_are_skipped_with_reason(rnn):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 4)), rnn(4, name="rnn"), L.Dense(3, name="out")])
    x, y = _data((6, 4))
    result = tfcompress.optimize(model, (x / 255, y), recipe=RECIPE, batch_size=16, verbose=0)
    q = result.report.layer("rnn").stages["quantization"]
    assert q.startswith("skipped: ") and "recurrent" in q
    assert result.report.layer("out").stages["quantization"] == "quantized"


def test_activation_configs():
    assert configs.rule(L.Activation("relu")) == ("default", None)
    assert configs.rule(L.Activation("hard_sigmoid")) == ("output", None)
    assert configs.rule(L.Activation("elu")) == ("output", None)
    assert why_not_quantizable(L.PReLU()).startswith("PReLU has weights")


def test_unquantizable_layers_never_raise_from_tf_mot():
    """A standalone BatchNormalization (no conv before it) is skipped, not a TF-MOT crash, under PQAT too."""
    inp = keras.Input((8,))
    x = L.BatchNormalization(name="bn")(inp)
    x = L.Dense(4, name="d")(x)
    model = keras.Model(inp, L.Multiply()([x, tf.nn.sigmoid(x)]))
    for preserve in (False, True):
        qat, records = wrap(model, Quantization(), preserve_sparsity=preserve)
        assert records["bn"].startswith("skipped: BatchNormalization not right after")
        assert records["d"] == "quantized"
