"""Recipes carry the whole training schedule: optimizers, learning-rate
schedules, per-stage overrides, the train stage, seeds, Keras 3 callbacks."""

import numpy as np
import pytest

import tfcompress
from tfcompress import Penalty, Pruning, Quantization, Recipe, RecipeError, Train
from tfcompress._keras import keras
from tfcompress.schedules import Optimizer, Schedule
from tfcompress.training import learning_rate, make_optimizer, stage_callbacks, translate_callbacks


def _tiny(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(12, activation="relu", name="fc"),
                             keras.layers.Dense(3, activation="softmax", name="out")])


def _data(n=48):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)


# --- optimizers ------------------------------------------------------------------
@pytest.mark.parametrize("spec, cls, attrs", [
    ("sgd", "SGD", {"momentum": 0.9, "nesterov": False}),
    ({"name": "sgd", "momentum": 0.0}, "SGD", {"momentum": 0.0}),
    ("momentum", "SGD", {"momentum": 0.9}),
    ("nesterov", "SGD", {"momentum": 0.9, "nesterov": True}),
    ({"name": "sgd", "momentum": 0.8, "nesterov": True, "weight_decay": 1e-4}, "SGD",
     {"momentum": 0.8, "nesterov": True, "weight_decay": 1e-4}),
    ("adagrad", "Adagrad", {"epsilon": 1e-7}),
    ({"name": "rmsprop", "rho": 0.8, "momentum": 0.5}, "RMSprop", {"rho": 0.8, "momentum": 0.5}),
    ({"name": "adam", "beta_1": 0.8, "clipnorm": 1.0}, "Adam", {"beta_1": 0.8, "clipnorm": 1.0}),
    ("adamw", "AdamW", {"weight_decay": 0.004}),
    ({"name": "adamw", "weight_decay": 0.01, "beta_2": 0.99}, "AdamW", {"weight_decay": 0.01, "beta_2": 0.99}),
])
def test_each_optimizer_builds_the_keras_object_with_its_values(spec, cls, attrs):
    opt = make_optimizer(Optimizer.coerce(spec), 3e-3)
    assert type(opt).__name__ == cls and type(opt).__module__.startswith("tf_keras")
    assert float(keras.backend.get_value(opt.learning_rate)) == pytest.approx(3e-3)
    for k, v in attrs.items():
        got = getattr(opt, k)
        assert (got == v) if isinstance(v, bool) else float(keras.backend.get_value(got)) == pytest.approx(v), k


# --- schedules -------------------------------------------------------------------
S = keras.optimizers.schedules


@pytest.mark.parametrize("spec, cls, expect", [
    # steps_per_epoch 10, 4 epochs: (step, learning rate) pairs
    ("constant", float, [(0, 0.1), (39, 0.1)]),
    ({"kind": "exponential", "decay_rate": 0.5}, S.ExponentialDecay, [(0, 0.1), (10, 0.05), (20, 0.025)]),
    ({"kind": "exponential", "decay_rate": 0.5, "staircase": True}, S.ExponentialDecay, [(15, 0.05)]),
    ({"kind": "step", "drop": 0.1, "every": 2}, S.PiecewiseConstantDecay, [(0, 0.1), (20, 0.1), (21, 0.01)]),
    ({"kind": "step", "boundaries": [1, 3], "drop": 0.5}, S.PiecewiseConstantDecay,
     [(5, 0.1), (11, 0.05), (31, 0.025)]),
    ({"kind": "inverse_time", "decay_rate": 1.0}, S.InverseTimeDecay, [(0, 0.1), (10, 0.05), (30, 0.025)]),
    ({"kind": "polynomial", "alpha": 0.1}, S.PolynomialDecay, [(0, 0.1), (20, 0.055), (40, 0.01)]),
    ({"kind": "cosine"}, S.CosineDecay, [(0, 0.1), (20, 0.05), (40, 0.0)]),
    ({"kind": "cosine", "warmup_epochs": 1, "alpha": 0.0}, S.CosineDecay, [(0, 0.0), (5, 0.05), (10, 0.1), (40, 0.0)]),
    ("plateau", float, [(0, 0.1)]),
])
def test_each_schedule_builds_the_keras_schedule_in_steps(spec, cls, expect):
    lr = learning_rate(Schedule.coerce(spec), 0.1, steps_per_epoch=10, epochs=4)
    assert isinstance(lr, cls)
    for step, want in expect:
        got = lr if isinstance(lr, float) else float(lr(step))
        assert got == pytest.approx(want, abs=1e-6), (spec, step)


def test_plateau_adds_reduce_lr_on_plateau_watching_validation_loss():
    cbs = stage_callbacks("train", Schedule("plateau", factor=0.5, patience=1), 3, validation=True)
    plateau = [c for c in cbs if isinstance(c, keras.callbacks.ReduceLROnPlateau)][0]
    assert (plateau.monitor, plateau.factor, plateau.patience) == ("val_loss", 0.5, 1)
    no_val = stage_callbacks("train", Schedule("plateau"), 3, validation=False)
    assert [c.monitor for c in no_val if isinstance(c, keras.callbacks.ReduceLROnPlateau)] == ["loss"]


# --- recipe fields: YAML, old format, bad values ------------------------------------
def test_training_fields_round_trip_through_yaml():
    r = Recipe(train=Train(epochs=3, lr_schedule={"kind": "cosine", "warmup_epochs": 0.5}, optimizer="nesterov"),
               pruning=Pruning(learning_rate=1e-3, optimizer={"name": "sgd", "momentum": 0.5},
                               lr_schedule={"kind": "step", "boundaries": [1, 2]}),
               quantization=Quantization(lr_schedule="polynomial"), optimizer={"name": "adamw", "weight_decay": 0.01},
               lr_schedule={"kind": "plateau", "patience": 1}, learning_rate=3.3e-4, seed=7)
    text = r.to_yaml()
    assert Recipe.from_yaml_string(text) == r
    assert Recipe.from_dict(r.to_dict()) == r
    assert "#" not in text and "seed: 7" in text and "warmup_epochs: 0.5" in text


def test_old_format_recipes_still_load():
    r = Recipe.from_yaml_string("optimizer: sgd\nlearning_rate: 1e-3\nbatch_size: 16\n")
    assert r.optimizer == Optimizer("sgd", momentum=0.9) and r.learning_rate == 1e-3
    assert r.lr_schedule is None and r.train is None
    assert Recipe.from_yaml_string("optimizer: rmsprop").optimizer.name == "rmsprop"
    assert Recipe().to_dict()["optimizer"] == "adam"  # a default optimizer stays one word


@pytest.mark.parametrize("data, fragment", [
    ({"optimizer": "lion"}, "recipe.optimizer.name must be one of"),
    ({"optimizer": {"name": "adam", "momentum": 0.9}}, "recipe.optimizer.momentum does not apply to name 'adam'"),
    ({"optimizer": {"name": "sgd", "momentum": 1.5}}, "recipe.optimizer.momentum must be in [0, 1)"),
    ({"optimizer": {"momentum": 0.9}}, "recipe.optimizer needs a name"),
    ({"optimizer": {"name": "sgd", "speed": 2}}, "unknown key 'speed' in recipe.optimizer"),
    ({"optimizer": 3}, "recipe.optimizer must be a name"),
    ({"lr_schedule": "linear"}, "recipe.lr_schedule.kind must be one of"),
    ({"lr_schedule": {"kind": "cosine", "drop": 0.5}}, "recipe.lr_schedule.drop does not apply to kind 'cosine'"),
    ({"lr_schedule": {"kind": "exponential", "decay_rate": 1.5}}, "recipe.lr_schedule.decay_rate must be in (0, 1]"),
    ({"lr_schedule": {"kind": "step", "boundaries": [3, 2]}}, "recipe.lr_schedule.boundaries must be increasing"),
    ({"lr_schedule": {"kind": "plateau", "factor": 1.0}}, "recipe.lr_schedule.factor must be in (0, 1)"),
    ({"pruning": {"optimizer": {"name": "sgd", "beta_1": 0.5}}}, "pruning.optimizer.beta_1 does not apply"),
    ({"pruning": {"learning_rate": 0}}, "pruning.learning_rate must be in (0, 10]"),
    ({"train": {"epochs": 0}}, "train.epochs must be an integer of at least 1"),
    ({"pruning": {}, "train": {}}, "recipe stages are out of order"),
    ({"seed": -1}, "recipe.seed must be an integer of at least 0"),
])
def test_bad_training_values_raise_one_recipe_error(data, fragment):
    with pytest.raises(RecipeError) as e:
        Recipe.from_dict(data)
    assert fragment in str(e.value) and "\n" not in str(e.value)


# --- optimize: per-stage override vs inheritance, train stage, seed -------------------
def _optimizers_used(monkeypatch):
    import sys

    opt_mod = sys.modules["tfcompress.stage_runs"]  # where the stages compile
    seen = []
    real = opt_mod.make_optimizer

    def spy(o, lr, schedule=None, steps_per_epoch=1, epochs=1):
        seen.append((o.name, lr, schedule.kind if schedule else None, epochs))
        return real(o, lr, schedule, steps_per_epoch, epochs)

    monkeypatch.setattr(opt_mod, "make_optimizer", spy)
    return seen


def test_stages_inherit_the_recipe_settings_or_use_their_own(monkeypatch):
    seen = _optimizers_used(monkeypatch)
    recipe = Recipe(train=Train(epochs=1), penalty=Penalty(epochs=2, optimizer="nesterov", learning_rate=0.05,
                                                           lr_schedule="cosine"),
                    pruning=None, quantization=None, optimizer="rmsprop", learning_rate=0.01,
                    lr_schedule={"kind": "exponential", "decay_rate": 0.5}, batch_size=16)
    res = tfcompress.optimize(_tiny(), _data(), recipe=recipe, verbose=0)
    assert ("rmsprop", 0.01, "exponential", 1) in seen  # train: inherits the recipe's
    assert ("nesterov", 0.05, "cosine", 2) in seen  # penalty: its own
    assert [s["name"] for s in res.report.stages] == ["train", "penalty"]
    assert "trained: rmsprop, learning rate 0.01, exponential schedule" in res.report.stages[0]["details"]


def test_stage_learning_rate_scale_applies_to_the_recipe_rate_only():
    import sys

    run_cls = sys.modules["tfcompress.optimize"]._Run
    run = run_cls.__new__(run_cls)
    run.recipe = Recipe(learning_rate=0.01, optimizer="sgd")
    assert run.training(Quantization(), 0.1)[:2] == (pytest.approx(0.001), Optimizer("sgd"))
    assert run.training(Quantization(learning_rate=0.05), 0.1)[0] == 0.05


def test_train_stage_schedule_progress_and_keras3_callbacks(tmp_path):
    import keras as keras3

    x, y = _data(96)
    lines = []
    recipe = Recipe(train=Train(epochs=2, lr_schedule={"kind": "exponential", "decay_rate": 0.5}),
                    pruning=None, quantization=None, batch_size=16, learning_rate=0.02)
    res = tfcompress.optimize(_tiny(), (x, y), recipe=recipe, progress=lines.append,
                              callbacks=[keras3.callbacks.CSVLogger(str(tmp_path / "log.csv"))])
    # the logged rate is the one after each epoch's last step: 0.02 * 0.5 ** epoch
    assert res.history["train"]["learning_rate"] == pytest.approx([0.01, 0.005], rel=1e-4)
    assert res.report.optimized["loss"] < res.report.baseline["loss"]  # a fresh model was trained
    assert lines[0] == "stage 1/1: train, 2 epoch(s)"
    assert lines[1].startswith("train epoch 1/2: loss ") and "learning_rate 0.01 " in lines[1]
    assert lines[2].startswith("train epoch 2/2:") and len(lines) == 3
    header = (tmp_path / "log.csv").read_text().splitlines()[0]
    assert "learning_rate" in header and "loss" in header


def test_seed_gives_identical_weights_and_the_recipe_seed_is_used():
    def run(**kw):
        keras.utils.set_random_seed(5)
        model = _tiny(5)
        keras.utils.set_random_seed(99)  # other global state: the seed must decide
        recipe = Recipe(train=Train(epochs=2), pruning=None, quantization=None, batch_size=16,
                        seed=kw.pop("recipe_seed", None))
        return tfcompress.optimize(model, _data(), recipe=recipe, verbose=0, **kw).model.get_weights()

    a, b = run(seed=11), run(recipe_seed=11)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


# --- Keras 3 callbacks ----------------------------------------------------------------
def test_keras3_callbacks_are_translated(tmp_path):
    import keras as keras3

    given = [keras3.callbacks.EarlyStopping(monitor="loss", patience=3, min_delta=0.01),
             keras3.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.2, patience=4, min_lr=1e-5),
             keras3.callbacks.CSVLogger(str(tmp_path / "log.csv"), separator=";"),
             keras3.callbacks.TensorBoard(str(tmp_path / "tb"), update_freq="epoch"),
             keras3.callbacks.ModelCheckpoint(str(tmp_path / "w.weights.h5"), save_weights_only=True),
             keras.callbacks.TerminateOnNaN()]
    out = translate_callbacks(given)
    assert all(type(c).__module__.startswith("tf_keras") for c in out)
    assert (out[0].monitor, out[0].patience, abs(out[0].min_delta)) == ("loss", 3, 0.01)
    assert (out[1].factor, out[1].patience, out[1].min_lr) == (0.2, 4, 1e-5)
    assert out[2].sep == ";" and out[3].log_dir == str(tmp_path / "tb") and out[4].save_weights_only


def test_other_keras3_callbacks_are_refused():
    import keras as keras3

    with pytest.raises(RecipeError) as e:
        tfcompress.optimize(_tiny(), _data(), recipe=Recipe(train=Train(), pruning=None, quantization=None),
                            callbacks=[keras3.callbacks.LambdaCallback()])
    assert "callbacks[0] is a Keras 3 LambdaCallback" in str(e.value) and "tf_keras.callbacks" in str(e.value)
