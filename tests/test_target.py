"""Budget mode (tfcompress.target): the target string, the scan, the allocation, the plan, the budget on the file."""

import numpy as np
import pytest

import tfcompress
import tflite_export
from tfcompress import Quantization, cli
from tfcompress.errors import RecipeError
from tfcompress.recipe import Recipe
from tfcompress.scoring import accuracy
from tfcompress.target import check_minimize, greedy, parse_target, plan_recipe, weight_options
from tfcompress.target.sensitivity import Option, Unit, fake_quant, int8_bits


@pytest.mark.parametrize("text, metric, limit", [
    ("drop<=1.0", "drop", 1.0), (" drop <= 0.5pts ", "drop", 0.5), ("size<=40KB", "size", 40960.0),
    ("size<=2MB", "size", 2 * 1024.0 ** 2), ("size<=900b", "size", 900.0), ("latency<=2ms", "latency", 2.0),
    ("latency<=500us", "latency", 0.5), ("LATENCY<=.5ms", "latency", 0.5), ("drop<=0", "drop", 0.0),
])
def test_target_strings_parse(text, metric, limit):
    t = parse_target(text)
    assert (t.metric, t.limit) == (metric, limit)


@pytest.mark.parametrize("text", ["speed<=2", "drop<1", "drop<=", "size<=40", "size<=40GB", "latency<=2",
                                  "size<=0KB", "drop<=-1", "", None, 3])
def test_bad_target_strings_raise_one_recipe_error(text):
    with pytest.raises(RecipeError, match="target must look like 'drop<=1.0', 'size<=40KB' or 'latency<=2ms'"):
        parse_target(text)


def test_minimize_goes_with_the_budget():
    assert check_minimize(parse_target("drop<=1"), None) == "size"
    assert check_minimize(parse_target("drop<=1"), "latency") == "latency"
    assert check_minimize(parse_target("size<=4KB"), None) == "drop"
    with pytest.raises(RecipeError, match="accuracy is maximised"):
        check_minimize(parse_target("size<=4KB"), "latency")
    with pytest.raises(RecipeError, match="minimize must be"):
        check_minimize(parse_target("drop<=1"), "speed")


def _units():
    big = Unit("fc1", "weights", 1000, [Option({}, 1000.0, 0.0), Option({"sparsity": 0.5}, 600.0, 0.1),
                                          Option({"sparsity": 0.9}, 200.0, 0.6)])
    small = Unit("conv1", "weights", 50, [Option({}, 50.0, 0.0), Option({"sparsity": 0.9}, 10.0, 2.0)])
    return [big, small]


def test_greedy_spends_the_drop_budget_where_it_saves_most():
    units = _units()
    assert greedy(units, max_drop=0.7).choice == {"fc1": 2, "conv1": 0}  # conv1 saves 40 B for 2 points: never
    assert greedy(units, max_drop=0.2).choice == {"fc1": 1, "conv1": 0}
    assert greedy(units, max_drop=0.0).choice == {"fc1": 0, "conv1": 0}
    a = greedy(units, max_cost=700.0, base_cost=1050.0)  # a cost goal: the cheapest drop per byte until it is met
    assert a.choice == {"fc1": 1, "conv1": 0} and a.saved == 400.0


def test_int8_bits_fall_with_sparsity_and_clusters():
    w = np.random.default_rng(0).normal(size=(64, 32))
    zeroed = w.copy()
    zeroed[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0
    assert int8_bits(zeroed) < int8_bits(w) / 2
    assert int8_bits(np.sign(w)) <= 1.0 + 1e-9


def test_the_scan_restores_the_weights_and_prices_each_setting(tiny, digits):
    before = [w.copy() for w in tiny.get_weights()]
    x, y = digits.validation
    units = weight_options(tiny, x, y, sparsities=(0.5, 0.95))
    assert all(np.array_equal(a, b) for a, b in zip(before, tiny.get_weights()))
    fc1 = next(u for u in units if u.name == "fc1")
    assert [u.name for u in units] == ["conv", "fc1", "out"]
    by = {(o.setting.get("sparsity"), o.setting.get("clustered")): o for o in fc1.options}
    assert by[(0.95, True)].cost < by[(0.5, False)].cost < by[(None, None)].cost
    assert by[(0.95, False)].drop > by[(0.5, False)].drop  # 95 % of fc1 gone costs more than half


def test_the_plan_is_an_ordinary_recipe_that_round_trips():
    base = Recipe(learning_rate=5e-4, batch_size=64, quantization=Quantization(epochs=1))
    plan = plan_recipe(base, {"fc1": {"sparsity": 0.9, "clustered": True}, "conv": {"sparsity": 0.0, "clustered": True},
                              "out": {"sparsity": 0.5, "clustered": False}})
    assert plan.pruning.per_layer == {"fc1": 0.9, "out": 0.5} and set(plan.pruning.include) == {"fc1", "out"}
    assert plan.clustering.include == ("fc1", "conv") and plan.distillation is not None
    assert (plan.learning_rate, plan.batch_size, plan.quantization.epochs) == (5e-4, 64, 1)
    assert Recipe.from_yaml_string(plan.to_yaml()) == plan


def test_an_int4_plan_quantizes_every_layer_to_4_bits_without_clusters():
    settings = {"fc1": {"sparsity": 0.9}, "out": {"sparsity": 0.0, "clustered": True}}
    plan = plan_recipe(Recipe(), settings, weights="int4")
    assert plan.quantization.weights == "int4" and plan.clustering is None and plan.pruning.per_layer == {"fc1": 0.9}
    assert Recipe.from_yaml_string(plan.to_yaml()) == plan


def test_the_int4_scan_prices_4_bit_layers_and_restores_the_weights(tiny, digits):
    before = [w.copy() for w in tiny.get_weights()]
    x, y = digits.validation[0][:128], digits.validation[1][:128]
    u8 = {u.name: u for u in weight_options(tiny, x, y, sparsities=(0.9,))}
    u4 = {u.name: u for u in weight_options(tiny, x, y, sparsities=(0.9,), weights="int4")}
    assert all(np.array_equal(a, b) for a, b in zip(before, tiny.get_weights()))
    fc1 = u4["fc1"]
    assert [o.setting for o in fc1.options] == [{"sparsity": 0.0}, {"sparsity": 0.9}]  # option 0: every weight 4-bit
    assert fc1.options[0].cost < 0.6 * u8["fc1"].options[0].cost and fc1.options[1].cost < fc1.options[0].cost
    w = tiny.get_layer("fc1").kernel.numpy()
    assert len(np.unique(fake_quant(w, 4, per_channel=False))) <= 15  # Dense: one 4-bit grid per tensor


def test_each_round_takes_the_weight_format_estimated_smaller():
    from tfcompress.target.plan import _allocate

    u8 = [Unit("fc1", "weights", 1000, [Option({}, 800.0, 0.0), Option({"sparsity": 0.9}, 200.0, 4.0)])]
    u4 = [Unit("fc1", "weights", 1000, [Option({"sparsity": 0.0}, 380.0, 0.5),
                                        Option({"sparsity": 0.9}, 100.0, 6.0)])]
    fams = {"int8": (u8, 900.0), "int4": (u4, 480.0)}
    fmt, units, alloc, start, start_drop = _allocate(fams, parse_target("drop<=1"), 8.0, None)
    assert (fmt, alloc.choice, start - alloc.saved, start_drop + alloc.drop) == ("int4", {"fc1": 1}, 200.0, 6.0)
    fmt, _, alloc, _, _ = _allocate(fams, parse_target("drop<=1"), 5.0, None)  # 4-bit fc1 at 90 % is over 5 points:
    assert (fmt, alloc.choice) == ("int8", {"fc1": 1})  # int8 at 90 % (300 B) beats unpruned int4 (480 B)
    # the int4 rounds measured at half their estimate: unpruned int4 is 240 B as measured, under int8's 300 B
    fmt, _, alloc, _, _ = _allocate(fams, parse_target("drop<=1"), 5.0, None, fit={"int4": 0.5})
    assert (fmt, alloc.choice) == ("int4", {"fc1": 0})
    assert _allocate(fams, parse_target("drop<=1"), 5.0, None, fit={"int4": 0.5, "int8": 0.4})[0] == "int8"
    fmt, _, alloc, _, _ = _allocate(fams, parse_target("size<=500B"), 1.0, 500.0)  # a cost goal: least drop meeting it
    assert (fmt, alloc.choice) == ("int4", {"fc1": 0})  # unpruned int4 (480 B, 0.5 pts) vs int8 at 90 % (4 pts)
    fmt, _, alloc, _, _ = _allocate(fams, parse_target("size<=400B"), 1.0, 400.0)
    assert (fmt, alloc.choice) == ("int8", {"fc1": 1})  # int8 at 90 % (300 B, 4 pts) vs int4 at 90 % (6 pts)


def test_cli_exits_2_on_a_bad_target_before_any_work(capsys):
    assert cli.main(["optimize", "--model", "digits_cnn", "--dataset", "digits", "--target", "speed<=2"]) == 2
    assert "target must look like" in capsys.readouterr().err
    assert cli.main(["optimize", "--model", "digits_cnn", "--dataset", "digits", "--target", "size<=4KB",
                     "--minimize", "latency"]) == 2
    assert "accuracy is maximised" in capsys.readouterr().err


def test_optimize_refuses_a_bad_target(tiny, digits):
    with pytest.raises(RecipeError, match="target must look like"):
        tfcompress.optimize(tiny, digits.train, digits.validation, target="drop=1", verbose=0)
    with pytest.raises(RecipeError, match="needs validation_data"):
        tfcompress.optimize(tiny, digits.train, None, target="drop<=1", verbose=0)

    with pytest.raises(RecipeError, match="threads"):
        tfcompress.optimize(tiny, digits.train, digits.validation, target="drop<=1", verbose=0, threads=0)


def test_budget_mode_times_and_prices_at_the_job_s_threads(tiny, digits, monkeypatch, tmp_path):
    # --threads 1 plans a latency budget on 1-thread costs, not the default 2 threads
    from tfcompress import pipeline
    from tfcompress.target import plan as budget_mode

    seen = []

    def run(*a, **k):
        seen.append(k["threads"])
        raise RecipeError("stop here")
    monkeypatch.setattr(budget_mode, "run", run)
    with pytest.raises(RecipeError, match="stop here"):
        pipeline.run_job(tiny, digits, out=str(tmp_path), threads=1, quiet=True, verbose=0, target="latency<=1ms")
    assert seen == [1]


def _file_drop(model, result, digits, tmp_path, name, plan=None, val=None):
    x, y = val or digits.validation
    plan = plan or result.plan
    mode = "int4" if plan.quantization.weights == "int4" else "int8"  # as budget mode exports it (size plans: stripped)
    rep = tflite_export.export(result.model, tmp_path / name, mode=mode, representative_data=digits.train[0][:200],
                               strip_names=bool((result.report.budget or {}).get("strip_names")))
    return 100 * (accuracy(model, x, y) - tflite_export.evaluate(rep.path, x, y)), rep.zipped_bytes


@pytest.mark.slow
def test_a_drop_budget_is_met_on_the_file_and_the_plan_reruns(tiny, digits, tmp_path):
    # validation and test together: 150 of 499 samples held back, each 0.67 points (of 144, one is 2.3 points)
    val = tuple(np.concatenate([a, b]) for a, b in zip(digits.validation, digits.test))
    base = Recipe(learning_rate=1e-3, batch_size=64)
    res = tfcompress.optimize(tiny, digits.train, val, recipe=base, target="drop<=3.0", epochs=1, seed=0, verbose=0)
    b = res.report.budget
    kept = next(r for r in b["rounds"] if r["round"] == b["kept_round"])
    assert b["met"] and kept["drop"] <= 3.0 and (res.plan.pruning or res.plan.channels) is not None, b["markdown"]
    assert "### Budget `drop<=3.0`" in res.report.to_markdown()
    assert b["held_out"]["samples"] == 150 and b["held_out"]["drop"] <= 3.0
    drop, zipped = _file_drop(tiny, res, digits, tmp_path, "a.tflite", val=val)
    assert drop <= 3.0 and zipped < b["reference"]["int8"]["zipped_bytes"]
    plan = Recipe.from_yaml_string(res.plan.to_yaml())
    assert plan == res.plan
    again = tfcompress.optimize(tiny, digits.train, digits.validation, recipe=plan, epochs=1, seed=0, verbose=0)
    assert _file_drop(tiny, again, digits, tmp_path, "b.tflite", plan, val)[0] <= 3.0


@pytest.mark.slow
def test_a_size_budget_is_met_on_the_file(tiny, digits, tmp_path):
    res = tfcompress.optimize(tiny, digits.train, digits.validation, target="size<=3KB", epochs=1, seed=0, verbose=0)
    assert res.report.budget["met"], res.report.budget["markdown"]
    assert _file_drop(tiny, res, digits, tmp_path, "s.tflite")[1] <= 3 * 1024


@pytest.mark.slow
def test_minimize_latency_thins_channels_and_reports_each_round(digits, two_conv):
    m = two_conv
    res = tfcompress.optimize(m, digits.train, digits.validation, target="drop<=10", minimize="latency", epochs=1,
                              seed=0, verbose=0)
    b = res.report.budget
    assert b["minimize"] == "latency" and all("ms" in r and "drop" in r for r in b["rounds"])
    assert res.plan.channels is not None and res.plan.channels.per_layer and res.plan.pruning is None
    assert res.model.count_params() < m.count_params()


@pytest.mark.slow  # five int8 conversions: ~13 s on the loaded 2-core machine
def test_rounds_raise_the_margin_while_the_file_has_slack_and_keep_the_best(tiny, digits, monkeypatch):
    from types import SimpleNamespace

    from tfcompress.target import plan as budget_mode

    monkeypatch.setattr(tflite_export, "benchmark", lambda *a, **k: SimpleNamespace(median_ms=0.01))  # timing: not here
    plans = []

    def run_recipe(plan, validation):  # no fine-tuning: the unchanged model, whose file loses ~0 points
        plans.append(plan)
        return SimpleNamespace(model=tiny, report=SimpleNamespace())

    res, plan = budget_mode.run(tiny, digits.train, digits.validation, "drop<=5", None, Recipe(), run_recipe,
                                threads=1, samples=64)
    b = res.report.budget
    scales = [r["scale"] for r in b["rounds"]]
    # a file that loses ~0 points: the correction is near its floor (1/64 point per scanned point), so each next
    # round allows more, at most 3x the last and 80 % of the budget at the floor (51.2x); past that, met with
    # points to spare, a half step (sqrt 3) above the met round
    assert scales[0] == 8.0 and all(r["met"] for r in b["rounds"])
    assert all(a < b <= max(min(3 * a, 51.2), a * 3 ** 0.5) + 1e-9 for a, b in zip(scales, scales[1:]))
    if len(scales) < 3:  # stopped early: the next margin gave a plan already measured
        assert len(plans) == len(scales)
    assert [r["scanned_drop"] for r in b["rounds"]] == sorted(r["scanned_drop"] for r in b["rounds"])
    assert plan is plans[b["kept_round"] - 1] and b["met"]
    assert not any("failed" in n for n in b["notes"]), b["notes"]  # an int4 round exports (it once lacked calibration)


@pytest.mark.parametrize("drops, rounds", [
    ((0.1,) * 5, [1, 2, 3, 4, 5]),       # every round met with points to spare: on past ROUNDS, to MAX_ROUNDS
    ((0.1, 0.1, 2.0, 0.3), [1, 2, 3, 4, 5]),  # round 3 missed: rounds 4 and 5 inside the bracket
    ((0.1, 0.1, 0.1, 0.9), [1, 2, 3, 4]),  # round 4 met near the budget (over SLACK): stop there
    # no round met: the margin falls (round 3's plan would be round 2's: stop), then the default recipe, then the
    # plain int8 file (its reference met in step 1)
    ((2.0, 2.0, 2.0, 2.0), [1, 2, "default", "plain"]),
])
def test_a_drop_budget_goes_on_past_three_rounds_while_a_round_met_with_points_to_spare(
        tiny, digits, monkeypatch, drops, rounds):
    from types import SimpleNamespace

    from tfcompress.target import latencyplan
    from tfcompress.target import plan as budget_mode

    # 10 groups whose drops grow 1.5x: each bigger margin takes more of them, so every round is a new plan
    units = [Unit(f"g{i}", "channels", 8, [Option({}, 1.0, 0.0), Option({"ratio": 0.5}, 1.0 - 0.01 * (i + 1),
                                                                        3.0 * 1.5 ** i)]) for i in range(10)]
    monkeypatch.setattr(latencyplan, "channel_options", lambda *a, **k: (units, 1.0))
    monkeypatch.setattr(latencyplan, "depth_units", lambda *a, **k: [])
    monkeypatch.setattr(latencyplan, "tuned_channel_units", lambda units, *a, **k: units)
    monkeypatch.setattr(budget_mode, "side_by_side", lambda paths, threads: [0.01] * len(paths))
    monkeypatch.setattr(tflite_export, "benchmark", lambda *a, **k: SimpleNamespace(median_ms=0.01))
    real = budget_mode._measure

    def measure(model, path, *a, **k):
        got = real(model, path, *a, **k)
        i = next((n for n in range(1, 9) if f"round-{n}" in str(path)), None)
        if "default" in str(path):
            i = len(drops)
        return got if i is None else {**got, "drop": drops[i - 1] if i <= len(drops) else 0.1}

    monkeypatch.setattr(budget_mode, "_measure", measure)
    assert budget_mode.ROUNDS == 3 and budget_mode.MAX_ROUNDS == 5
    res, _ = budget_mode.run(tiny, digits.train, digits.validation, "drop<=1", "latency", Recipe(),
                             lambda plan, val: SimpleNamespace(model=tiny, report=SimpleNamespace()),
                             threads=1, samples=64)
    b = res.report.budget
    assert [r["round"] for r in b["rounds"]] == rounds, b["rounds"]
    planned = [r for r in b["rounds"] if r["round"] not in ("default", "plain")]
    assert len({repr(r["plan"]) for r in planned}) == len(planned)  # each round a new plan
    res, _ = budget_mode.run(tiny, digits.train, digits.validation, "drop<=1", "latency", Recipe(),
                             lambda plan, val: SimpleNamespace(model=tiny, report=SimpleNamespace()),
                             threads=1, samples=64, rounds=2)
    assert [r["round"] for r in res.report.budget["rounds"]][:4] in ([1, 2], [1, 2, "default"],
                                                                     [1, 2, "default", "plain"])  # rounds=: the most


@pytest.mark.slow  # TF-MOT's QAT wrapping: 5-15 s on the loaded machine
def test_float_model_unwraps_qat_into_the_trained_float_layers(tiny):
    from tfcompress._keras import tfmot
    from tfcompress.target.fast import float_model

    qat = tfmot.quantization.keras.quantize_model(tiny)
    qat.get_layer("quant_fc1").weights[0].assign(tiny.get_layer("fc1").kernel * 2)  # "trained" under QAT
    plain = float_model(qat)
    assert [type(layer).__name__ for layer in plain.layers] == ["Activation", "Conv2D", "Flatten", "Dense", "Dense"]
    assert np.array_equal(plain.get_layer("fc1").kernel.numpy(), tiny.get_layer("fc1").kernel.numpy() * 2)
    assert plain.get_layer("conv").get_config()["activation"] == "relu" and float_model(tiny) is tiny


@pytest.mark.slow  # ~6 quantizations with ai-edge-quantizer, 2 conversions
def test_a_file_slower_than_float32_gets_a_per_op_mix_that_is_not(tiny, digits, monkeypatch, tmp_path):
    from types import SimpleNamespace

    from tfcompress.target import export_file
    from tfcompress.target import plan as budget_mode
    from tflite_export.mixed import layer_precisions

    def fake_benchmark(path, **_):  # the timing backend, modelled: static int8 ops are slow here, the rest fast
        with open(path, "rb") as f:
            kinds = " ".join(layer_precisions(f.read()).values())
        return SimpleNamespace(median_ms=1.0 if "int8" in kinds else 0.5)

    monkeypatch.setattr(tflite_export, "benchmark", fake_benchmark)
    res, _ = budget_mode.run(tiny, digits.train, digits.validation, "drop<=5", "size", Recipe(),
                             lambda plan, validation: SimpleNamespace(model=tiny, report=SimpleNamespace()), threads=1,
                             samples=64, rounds=1, weights=("int8",))
    b = res.report.budget
    fast = b["faster_file"]
    assert b["rounds"][0]["ms"] == 1.0 and fast["ms"] == 0.5 and fast["drop"] <= 5
    assert set(fast["per_layer"].values()) == {"int4"} and fast["default"] == "float16"  # the smallest fast mix
    assert b["file"] == "int8" and any("a per-op precision mix is not" in n for n in b["notes"])
    b["file"] = "mixed"  # as minimize="latency" ships it
    rep = export_file(res, tmp_path / "m.tflite", digits.train[0][:200])
    with open(rep.path, "rb") as f:
        assert "int8" not in " ".join(layer_precisions(f.read()).values())


@pytest.mark.parametrize("round_ms, said", [(0.05, True), (0.009, False)])
def test_a_latency_round_whose_file_runs_far_slower_than_its_plan_predicted_is_said(tiny, digits, monkeypatch,
                                                                                   round_ms, said):
    from types import SimpleNamespace

    from tfcompress.target import latencyplan
    from tfcompress.target import plan as budget_mode
    from tfcompress.target.latency import price_gap

    units = [Unit("g", "channels", 8, [Option({}, 1.0, 0.0), Option({"ratio": 0.5}, 0.6, 0.5)])]
    monkeypatch.setattr(latencyplan, "channel_options", lambda *a, **k: (units, 1.0))
    monkeypatch.setattr(latencyplan, "depth_units", lambda *a, **k: [])
    monkeypatch.setattr(latencyplan, "tuned_channel_units", lambda units, *a, **k: units)
    monkeypatch.setattr(tflite_export, "benchmark", lambda *a, **k: SimpleNamespace(median_ms=0.01))
    real = budget_mode._measure

    def measure(model, path, *a, **k):  # the references at 0.01 ms; the round's file at round_ms
        got = real(model, path, *a, **k)
        return {**got, "ms": round_ms} if "round-" in str(path) else got

    monkeypatch.setattr(budget_mode, "_measure", measure)
    res, _ = budget_mode.run(tiny, digits.train, digits.validation, "drop<=1", "latency", Recipe(),
                             lambda plan, val: SimpleNamespace(model=tiny, report=SimpleNamespace()),
                             threads=1, samples=64, rounds=1)
    b = res.report.budget
    assert b["rounds"][0]["estimated_cost"] == pytest.approx(0.006)  # the plan: 0.6 of the int8 file's 0.01 ms
    gap = [n for n in b["notes"] if "its plan predicted" in n]
    assert bool(gap) is said
    if said:
        assert gap[0].startswith("round 1's file ran 0.05 ms at 1 thread(s), 8.3x the 0.006 ms")
    assert price_gap(b["rounds"], "default", 1) is None
    assert price_gap([{"round": 1, "estimated_cost": 0.006, "ms": 0.05, "ms_side_by_side": 0.007}], 1, 1) is None


def test_a_drop_budget_takes_int4_only_when_its_rounding_alone_fits_the_margin():
    from tfcompress.target.plan import _allocate

    # 4-bit rounding alone scans at 9 points; the round allows 8 (1 point x 8): int8's plan, though larger
    u8 = [Unit("fc1", "weights", 1000, [Option({}, 800.0, 0.0), Option({"sparsity": 0.5}, 600.0, 2.0)])]
    u4 = [Unit("fc1", "weights", 1000, [Option({"sparsity": 0.0}, 380.0, 9.0)])]
    fams = {"int8": (u8, 900.0), "int4": (u4, 480.0)}
    fmt, _, alloc, start, start_drop = _allocate(fams, parse_target("drop<=1"), 8.0, None)
    assert (fmt, alloc.choice, start - alloc.saved, start_drop + alloc.drop) == ("int8", {"fc1": 1}, 700.0, 2.0)
    fmt, _, _, _, start_drop = _allocate(fams, parse_target("drop<=1"), 10.0, None)  # 10 allowed: int4 fits
    assert (fmt, start_drop) == ("int4", 9.0)
    assert _allocate({"int4": (u4, 480.0)}, parse_target("drop<=1"), 8.0, None)[0] == "int4"  # the only format
