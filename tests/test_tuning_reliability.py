"""tfcompress.tuning under stress: SIGKILL and resume, memory over many trials,
chief + workers on loopback. Each test runs real processes on a tiny model."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tfcompress._keras import keras
from tfcompress.tuning.oracle import is_loopback

SPACE = {"learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"}, "final_sparsity": [0.5, 0.6, 0.7, 0.8]}
RECIPE = {"pruning": {"epochs": 1}, "quantization": None, "batch_size": 64}

# Runs a search and records this (tuner) process's RSS after every trial.
SCRIPT = """
import json, sys
from tfcompress.tuning import tune
from tfcompress.tuning.trial import rss_mb
model, space, recipe, out, n = sys.argv[1:6]
rss = []
def progress(line):
    print(line, flush=True)
    rss.append(rss_mb()[0])
    with open(out + ".rss.json", "w") as f:
        json.dump(rss, f)
tune(model, "digits", space=space, recipe=recipe, max_trials=int(n), epochs=1, directory=out,
     train_subset=200, timing_runs=5, timing_seconds=0.05, progress=progress)
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune")
    L = keras.layers
    keras.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                      L.Dense(10, activation="softmax")]).save(d / "tiny.keras")
    (d / "space.yaml").write_text(yaml.safe_dump(SPACE))
    (d / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    return d


def _trial_states(out):
    states = {}
    for path in glob.glob(os.path.join(out, "search", "trial_*", "trial.json")):
        try:
            with open(path) as f:
                s = json.load(f)
        except (OSError, ValueError):  # written atomically, so this never happens
            raise AssertionError(f"unreadable {path}") from None
        states[s["trial_id"]] = s
    return states


def _run_log(out, tuner_id):
    path = os.path.join(out, "search", f"runs-{tuner_id}.log")
    return open(path).read().split() if os.path.exists(path) else []


def test_sigkill_resume_keeps_completed_trials_and_memory_is_flat(files):
    out = str(files / "killed")
    cmd = [sys.executable, "-c", SCRIPT, str(files / "tiny.keras"), str(files / "space.yaml"),
           str(files / "recipe.yaml"), out, "12"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    done = {}
    try:
        while time.time() < deadline and first.poll() is None:
            done = {k: v for k, v in _trial_states(out).items() if v["status"] == "COMPLETED"}
            if len(done) >= 2:
                break
            time.sleep(0.2)
        assert len(done) >= 2, "the first search did not complete two trials"
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    before_runs = _run_log(out, "tuner0")
    assert first.returncode == -signal.SIGKILL

    # Restart with the same folder: completed trials are kept, not re-run.
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stderr[-2000:]
    final = _trial_states(out)
    assert sorted(final, key=int) == [f"{i:02d}" for i in range(12)]
    assert all(s["status"] == "COMPLETED" for s in final.values())
    for tid, before in done.items():
        assert final[tid]["metrics"] == before["metrics"], f"trial {tid} was re-run or changed"
    runs = _run_log(out, "tuner0")
    assert all(runs.count(tid) == 1 for tid in done)
    rerun = [t for t in final if runs.count(t) == 2]
    assert len(rerun) <= 1  # at most the trial that was running at the kill

    # Memory: the resumed process ran >= 10 trials. Peak RSS of the processes
    # that ran them and RSS of the tuner process stay within 10 % of trial 2's.
    ran = runs[len(before_runs):]
    assert len(ran) >= 10 and len(set(ran)) == len(ran)
    peaks = [final[t]["metrics"]["metrics"]["peak_rss_mb"]["observations"][-1]["value"][0] for t in ran]
    assert max(peaks[:10]) <= 1.10 * peaks[1], peaks
    with open(out + ".rss.json") as f:
        tuner_rss = json.load(f)
    assert len(tuner_rss) >= 10 and tuner_rss[9] <= 1.10 * tuner_rss[1], tuner_rss


def test_two_workers_on_loopback_split_trials(files):
    out = str(files / "dist")
    cmd = [sys.executable, "-m", "tfcompress.cli", "tune", "--model", str(files / "tiny.keras"),
           "--dataset", "digits", "--space", str(files / "space.yaml"), "--recipe", str(files / "recipe.yaml"),
           "--epochs", "1", "--max-trials", "4", "--train-subset", "200", "--workers", "2",
           "--isolation", "session", "--dir", out]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "chief oracle on 127.0.0.1:" in run.stdout
    assert "without authentication" not in run.stderr
    w0, w1 = _run_log(out, "worker0"), _run_log(out, "worker1")
    assert w0 and w1, (w0, w1)
    assert not set(w0) & set(w1) and len(w0) + len(w1) == 4
    assert sorted(w0 + w1) == ["0", "1", "2", "3"]
    trials = json.loads(open(os.path.join(out, "trials.json")).read())["trials"]
    assert {t["tuner_id"] for t in trials} == {"worker0", "worker1"}
    assert all(t["status"] == "COMPLETED" for t in trials)
    assert len([ln for ln in run.stdout.splitlines() if ln.startswith("trial ") and "[worker" in ln]) == 4


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")


def test_a_builder_trial_processes_cannot_import_fails_the_search_once(tmp_path, monkeypatch):
    """A module that exists only in this process (not on disk): the trial process
    cannot unpickle the builder, and the search stops before its first trial
    with the cause, instead of failing every trial with 'died while starting'."""
    import types

    import numpy as np

    from tfcompress.errors import TuningError
    from tfcompress.tuning import tune

    mod = types.ModuleType("only_in_this_process")
    exec("from tfcompress._keras import keras\n"
         "def build():\n"
         "    L = keras.layers\n"
         "    return keras.Sequential([L.Input((8, 8, 1)), L.Flatten(), L.Dense(3, activation='softmax')])\n",
         mod.__dict__)
    monkeypatch.setitem(sys.modules, "only_in_this_process", mod)
    x, y = np.zeros((30, 8, 8, 1), "float32"), np.arange(30) % 3
    with pytest.raises(TuningError, match="could not start.*only_in_this_process.*PYTHONPATH"):
        tune(mod.build, (x, y), space=SPACE, recipe=RECIPE, max_trials=2, epochs=1, directory=str(tmp_path))
    assert not glob.glob(str(tmp_path / "search" / "trial_*"))
