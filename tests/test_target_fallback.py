"""Budget mode's fallback: a planned round met on the planning samples that misses on the held-back ones."""

import os
from types import SimpleNamespace

import pytest

import tflite_export
from tfcompress.recipe import Recipe
from tfcompress.target import heldout, latencyplan
from tfcompress.target import plan as budget_mode
from tfcompress.target.sensitivity import Option, Unit


def _run(tiny, digits, monkeypatch, held_drops, rounds=1, drops=None):
    """Planned rounds met on the planning samples (drop 0.1 of 1, or ``drops[round]``; ``drops["default"]``,
    ``drops["plain"]``, ``drops["int8"]``: the default recipe's, the plain int8 round's and reference's); ``held_drops``
    say each file's held-back drop (``{"round-1": ..., "default": ...}``, a file named by none: ``"round"``)."""
    # 10 groups whose drops grow 1.5x: each bigger margin takes more of them, so every round is a new plan
    units = [Unit(f"g{i}", "channels", 8, [Option({}, 1.0, 0.0), Option({"ratio": 0.5}, 1.0 - 0.01 * (i + 1),
                                                                        3.0 * 1.5 ** i)]) for i in range(10)]
    monkeypatch.setattr(latencyplan, "channel_options", lambda *a, **k: (units, 1.0))
    monkeypatch.setattr(latencyplan, "depth_units", lambda *a, **k: [])
    monkeypatch.setattr(latencyplan, "tuned_channel_units", lambda units, *a, **k: units)
    monkeypatch.setattr(tflite_export, "benchmark", lambda *a, **k: SimpleNamespace(median_ms=0.01))
    real_measure, real_compare = budget_mode._measure, heldout.compare
    def measure(model, path, *a, **k):  # a file's drop on the planning samples: drops[round number or name]
        name = os.path.basename(str(path)).removesuffix(".tflite").removeprefix("round-")
        return {**real_measure(model, path, *a, **k), "drop": (drops or {}).get(int(name) if name.isdigit() else name,
                                                                                0.1)}

    monkeypatch.setattr(budget_mode, "_measure", measure)

    def compare(ref, path, *a, **k):  # the files are the same model: the held-back drop is what the case says
        key = next((k for k in held_drops if k != "round" and k in path), "round")
        return {**real_compare(ref, path, *a, **k), "drop": held_drops[key]}

    monkeypatch.setattr(heldout, "compare", compare)
    trained = []

    def run_recipe(plan, val):
        trained.append(plan)
        return SimpleNamespace(model=tiny, report=SimpleNamespace())

    res, plan = budget_mode.run(tiny, digits.train, digits.validation, "drop<=1", "latency", Recipe(), run_recipe,
                                threads=1, samples=64, rounds=rounds)
    return res.report.budget, plan, trained


def test_the_default_recipe_ships_when_it_meets_on_both_and_the_planned_round_not_on_held_back(
        tiny, digits, monkeypatch):
    b, plan, trained = _run(tiny, digits, monkeypatch, {"round": 3.0, "default": 0.2})
    assert [r["round"] for r in b["rounds"]] == [1, "default"] and len(trained) == 2
    assert b["met"] and b["kept_round"] == "default" and plan is trained[-1] and plan == Recipe()
    assert b["held_out"]["drop"] == pytest.approx(0.2) and b["rounds"][-1]["held_out_drop"] == pytest.approx(0.2)
    assert any("the default recipe" in n and "meets it on both" in n and "optimistic" in n for n in b["notes"])
    assert "held-back drop (pts)" in b["markdown"] and "missed it on the held-back ones" in b["markdown"]


def test_the_planned_round_stays_not_met_when_the_default_recipe_misses_held_back_too(tiny, digits, monkeypatch):
    # the plain int8 reference met on the planning samples: its round runs last, and misses held back too
    b, plan, trained = _run(tiny, digits, monkeypatch, {"round": 3.0, "default": 2.0})
    assert [r["round"] for r in b["rounds"]] == [1, "default", "plain"]
    assert not b["met"] and b["kept_round"] == 1 and plan is trained[0]
    assert "NOT met" in b["notes"][0] and "held-back" in b["notes"][0], b["notes"][0]
    assert any("missed" in n and "held-back samples too" in n for n in b["notes"])


def test_a_planned_round_met_on_both_runs_no_default_recipe(tiny, digits, monkeypatch):
    b, plan, trained = _run(tiny, digits, monkeypatch, {"round": 0.5, "default": 0.0})
    assert [r["round"] for r in b["rounds"]] == [1] and len(trained) == 1 and b["met"] and b["kept_round"] == 1


def test_another_met_round_that_meets_held_back_ships_before_the_default_recipe_runs(tiny, digits, monkeypatch):
    # two rounds met on the planning samples at the same (modelled) speed: round 1 is kept, misses held back;
    # round 2's file, written already, meets there: it ships, and the default recipe is never trained
    b, plan, trained = _run(tiny, digits, monkeypatch, {"round-1": 3.0, "round": 0.2}, rounds=2)
    assert [r["round"] for r in b["rounds"]] == [1, 2] and len(trained) == 2
    assert b["met"] and b["kept_round"] == 2 and plan is trained[1]
    assert [r.get("held_out_drop") for r in b["rounds"]] == [None, pytest.approx(0.2)]
    assert any(n.startswith("round 1 met") and "round 2 meets it on both" in n for n in b["notes"]), b["notes"]


def test_a_round_met_near_the_edge_and_missed_held_back_aims_the_next_round_lower(tiny, digits, monkeypatch):
    # ResNet-8, 2 epochs a stage: round 1 met at 0.88 of 1 point on the planning samples (near the edge: the search
    # stopped there), 1.83 on the held-back ones, and the default recipe's int8 file shipped, slower than float32.
    # Now the held-back miss counts as a miss for the search: round 2 aims lower, meets on both, and ships.
    b, plan, trained = _run(tiny, digits, monkeypatch, {"round-1": 1.8, "round": 0.4}, rounds=3,
                            drops={1: 0.9, 2: 0.5, 3: 0.5})
    rounds = [r for r in b["rounds"] if r["round"] != "default"]
    assert len(rounds) >= 2 and rounds[0]["held_out_drop"] == pytest.approx(1.8)
    assert rounds[1]["scale"] < rounds[0]["scale"]  # aimed lower
    assert b["met"] and b["kept_round"] not in (1, "default") and plan is trained[b["kept_round"] - 1]
    assert any(n.startswith("round 1 met") and "aims lower" in n and "optimistic" in n for n in b["notes"])
    assert "held-back drop (pts)" in b["markdown"]


def test_the_plain_int8_file_ships_when_no_plan_nor_the_default_recipe_meets_and_it_does(tiny, digits, monkeypatch):
    # MobileNetV2 at 2 epochs a stage: the size plan's file lost 1.99 points on the test set and the default recipe's
    # 2.47, the converter's plain int8 none; budget mode shipped its file NOT met. The plain int8 file met in step 1:
    # it is measured and ships.
    b, plan, trained = _run(tiny, digits, monkeypatch, {"round": 0.3}, drops={1: 2.0, "default": 2.5})
    assert [r["round"] for r in b["rounds"]] == [1, "default", "plain"] and len(trained) == 3
    assert b["met"] and b["kept_round"] == "plain" and plan is trained[-1] and plan.stages == []
    assert any("nor the default recipe (" in n and "): the plain int8 file" in n and "it ships" in n
               for n in b["notes"]), b["notes"]
    assert "The plain int8 file (the model post-training quantized, not fine-tuned) ships" in b["markdown"]
    # the plain int8 reference itself over the budget: it is not tried, and the report says NOT met
    b, plan, trained = _run(tiny, digits, monkeypatch, {"round": 2.0}, drops={1: 2.0, "default": 2.5, "int8": 1.5})
    assert [r["round"] for r in b["rounds"]] == [1, "default"] and not b["met"] and "NOT met" in b["notes"][0]


def test_the_plain_int8_file_ships_when_the_planned_round_and_the_default_recipe_miss_held_back(
        tiny, digits, monkeypatch):
    b, plan, trained = _run(tiny, digits, monkeypatch, {"round": 3.0, "default": 2.0, "plain": 0.2})
    assert [r["round"] for r in b["rounds"]] == [1, "default", "plain"]
    assert b["met"] and b["kept_round"] == "plain" and plan.stages == [] and b["rounds"][-1]["held_out_drop"] == 0.2
    assert any("the plain int8 file" in n and "meets it on both" in n for n in b["notes"]), b["notes"]
