"""Budget mode's plan space for size: channel thinning beside pruning, clustering and 4-bit weights."""

import numpy as np
import pytest

import tfcompress
import tflite_export
from tfcompress.recipe import Recipe
from tfcompress.scoring import Scorer
from tfcompress.target import plan as budget_mode
from tfcompress.target import plan_recipe, weight_options
from tfcompress.target.joint import joint_greedy, size_of, thin_options
from tfcompress.target.predict import AIM, LOW, Correction, next_scale
from tfcompress.target.sensitivity import Option, Unit
from tfcompress.task import Task


def _fc():
    w = [Unit("fc1", "weights", 1000, [Option({}, 1000.0, 0.0), Option({"sparsity": 0.5}, 700.0, 1.0)]),
         Unit("out", "weights", 100, [Option({}, 100.0, 0.0)])]
    c = [Unit("fc1", "channels", 20, [Option({}, 0.0, 0.0, {}),
                                       Option({"ratio": 0.5}, 0.0, 0.5, {"fc1": 0.5, "out": 0.5})])]
    return w, c


def test_thinning_shrinks_the_layer_and_the_next_ones_rows_on_top_of_its_weight_setting():
    w, c = _fc()
    assert size_of(w, c, {("weights", "fc1"): 1, ("weights", "out"): 0, ("channels", "fc1"): 1}, rest=50.0) == \
        50.0 + 700.0 * 0.5 + 100.0 * 0.5  # pruned and thinned fc1, out's input rows halved
    # pruning alone cannot go under 800 B: a 600 B goal thins fc1 (550 B), a 450 B goal prunes it too (400 B)
    a = joint_greedy(w, c, max_cost=600.0)
    assert a.settings(w + c) == {"fc1": {"ratio": 0.5}} and a.saved == 1100.0 - 550.0
    a = joint_greedy(w, c, max_cost=450.0)
    assert a.settings(w + c) == {"fc1": {"sparsity": 0.5, "ratio": 0.5}} and (a.saved, a.drop) == (700.0, 1.5)
    assert joint_greedy(w, c, max_drop=1.0).settings(w + c) == {"fc1": {"ratio": 0.5}}  # both: 1.5 points, over
    assert joint_greedy(w, [], max_drop=1.0).settings(w) == {"fc1": {"sparsity": 0.5}}  # no thinning: pruning
    assert joint_greedy(w, c, max_drop=0.0).settings(w + c) == {}


def test_a_thinned_and_pruned_layer_is_one_valid_recipe():
    plan = plan_recipe(Recipe(), {"fc1": {"sparsity": 0.5, "ratio": 0.5}, "conv": {"ratio": 0.25}}, weights="int4")
    assert plan.channels.per_layer == {"fc1": 0.5, "conv": 0.25} and plan.channels.ratio == 0.0
    assert plan.pruning.per_layer == {"fc1": 0.5} and plan.quantization.weights == "int4"
    assert plan.channels.epochs == plan.pruning.epochs  # no channels stage in base: as long as pruning
    assert Recipe.from_yaml_string(plan.to_yaml()) == plan


def test_the_thinning_scan_prices_each_group_on_its_layers_and_the_next(tiny, digits):
    x, y = digits.validation
    before = [w.copy() for w in tiny.get_weights()]
    units = {u.name: u for u in thin_options(tiny, x, y, ratios=(0.25, 0.5, 0.625),
                                             scorer=Scorer.of(Task("sparse_categorical_crossentropy",
                                                                   ["accuracy"]), tiny, x, y))}
    assert all(np.array_equal(a, b) for a, b in zip(before, tiny.get_weights()))
    assert set(units) == {"conv", "fc1"}  # the output layer's classes are never thinned
    assert [o.setting for o in units["conv"].options] == [{}, {"ratio": 0.25}, {"ratio": 0.5}]  # 0.625: as 0.5
    assert units["conv"].options[2].shrink == {"conv": 0.5, "fc1": 0.5}  # 4 -> 2 filters: half of fc1's rows
    assert units["fc1"].options[1].shrink == {"fc1": 0.75, "out": 0.75}  # 24 -> 18 units


@pytest.mark.slow  # two budget runs on the tiny model: ~1 min on the loaded 2-core machine
def test_a_size_budget_pruning_and_int4_cannot_reach_is_met_by_thinning(tiny, digits, tmp_path, monkeypatch):
    # pruning at most 50 % (and int4, or int8 with clusters): the size budget is out of its reach
    monkeypatch.setattr(budget_mode, "weight_options",
                        lambda *a, **k: weight_options(*a, **{**k, "sparsities": (0.5,)}))
    target, limit = "size<=2.3KB", 2.3 * 1024
    monkeypatch.setattr(budget_mode, "thin_options", lambda *a, **k: [])
    monkeypatch.setattr(budget_mode, "rank_options", lambda *a, **k: [])  # no structural move at all
    alone = tfcompress.optimize(tiny, digits.train, digits.validation, target=target, epochs=1, seed=0, verbose=0)
    assert not alone.report.budget["met"] and alone.plan.channels is None, alone.report.budget["markdown"]
    monkeypatch.undo()
    monkeypatch.setattr(budget_mode, "weight_options",
                        lambda *a, **k: weight_options(*a, **{**k, "sparsities": (0.5,)}))
    res = tfcompress.optimize(tiny, digits.train, digits.validation, target=target, epochs=1, seed=0, verbose=0)
    b = res.report.budget
    assert b["met"] and res.plan.channels is not None and res.plan.channels.per_layer, b["markdown"]
    assert res.model.count_params() < tiny.count_params()
    mode = "int4" if res.plan.quantization.weights == "int4" else "int8"
    e = tflite_export.export(res.model, tmp_path / "thin.tflite", mode=mode, representative_data=digits.train[0][:200])
    assert e.zipped_bytes <= limit
    kept = next(r for r in b["rounds"] if r["round"] == b["kept_round"])
    assert any("ratio" in s for s in kept["plan"].values()) and "ratio" in b["markdown"]


def test_a_layer_thinned_below_the_cluster_count_is_not_clustered():
    w = [Unit("conv", "weights", 36, [Option({}, 36.0, 0.0), Option({"sparsity": 0.5, "clustered": True}, 9.0, 0.1)])]
    c = [Unit("conv", "channels", 4, [Option({}, 0.0, 0.0, {}), Option({"ratio": 0.75}, 0.0, 0.1, {"conv": 0.25})])]
    a = joint_greedy(w, c, max_drop=1.0)  # 36 weights, a quarter kept, half of those pruned: 4.5 values, 16 clusters
    assert a.settings(w + c) == {"conv": {"sparsity": 0.5, "clustered": False, "ratio": 0.75}}
    assert joint_greedy(w, [], max_drop=1.0).settings(w) == {"conv": {"sparsity": 0.5, "clustered": True}}


def test_the_correction_is_learned_per_family_clipped_and_borrowed():
    c = Correction(prior=1 / 8)
    assert c.predict("int4", 16.0) == 2.0  # no round measured: the prior
    c.learn("int8", scanned=10.0, measured=0.5)
    c.learn("int4", scanned=10.0, measured=-1.0)  # a file better than the model: the lowest ratio, not a negative one
    assert (c.factor("int8"), c.factor("int4")) == (0.05, LOW)
    c.learn("int8", scanned=0.0, measured=0.3)  # nothing scanned: nothing learned
    assert c.factor("int8") == 0.05 and c.to_dict()["int8"] == 0.05
    assert Correction(1 / 8).factor("int4") == 0.125


def test_two_rounds_of_a_family_give_a_rising_line_that_aims_past_a_fine_tuning_gain():
    # ResNet-8's latency rounds: the files gained accuracy (drops -1.69, -0.74) while the scan said 3.2 and 18 points
    c = Correction(prior=1 / 8)
    c.learn("int8", scanned=3.2, measured=-1.69)
    assert c.line("int8") is None and c.factor("int8", aim=0.8) == LOW  # one round: the clipped ratio
    c.learn("int8", scanned=18.0, measured=-0.738)
    offset, slope = c.line("int8")
    assert slope == pytest.approx(0.952 / 14.8) and c.predict("int8", 18.0) == pytest.approx(-0.738)
    at = (0.8 - offset) / slope  # where the line reaches the aim: 41.9 scanned points
    assert c.factor("int8", aim=0.8) == pytest.approx(0.8 / at) and c.predict("int8", at) == pytest.approx(0.8)
    assert next_scale(c.factor("int8", aim=0.8), last=18.0, lo=18.0, hi=None, raise_=3.0) == pytest.approx(at)
    c.learn("int8", scanned=30.0, measured=-0.9)  # more scanned, less lost: noise, no line; the last ratio
    assert c.line("int8") is None and c.factor("int8", aim=0.8) == LOW


def test_a_tuned_unit_s_points_count_its_weight_in_the_plain_allocation():
    from tfcompress.target import greedy

    def unit(weight):
        return Unit("g", "channels", 8, [Option({}, 1.0, 0.0), Option({"ratio": 0.5}, 0.5, 0.5)], weight)
    assert greedy([unit(1.0)], max_drop=1.0).settings([unit(1.0)]) == {"g": {"ratio": 0.5}}
    assert greedy([unit(3.0)], max_drop=1.0).settings([unit(3.0)]) == {}  # 1.5 weighted points: over


def test_a_latency_plan_scores_each_thinned_candidate_after_a_short_fine_tuning(tiny, digits):
    from tfcompress.target.joint import TUNED_WEIGHT, tuned_channel_units
    from tfcompress.target.sensitivity import channel_options

    x, y = digits.validation
    raw, _ = channel_options(tiny, x[:200], y[:200], ratios=(0.5, 0.75), cost="flops")
    tuned = tuned_channel_units(raw, tiny, x[:200], y[:200], tune_x=digits.train[0][:512])
    assert [u.name for u in tuned] == [u.name for u in raw] and all(u.weight == TUNED_WEIGHT for u in tuned)
    assert [[o.cost for o in u.options] for u in tuned] == [[o.cost for o in u.options] for u in raw]
    raw_drop = sum(o.drop for u in raw for o in u.options)
    assert sum(o.drop for u in tuned for o in u.options) < raw_drop  # fine-tuning wins back part of the scanned drop
    assert tuned_channel_units(raw, tiny, x[:200], y[:200]) is raw  # no training inputs: unchanged


def test_the_next_scale_predicts_the_aim_inside_the_bracket():
    assert next_scale(0.05, last=8.0, lo=8.0, hi=None, raise_=3.0) == pytest.approx(AIM / 0.05)  # 16: met, room left
    assert next_scale(LOW, last=8.0, lo=8.0, hi=None, raise_=3.0) == 24.0  # at most 3x the last
    assert next_scale(0.1, last=8.0, lo=None, hi=8.0, raise_=3.0) == pytest.approx(AIM / 0.1 / 2)  # missed: under 8
    assert next_scale(0.01, last=24.0, lo=8.0, hi=24.0, raise_=3.0) == pytest.approx(24.0 ** 0.5 * 8.0 ** 0.5)


@pytest.mark.slow  # three int8 conversions of the tiny model, no fine-tuning
@pytest.mark.parametrize("file_drop", [0.4, 0.6])  # met, under the aim (80 % of the budget): the next round aims there
def test_each_round_reports_its_predicted_drop_and_the_correction_aims_the_next(tiny, digits, monkeypatch, file_drop):
    from types import SimpleNamespace

    monkeypatch.setattr(tflite_export, "benchmark", lambda *a, **k: SimpleNamespace(median_ms=0.01))
    real = budget_mode._measure

    def measure(model, path, *a, **k):  # every round's file loses file_drop points: met, with slack
        got = real(model, path, *a, **k)
        return {**got, "drop": file_drop} if "round-" in str(path) else got

    monkeypatch.setattr(budget_mode, "_measure", measure)
    res, _ = budget_mode.run(tiny, digits.train, digits.validation, "drop<=1", "size", Recipe(),
                             lambda plan, val: SimpleNamespace(model=tiny, report=SimpleNamespace()), threads=1,
                             samples=64)
    r = res.report.budget["rounds"]
    assert r[0]["scale"] == 8.0 and r[0]["predicted_drop"] == pytest.approx(r[0]["scanned_drop"] / 8, abs=1e-3)
    factor = min(max(file_drop / r[0]["scanned_drop"], LOW), 1.0)
    assert 8.0 < AIM / factor and len(r) >= 2 and r[1]["scale"] == pytest.approx(min(AIM / factor, 24.0), rel=1e-3)
    assert r[1]["predicted_drop"] == pytest.approx(factor * r[1]["scanned_drop"], abs=2e-3)
    assert "predicted drop" in res.report.budget["markdown"] and res.report.budget["correction"]["prior"] == 0.125
    fit = res.report.budget["cost_fit"]  # measured / estimated bytes of each format's rounds (ranks the next plans)
    assert fit and all(f in ("int8", "int4") for f in fit)
    for f, v in fit.items():
        ours = [x["zipped_bytes"] / x["estimated_cost"] for x in r if x["weights"] == f]
        assert v == pytest.approx(sum(ours) / len(ours), abs=1e-3)


def test_kernel_bytes_are_deflated_as_the_file_stores_them():
    from tfcompress.target.sensitivity import _prune, int8_bits, zipped_bytes

    w = np.random.default_rng(0).normal(size=(400, 120)).astype(np.float32)
    dense8, dense4 = zipped_bytes(w), zipped_bytes(w, 4)
    assert 0.4 * dense8 < dense4 < 0.6 * dense8  # two 4-bit values a byte
    sparse = _prune(w, 0.94)
    assert zipped_bytes(sparse, 4) < dense4 / 3
    # deflate pays for where the nonzeros are: above the entropy bound, more so than on the dense kernel
    bound = lambda k: k.size * int8_bits(k, 4) / 8  # noqa: E731
    assert zipped_bytes(sparse, 4) / bound(sparse) > dense4 / bound(w) > 1.0


def test_a_short_fine_tuning_of_each_thinned_candidate_wins_back_part_of_its_scanned_drop(tiny, digits):
    x, y = digits.validation
    scorer = Scorer.of(Task("sparse_categorical_crossentropy", ["accuracy"]), tiny, x, y)
    before = [w.copy() for w in tiny.get_weights()]
    raw = {u.name: u for u in thin_options(tiny, x, y, ratios=(0.75,), scorer=scorer)}
    tuned = {u.name: u for u in thin_options(tiny, x, y, ratios=(0.75,), scorer=scorer, tune_x=digits.train[0])}
    assert all(np.array_equal(a, b) for a, b in zip(before, tiny.get_weights()))  # the candidates are copies
    assert raw["fc1"].options[1].shrink == tuned["fc1"].options[1].shrink
    assert tuned["fc1"].options[1].drop < 0.7 * raw["fc1"].options[1].drop  # 24 -> 6 units: 68 -> 39 points
    assert sum(u.options[1].drop for u in tuned.values()) < sum(u.options[1].drop for u in raw.values())


def test_a_tuned_candidate_s_drop_counts_its_weight_in_the_allocation():
    w, c = _fc()  # thinning fc1: 0.5 points (tuned), pruning it: 1.0 (raw)
    assert joint_greedy(w, c, max_drop=1.0).settings(w + c) == {"fc1": {"ratio": 0.5}}
    c[0].weight = 3.0  # counted as 1.5 raw points: over the 1-point allowance; pruning fits
    a = joint_greedy(w, c, max_drop=1.0)
    assert a.settings(w + c) == {"fc1": {"sparsity": 0.5}} and a.drop == 1.0
    assert joint_greedy(w, c, max_drop=2.5).drop == 2.5 and c[0].to_dict()["drop_weight"] == 3.0


def test_with_both_ends_measured_the_next_scale_interpolates_the_file_drops():
    # met at 8 (0.31 points), missed at 24 (2.81): 0.8 points lies a fifth of the way (the ratio alone says 8.6)
    assert next_scale(2.81 / 24, last=24.0, lo=8.0, hi=24.0, raise_=3.0, drops=(0.31, 2.81, 1.0)) == \
        pytest.approx(8.0 + 0.49 / 2.5 * 16.0)
    assert next_scale(0.1, last=24.0, lo=8.0, hi=24.0, raise_=3.0, drops=(0.9, 2.81, 1.0)) == \
        pytest.approx(24.0 ** 0.5 * 8.0 ** 0.5)  # the met end already over the aim: the geometric mean
