"""Recurrent models (audio, sequences) export to .tflite files that compute what Keras computes.

TensorFlow 2.21's converter fails on an LSTM/GRU/SimpleRNN with a free batch size
(TensorListReserve needs a static shape) and, at batch size 1, fuses a trained LSTM into
an op whose outputs differ from Keras's; tflite_export converts them unrolled
(tflite_export._rnn), which is exact.
"""

import numpy as np
import pytest
import tf_keras as keras

import tflite_export
from tflite_export._rnn import unrolled

L = keras.layers


def _model(kind, return_sequences=False):
    keras.utils.set_random_seed(0)
    inp = keras.Input((30, 4))
    x = L.Conv1D(8, 3, padding="same", activation="relu")(inp)
    x = getattr(L, kind)(12, return_sequences=return_sequences)(x)
    if return_sequences:
        x = L.GlobalAveragePooling1D()(x)
    model = keras.Model(inp, L.Dense(3, activation="softmax")(x))
    rng = np.random.default_rng(1)  # large weights: cell states well beyond what an untrained layer reaches
    model.set_weights([rng.normal(size=w.shape).astype("float32") * 0.7 for w in model.get_weights()])
    return model


@pytest.mark.parametrize("kind,seq", [("LSTM", False), ("GRU", True), ("SimpleRNN", False)])
def test_a_recurrent_model_exports_exactly_at_any_batch_size(kind, seq, tmp_path):
    model = _model(kind, seq)
    x = np.random.default_rng(2).normal(size=(40, 30, 4)).astype("float32")
    path = tmp_path / "m.tflite"
    tflite_export.export(model, path, mode="float32")
    got = tflite_export.predict(path, x, batch_size=16)
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=2e-5)
    assert not any(getattr(layer, "unroll", False) for layer in model.layers)  # the model is left as it was
    # int8 converts too, and keeps to the float model's classes on most inputs
    tflite_export.export(model, tmp_path / "q.tflite", mode="int8", representative_data=x)
    agree = np.mean(tflite_export.predict(tmp_path / "q.tflite", x).argmax(1) == model.predict(x, verbose=0).argmax(1))
    assert agree >= 0.8


def test_long_or_unknown_sequences_are_left_alone():
    free = keras.Sequential([keras.Input((None, 4)), L.LSTM(3)])
    with unrolled(free) as names:
        assert names == [] and not free.layers[0].unroll
    long = keras.Sequential([keras.Input((5000, 4)), L.GRU(3)])
    with unrolled(long) as names:
        assert names == []
