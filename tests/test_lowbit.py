"""Sub-8-bit weights: 4-bit / 2-bit QAT and the int4 .tflite that really stores them.

The properties, not "it runs": the fake-quantized kernels take at most 15 (3)
values per output channel; the exported file's conv / depthwise / dense weights
are INT4 tensors, the file is smaller than the int8 one, LiteRT runs it with
the Keras outputs; an earlier pruning's zeros survive 4-bit QAT.
"""

import numpy as np
import pytest

import tfcompress
import tflite_export as tfl
from tfcompress import Quantization, Recipe
from tfcompress._keras import keras, tf
from tfcompress.errors import RecipeError
from tfcompress.quantization import nbit, wrap
from tfcompress.tuning.space import SearchSpace
from tflite_export.int4 import int4_weights

L = keras.layers


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu", name="conv"),
                             L.DepthwiseConv2D(3, name="dw"), L.Flatten(), L.Dense(32, name="fc")], name="tiny")


def _data(n=32):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 32, n)


def _qat(model, stage, callbacks=()):
    x, y = _data()
    qat, records = wrap(model, stage, scheme="qat")
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=list(callbacks))
    return qat, records


def _fake_quant_kernels(qat):
    """{layer: fake-quantized kernel} as the QAT forward pass sees it."""
    out = {}
    for layer in qat.layers:
        for w, quantizer, qvars in getattr(layer, "_weight_vars", []):
            if "kernel" in w.name:
                out[layer.layer.name] = quantizer(w, training=False, weights=qvars).numpy()
    return out


def _pruned_model():
    """The tiny model with 80% of the fc kernel zero (as a pruning stage leaves it); also the mask."""
    model = _model()
    k = model.get_layer("fc").kernel
    k.assign(tf.where(tf.abs(k) < np.quantile(np.abs(k.numpy()), 0.8), 0.0, k))
    return model, k.numpy() == 0


@pytest.fixture(scope="module")
def qat4():
    """4-bit PQAT of the pruned model, zeros kept by nbit.zero_keeper: (qat model, records, zero mask)."""
    model, zeros = _pruned_model()
    qat, records = wrap(model, Quantization(weights="int4"), scheme="pqat")
    keep = nbit.zero_keeper(qat)
    assert keep is not None
    x, y = _data()
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[keep])
    return qat, records, zeros


def _levels(kernels):
    """The most distinct values any output channel of any kernel takes."""
    most = 0
    for name, k in kernels.items():
        channels = k.reshape(-1, k.shape[-2] if name == "dw" else k.shape[-1])
        most = max([most] + [len(np.unique(channels[:, c])) for c in range(channels.shape[1])])
    return most


def test_4bit_qat_kernels_take_at_most_15_values_per_channel_and_keep_the_zeros(qat4):
    qat, records, zeros = qat4
    assert records == {"conv": "quantized: int4", "dw": "quantized: int4", "fc": "quantized: int4"}
    kernels = _fake_quant_kernels(qat)
    assert set(kernels) == {"conv", "dw", "fc"}
    assert 8 < _levels(kernels) <= 15  # 4-bit symmetric narrow range, not collapsed
    assert zeros.mean() > 0.75 and np.all(kernels["fc"][zeros] == 0)  # the pruning's zeros survived QAT


def test_int4_export_stores_int4_weights_runs_and_matches_keras(qat4, tmp_path):
    qat = qat4[0]
    x, _ = _data()
    rep = tfl.export(qat, tmp_path / "m_int4.tflite", mode="int4", representative_data=x)
    data = (tmp_path / "m_int4.tflite").read_bytes()
    assert set(int4_weights(data).values()) == {"int4"} and len(int4_weights(data)) == 3
    assert "int4" in tfl.inspect(tmp_path / "m_int4.tflite").summary()
    int8 = tfl.export(_model(), tmp_path / "m_int8.tflite", mode="int8", representative_data=x)
    assert set(int4_weights((tmp_path / "m_int8.tflite").read_bytes()).values()) == {"int8"}
    assert rep.bytes < int8.bytes
    got = tfl.predict(tmp_path / "m_int4.tflite", x[:16])
    want = qat.predict(x[:16], verbose=0)
    step = float(np.ptp(want)) / 255 * 3  # within a few int8 output steps
    assert np.abs(got - want).max() <= max(step, 0.05)


def test_int4_post_training_of_a_float_model(tmp_path):
    model = _model()
    x, _ = _data()
    rep = tfl.export(model, tmp_path / "ptq.tflite", mode="int4")
    data = (tmp_path / "ptq.tflite").read_bytes()
    types = {name.split("/")[1]: t for name, t in int4_weights(data).items()}
    assert types == {"conv": "int4", "dw": "float32", "fc": "int4"}  # ai-edge-quantizer 0.10 skips depthwise
    f32 = tfl.export(model, tmp_path / "f.tflite", mode="float32")
    assert rep.bytes < f32.bytes
    want = model.predict(x[:8], verbose=0)
    assert np.abs(tfl.predict(tmp_path / "ptq.tflite", x[:8]) - want).max() < 0.25 * np.abs(want).max() + 1e-3


@pytest.mark.slow
def test_2bit_qat_keeps_three_levels_per_channel():
    qat, records = _qat(_model(), Quantization(weights="int2"))
    assert records["fc"] == "quantized: int2"
    assert 1 < _levels(_fake_quant_kernels(qat)) <= 3


def test_bad_values_and_check_column():
    with pytest.raises(RecipeError, match="quantization.weights must be one of"):
        Quantization(weights="int3")
    with pytest.raises(RecipeError, match="quantization.weights"):
        Recipe.from_dict({"quantization": {"weights": 4}})
    report = tfcompress.check(_model(), recipe={"quantization": {"weights": "int4"}}, convert=False)
    assert report.layer("conv").extra["low_bit"] == "int4"
    assert report.layer("fc").extra["low_bit"] == "int4"
    plain = tfcompress.check(_model(), recipe={"quantization": {}}, convert=False)
    assert "low_bit" not in plain.layer("conv").extra
    assert nbit.describe(Quantization(weights="int2"), "qat") == "2-bit weights QAT (8-bit activations)"
    space = SearchSpace.from_dict({"qat_weights": ["int8", "int4"]})  # the tuner knob
    assert space.recipe({"qat_weights": "int4"}).quantization.weights == "int4"
