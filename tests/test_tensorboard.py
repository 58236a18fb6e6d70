"""TensorBoard: optimize(tensorboard=DIR) writes one folder per stage with
loss, accuracy, learning rate and the pruned layers' sparsity; event files read back."""

import glob
import os

import numpy as np
import pytest

import tfcompress
from tfcompress import Pruning, Recipe, RecipeError, Train
from tfcompress._keras import keras, tf


def tags(folder):
    """Every summary tag in the event files under ``folder``."""
    out = set()
    for path in glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            out.update(v.tag for v in event.summary.value)
    return out


def test_optimize_writes_per_stage_logs_with_learning_rate_and_sparsity(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(16, activation="relu", name="fc"),
                              keras.layers.Dense(3, activation="softmax", name="out")])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)
    recipe = Recipe(train=Train(epochs=1, lr_schedule="cosine"), pruning=Pruning(epochs=2, final_sparsity=0.5),
                    quantization=None, batch_size=16)
    tfcompress.optimize(model, (x[:48], y[:48]), (x[48:], y[48:]), recipe=recipe, verbose=0,
                        tensorboard=str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["pruning", "train"]
    for stage in ("train", "pruning"):
        assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= tags(tmp_path / stage / "train"), stage
        assert {"epoch_loss", "epoch_accuracy"} <= tags(tmp_path / stage / "validation"), stage
    sparsity = {t for t in tags(tmp_path / "pruning" / "metrics") if t.endswith("/sparsity")}
    assert any("fc" in t for t in sparsity) and any("out" in t for t in sparsity), sparsity


def test_tensorboard_must_be_a_path():
    with pytest.raises(RecipeError, match="tensorboard must be a folder path"):
        tfcompress.optimize(keras.Sequential([keras.layers.Input((2,)), keras.layers.Dense(2)]),
                            (np.zeros((4, 2), "float32"), np.zeros(4, "int64")), tensorboard=3)


# --- the command lines: --seed, --tensorboard ---------------------------------------
def _fake_job(calls):
    import types

    def run_job(model, data, recipe, **kw):
        calls.append({"weights": [w.copy() for w in model.get_weights()], "recipe": recipe, **kw})
        return types.SimpleNamespace(table=lambda: "", seconds={"total": 0.0}, notes=[])

    return run_job


def test_optimize_cli_seeds_the_build_and_passes_the_board(tmp_path, monkeypatch):
    from tfcompress import pipeline
    from tfcompress.cli import main

    calls = []
    monkeypatch.setattr(pipeline, "run_job", _fake_job(calls))
    recipe = tmp_path / "best_recipe.yaml"
    Recipe(train=Train(epochs=2), pruning=None, quantization=None, seed=5).save_yaml(recipe)
    base = ["optimize", "--model", "digits_cnn", "--dataset", "digits", "--recipe", str(recipe), "--quiet",
            "--out", str(tmp_path / "out")]
    assert main(base + ["--tensorboard", str(tmp_path / "tb")]) == 0
    assert main(base) == 0
    assert main(base + ["--seed", "6"]) == 0
    first, same, other = calls
    assert first["tensorboard"] == str(tmp_path / "tb") and same["tensorboard"] is None
    # the recipe's seed builds the same fresh model; its train stage trains it (no baseline training first)
    assert first["recipe"].seed == 5 and first["train_epochs"] == 0
    assert all(np.array_equal(a, b) for a, b in zip(first["weights"], same["weights"]))
    assert other["recipe"].seed == 6  # --seed wins over the recipe's (optimize() seeds the training with it)


def test_tune_cli_takes_tensorboard(monkeypatch, tmp_path):
    import importlib

    from tfcompress.cli import main

    search = importlib.import_module("tfcompress.tuning.search")  # the package exports tune() under that name
    seen = {}

    def fake_tune(model, data, **kw):
        seen.update(kw)
        raise RecipeError("stop here")

    monkeypatch.setattr(search, "tune", fake_tune)
    assert main(["tune", "--model", "digits_cnn", "--dataset", "digits", "--dir", str(tmp_path),
                 "--tensorboard", str(tmp_path / "tb"), "--quiet"]) == 2
    assert seen["tensorboard"] == str(tmp_path / "tb")
