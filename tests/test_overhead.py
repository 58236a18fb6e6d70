"""tfcompress's own overhead (``benchmarks/bench_overhead.py``): what it compares is the same work.

The benchmark's two sides, the TF-MOT calls by hand and ``optimize``, wrap the same layers and
prune them to the same sparsity; and ``optimize``'s baseline check, which now reads a classifier's
accuracy from the baseline evaluation instead of predicting the data a second time, still stops
a model at chance.
"""

import json
import os
import sys
import warnings

import numpy as np
import pytest

import tfcompress
from tfcompress import models
from tfcompress._keras import keras
from tfcompress.errors import DataError

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository: benchmarks/
from benchmarks import bench_overhead as bench  # noqa: E402


def _work(tmp_path, n=256):
    rng = np.random.default_rng(0)
    x, xv = rng.random((n, 28, 28, 1), dtype=np.float32), rng.random((64, 28, 28, 1), dtype=np.float32)
    model = models.get("lenet5").build()
    model.save(str(tmp_path / "lenet5.h5"), include_optimizer=False)
    np.savez(tmp_path / "lenet5.npz", x=x, y=np.arange(n) % 10, xv=xv, yv=np.arange(64) % 10)
    return str(tmp_path)


def test_the_benchmarks_two_sides_prune_the_same_layers_to_the_same_sparsity(tmp_path, monkeypatch):
    work = _work(tmp_path)
    monkeypatch.setenv("BENCH_OVERHEAD_STEPS", json.dumps(vars(bench._pruning_steps(256))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained model at chance: optimize's baseline warning
        hand = bench.hand(work, "lenet5", "pruning")
        ours = bench.through_tfcompress(work, "lenet5", "pruning")
    assert hand["wrapped"] == ours["wrapped"] == ["conv1", "conv2", "fc1", "fc2", "logits"]
    assert hand["sparsity"] == pytest.approx(ours["sparsity"], abs=0.005)
    assert min(hand["sparsity"].values()) == pytest.approx(bench.SPARSITY, abs=0.005)
    assert len(hand["epoch_s"]) == len(ours["epoch_s"]) == bench.EPOCHS


def test_the_baseline_check_stops_a_model_at_chance_without_predicting_again(monkeypatch):
    model = models.get("lenet5").build()  # untrained: at chance
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    x = np.random.default_rng(0).random((120, 28, 28, 1), dtype=np.float32)
    y = np.arange(120) % 10
    calls = []
    predict = keras.Model.predict
    monkeypatch.setattr(keras.Model, "predict", lambda self, *a, **k: calls.append(1) or predict(self, *a, **k))
    with pytest.raises(DataError, match="at chance"):
        tfcompress.optimize(model, (x, y), (x, y), recipe={"pruning": None}, verbose=0, check_baseline=True)
    assert calls == []  # the baseline evaluation's accuracy was the check's
    one = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    one.compile("adam", "mse", ["mae"])  # a regression: its check predicts, as before
    with pytest.raises(DataError, match="mean squared error"):
        tfcompress.optimize(one, (x, y + 1000.0), (x, y + 1000.0), recipe={"pruning": None}, verbose=0,
                            check_baseline=True)
    assert calls
