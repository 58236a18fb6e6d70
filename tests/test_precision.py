"""Per-layer mixed precision: the file's tensors, the budget, the plan as a recipe (tfcompress/precision)."""

import numpy as np
import pytest

import tfcompress
from tfcompress import RecipeError, precision
from tfcompress._keras import keras
from tfcompress.precision.scan import Scan, accuracy_of
from tfcompress.recipe import Recipe
from tflite_export import _flatbuffer as fb
from tflite_export import convert_bytes
from tflite_export.mixed import Mixer, layer_precisions, weight_layers


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
        keras.layers.MaxPooling2D(name="pool"), keras.layers.Conv2D(8, 3, activation="relu", name="c2"),
        keras.layers.Flatten(name="flat"), keras.layers.Dense(16, activation="relu", name="d1"),
        keras.layers.Dense(3, activation="softmax", name="d2"),
    ], name="net")


def _data(n=64):
    rng = np.random.RandomState(0)
    x = rng.rand(n, 8, 8, 1).astype("float32")
    return x, np.digitize(x[:, :4].mean(axis=(1, 2, 3)) - x[:, 4:].mean(axis=(1, 2, 3)), [-0.03, 0.03])


@pytest.fixture(scope="module")
def trained():
    model = _model()
    x, y = _data()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    return model


@pytest.fixture(scope="module")
def mixer(trained):
    return Mixer(convert_bytes(trained, "float32")[0], _data()[0][:32])


def test_the_file_holds_the_planned_type_per_op(mixer):
    plan = {"c1": "int16x8", "c2": "float16", "d1": "int4", "d2": "float32"}
    data = mixer.quantize(plan, "int8")
    assert layer_precisions(data) == plan
    g = fb.parse_model(data).subgraphs[0]
    types = {fb._decode(t.name): fb.type_name(int(t.type)).lower() for t in g.tensors}
    assert types["net/pool/MaxPool"] == "int8"  # the default for ops without weights
    w = {x["layer"]: x["params"] for x in weight_layers(mixer.data)}
    int4 = [t for t in g.tensors if fb.type_name(int(t.type)).lower() == "int4"]
    assert len(int4) == 1 and int(np.prod(int4[0].shape)) == w["d1"]  # stored packed: two weights a byte
    buf = fb.parse_model(data).buffers[int4[0].buffer]
    assert len(buf.data) == w["d1"] // 2
    assert layer_precisions(mixer.quantize({}, "int8")) == dict.fromkeys(w, "int8")


def test_plan_greedy_by_bytes_per_point_and_cut_at_budget():
    rows = [
        {"layer": "a", "precision": "int8", "supported": True, "accuracy": 0.9, "drop": 0.1, "saved": 300},
        {"layer": "a", "precision": "int4", "supported": True, "accuracy": 0.8, "drop": 3.0, "saved": 400},
        {"layer": "b", "precision": "int8", "supported": True, "accuracy": 0.9, "drop": 1.0, "saved": 100},
        {"layer": "b", "precision": "int4", "supported": False},
    ]
    s = Scan(0.9, 1000, {}, "int8", rows)
    p = precision.plan(s, max_drop=1.5)
    assert [m[:2] for m in p.moves] == [("a", "int8"), ("b", "int8")]  # a: 3000 B/pt, b: 100 B/pt; a/int4 too costly
    assert p.per_layer() == {"a": "int8", "b": "int8"}
    p = precision.plan(s, max_bytes=750)
    assert p.per_layer() == {"a": "int8", "b": "float32"} and p.moves[p.cut - 1][3] == 700
    assert precision.plan(s, max_drop=0.05).per_layer() == {"a": "float32", "b": "float32"}


def test_the_budget_is_met_on_the_assembled_file(mixer):
    x, y = _data()
    s = precision.scan(mixer, x, y, ("int4", "int8", "float16"))
    assert {r["layer"] for r in s.rows} == {"c1", "c2", "d1", "d2"}
    max_bytes = len(mixer.quantize({}, "int8")) + 200
    for budget in ({"max_drop": 1.0}, {"max_bytes": max_bytes}):
        f = precision.fit(mixer, s, precision.plan(s, **budget), x, y, **budget)
        assert f.met and layer_precisions(f.data) == f.per_layer
        drop = 100 * (s.accuracy - accuracy_of(f.data, x, y))  # measured again on the file itself
        assert drop <= budget.get("max_drop", 100) + 1e-9 and len(f.data) <= budget.get("max_bytes", 1 << 30)
    assert len(f.data) < s.bytes  # the bytes budget lowered layers


def test_the_plan_round_trips_as_a_recipe(trained):
    x, y = _data()
    recipe = {"pruning": None, "quantization": None,
              "precision": {"max_drop": 2.0, "candidates": ["int8", "float16"], "samples": 64}}
    result = tfcompress.optimize(trained, (x, y), (x, y), recipe=recipe, verbose=0)
    info = next(s for s in result.report.stages if s["name"] == "precision")
    assert set(info["plan"]) == {"c1", "c2", "d1", "d2"} and info["met"] and info["drop"] <= 2.0
    back = Recipe.from_yaml_string(Recipe.from_dict(result.report.recipe).to_yaml())
    assert back.precision.per_layer == info["plan"]
    again = tfcompress.optimize(trained, (x, y), (x, y), recipe=back, verbose=0)
    info2 = next(s for s in again.report.stages if s["name"] == "precision")
    assert "scan" not in info2 and info2["layer_precisions"] == info["layer_precisions"]
    assert result.report.layer("d1").stages["precision"] == f"precision: {info['plan']['d1']}"


def test_precision_beside_qat_is_refused_before_training():
    x, y = _data(16)
    with pytest.raises(RecipeError, match="set quantization to null"):
        tfcompress.optimize(_model(), (x, y), recipe={"pruning": None, "precision": {}}, verbose=0)


@pytest.mark.parametrize("bad, match", [
    ({"default": "int3"}, "precision.default"),
    ({"per_layer": {"c1": "int2"}}, "per_layer"),
    ({"per_layer": {"(": "int8"}}, "regular expression"),
    ({"max_drop": -1}, "max_drop"),
    ({"max_bytes": 0}, "max_bytes"),
    ({"candidates": []}, "candidates"),
    ({"samples": 5}, "samples"),
])
def test_bad_fields_name_themselves(bad, match):
    with pytest.raises(RecipeError, match=match):
        precision.Precision(**bad)


def test_check_shows_the_precision_column():
    recipe = Recipe(quantization=None, precision=precision.Precision(per_layer={"d.*": "int4"}, max_drop=1.0))
    report = tfcompress.check(_model(), recipe=recipe, convert=False)
    assert report.layer("d1").extra["precision"] == "int4"
    assert report.layer("c1").extra["precision"].startswith("scan: int4|")
    assert "precision" not in report.layer("pool").extra
    assert "precision" not in tfcompress.check(_model(), convert=False).layer("c1").extra


def test_the_tuner_knob_sets_the_budget():
    from tfcompress import TuningError
    from tfcompress.tuning.space import SearchSpace

    space = SearchSpace({"precision_max_drop": [0.5, 2.0]})
    assert space.recipe({"precision_max_drop": 0.5}).precision.max_drop == 0.5
    with pytest.raises(TuningError, match="precision_max_drop value -1"):
        SearchSpace({"precision_max_drop": [-1, 2.0]})


@pytest.mark.slow  # a whole job: export, evaluate and time three files (~6 s idle, 17 s on the loaded machine)
def test_the_main_job_writes_mixed_tflite_and_its_row(tmp_path):
    import json

    from tfcompress import datasets, pipeline

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")], name="tiny")
    rng = np.random.default_rng(0)
    data = datasets.from_arrays(rng.random((60, 4)).astype("float32"), rng.integers(0, 3, 60), name="tiny")
    recipe = {"pruning": None, "quantization": None, "precision": {"per_layer": {"Dense": "float16"}}}
    pipeline.run_job(model, data, recipe=recipe, out=str(tmp_path), threads=1, quiet=True, verbose=0, timing_runs=1,
                     timing_seconds=0)
    mixed = (tmp_path / "mixed.tflite").read_bytes()
    assert set(layer_precisions(mixed).values()) == {"float16"}
    rows = {f["name"]: f for f in json.loads((tmp_path / "report.json").read_text())["files"]}
    assert rows["mixed"]["mode"] == "mixed" and rows["mixed"]["bytes"] == len(mixed) and "median_ms" in rows["mixed"]


def test_the_mixer_calibrates_and_quantizes_quietly(trained, capsys):
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        Mixer(convert_bytes(trained, "float32")[0], _data()[0][:16]).quantize({"d1": "int4"}, "int8")
    out = capsys.readouterr()
    assert "Running Calibration" not in out.err + out.out
    assert not [w for w in seen if "preserve_all_tensors" in str(w.message)]
