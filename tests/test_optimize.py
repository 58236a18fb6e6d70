import numpy as np
import pytest

import tfcompress
import tflite_export
from tfcompress import DataError, Pruning, Quantization, Recipe, UnsupportedModelError
from tfcompress._keras import keras, tf
from tfcompress.pruning import layer_sparsity

PRUNABLE = ("conv1", "conv2", "fc1", "logits")


def test_reaches_requested_sparsity_in_every_prunable_layer(optimized_digits):
    report = optimized_digits.report
    for name in PRUNABLE:
        rec = report.layer(name)
        assert rec.stages["pruning"] == "wrapped"
        assert rec.sparsity == pytest.approx(0.8, abs=0.01), name
    # the deployable model itself carries the zeros (PQAT kept them)
    measured = layer_sparsity(optimized_digits.model)
    assert set(PRUNABLE) <= set(measured)
    for name in PRUNABLE:
        assert measured[name] == pytest.approx(0.8, abs=0.01)


def test_weightless_layers_are_not_wrapped_and_say_why(optimized_digits):
    rec = optimized_digits.report.layer("pool")
    assert "pruning" not in rec.stages  # nothing to prune: not listed as a pruning skip
    assert rec.stages["quantization"] == "quantized"


def test_keeps_accuracy_within_3_points(optimized_digits):
    rep = optimized_digits.report
    assert rep.baseline["accuracy"] > 0.9
    assert rep.optimized["accuracy"] >= rep.baseline["accuracy"] - 0.03
    assert rep.evaluated_on == "validation"
    assert [s["name"] for s in rep.stages] == ["pruning", "quantization"]
    assert set(optimized_digits.history) == {"pruning", "quantization"}


def test_report_serialises(optimized_digits):
    import json

    d = json.loads(json.dumps(optimized_digits.report.to_dict()))
    assert d["layers"][0]["name"] == "conv1"
    md = optimized_digits.report.to_markdown()
    assert "| conv1 | Conv2D |" in md and "80.0%" in md


def test_int8_file_of_optimized_model(optimized_digits, digits, tmp_path):
    path = tmp_path / "m.tflite"
    rep = tflite_export.export(optimized_digits.model, path, mode="int8",
                               representative_data=digits.train[0])
    assert (rep.input_dtype, rep.output_dtype) == ("int8", "int8")
    x, y = digits.test
    keras_acc = float(np.mean(np.argmax(optimized_digits.model.predict(x, verbose=0), -1) == y))
    tfl_acc = tflite_export.evaluate(path, x, y)
    assert abs(tfl_acc - keras_acc) <= 0.02
    assert tflite_export.agreement(optimized_digits.model, path, x) >= 0.97


def test_input_model_is_left_untouched(trained_digits, optimized_digits):
    # after the session fixture ran optimize, the trained model is still dense
    assert max(layer_sparsity(trained_digits).values()) < 0.05


def test_constant_schedule_with_tf_data_and_no_qat(trained_digits, digits):
    ds = tf.data.Dataset.from_tensor_slices(digits.train)  # unbatched
    recipe = Recipe(pruning=Pruning(final_sparsity=0.5, schedule="constant", epochs=1), quantization=None)
    res = tfcompress.optimize(trained_digits, ds, digits.validation, recipe=recipe, verbose=0)
    assert not any(isinstance(l, keras.layers.Wrapper) for l in res.model.layers)
    for name in PRUNABLE:
        assert res.report.layer(name).sparsity == pytest.approx(0.5, abs=0.01)


def test_qat_only_on_batched_dataset_with_one_hot_labels(trained_digits, digits):
    x, y = digits.train
    ds = tf.data.Dataset.from_tensor_slices((x, np.eye(10, dtype="float32")[y])).batch(64)
    recipe = Recipe(pruning=None, quantization=Quantization(epochs=1))
    res = tfcompress.optimize(trained_digits, ds, recipe=recipe, verbose=0)
    assert res.report.evaluated_on == "training"
    assert "PQAT" not in res.report.stages[0]["details"]
    assert res.report.optimized["accuracy"] > 0.9


def test_epochs_override_and_yaml_path(trained_digits, digits, tmp_path):
    path = tmp_path / "r.yaml"
    Recipe(pruning=Pruning(final_sparsity=0.3, epochs=9), quantization=None).save_yaml(path)
    res = tfcompress.optimize(trained_digits, digits.train, recipe=str(path), epochs=1, verbose=0)
    assert res.report.stages[0]["epochs"] == 1
    assert res.report.layer("fc1").sparsity == pytest.approx(0.3, abs=0.01)


def test_epoch_validation_off_scores_validation_for_the_report_only(trained_digits, digits):
    # the tuner's trials read the report, never a per-epoch val_* figure: no validation pass per epoch
    recipe = Recipe(pruning=Pruning(final_sparsity=0.5, epochs=2), quantization=None)
    on = tfcompress.optimize(trained_digits, digits.train, digits.validation, recipe=recipe, verbose=0, seed=0)
    off = tfcompress.optimize(trained_digits, digits.train, digits.validation, recipe=recipe, verbose=0, seed=0,
                              epoch_validation=False)
    assert any(k.startswith("val_") for k in on.history["pruning"])
    assert not any(k.startswith("val_") for k in off.history["pruning"]) and len(off.history["pruning"]["loss"]) == 2
    assert off.report.evaluated_on == on.report.evaluated_on == "validation"
    assert off.report.baseline == on.report.baseline  # the same validation data, scored before and after
    assert off.report.optimized["accuracy"] > 0.9


class _Sub(keras.Model):
    def __init__(self):
        super().__init__()
        self.d = keras.layers.Dense(10)

    def call(self, x):
        return self.d(x)


def _keras3_subclassed_model():
    # Keras 3 Sequential/Functional models are translated (tests/test_keras3.py);
    # subclassed ones cannot be.
    import keras as k3

    class Net(k3.Model):
        def __init__(self):
            super().__init__()
            self.d = k3.layers.Dense(10)

        def call(self, x):
            return self.d(k3.ops.reshape(x, (-1, 64)))

    net = Net()
    net(np.zeros((1, 8, 8, 1), "float32"))
    return net


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: "model.h5", "expected a tf_keras Model"),
        (lambda: _Sub(), "subclassed model"),
        (_keras3_subclassed_model, "subclassed Keras 3 model"),
    ],
)
def test_bad_models(make, fragment, digits):
    with pytest.raises(UnsupportedModelError, match=fragment):
        tfcompress.optimize(make(), digits.train)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ((np.zeros((10, 28, 28, 1)), np.zeros(10, int)),
         "inputs have shape (28, 28, 1) but the model expects (8, 8, 1)"),
        ((np.zeros((10, 8, 8, 1)), np.full(10, 12)), "labels span 12..12 but the model has 10 output"),
        ((np.zeros((10, 8, 8, 1)), np.zeros((10, 3))), "do not fit the model output"),
        ((np.zeros((0, 8, 8, 1)), np.zeros(0, int)), "is empty"),
        ((np.zeros((10, 8, 8, 1)), np.zeros(9, int)), "x has 10 examples but y has 9"),
        (np.zeros((10, 8, 8, 1)), "must be an (x, y) tuple"),
    ],
)
def test_bad_data(trained_digits, data, fragment):
    with pytest.raises(DataError) as e:
        tfcompress.optimize(trained_digits, data)
    assert fragment in str(e.value)


def test_empty_dataset(trained_digits):
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((0, 8, 8, 1), "float32"), np.zeros(0, "int64")))
    with pytest.raises(DataError, match="empty"):
        tfcompress.optimize(trained_digits, ds)


def test_a_diverged_stage_is_named_and_its_nan_model_is_not_exported(tmp_path):
    # EfficientNetB0's QAT on inputs 255x too small diverged to NaN weights, and TensorFlow's int8
    # converter then segfaulted: the stage fails with the fix, the exporter refuses.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    x = np.random.RandomState(0).rand(32, 4).astype("float32")
    y = np.arange(32) % 3

    class Poison(keras.callbacks.Callback):  # training "diverges": a weight becomes NaN
        def on_epoch_end(self, epoch, logs=None):
            w = self.model.get_weights()
            w[0][0, 0] = np.nan
            self.model.set_weights(w)

    recipe = {"train": {"epochs": 1}, "pruning": None, "quantization": None}
    with pytest.raises(tfcompress.RecipeError, match="the train stage diverged: .* non-finite weights.*lower"):
        tfcompress.optimize(model, (x, y), recipe=recipe, callbacks=[Poison()], verbose=0)
    w = model.get_weights()
    w[0][0, 0] = np.inf
    model.set_weights(w)
    with pytest.raises(tflite_export.ExportError, match=r"NaN or Inf weights \(1 of 4, first: dense(_\d+)?/kernel"):
        tflite_export.export(model, str(tmp_path / "m.tflite"), mode="int8", representative_data=x)
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.parametrize("large", [True, False])
def test_a_large_models_stage_copies_are_freed_before_the_next_stage(monkeypatch, large):
    # Keras models are reference cycles, so a finished stage's wrapped model, Adam slots and
    # gradients stayed until Python's cycle collector happened to run: VGG19's optimize peaked 2.15 GiB
    # above the model, 1.98 with a collection between stages (benchmarks/bench_memory.py; only for large
    # models: a collection costs ~0.3 s).
    import gc
    import weakref

    from tfcompress import _model

    monkeypatch.setattr(_model, "LARGE_MODEL_BYTES", 0 if large else 1 << 60)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    x = np.random.RandomState(0).rand(32, 4).astype("float32")
    y = np.arange(32) % 3
    trained = []

    class Seen(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            trained.append(weakref.ref(self.model))

    gc.collect()
    gc.disable()  # only optimize's own collection may free the cycles
    try:
        result = tfcompress.optimize(model, (x, y), epochs=1, batch_size=8, callbacks=[Seen()], verbose=0)
        first_stage_alive = trained[0]() is not None
    finally:
        gc.enable()
    assert [s["name"] for s in result.report.stages] == ["pruning", "quantization"]
    assert first_stage_alive is not large
