"""Hyperband trials below full fidelity compress on a share of the data (``scale_compression``)."""

import json

import pytest

from tfcompress import Recipe
from tfcompress._keras import keras
from tfcompress.pruning.weights import layer_sparsity
from tfcompress.tuning import SearchSpace
from tfcompress.tuning.objectives import choose
from tfcompress.tuning.trial import TrialContext

TINY_SPACE = {"learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"}, "final_sparsity": [0.5, 0.8]}
RECIPE = {"pruning": {"epochs": 1, "end": 0.5}, "quantization": None, "batch_size": 32}


def tiny_model():
    L = keras.layers
    return keras.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu", name="conv"), L.Flatten(),
                             L.Dense(10, activation="softmax", name="out")], name="tiny")


def _ctx(digits, scale=True):
    x, y = digits.train
    return TrialContext(tiny_model, SearchSpace(TINY_SPACE), Recipe.from_dict(RECIPE), ["accuracy"], (),
                        epochs=4, max_epochs=4, train=(x[:400], y[:400]), validation=digits.validation,
                        timing_runs=3, timing_seconds=0.01, scale_compression=scale)


def test_low_fidelity_trial_compresses_on_a_share_and_reaches_its_sparsity(digits, tmp_path):
    ctx = _ctx(digits)
    values = {"learning_rate": 3e-3, "final_sparsity": 0.8, "tuner/epochs": 1}
    assert ctx.fidelity(values) == 0.25 and ctx.compression_share(values, 32) == (100, 0.25)
    assert ctx.compression_share(dict(values, **{"tuner/epochs": 4}), 32) == (400, 1.0)  # full fidelity: all
    assert ctx.compression_share({"learning_rate": 3e-3}, 32) == (400, 1.0)  # not Hyperband: all
    assert ctx.compression_share(values, 128)[0] == 256  # at least two batches, so that pruning has its steps
    assert _ctx(digits, scale=False).compression_share(values, 32) == (400, 1.0)  # switched off

    recipe = ctx.recipe_for("0", values)
    result, epochs = ctx._optimize(tiny_model(), recipe, 100, None, str(tmp_path), None)
    stages = {s["name"]: s for s in result.report.stages}
    assert stages["train"]["steps"] == 13 and stages["pruning"]["steps"] == 4  # 400 and 100 examples, batch 32
    assert epochs == pytest.approx(1 + 0.25)
    assert set(result.history) == {"train", "pruning"}
    # The schedule is computed from the subset: the final sparsity is reached in its 4 steps.
    assert layer_sparsity(result.model)["conv"] == pytest.approx(0.8, abs=0.03)

    folder = tmp_path / "t0"
    folder.mkdir()
    metrics = ctx.run({"trial_id": "0", "values": values, "folder": str(folder)})
    assert metrics["epochs"] == pytest.approx(1.25)  # what it spent: 1 training epoch + 1/4 of a pruning epoch
    saved = json.loads((folder / "result.json").read_text())
    assert saved["compression_share"] == 0.25 and saved["fidelity"] == 0.25
    assert saved["recipe"]["pruning"]["epochs"] == 1  # the full recipe, as optimize --recipe runs it


def test_full_fidelity_trial_compresses_on_all_the_data(digits, tmp_path):
    ctx = _ctx(digits)
    values = {"learning_rate": 3e-3, "final_sparsity": 0.5, "tuner/epochs": 4}
    metrics = ctx.run({"trial_id": "1", "values": values, "folder": str(tmp_path)})
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["compression_share"] == 1.0 and metrics["epochs"] == 4 + 1


def test_the_chosen_trial_is_a_full_fidelity_one_when_there_is_one():
    def row(tid, acc, share):
        return {"trial_id": tid, "compression_share": share,
                "metrics": {"accuracy": acc, "size_kb": 1.0, "latency_ms": 1.0}}

    pareto, best = choose([row("0", 0.99, 1 / 9), row("1", 0.9, 1.0)], ["accuracy", "size_kb"])
    assert best["trial_id"] == "1" and pareto == ["1"]
    assert choose([row("0", 0.99, 1 / 9)], ["accuracy"])[1]["trial_id"] == "0"  # only low-fidelity ones: a fallback
    assert choose([], ["accuracy"]) == ([], None)
