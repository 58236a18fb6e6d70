"""The tuner on models that are not classifiers: trials are scored, chosen and reported
in the task's own headline metric (MAE minimised for a regression), never in accuracy."""

import json
import re

import numpy as np
import pytest
import yaml

from tfcompress import Recipe
from tfcompress.cli import main
from tfcompress.datasets import Dataset
from tfcompress.tuning import SearchSpace, TuningError, parse_constraint, parse_objectives, tune
from tfcompress.tuning.objectives import direction, pareto_front, score
from tfcompress.tuning.plots import pareto_figure
from tfcompress.tuning.tuner import CompressionTuner

try:
    from tfcompress.models import task_zoo
except ImportError:  # running from the source tree
    from models import task_zoo

SPACE = {"learning_rate": [1e-3, 5e-3], "final_sparsity": [0.3, 0.6]}
RECIPE = {"pruning": {"epochs": 1}, "quantization": None, "batch_size": 32}
QUICK = dict(space=SPACE, recipe=RECIPE, epochs=1, timing_runs=3, timing_seconds=0.01)


@pytest.fixture(scope="module")
def regression():
    return task_zoo.regression(0, n=128)


def test_objective_and_constraint_names_follow_the_models_metric():
    assert parse_objectives(None, "mae") == ["mae", "size_kb", "latency_ms"]
    assert parse_objectives("metric,size", "mae") == parse_objectives("MAE, size", "mae") == ["mae", "size_kb"]
    assert parse_objectives("quality", "iou") == ["iou"]
    assert parse_objectives("metric,size,latency") == ["accuracy", "size_kb", "latency_ms"]  # a classifier's
    with pytest.raises(TuningError, match=r"^this model is not scored by accuracy but by mae \(minimised\)"):
        parse_objectives("accuracy,size", "mae")
    with pytest.raises(TuningError, match="unknown objective 'rmse'; use mae, size or latency"):
        parse_objectives("rmse", "mae")
    c = parse_constraint("metric <= 0.3", "mae")
    assert (c.metric, str(c)) == ("mae", "mae<=0.3") and parse_constraint(str(c), "mae") == c
    assert parse_constraint("box_mae<0.2", "box_mae").metric == "box_mae"
    with pytest.raises(TuningError, match="not scored by accuracy but by iou"):
        parse_constraint("accuracy>=0.9", "iou")
    assert [direction(m) for m in ("mae", "loss", "iou", "box_mae", "cls_accuracy")] == \
        ["min", "min", "max", "min", "max"]
    # Lower MAE is better: it scores higher and wins the front.
    rows = [{"mae": 0.2, "size_kb": 10.0}, {"mae": 0.1, "size_kb": 10.0}, {"mae": 0.3, "size_kb": 5.0}]
    assert score(rows[1], ["mae"]) > score(rows[0], ["mae"])
    assert pareto_front(rows, ["mae", "size_kb"]) == [1, 2]
    assert score(rows[0], ["mae"], [c], weight=10.0) == score(rows[0], ["mae"])  # met: no penalty


def test_a_regression_is_tuned_and_reported_in_mae(regression, tmp_path):
    lines = []
    result = tune(regression.model, regression.train, max_trials=2, directory=str(tmp_path),
                  progress=lines.append, constraints=["mae<=100"], **QUICK)
    assert result.metric == "mae" and result.objectives == ["mae", "size_kb", "latency_ms"]
    assert [r["status"] for r in result.rows] == ["COMPLETED", "COMPLETED"]
    maes = [r["metrics"]["mae"] for r in result.completed]
    assert all("accuracy" not in r["metrics"] for r in result.completed)
    assert result.best["metrics"]["mae"] == min(maes)  # lowest MAE chosen
    ends = [ln for ln in lines if re.match(r"trial \d+ \[", ln)]
    assert len(ends) == 2 and all(" mae " in ln and "acc" not in ln for ln in ends)
    table = result.table()
    assert table.splitlines()[0].split()[3] == "mae" and "accuracy" not in table
    trials = json.loads((tmp_path / "trials.json").read_text())
    assert trials["quality"] == {"metric": "mae", "direction": "min"}
    assert trials["settings"]["quality"] == trials["quality"] and "mae" in trials["trials"][0]["metrics"]
    md = (tmp_path / "trials.md").read_text()
    assert "Quality metric: mae (lower is better)" in md and "accuracy" not in md
    head = (tmp_path / "best_recipe.yaml").read_text().splitlines()[1]
    assert head.startswith("# mae ") and "accuracy" not in head
    assert yaml.safe_load((tmp_path / "best_recipe.yaml").read_text())["seed"] is not None
    assert (tmp_path / "pareto.png").stat().st_size > 0
    fig = pareto_figure(result)
    assert fig.axes[0].get_ylabel() == "validation mae (lower is better)"


def test_a_two_head_model_runs_a_trial_in_its_headline_metric(tmp_path):
    zoo = task_zoo.two_heads(3, n=96)  # dict outputs: cls (accuracy) and box (MAE), loss weights
    data = Dataset("two_heads", zoo.train, zoo.validation, zoo.test, 2, source="arrays")
    result = tune(zoo.model, data, max_trials=1, directory=str(tmp_path), isolation="session", **QUICK)
    assert result.metric == "box_mae" and result.rows[0]["status"] == "COMPLETED", result.rows[0]["reason"]
    assert result.best["metrics"]["box_mae"] >= 0


def test_a_two_input_model_exports_with_calibration_data_of_both_inputs(tmp_path):
    zoo = task_zoo.two_inputs(5, n=96)  # dict inputs a (6) and b (3)
    tuner = CompressionTuner(lambda: zoo.model, SearchSpace(SPACE), max_trials=1, base_recipe=Recipe.from_dict(RECIPE),
                             epochs=1, directory=str(tmp_path), isolation="session", timing_runs=3,
                             timing_seconds=0.01)
    tuner.search(zoo.train, zoo.validation)
    trial = tuner.oracle.trials[next(iter(tuner.oracle.trials))]
    assert trial.status == "COMPLETED", trial.message
    assert (tmp_path / "search" / f"trial_{trial.trial_id}" / "int8.tflite").stat().st_size > 0


def test_cli_tunes_a_saved_regression_and_refuses_accuracy(regression, tmp_path, capsys):
    model, npz = str(tmp_path / "reg.keras"), str(tmp_path / "reg.npz")
    regression.model.save(model)
    np.savez(npz, x=regression.train[0], y=regression.train[1])
    space, recipe = tmp_path / "space.yaml", tmp_path / "recipe.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    recipe.write_text(yaml.safe_dump(RECIPE))
    base = ["tune", "--model", model, "--data", npz, "--space", str(space), "--recipe", str(recipe),
            "--epochs", "1", "--isolation", "session"]
    assert main(base + ["--max-trials", "1", "--dir", str(tmp_path / "ok"), "--constraint", "metric<=100"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"trial 0 \[tuner0\] mae \d", out) and "acc" not in out.split("\n\n", 1)[-1]
    assert main(base + ["--objective", "accuracy,size", "--dir", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not scored by accuracy but by mae" in err[0]
    assert not (tmp_path / "bad").exists()
