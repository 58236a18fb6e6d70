"""Each ``fit`` of a new model frees its train graph with the model.

TensorFlow registers a gradient function per traced train step in a global
registry that holds the traced graph (tf-keras issue #286): without
:func:`tfcompress._keras.forget_custom_gradients` every fine-tuning of a new
model (budget mode fine-tunes one per candidate) kept its whole graph until
the process ended (MobileNetV2 alpha 0.35: ~67 MB a fit, 19 GB in a plan).
"""

import gc
import weakref

import numpy as np
from tensorflow.python.framework import func_graph, ops

from tfcompress._keras import forget_custom_gradients, keras, tf
from tfcompress.distill import fine_tune
from tfcompress.target.joint import _tune
from tfcompress.training import set_seed


def _model():
    set_seed(0)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")])


def _data():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, 8)).astype("float32"), rng.integers(0, 3, 96)
    return x, y


def _custom_gradients():
    return {k for k in ops._gradient_registry._registry if str(k).startswith("CustomGradient-")}


def _train_graphs():
    return {id(g): g for g in gc.get_objects() if isinstance(g, func_graph.FuncGraph) and "train" in g.name}


def _graphs_freed_with_the_model(train):
    """Train a new model with ``train(model)``, drop it: are the train graphs it traced gone?"""
    gc.collect()
    before, registered = set(_train_graphs()), _custom_gradients()
    model = _model()
    train(model)
    new = [weakref.ref(g) for i, g in _train_graphs().items() if i not in before]
    assert new, "the fit traced no train step"
    del model
    gc.collect()
    return _custom_gradients() - registered, [r for r in new if r() is not None]


def test_without_the_guard_tensorflow_keeps_each_fits_train_graph():
    """What the guard is for: plain ``fit`` leaves a registry entry that keeps the graph alive."""
    x, y = _data()

    def plain(model):
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)

    left, alive = _graphs_freed_with_the_model(plain)
    try:
        assert left and alive
    finally:  # leave the registry as the other tests find it
        for name in left:
            del ops._gradient_registry._registry[name]


def test_the_one_fine_tuning_path_frees_the_train_graph_with_the_model():
    x, y = _data()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    left, alive = _graphs_freed_with_the_model(lambda m: fine_tune(m, data, 1, verbose=0))
    assert not left and not alive


def test_budget_modes_candidate_tuning_frees_the_train_graph_with_the_candidate():
    x, _ = _data()
    teacher = np.eye(3, dtype="float32")[np.arange(len(x)) % 3]
    left, alive = _graphs_freed_with_the_model(lambda m: _tune(m, x, teacher))
    assert not left and not alive


def test_a_model_trained_under_the_guard_trains_on_and_retraces_as_usual():
    """The entries serve the tracing only: a second fit (same step) and a recompile (new trace) both train."""
    x, y = _data()
    model = _model()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    losses = []
    for _ in range(2):
        with forget_custom_gradients():
            losses += model.fit(x, y, epochs=3, batch_size=32, verbose=0).history["loss"]
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    with forget_custom_gradients():
        losses += model.fit(x, y, epochs=3, batch_size=32, verbose=0).history["loss"]
    assert losses[-1] < losses[2] < losses[0]
    assert np.isfinite(losses).all()
