"""tflite_export.latency_model: per-op costs measured once per machine, cached, summed into a file's latency."""

import json
import os

import pytest

import tflite_export as tfl
from tflite_export import ExportError
from tflite_export import latency_model as lm
from tflite_export._opslice import op_slices, overhead_file
from tflite_export._testing import digits, tiny_cnn


@pytest.fixture(scope="module")
def float_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("f32") / "m_float32.tflite"
    tfl.export(tiny_cnn(train=False), p, mode="float32")
    return str(p)


def test_every_op_is_cut_into_a_file_that_runs_alone(int8_path):
    from ai_edge_litert.interpreter import Interpreter

    slices = op_slices(open(int8_path, "rb").read())
    assert [s.op for s in slices if s.op not in ("QUANTIZE", "DEQUANTIZE")] == [
        "CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"]
    for s in slices:
        assert s.data is not None
        it = Interpreter(model_content=s.data, num_threads=1)
        it.allocate_tensors()
        it.invoke()
    conv = next(s for s in slices if s.op == "CONV_2D")
    assert ":int8" in conv.key and "c/q8" in conv.key  # int8 weights, per-channel, constant: in the key
    assert "conv" in conv.names[0]
    Interpreter(model_content=overhead_file()).allocate_tensors()


def test_the_same_op_in_another_precision_has_another_key(int8_path, float_path):
    f32 = {s.op: s.key for s in op_slices(open(float_path, "rb").read())}
    i8 = {s.op: s.key for s in op_slices(open(int8_path, "rb").read())}
    assert f32["CONV_2D"] != i8["CONV_2D"] and ":float32" in f32["CONV_2D"]


def test_cache_is_written_once_and_a_second_prediction_measures_nothing(int8_path, tmp_path):
    first = lm.predict(int8_path, threads=1, folder=tmp_path)
    assert first.method == "sum of ops" and first.measured_now == len([o for o in first.ops]) + 1  # + overhead
    assert os.path.isfile(first.cache) and os.path.dirname(first.cache) == str(tmp_path)
    stamp = os.stat(first.cache).st_mtime_ns
    doc = json.load(open(first.cache))
    assert doc["format"] == lm.FORMAT and doc["key"]["threads"] == 1 and len(doc["ops"]) == len(first.ops)
    again = lm.predict(int8_path, threads=1, folder=tmp_path)
    assert again.measured_now == 0
    assert again.predicted_ms == pytest.approx(first.predicted_ms)
    assert os.stat(first.cache).st_mtime_ns == stamp  # nothing new: not rewritten
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []  # no temporary file left


def test_cache_folder_comes_from_the_environment(int8_path, tmp_path, monkeypatch):
    monkeypatch.setenv("TFCOMPRESS_CACHE", str(tmp_path / "env"))
    assert lm.cache_dir() == str(tmp_path / "env")
    p = lm.predict(int8_path, threads=1)
    assert p.cache.startswith(str(tmp_path / "env") + os.sep)


def test_the_key_changes_with_threads(tmp_path):
    one, two = lm.LatencyModel(1, tmp_path), lm.LatencyModel(2, tmp_path)
    assert one.key["threads"] == 1 and two.key["threads"] == 2
    assert one.path != two.path
    assert {k: v for k, v in one.key.items() if k != "threads"} == {k: v for k, v in two.key.items()
                                                                    if k != "threads"}


def test_costs_of_other_files_are_reused(int8_path, float_path, tmp_path):
    lm.predict(int8_path, folder=tmp_path)
    f = lm.predict(float_path, folder=tmp_path)
    assert 0 < f.measured_now <= len(f.ops)  # the overhead is cached; float32 ops are new
    assert lm.predict(float_path, folder=tmp_path).measured_now == 0


def test_a_cache_of_another_machine_or_format_is_ignored(int8_path, tmp_path):
    model = lm.LatencyModel(1, tmp_path)
    with open(model.path, "w") as f:
        json.dump({"format": lm.FORMAT, "key": {**model.key, "cpu": "another"}, "overhead_ms": 5.0,
                   "ops": {}}, f)
    assert lm.LatencyModel(1, tmp_path).overhead_ms is None
    with open(model.path, "w") as f:
        f.write("{not json")
    assert lm.predict(int8_path, folder=tmp_path).measured_now > 0  # a damaged cache is measured again
    assert json.load(open(model.path))["format"] == lm.FORMAT


def test_a_save_merges_what_another_process_added(int8_path, tmp_path):
    a, b = lm.LatencyModel(1, tmp_path), lm.LatencyModel(1, tmp_path)
    a.predict(int8_path)
    b.ops["OTHER|1:float32>1:float32|"] = 0.5
    b._new = True
    b.save()
    assert set(a.ops) < set(json.load(open(b.path))["ops"])


def test_the_cache_is_written_atomically(int8_path, tmp_path, monkeypatch):
    model = lm.LatencyModel(1, tmp_path)
    model.predict(int8_path)
    before = open(model.path).read()

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    model.ops["NEW|1:float32>1:float32|"] = 1.0
    model._new = True
    with pytest.raises(ExportError, match="cannot write"):
        model.save()
    assert open(model.path).read() == before  # the old cache is whole
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []


def test_prediction_is_within_a_loose_factor_of_the_measured_latency(int8_path, float_path, tmp_path):
    for path in (int8_path, float_path):
        p = lm.predict(path, folder=tmp_path)
        t = tfl.benchmark(path, threads=1, warmup_seconds=0.0, min_seconds=0.2, min_runs=50)
        assert p.predicted_ms > 0 and t.median_ms > 0
        assert t.median_ms / 5 < p.predicted_ms < t.median_ms * 5, (p.predicted_ms, t.median_ms)
        assert sum(p.by_op().values()) == pytest.approx(p.predicted_ms - p.overhead_ms)
        assert "conv" in p.by_layer()


def test_a_keras_model_is_predicted_without_writing_a_file(tmp_path):
    x = digits()[0][:50]
    p = lm.predict_model(tiny_cnn(train=False), "int8", x, folder=tmp_path)
    assert p.path == "<bytes>" and p.method == "sum of ops" and p.predicted_ms > 0
    assert os.listdir(tmp_path) == [os.path.basename(p.cache)]


def test_the_table_lists_the_cached_costs(int8_path, tmp_path):
    lm.predict(int8_path, folder=tmp_path)
    rows = lm.LatencyModel(1, tmp_path).table()
    assert {r["op"] for r in rows} >= {"CONV_2D", "FULLY_CONNECTED"}
    assert [r["ms"] for r in rows] == sorted((r["ms"] for r in rows), reverse=True)


def test_bad_threads_and_files_are_refused(tmp_path):
    with pytest.raises(ExportError, match="threads"):
        lm.LatencyModel(0, tmp_path)
    (tmp_path / "bad.tflite").write_bytes(b"nope")
    with pytest.raises(ExportError):
        lm.predict(tmp_path / "bad.tflite", folder=tmp_path)


def test_channel_options_cost_thinning_in_predicted_ms(tiny, digits, tmp_path, monkeypatch):
    from tfcompress.target import sensitivity

    monkeypatch.setenv("TFCOMPRESS_CACHE", str(tmp_path))
    x, y = digits.validation[0][:200], digits.validation[1][:200]
    units, base = sensitivity.channel_options(tiny, x, y, ratios=(0.5,), threads=1, modes=("int8", "float32"))
    flops_units, flops = sensitivity.channel_options(tiny, x, y, ratios=(0.5,), cost="flops")
    assert flops > 1000 and base < 10  # milliseconds, not FLOPs
    assert base == pytest.approx(lm.predict_model(tiny, "int8", x[:32], folder=tmp_path).predicted_ms)
    # each option priced in both formats (a latency plan's int8 and float32 families), the first one its cost
    assert all(set(o.prices) == {"int8", "float32"} and o.prices["int8"] == o.cost for u in units for o in u.options)
    assert units[0].options[0].prices["float32"] == pytest.approx(
        lm.predict_model(tiny, "float32", folder=tmp_path).predicted_ms)
    assert lm.predict_model(tiny, "int8", x[:32], folder=tmp_path).measured_now == 0  # cached by the scan
    assert [u.name for u in units] == [u.name for u in flops_units]
    assert all(o.cost > 0 for u in units for o in u.options)
    assert [o.drop for u in units for o in u.options] == pytest.approx([o.drop for u in flops_units
                                                                        for o in u.options])


def test_channel_options_fall_back_to_flops_when_a_model_cannot_be_priced(tiny, digits, monkeypatch):
    from tfcompress.target import sensitivity

    def refuse(*a, **k):
        raise ExportError("cannot convert")

    monkeypatch.setattr(sensitivity, "thinned_ms", refuse)
    x, y = digits.validation[0][:100], digits.validation[1][:100]
    _, base = sensitivity.channel_options(tiny, x, y, ratios=(0.5,))
    _, flops = sensitivity.channel_options(tiny, x, y, ratios=(0.5,), cost="flops")
    assert base == flops


def test_the_cli_predicts_a_file_then_lists_the_cached_costs(int8_path, tmp_path, capsys):
    from tfcompress import cli

    assert cli.main(["latency-model", int8_path, "--threads", "1", "--cache", str(tmp_path), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["method"] == "sum of ops" and row["predicted_ms"] > 0 and row["measured_now"] > 0
    assert cli.main(["latency-model", "--threads", "1", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"cache: {row['cache']}") and "CONV_2D" in out and "FULLY_CONNECTED" in out
    assert cli.main(["latency-model", "--threads", "2", "--cache", str(tmp_path)]) == 0
    assert "(0 op costs, 2 thread(s)" in capsys.readouterr().out  # another thread count: its own cache
    assert cli.main(["latency-model", str(tmp_path / "missing.tflite"), "--cache", str(tmp_path)]) == 2


def test_a_file_with_an_op_that_does_not_run_alone_is_timed_whole_and_cached(int8_path, tmp_path, monkeypatch):
    real = lm._time_bytes

    def refuse_conv(data, threads):
        if [s.op for s in op_slices(data)] == ["CONV_2D"]:  # the conv's one-op file
            raise RuntimeError("Node number 0 (CONV_2D) failed to prepare.")
        return real(data, threads)

    monkeypatch.setattr(lm, "_time_bytes", refuse_conv)
    first = lm.predict(int8_path, folder=tmp_path)
    assert first.method == "measured whole file" and "CONV_2D" in first.unmodelled and first.ops == []
    assert first.predicted_ms > 0 and first.measured_now >= 1
    again = lm.predict(int8_path, folder=tmp_path)
    assert again.method == "measured whole file" and again.measured_now == 0
    assert again.predicted_ms == pytest.approx(first.predicted_ms)


def _custom_op_file():
    from tflite_export import _flatbuffer as fb

    model = fb.parse_model(overhead_file())
    code = model.operatorCodes[0]
    code.builtinCode = code.deprecatedBuiltinCode = fb._schema().BuiltinOperator.CUSTOM
    code.customCode = b"NoSuchOp"
    op = model.subgraphs[0].operators[0]
    op.builtinOptionsType, op.builtinOptions = 0, None
    return fb.serialize_model(model)


def test_a_model_litert_cannot_run_raises_one_export_error(tmp_path):
    data = _custom_op_file()
    with pytest.raises(ExportError, match="cannot"):
        lm.LatencyModel(1, tmp_path).predict(data)
    (tmp_path / "c.tflite").write_bytes(data)
    with pytest.raises(ExportError):
        lm.predict(tmp_path / "c.tflite", folder=tmp_path)


def test_an_unwritable_cache_warns_and_the_prediction_stands(int8_path, tmp_path, monkeypatch):
    model = lm.LatencyModel(1, tmp_path)

    def full(path, data):
        raise ExportError(f"cannot write {path} (No space left on device); free some space or write elsewhere")

    monkeypatch.setattr(lm, "atomic_write_bytes", full)
    with pytest.warns(UserWarning, match="not cached: cannot write"):
        p = model.predict(int8_path)
    assert p.predicted_ms > 0 and not os.path.exists(model.path)
