"""Budget mode's latency plan on a machine where int8 runs slower than float32: thinned float32 files, priced too."""

from types import SimpleNamespace

import pytest

import tflite_export
from tfcompress.recipe import Recipe
from tfcompress.target import latencyplan
from tfcompress.target import plan as budget_mode
from tfcompress.target.sensitivity import Option, Unit, priced_as
from tflite_export.mixed import layer_precisions


def _units():
    """Two channel groups; thinning saves a little int8 time and much float32 time (as op costs differ)."""
    return [Unit(n, "channels", 8, [Option({}, 1.0, 0.0, prices={"int8": 1.0, "float32": 1.0}),
                                    Option({"ratio": 0.5}, 0.9, d, prices={"int8": 0.9, "float32": 0.8})])
            for n, d in (("a", 0.5), ("b", 1.0))]


def _run(tiny, digits, monkeypatch, int8_ms, units=None):
    """Budget mode on ``tiny`` (each round's model is ``tiny``), every int8 file timed ``int8_ms``, float ones 0.01."""
    units = units or _units()
    seen = {}
    monkeypatch.setattr(latencyplan, "channel_options",
                        lambda *a, **k: seen.update(k) or (units, units[0].options[0].cost))
    monkeypatch.setattr(latencyplan, "depth_units", lambda *a, **k: [])
    monkeypatch.setattr(latencyplan, "tuned_channel_units", lambda units, *a, **k: units)

    def benchmark(path, **_):  # the timing backend, modelled: int8 kernels slow (no VNNI), float ones fast
        with open(path, "rb") as f:
            kinds = " ".join(layer_precisions(f.read()).values())
        return SimpleNamespace(median_ms=int8_ms if "int8" in kinds else 0.01)

    monkeypatch.setattr(tflite_export, "benchmark", benchmark)
    monkeypatch.setattr(budget_mode, "side_by_side", lambda paths, threads: [benchmark(p).median_ms for p in paths])
    trained = []

    def run_recipe(plan, val):
        trained.append(plan)
        return SimpleNamespace(model=tiny, report=SimpleNamespace())

    said = seen.setdefault("said", [])
    res, plan = budget_mode.run(tiny, digits.train, digits.validation, "drop<=1", "latency", Recipe(), run_recipe,
                                threads=1, samples=64, rounds=1, say=said.append)
    return res.report.budget, plan, trained, seen


def test_priced_as_takes_each_options_price_in_the_format_and_scales_it():
    (a, _) = priced_as(_units(), "float32", scale=0.02)
    assert [o.cost for o in a.options] == pytest.approx([0.02, 0.016])
    assert [o.cost for o in priced_as([Unit("u", "channels", 8, [Option({}, 3.0, 0.0)])], "float32")[0].options] == [
        3.0]  # no prices (a FLOPs scan): its cost


def test_where_int8_is_slower_than_float32_the_latency_plan_ships_a_thinned_float32_file(tiny, digits, monkeypatch):
    # ResNet-8 on an AVX2 machine: plain int8 ran at 0.70x float32, so a plan priced in int8 alone reached 1.42x
    # float32. The float32 family is priced beside it; its plan trains no QAT and its file ships as fast.tflite.
    b, plan, trained, seen = _run(tiny, digits, monkeypatch, int8_ms=0.02)
    assert seen["modes"] == ("int8", "float32")
    assert any(line.startswith("scan: each channel group thinned alone") and "int8 and float32 files" in line
               for line in seen["said"]), seen["said"]  # a long scan says what it does
    assert b["rounds"][0]["weights"] == "float32" and b["weights"] == "float32" and b["met"]
    assert plan.quantization is None and plan.channels.per_layer and plan.distillation is not None
    assert b["rounds"][0]["estimated_cost"] == pytest.approx(0.01 * 0.6)  # both groups thinned, float32 ms
    assert b["file"] == "mixed" and b["faster_file"]["default"] == "float32" and b["faster_file"]["per_layer"] == {}
    assert any("priced thinned float32 files" in n and "0.50x float32's speed" in n for n in b["notes"]), b["notes"]
    assert any("ships as fast.tflite" in n for n in b["notes"])


def test_a_float32_plan_fine_tunes_the_thinning_for_the_epochs_qat_would_have_taken():
    # no QAT in a float32 plan: both formats' plans train as long, the float32 one all of it on the thinned model
    # (ResNet-8 at 2 epochs a stage: a float32 round thinned and fine-tuned 2 epochs met at 0.88 on the planning
    # samples, 1.83 held back). optimize(epochs=...) is resolved into the plan first, so it does not undo this.
    from tfcompress.quantization.config import Quantization
    from tfcompress.target.recipeplan import plan_recipe, with_epochs

    thin = {"a": {"ratio": 0.5}}
    own = plan_recipe(Recipe(), thin, weights="int8")
    f32 = plan_recipe(Recipe(), thin, weights="float32")
    assert f32.quantization is None and f32.channels.epochs == own.channels.epochs + own.quantization.epochs
    i8, f32 = plan_recipe(Recipe(), thin, epochs=3), plan_recipe(Recipe(), thin, weights="float32", epochs=3)
    assert (i8.channels.epochs, i8.quantization.epochs, f32.channels.epochs) == (3, 3, 6)
    removed = plan_recipe(Recipe(quantization=Quantization(epochs=4)), {"b1": {"remove": True}}, weights="float32")
    assert removed.depth.epochs == Recipe().pruning.epochs + 4 and removed.channels is None  # the removal fine-tunes
    assert with_epochs(Recipe(), None) == Recipe() and with_epochs(Recipe(), 1).quantization.epochs == 1


def test_where_int8_is_fast_the_latency_plan_prices_int8_only(tiny, digits, monkeypatch):
    # a VNNI machine: plain int8 2-3x faster than float32; the int8 family alone, as before
    b, plan, _, seen = _run(tiny, digits, monkeypatch, int8_ms=0.004)
    assert seen["modes"] == ("int8",)
    assert b["rounds"][0]["weights"] == "int8" and plan.quantization is not None and b["file"] == "int8"
    assert not any("float32 files" in n for n in b["notes"]), b["notes"]


def test_an_empty_float32_plan_is_not_trained(tiny, digits, monkeypatch):
    # every thinning loses far more than the margin allows: the float32 plan would be the model itself, retrained
    units = [Unit(n, "channels", 8, [Option({}, 1.0, 0.0, prices={"int8": 1.0, "float32": 1.0}),
                                     Option({"ratio": 0.5}, 0.9, 500.0, prices={"int8": 0.9, "float32": 0.8})])
             for n in ("a", "b")]
    b, plan, trained, _ = _run(tiny, digits, monkeypatch, int8_ms=0.02, units=units)
    assert [r["round"] for r in b["rounds"]] == ["default"] and trained == [Recipe()]


@pytest.mark.slow  # QAT of the tiny model and its export: ~20 s
def test_the_shipped_float32_plan_file_is_float_and_scores_like_the_model(tiny, digits, monkeypatch, tmp_path):
    from tfcompress.target import export_file

    b, _, _, _ = _run(tiny, digits, monkeypatch, int8_ms=0.02)
    res = SimpleNamespace(model=tiny, report=SimpleNamespace(budget=b))
    rep = export_file(res, tmp_path / "fast.tflite", digits.train[0][:100])
    with open(rep.path, "rb") as f:
        assert set(layer_precisions(f.read()).values()) == {"float32"}
    x, y = digits.test
    assert tflite_export.evaluate(rep.path, x, y) == pytest.approx(
        float((tiny.predict(x, verbose=0).argmax(-1) == y).mean()), abs=1e-6)


@pytest.mark.slow  # a real latency plan, 1-epoch rounds and the main job's exports: ~1 min
def test_the_main_job_ships_a_float32_plan_as_fast_tflite_and_checks_it(digits, two_conv, monkeypatch, tmp_path):
    from tfcompress import pipeline

    monkeypatch.setenv("TFCOMPRESS_CACHE", str(tmp_path / "cache"))  # the modelled timings below stay out of it

    import dataclasses

    real = tflite_export.benchmark

    def benchmark(path, **k):  # int8 kernels slow, as on an x86 CPU without VNNI; float ones by their weights
        with open(path, "rb") as f:
            data = f.read()
        kinds = " ".join(layer_precisions(data).values())
        ms = (8.0 if "int8" in kinds else 1.0) * len(data) / 1e4  # int8: 1/4 the bytes, 2x the time
        return dataclasses.replace(real(path, **{**k, "min_runs": 1, "min_seconds": 0}), median_ms=ms)

    monkeypatch.setattr(tflite_export, "benchmark", benchmark)
    rep = pipeline.run_job(two_conv, digits, out=str(tmp_path / "out"), threads=1, quiet=True, verbose=0, epochs=1,
                           target="drop<=10", minimize="latency", timing_runs=1, timing_seconds=0)
    b = rep.optimize["budget"]
    assert b["weights"] == "float32", (b["notes"], b["rounds"], b["reference"])
    assert b["file"] == "mixed" and b["shipped"]["file"] == "fast.tflite"
    with open(tmp_path / "out" / "fast.tflite", "rb") as f:
        assert set(layer_precisions(f.read()).values()) == {"float32"}
    files = {f["name"]: f for f in rep.files}
    assert files["fast"]["zipped_bytes"] < files["float32"]["zipped_bytes"], b["rounds"]  # thinned
    assert b["shipped"]["met"] == b["met"] and abs(b["shipped"]["drop"]) <= 10, b["shipped"]
