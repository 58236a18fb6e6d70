"""The main job's outputs appear together or not at all, and its picture reads at a glance.

A tiny model (no compression stage, one timed run) keeps each job to a couple of
seconds. Failures are injected at each write step; after each, --out holds
either the previous run complete, or no report at all: never a report beside
files it did not measure.
"""

import json
import os

import numpy as np
import pytest

from tfcompress import datasets, pipeline
from tfcompress._filenotes import unlike_keras
from tfcompress._keras import keras
from tfcompress.errors import OutputError, RecipeError
from tflite_export.mixed import layer_precisions

NO_STAGE = {"pruning": None, "quantization": None}


def _model(units):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(units, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")], name=f"tiny{units}")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return datasets.from_arrays(rng.random((60, 4)).astype("float32"), rng.integers(0, 3, 60), name="tiny")


def _run(data, out, units, **kw):
    return pipeline.run_job(_model(units), data, recipe=NO_STAGE, out=str(out), threads=1, quiet=True, verbose=0,
                            timing_runs=1, timing_seconds=0, **kw)


# The files every run writes (mixed.tflite / int4.tflite when the recipe asks for them, fast.tflite and plan.yaml
# in budget mode).
WRITTEN = [n for n in pipeline.OUTPUTS if n not in ("mixed.tflite", "int4.tflite", "fast.tflite", "plan.yaml")]


def _state(out):
    """{name: bytes} of the run's files in out, and whether anything else (staging) is left."""
    files = {n: (out / n).read_bytes() for n in pipeline.OUTPUTS if (out / n).exists()}
    return files, sorted(set(os.listdir(out)) - set(pipeline.OUTPUTS))


def _consistent(out):
    """No report, or a report.json whose files are the ones in out (same sizes), report.md beside it."""
    if not (out / "report.json").exists():
        return "no report"
    rep = json.loads((out / "report.json").read_text())
    for f in rep["files"]:
        assert f["path"] == str(out / f"{f['name']}.tflite")
        assert os.path.getsize(f["path"]) == f["bytes"], f["name"]
    assert (out / "report.md").exists()
    return rep["model"]


@pytest.fixture(scope="module")
def old_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("job")
    _run(data, out, 8)
    return out


def _reuse(old_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for n in WRITTEN:
        (out / n).write_bytes((old_run / n).read_bytes())
    rep = json.loads((out / "report.json").read_text())  # make the copy's report name its own folder
    for f in rep["files"]:
        f["path"] = str(out / f"{f['name']}.tflite")
    (out / "report.json").write_text(json.dumps(rep))
    return out


def test_a_run_writes_everything_and_leaves_no_staging(old_run):
    files, extra = _state(old_run)
    assert set(files) == set(WRITTEN) and extra == []
    assert _consistent(old_run) == "tiny8"
    assert "total" in json.loads((old_run / "report.json").read_text())["seconds"]


def test_file_metadata_says_how_the_inputs_were_scaled(old_run, data):
    from tflite_export.inspection import read_metadata

    # float inputs given as they are: the file must not claim "float32 in [0, 1]"
    assert read_metadata(str(old_run / "int8.tflite"))["input_normalisation"] == data.scaling()
    assert data.scaling() == "inputs kept as given (no scaling)"


@pytest.mark.parametrize("step", ["int8 export", pytest.param("timing", marks=pytest.mark.slow), "report.json",
                                  pytest.param("report.md", marks=pytest.mark.slow)])
def test_a_failure_before_the_commit_leaves_the_old_run_whole(data, old_run, tmp_path, monkeypatch, step):
    out = _reuse(old_run, tmp_path)
    before, _ = _state(out)

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    if step == "int8 export":
        real = pipeline.tflite_export.export
        monkeypatch.setattr(pipeline.tflite_export, "export",
                            lambda m, p, **k: fail() if k.get("mode") == "int8" else real(m, p, **k))
    elif step == "timing":
        monkeypatch.setattr(pipeline.tflite_export, "benchmark", fail)
    elif step == "report.json":
        monkeypatch.setattr(pipeline, "atomic_write_json", fail)
    else:
        monkeypatch.setattr(pipeline, "atomic_write_text", fail)
    with pytest.raises(OSError):
        _run(data, out, 16)
    after, extra = _state(out)
    assert after == before and extra == []


@pytest.mark.parametrize("kill_at", range(1, 9))
def test_a_kill_during_the_commit_never_leaves_a_mixed_report(old_run, tmp_path, monkeypatch, kill_at):
    """_commit removes 3 old reports, then moves 5 files: killed before each of those 8 steps."""
    out = _reuse(old_run, tmp_path)
    stage = out / ".tfcompress-run-1"
    stage.mkdir()
    new = {n: b"new " + n.encode() for n in WRITTEN}
    for n, raw in new.items():
        (stage / n).write_bytes(raw)
    calls = []

    class Killed(BaseException):
        pass

    def counting(real):
        def step(*a):
            calls.append(a)
            if len(calls) == kill_at:
                raise Killed()
            return real(*a)
        return step

    monkeypatch.setattr(pipeline.os, "remove", counting(os.remove))
    monkeypatch.setattr(pipeline.os, "replace", counting(os.replace))
    with pytest.raises(Killed):
        pipeline._commit(str(stage), str(out))
    files, _ = _state(out)
    old = {n: (old_run / n).read_bytes() for n in WRITTEN}
    old_report = any(files.get(n) == old[n] for n in ("report.json", "report.md", "report.png"))
    new_model = any(files.get(n) == new[n] for n in ("float32.tflite", "int8.tflite"))
    assert not (old_report and new_model), f"an old report beside new files (killed at step {kill_at})"
    if files.get("report.json") == new["report.json"]:
        assert files == new


def test_a_reused_out_gets_the_new_run_whole_and_killed_runs_staging_is_swept(data, old_run, tmp_path):
    out = _reuse(old_run, tmp_path)
    (out / ".tfcompress-run-999999999").mkdir()  # a killed run's staging folder (no such process)
    _run(data, out, 16)
    files, extra = _state(out)
    assert set(files) == set(WRITTEN) and extra == []
    assert _consistent(out) == "tiny16"
    assert files["float32.tflite"] != (old_run / "float32.tflite").read_bytes()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"threads": 0}, "threads must be an integer of at least 1"),
    ({"train_epochs": -3}, "train_epochs must be an integer of at least 0"),
    ({"epochs": 0}, "epochs must be an integer of at least 1"),
    ({"batch_size": -1}, "batch_size must be an integer of at least 1"),
])
def test_bad_job_arguments_fail_before_any_file(data, tmp_path, kwargs, fragment):
    out = tmp_path / "o"
    with pytest.raises(RecipeError, match=fragment):
        pipeline.run_job(_model(8), data, recipe=NO_STAGE, out=str(out), quiet=True, **kwargs)
    assert not out.exists() or os.listdir(out) == []


def test_unwritable_commit_is_an_output_error(tmp_path, monkeypatch):
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "int8.tflite").write_bytes(b"x")

    def refuse(*a):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pipeline.os, "replace", refuse)
    with pytest.raises(OutputError, match="cannot move the results into"):
        pipeline._commit(str(stage), str(tmp_path))


def test_report_figure_has_a_title_and_an_honest_accuracy_axis():
    rep = pipeline.JobReport(model="lenet5", dataset="fashion-mnist", recipe={}, threads=2, files=[
        {"name": "float32", "zipped_kb": 200.0, "median_ms": 0.5, "accuracy": 0.9178},
        {"name": "int8", "zipped_kb": 20.0, "median_ms": 0.2, "accuracy": 0.9118},
    ])
    fig = pipeline.report_figure(rep)
    try:
        title = fig._suptitle.get_text()
        assert "lenet5" in title and "fashion-mnist" in title and "2 thread" in title
        size, latency, acc = fig.axes
        assert acc.get_ylim()[0] == 0 and acc.get_ylim()[1] >= 1.0  # a 0.6-point drop looks small
        labels = [t.get_text() for t in acc.texts]
        assert labels == ["91.78%", "91.18%"]
        for ax in fig.axes:  # value labels inside the axes
            top = ax.get_ylim()[1]
            assert all(t.get_position()[1] < top for t in ax.texts)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_a_file_slower_than_float32_is_reported(old_run):
    """Never a slower file without a word (report.json, report.md and the CLI)."""
    files = [{"name": "float32", "median_ms": 0.0094}, {"name": "int8", "median_ms": 0.0109}]
    (note,) = pipeline.slower_than_float(files, 2)
    assert note.startswith("int8.tflite is slower than float32.tflite") and "0.86x the speed" in note
    faster = [{"name": "float32", "median_ms": 2.0}, {"name": "int8", "median_ms": 1.0}]
    assert pipeline.slower_than_float(faster, 1) == []
    rep = pipeline.JobReport(model="m", dataset="d", recipe={}, threads=2, files=files, notes=[note])
    assert f"- {note}" in rep.to_markdown() and rep.to_dict()["notes"] == [note]
    # the real run records its own verdict from its own timings
    saved = json.loads((old_run / "report.json").read_text())
    assert saved["lead"] == pipeline.none_faster(saved["files"], saved["threads"])
    assert saved["notes"] == (saved["lead"] + unlike_keras(saved["files"])
                              + pipeline.worse_than_float(saved["files"], "accuracy")
                              + pipeline.slower_than_float(saved["files"], saved["threads"]))


def test_no_compressed_file_faster_than_float32_is_the_reports_first_line():
    files = [{"name": "float32", "median_ms": 1.0}, {"name": "int8", "median_ms": 1.3},
             {"name": "int4", "median_ms": 1.1}]
    (lead,) = pipeline.none_faster(files, 1)
    assert lead.startswith("No compressed file is faster than float32.tflite") and "int4.tflite" in lead
    assert pipeline.none_faster([*files, {"name": "fast", "median_ms": 0.9}], 1) == []  # one faster file: no lead
    rep = pipeline.JobReport(model="m", dataset="d", recipe={}, threads=1, files=files, notes=[lead], lead=[lead])
    md = rep.to_markdown().splitlines()
    assert md[0].startswith("# tfcompress report") and md[2] == f"**{lead}**"
    assert md.count(f"- {lead}") == 0  # said once, first


def test_a_file_much_worse_than_float32_is_reported():
    # Never a broken file behind a plausible table: 5 points of accuracy, or a tenth of another metric.
    acc = [{"name": "float32", "accuracy": 0.90}, {"name": "int8", "accuracy": 0.84}]
    (note,) = pipeline.worse_than_float(acc, "accuracy")
    assert note.startswith("int8.tflite scores accuracy 0.84 against float32.tflite's 0.9") and "aggressive" in note
    assert pipeline.worse_than_float([{"name": "float32", "accuracy": 0.9}, {"name": "int8", "accuracy": 0.87}],
                                     "accuracy") == []
    mae = [{"name": "float32", "score": 0.088}, {"name": "int8", "score": 1.12}, {"name": "int4", "score": 0.09}]
    assert [n.split()[0] for n in pipeline.worse_than_float(mae, "mae")] == ["int8.tflite"]


def test_budget_modes_faster_mix_is_written_timed_and_reported(data, tmp_path, monkeypatch):
    """Budget mode found a per-op mix not slower than float32 (target/fast.py): the main job writes it as
    fast.tflite beside the others, evaluates and times it, and the report lists it."""
    real = pipeline.optimize

    def with_mix(*args, **kw):
        result = real(*args, **kw)
        result.report.budget = {"faster_file": {"per_layer": {}, "default": "float16"}, "markdown": "(budget)"}
        return result

    monkeypatch.setattr(pipeline, "optimize", with_mix)
    rep = _run(data, tmp_path, 8)
    files = {f["name"]: f for f in rep.files}
    assert (tmp_path / "fast.tflite").exists() and files["fast"]["mode"] == "mixed"
    assert set(layer_precisions((tmp_path / "fast.tflite").read_bytes()).values()) == {"float16"}
    assert abs(files["fast"]["accuracy"] - files["float32"]["accuracy"]) <= 1 / 60
    assert files["fast"]["median_ms"] > 0 and _consistent(tmp_path) == "tiny8"


def test_a_classifier_compiled_with_its_own_metric_gets_it_per_file(data, tmp_path):
    # The user's compile (AUC here) is the task's statement: each file is scored in it beside accuracy.
    model = _model(8)
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])
    rep = pipeline.run_job(model, data, recipe=NO_STAGE, out=str(tmp_path), threads=1, quiet=True, verbose=0,
                           timing_runs=1, timing_seconds=0)
    assert rep.metric == "accuracy" and rep.own_metric == "top2"
    assert list(rep.columns())[:3] == ["file", "accuracy", "top2"]
    x_test, y_test = data.test
    top2 = np.mean([y in np.argsort(p)[-2:] for p, y in zip(model.predict(x_test, verbose=0), y_test)])
    f32 = next(f for f in rep.files if f["name"] == "float32")
    assert f32["metric"] == "top2" and abs(f32["score"] - top2) < 1e-6
    assert "| top2 |" in (tmp_path / "report.md").read_text()


def test_a_budget_file_slower_than_float32_is_said_first():
    files = [{"name": "float32", "median_ms": 1.0}, {"name": "int8", "median_ms": 0.5},
             {"name": "int4", "median_ms": 2.0}]
    (note,) = pipeline.main_slower(files, "int4", 1)
    assert note.startswith("int4.tflite, the file budget mode ships, runs slower than float32.tflite")
    assert "0.50x the speed" in note
    assert pipeline.main_slower(files, "int8", 1) == []  # the int8 file is faster: nothing to say
    assert pipeline.none_faster(files, 1) == []  # one compressed file is faster, so this is the only lead
