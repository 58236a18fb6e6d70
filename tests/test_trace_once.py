"""build_training_state: ``fit`` traces its train step once (not twice), ``evaluate``
after ``compile`` its test step once, and the trained weights are exactly the same."""

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress.training import build_training_state, set_seed


def _model():
    set_seed(0)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")])


def _data():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 8)).astype("float32"), rng.integers(0, 3, 40)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # 16, 16, 8: batch dimension None


def _compiled():
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_fit_traces_the_train_step_once_and_trains_the_same():
    built, plain = _compiled(), _compiled()
    assert build_training_state(built, _data())
    built.fit(_data(), epochs=1, verbose=0)
    plain.fit(_data(), epochs=1, verbose=0)
    assert built.train_function.experimental_get_tracing_count() == 1
    assert plain.train_function.experimental_get_tracing_count() == 2  # what it saves
    for a, b in zip(built.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_evaluate_after_compile_traces_once_with_the_same_result():
    built, plain = _compiled(), _compiled()
    assert build_training_state(built, _data(), optimizer=False)
    assert built.evaluate(_data(), verbose=0) == plain.evaluate(_data(), verbose=0)
    assert built.test_function.experimental_get_tracing_count() == 1
    assert plain.test_function.experimental_get_tracing_count() == 2


def test_models_with_their_own_train_step_or_data_it_cannot_shape_are_left_to_keras():
    class Own(keras.Model):
        def train_step(self, data):
            return super().train_step(data)

    inputs = keras.Input((8,))
    own = Own(inputs, keras.layers.Dense(3)(inputs))
    own.compile(optimizer="adam", loss="mse")
    assert not build_training_state(own, _data())
    assert not build_training_state(_compiled(), _data().map(lambda x, y: x))  # no labels
    assert not build_training_state(_model(), _data())  # not compiled
