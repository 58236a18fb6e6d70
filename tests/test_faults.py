"""Faults: a full disk ends every command in one line (the tuner's search resumes afterwards), a run
leaves no stale file beside its report, and what killed runs leave is cleaned by the next run.

A full disk is simulated by making the writers raise ``ENOSPC`` (no root, no tmpfs needed);
``benchmarks/bench_faults.py`` repeats the checks on a real full tmpfs where it can mount one.
"""

import errno
import glob
import json
import os
import time
import warnings

import numpy as np
import pytest

from tfcompress import _model, cli, datasets, leftovers, pipeline
from tfcompress._keras import keras, tf, weights_h5_bytes
from tfcompress.errors import OutputError
from tfcompress.training import GuardedBoard, check_log_dir
from tflite_export import _atomic
from tflite_export.errors import ExportError, write_failure

FULL = OSError(errno.ENOSPC, "No space left on device")


def _tiny(units=8):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(units, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")], name=f"tiny{units}")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return datasets.from_arrays(rng.random((60, 4)).astype("float32"), rng.integers(0, 3, 60), name="tiny")


def _job(data, out, recipe=None, **kw):
    return pipeline.run_job(_tiny(), data, recipe=recipe or {"pruning": None, "quantization": None}, out=str(out),
                            threads=1, quiet=True, verbose=0, timing_runs=1, timing_seconds=0, **kw)


def _temps(folder):
    return [p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True) if ".tmp" in os.path.basename(p)]


# --- the atomic writer ----------------------------------------------------------------
def test_a_write_without_room_is_refused_up_front_with_its_errno(tmp_path, monkeypatch):
    monkeypatch.setattr(_atomic, "free_bytes", lambda folder: 10)
    with pytest.raises(ExportError, match=r"No space left on device: 100 bytes to write, 10 free\); free some") as e:
        _atomic.atomic_write_bytes(tmp_path / "m.tflite", b"x" * 100)
    assert write_failure(e.value) == errno.ENOSPC and os.listdir(tmp_path) == []


def test_a_killed_writers_temp_file_goes_with_the_next_write_a_live_ones_stays(tmp_path):
    dead = tmp_path / ".m.tflite.abcdefgh.p999999999.tmp"      # no such process
    live = tmp_path / f".m.tflite.abcdefgh.p{os.getppid()}.tmp"  # the test runner's parent is alive
    reused = tmp_path / f".n.tflite.abcdefgh.p{os.getppid()}.tmp"
    for p in (dead, live, reused):
        p.write_bytes(b"half")
    os.utime(reused, (1e9, 1e9))  # written in 2001: the live process with that pid started later, so not its writer
    _atomic.atomic_write_bytes(tmp_path / "m.tflite", b"new")
    assert sorted(os.listdir(tmp_path)) == sorted(["m.tflite", live.name])


def test_another_hosts_leftovers_in_a_shared_folder_are_never_touched(tmp_path):
    from tflite_export._process import owner_tag

    here = owner_tag().split("-")[1]
    there = "000000" if here != "000000" else "ffffff"
    mine = tmp_path / f".m.tflite.abcdefgh.p999999999-{here}.tmp"
    theirs = tmp_path / f".m.tflite.abcdefgh.p999999999-{there}.tmp"
    stage = tmp_path / f"{leftovers.STAGING}999999999-{there}"
    for p in (mine, theirs):
        p.write_bytes(b"half")
    stage.mkdir()
    assert [x.path for x in leftovers.find(tmp_path)] == [str(mine)]
    _atomic.atomic_write_bytes(tmp_path / "m.tflite", b"new")
    assert sorted(os.listdir(tmp_path)) == sorted(["m.tflite", theirs.name, stage.name])
    assert leftovers.staging_name().endswith(f"{os.getpid()}-{here}")


def test_write_failure_reads_errnos_chains_and_native_messages():
    assert write_failure(FULL) == errno.ENOSPC
    try:
        try:
            raise FULL
        except OSError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as e:
        assert write_failure(e) == errno.ENOSPC
    native = tf.errors.ResourceExhaustedError(None, None, "events.out.tfevents.1; No space left on device")
    assert write_failure(native) == errno.ENOSPC
    assert write_failure(FileNotFoundError(errno.ENOENT, "missing")) is None


def test_weights_built_in_memory_reload_exactly(tmp_path):
    model = _tiny()
    _model.save_weights(model, tmp_path / "w.weights.h5")
    assert weights_h5_bytes(model)[:4] == b"\x89HDF"
    other = _tiny(8)
    for w in other.weights:
        w.assign(tf.zeros_like(w))
    other.load_weights(str(tmp_path / "w.weights.h5"))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), other.get_weights()))
    assert os.listdir(tmp_path) == ["w.weights.h5"]


# --- the tuner on a full disk -------------------------------------------------------------
SPACE = {"learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"}, "final_sparsity": [0.5, 0.8]}
RECIPE = {"pruning": {"epochs": 1}, "quantization": None, "batch_size": 64}


def _tiny_cnn():
    L = keras.layers
    return keras.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                             L.Dense(10, activation="softmax")], name="tiny")


def _trials(directory):
    states = {}
    for path in glob.glob(os.path.join(directory, "search", "trial_*", "trial.json")):
        with open(path) as f:
            s = json.load(f)
        states[s["trial_id"]] = s
    return states


def test_a_full_disk_stops_the_search_in_one_line_and_it_resumes_without_losing_a_trial(tmp_path, monkeypatch, capsys):
    keras.models.save_model(_tiny_cnn(), tmp_path / "tiny.keras")
    (tmp_path / "space.yaml").write_text(json.dumps(SPACE))
    (tmp_path / "recipe.yaml").write_text(json.dumps(RECIPE))
    out = tmp_path / "tune"
    argv = ["tune", "--model", str(tmp_path / "tiny.keras"), "--dataset", "digits", "--space",
            str(tmp_path / "space.yaml"), "--recipe", str(tmp_path / "recipe.yaml"), "--epochs", "1",
            "--max-trials", "3", "--train-subset", "200", "--isolation", "session", "--dir", str(out)]
    real, calls = _model.atomic_write_bytes, []

    def second_weights_fail(path, data):  # trial 1's trained weights meet a full disk
        calls.append(path)
        if len(calls) == 2:
            raise _atomic._write_error(path, FULL)
        return real(path, data)

    monkeypatch.setattr(_model, "atomic_write_bytes", second_weights_fail)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the search stopped at trial 1: cannot write ")
    assert "No space left on device" in err[0] and "resumes with trial 1" in err[0]
    first = _trials(out)
    assert first["0"]["status"] == "COMPLETED" and first["1"]["status"] == "RUNNING"  # not FAILED: not lost
    assert _temps(out) == []

    monkeypatch.setattr(_model, "atomic_write_bytes", real)  # space is back: the same command resumes
    assert cli.main(argv) == 0
    final = _trials(out)
    assert sorted(final) == ["0", "1", "2"] and all(s["status"] == "COMPLETED" for s in final.values())
    assert final["0"]["metrics"] == first["0"]["metrics"]  # not re-run
    runs = (out / "search" / "runs-tuner0.log").read_text().split()
    assert runs == ["0", "1", "1", "2"]  # only the trial the disk stopped ran again
    assert _temps(out) == []


# --- TensorBoard ------------------------------------------------------------------------
def test_tensorboard_without_room_is_one_line_up_front(tmp_path, monkeypatch):
    from tflite_export import argtypes

    monkeypatch.setattr(argtypes, "free_bytes", lambda folder: 4096)
    with pytest.raises(ExportError, match=r"--tensorboard .*: only 4 KiB free on its disk \(No space left"):
        check_log_dir(str(tmp_path / "logs"), "--tensorboard")


def test_a_tensorboard_writer_failure_turns_logging_off_with_one_warning(tmp_path, monkeypatch):
    def full(self, *args):
        open(os.path.join(self.log_dir, "events.out.tfevents.0.host"), "w").close()  # what TF leaves: empty
        raise tf.errors.ResourceExhaustedError(None, None, "Could not initialize events writer; "
                                                           "No space left on device")

    monkeypatch.setattr(keras.callbacks.TensorBoard, "_push_writer", full)
    (tmp_path / "tb" / "train").mkdir(parents=True)
    board = GuardedBoard(keras.callbacks.TensorBoard(str(tmp_path / "tb" / "train")), str(tmp_path / "tb"))
    model = _tiny()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.zeros((8, 4), "float32"), np.zeros(8, "int64")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=2, verbose=0, callbacks=[board])
    said = [str(w.message) for w in caught if "TensorBoard" in str(w.message)]
    assert len(said) == 1 and "is off for the rest of this run: No space left on device" in said[0]
    left = glob.glob(str(tmp_path / "tb" / "**" / "events.*"), recursive=True)
    assert board.off and [p for p in left if os.path.getsize(p) == 0] == []


# --- the output folder: stale files, leftovers -----------------------------------------------
def test_a_rerun_without_int4_leaves_no_int4_file_and_says_so(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("int4.tflite", "plan.yaml"):  # an earlier run's int4 plan and budget-mode plan
        (out / name).write_bytes(b"earlier run")
    (out / "notes.txt").write_text("the user's own")
    rep = _job(data, out)
    report = json.loads((out / "report.json").read_text())
    assert not (out / "int4.tflite").exists() and not (out / "plan.yaml").exists()
    assert any(n.startswith("Removed int4.tflite, plan.yaml of an earlier run") for n in report["notes"])
    assert sorted(os.listdir(out)) == sorted(report["outputs"] + ["notes.txt"])  # the user's file is theirs
    assert {f"{f['name']}.tflite" for f in report["files"]} == {n for n in report["outputs"] if n.endswith(".tflite")}
    assert rep.outputs == report["outputs"]


def test_the_next_run_cleans_a_dead_runs_staging_but_not_a_live_ones(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = out / f"{leftovers.STAGING}999999999"
    live = out / f"{leftovers.STAGING}{os.getppid()}"
    reused = out / f"{leftovers.STAGING}1"  # pid 1 runs, but started after this folder was last written
    for d in (dead, live, reused):
        (d / "int8.tflite").parent.mkdir()
        (d / "int8.tflite").write_bytes(b"half")
    os.utime(reused, (time.time() - 10 * 365 * 86400,) * 2)
    (out / ".int8.tflite.abcdefgh.p999999999.tmp").write_bytes(b"half")
    _job(data, out)
    assert not dead.exists() and live.exists() and not reused.exists()
    assert not glob.glob(str(out / ".*.tmp"))


def test_clean_lists_then_removes_dead_leftovers_only(tmp_path, capsys):
    (tmp_path / f"{leftovers.STAGING}999999999").mkdir()
    (tmp_path / f"{leftovers.STAGING}{os.getppid()}").mkdir()
    trial = tmp_path / "search" / "trial_0"
    trial.mkdir(parents=True)
    (trial / ".int8.tflite.abcdefgh.p999999998.tmp").write_bytes(b"half")
    assert cli.main(["clean", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[-1] == f"2 leftover(s) to remove in {tmp_path}"
    assert all(ln.startswith("would remove ") for ln in lines[:2])
    assert (tmp_path / f"{leftovers.STAGING}999999999").exists()
    assert cli.main(["clean", str(tmp_path)]) == 0
    assert sorted(os.listdir(tmp_path)) == sorted([f"{leftovers.STAGING}{os.getppid()}", "search"])
    assert os.listdir(trial) == []
    assert cli.main(["clean", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"nothing to clean in {tmp_path}"


def test_a_raw_failed_write_is_one_line_too(monkeypatch, capsys):
    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/x/y.log")

    monkeypatch.setattr(leftovers, "_cmd_clean", full)
    assert cli.main(["clean", "."]) == 2
    assert capsys.readouterr().err.strip() == ("error: cannot write /x/y.log (No space left on device); "
                                               "free some space or choose a writable folder")


def test_an_output_error_keeps_its_errno(tmp_path, monkeypatch):
    from tfcompress.report import atomic_write_text

    monkeypatch.setattr(_atomic, "free_bytes", lambda folder: 0)
    with pytest.raises(OutputError, match="No space left on device") as e:
        atomic_write_text(str(tmp_path / "x.txt"), "no room")
    assert write_failure(e.value) == errno.ENOSPC


# --- trial processes: a failed write in a child stops the search too ---------------------------------
class _Proc:
    """A trial process that is running at the first poll and has ended (``code``) after it."""

    def __init__(self, code=None):
        self.code, self.returncode = code, None

    def poll(self):
        code, self.returncode = self.returncode, self.code
        return code

    def wait(self, timeout=None):
        return self.returncode


def test_a_trial_process_that_cannot_write_stops_the_search(monkeypatch):
    import threading
    from multiprocessing import Pipe

    from tfcompress.tuning import runner
    from tfcompress.tuning._keras_tuner import SearchStopped
    from tfcompress.tuning.trial import stopped

    class Full:
        def run(self, job, progress=None):
            raise stopped(job["trial_id"], FULL)

    monkeypatch.setattr(runner, "_die_with_parent", lambda: None)
    monkeypatch.setattr(runner.TrialContext, "from_payload", classmethod(lambda cls, payload: Full()))
    ours, theirs = Pipe()
    child = threading.Thread(target=runner.child_main, args=(theirs,), daemon=True)
    child.start()
    ours.send({})
    assert ours.recv() == ("ready", None)
    r = runner.ChildRunner({})
    r.proc, r.conn = _Proc(), ours
    with pytest.raises(SearchStopped, match="the search stopped at trial 4: No space left on device"):
        r.run({"trial_id": "4", "values": {}, "folder": "."})
    r.close()
    child.join(5)


def test_a_trial_process_that_died_on_a_full_disk_stops_the_search(monkeypatch):
    from multiprocessing import Pipe

    from tfcompress.tuning import runner
    from tfcompress.tuning._keras_tuner import FailedTrialError, SearchStopped

    ours, _theirs = Pipe()
    r = runner.ChildRunner({})
    r.proc, r.conn = _Proc(-11), ours
    monkeypatch.setattr(runner, "free_bytes", lambda folder: 0)
    with pytest.raises(SearchStopped, match=r"trial 2: No space left on device \(the trial process died .*-11"):
        r.run({"trial_id": "2", "values": {}, "folder": "."})
    ours, _theirs = Pipe()
    r.proc, r.conn = _Proc(-11), ours
    monkeypatch.setattr(runner, "free_bytes", lambda folder: 10 << 20)  # room: the trial failed, the search goes on
    with pytest.raises(FailedTrialError, match="died"):
        r.run({"trial_id": "3", "values": {}, "folder": "."})
