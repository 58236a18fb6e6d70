"""TensorBoard (issue 11 §6): optimize(tensorboard=DIR) writes one folder per stage with
loss, accuracy, learning rate and the pruned layers' sparsity; event files read back."""

import glob
import os

import numpy as np
import pytest

import tfcompress
from tfcompress import Recipe, RecipeError
from tfcompress._keras import keras, tf
from tfcompress.recipe import Pruning, Train


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
