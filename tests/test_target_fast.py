"""Budget mode's fast.tflite: a per-op mix is kept only when it times no slower than float32 (within TOLERANCE).

The timings are faked from each mix's precisions (read back from the file), so the rule is tested, not the
machine: the real timings are noisy on a shared machine.
"""

from types import SimpleNamespace

import pytest

import tflite_export
from tfcompress.target import fast
from tflite_export.mixed import layer_precisions

F32_MS = 1.0


def _timed_by_precision(monkeypatch, ms_of_mix):
    """tflite_export.benchmark as fast.py calls it: the float32 file at F32_MS, a mix at ``ms_of_mix(precisions)``."""

    def bench(path, **kwargs):
        if str(path).endswith("float32.tflite"):
            return SimpleNamespace(median_ms=F32_MS)
        with open(path, "rb") as f:
            return SimpleNamespace(median_ms=ms_of_mix(set(layer_precisions(f.read()).values())))

    monkeypatch.setattr(tflite_export, "benchmark", bench)


def _mix(tiny, digits, **kw):
    x, y = digits.validation[0][:100], digits.validation[1][:100]
    acc = float((tiny.predict(x, verbose=0).argmax(-1) == y).mean())
    return fast.faster_mix(tiny, digits.train[0][:50], x, y, acc, threads=1, **kw)


def test_no_mix_is_kept_when_every_mix_is_slower_than_float32(tiny, digits, monkeypatch):
    _timed_by_precision(monkeypatch, lambda precisions: 2.0 * F32_MS)  # even the float32 mix (noise, say)
    got = _mix(tiny, digits)
    assert got.get("none") is True and "per_layer" not in got  # nothing for the job to write as fast.tflite
    assert got["tried"] and all(r["ms"] > r["float32_ms"] * (1 + fast.TOLERANCE) for r in got["tried"])


def test_a_mix_within_the_tolerance_of_float32_is_kept(tiny, digits, monkeypatch):
    _timed_by_precision(monkeypatch, lambda precisions: F32_MS * (1 + fast.TOLERANCE) * 0.99)
    got = _mix(tiny, digits)
    assert "per_layer" in got and got["ms"] <= got["float32_ms"] * (1 + fast.TOLERANCE)
    assert got["default"] == "float16"  # smaller than the float32 mix, and not slower


def test_a_lower_precision_slower_beyond_the_tolerance_is_never_kept(tiny, digits, monkeypatch):
    _timed_by_precision(monkeypatch, lambda precisions: F32_MS if precisions == {"float32"}
                        else F32_MS * (1 + fast.TOLERANCE) * 1.2)
    got = _mix(tiny, digits)
    assert got["default"] == "float32" and got["per_layer"] == {} and got["ms"] == pytest.approx(F32_MS)
    kept_rows = [r for r in got["tried"] if r["ok"]]
    assert kept_rows and all(r["ms"] <= r["float32_ms"] * (1 + fast.TOLERANCE) for r in kept_rows)
    assert len(got["tried"]) > 2  # the layers were lowered, and each lowering was refused


def test_the_mixes_of_a_4_bit_model_compute_with_its_4_bit_weights(tiny, digits, monkeypatch):
    # LeNet-5's 4-bit plan: its int4 file lost 0.88 points, its float16 "mix" 3.67: the mixes were built from the
    # latent float weights QAT trains, not the 4-bit grid values it computes with (and the int4 file stores)
    import numpy as np

    import tfcompress

    _timed_by_precision(monkeypatch, lambda precisions: F32_MS)
    res = tfcompress.optimize(tiny, digits.train, digits.validation, verbose=0, epochs=1, seed=0,
                              recipe={"pruning": None, "quantization": {"weights": "int4"}})
    converted, real = [], tflite_export.convert_bytes
    monkeypatch.setattr(tflite_export, "convert_bytes", lambda m, *a, **k: converted.append(m) or real(m, *a, **k))
    x, y = digits.validation[0][:100], digits.validation[1][:100]
    fast.faster_mix(res.model, digits.train[0][:50], x, y, 0.9, threads=1)
    kernels = [w for layer in converted[0].layers for w in layer.get_weights() if w.ndim >= 2]
    assert kernels and all(max(len(np.unique(k[..., c])) for c in range(k.shape[-1])) <= 16 for k in kernels)


def _files(**ms):
    return [{"name": name, "median_ms": v} for name, v in {"float32": F32_MS, **ms}.items()]


def test_the_report_leads_with_a_main_file_slower_than_float32():
    from tfcompress._filenotes import budget_slower

    (note,) = budget_slower(_files(int8=2.0, fast=0.9), "int8", 1, fast.TOLERANCE)
    assert note.startswith("int8.tflite, the file budget mode ships, runs slower than float32.tflite")
    (note,) = budget_slower(_files(int8=0.8, fast=2.0), "fast", 1, fast.TOLERANCE)  # said once, as the main file
    assert note.startswith("fast.tflite, the file budget mode ships")


def test_a_fast_file_that_times_slow_at_shipping_is_said_first():
    from tfcompress._filenotes import budget_slower

    (note,) = budget_slower(_files(int4=0.5, fast=1.2), "int4", 1, fast.TOLERANCE)
    assert note.startswith("fast.tflite is not fast on this machine now: 1.2 ms against float32.tflite's 1 ms")
    assert budget_slower(_files(int4=0.5, fast=F32_MS * (1 + fast.TOLERANCE)), "int4", 1, fast.TOLERANCE) == []


def test_no_compressed_file_faster_leaves_the_lead_to_none_faster():
    from tfcompress._filenotes import budget_slower, none_faster

    files = _files(int8=2.0, fast=1.5)
    assert budget_slower(files, "int8", 1, fast.TOLERANCE) == []
    assert none_faster(files, 1)[0].startswith("No compressed file is faster than float32.tflite")


def test_met_latency_rounds_are_timed_again_side_by_side_and_the_fastest_there_ships(tiny, digits, monkeypatch):
    # each round is timed once, in its own sitting: on a shared machine a round timed 0.063 ms between two at
    # 0.027-0.033 (ResNet-8, 2 threads). The met rounds' files are timed again alternately; those times choose.
    from tfcompress.recipe import Recipe
    from tfcompress.target import latencyplan
    from tfcompress.target import plan as budget_mode
    from tfcompress.target.sensitivity import Option, Unit

    units = [Unit(n, "channels", 8, [Option({}, 1.0, 0.0), Option({"ratio": 0.5}, 0.9, d)])
             for n, d in (("a", 3.0), ("b", 6.0), ("c", 12.0))]
    monkeypatch.setattr(latencyplan, "channel_options", lambda *a, **k: (units, 1.0))
    monkeypatch.setattr(latencyplan, "depth_units", lambda *a, **k: [])
    monkeypatch.setattr(latencyplan, "tuned_channel_units", lambda units, *a, **k: units)
    own = {"round-1": (0.1, 0.01), "round-2": (0.2, 0.02)}  # drop, ms of each round's own sitting
    real = budget_mode._measure

    def measure(model, path, *a, **k):
        got = real(model, path, *a, **k)
        hit = next((v for key, v in own.items() if key in str(path)), None)
        return got if hit is None else {**got, "drop": hit[0], "ms": hit[1]}

    monkeypatch.setattr(budget_mode, "_measure", measure)
    monkeypatch.setattr(tflite_export, "benchmark", lambda *a, **k: SimpleNamespace(median_ms=0.01))
    monkeypatch.setattr(budget_mode, "side_by_side", lambda paths, threads: [0.03, 0.015][:len(paths)])
    res, plan = budget_mode.run(tiny, digits.train, digits.validation, "drop<=1", "latency", Recipe(),
                                lambda plan, val: SimpleNamespace(model=tiny, report=SimpleNamespace()),
                                threads=1, samples=64)
    b = res.report.budget
    assert [r["met"] for r in b["rounds"]] == [True, True] and b["kept_round"] == 2
    assert [r["ms_side_by_side"] for r in b["rounds"]] == [0.03, 0.015]
    assert set(plan.channels.per_layer) == {"a", "b", "c"}


def test_side_by_side_alternates_the_files_and_takes_each_one_s_median(monkeypatch):
    calls = []
    ms = {"x": iter([5.0, 1.0, 1.2]), "y": iter([2.0, 2.1, 9.0])}
    monkeypatch.setattr(tflite_export, "benchmark",
                        lambda p, **k: calls.append(p) or SimpleNamespace(median_ms=next(ms[p])))
    assert fast.side_by_side(["x", "y"], threads=1) == [1.2, 2.1]
    assert calls == ["x", "y"] * 3
