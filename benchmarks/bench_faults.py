"""The fault matrix: kill -9, a full disk, concurrent runs, stale files and resume, through the real command line.

Each case runs ``python -m tfcompress.cli`` in a child process on a tiny model
(an 8x8 conv net trained for a few epochs on the embedded digits data) and
checks the folder it leaves:

* **kill -9 of ``optimize``** at fractions of a full run's time, into a folder
  holding a complete earlier run: a *partial deliverable* is a report.json
  beside files it does not describe (a listed file missing or of another size,
  a ``.tflite`` or other output it does not list); *leftovers* are staging
  folders and temporary files. The next (complete) run into the folder must
  leave 0 of either;
* **kill -9 of ``export``** over an existing file: the file is the old one or
  the new one, whole; the next export leaves no temporary file;
* **a full disk** (a small tmpfs, filled; needs root and ``mount``: the section
  says when it could not) for ``optimize``, ``optimize --tensorboard``,
  ``export``, ``check --markdown`` and ``tune`` (trial processes and in-process
  trials): the exit status (a signal is a crash), the number of stderr lines, a
  traceback or not, leftovers; then the search resumes once space is back, with
  no trial lost or repeated;
* **two ``optimize`` runs at once** into one ``--out``;
* **stale files**: a run with an int4 plan, then one without, into one folder;
* **kill -9 of ``tune``** after its first trial, then the same command again.

Writes benchmarks/results/faults.{json,md}.

    nice .venv/bin/python -m benchmarks.bench_faults     # ~8 min on 2 cores
"""

import argparse
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from benchmarks import _results

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COMMAND = "nice .venv/bin/python -m benchmarks.bench_faults"
OUTPUTS = ("float32.tflite", "int8.tflite", "mixed.tflite", "int4.tflite", "fast.tflite", "plan.yaml", "report.png",
           "report.md", "report.json")
LEFTOVER = re.compile(r"^(\.tfcompress-run-\d+(-[0-9a-f]{6})?|\..+\.[a-z0-9_]{8}(\.p\d+(-[0-9a-f]{6})?)?(\.[^.]*)?"
                      r"|.*\.tmp\.weights\.h5)$")
SPACE = {"learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"}, "final_sparsity": [0.5, 0.8]}
TUNE_RECIPE = {"pruning": {"epochs": 1}, "quantization": None, "batch_size": 64}
PLAIN = {"pruning": None, "quantization": None}
INT4 = {"pruning": None, "quantization": {"weights": "int4", "epochs": 1}}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _cli(*args):
    return [sys.executable, "-m", "tfcompress.cli", *map(str, args)]


def _run(args, timeout=300):
    t0 = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=ROOT)
    return p, time.perf_counter() - t0


def _outcome(p):
    """rc, stderr lines, traceback or not, crash (died from a signal) or not."""
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    return {"rc": p.returncode, "crash": p.returncode < 0, "stderr_lines": len(lines),
            "traceback": any(ln.startswith("Traceback") for ln in lines), "last": lines[-1][:200] if lines else ""}


def leftovers(folder):
    """Staging folders and temporary files anywhere below ``folder``."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [os.path.join(root, n) for n in dirs + files if LEFTOVER.match(n)]
    return sorted(found)


def audit(out):
    """``{"report": bool, "partial": files a report.json does not describe or misdescribes, "leftovers": n}``."""
    res = {"report": False, "partial": [], "leftovers": len(leftovers(out))}
    path = os.path.join(out, "report.json")
    names = set(os.listdir(out)) if os.path.isdir(out) else set()
    ours = {n for n in names if n in OUTPUTS or n.endswith(".tflite")}
    if not os.path.exists(path):
        return res
    res["report"] = True
    with open(path, encoding="utf-8") as f:
        rep = json.load(f)
    described = {os.path.basename(f["path"]) for f in rep["files"]}
    for f in rep["files"]:
        p = os.path.join(out, os.path.basename(f["path"]))
        if not os.path.exists(p) or os.path.getsize(p) != f["bytes"]:
            res["partial"].append(os.path.basename(p))
    listed = set(rep.get("outputs") or (described | {"report.json", "report.md", "report.png", "plan.yaml"}))
    res["partial"] += sorted(ours - listed - described)
    return res


def _prepare(work):
    """A trained tiny model file, the recipes and the search space."""
    from tfcompress import datasets
    from tfcompress._keras import keras

    data = datasets.load("digits")
    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                              L.Dense(10, activation="softmax")], name="tiny")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*data.train, epochs=5, batch_size=64, verbose=0)
    model.save(os.path.join(work, "tiny.keras"))
    for name, obj in (("plain", PLAIN), ("int4", INT4), ("tune", TUNE_RECIPE), ("space", SPACE)):
        with open(os.path.join(work, f"{name}.yaml"), "w") as f:
            json.dump(obj, f)  # JSON is YAML
    return os.path.join(work, "tiny.keras")


def _optimize(work, out, recipe="plain", *extra):
    return _cli("optimize", "--model", os.path.join(work, "tiny.keras"), "--dataset", "digits", "--recipe",
                os.path.join(work, f"{recipe}.yaml"), "--out", out, "--threads", "1", "--quiet", *extra)


def _kill_after(args, seconds):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT)
    try:
        p.wait(timeout=seconds)
        return True  # finished before the kill
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return False


def kill_optimize(work, fractions):
    out = os.path.join(work, "kill-opt")
    p, full = _run(_optimize(work, out))
    assert p.returncode == 0, p.stderr[-2000:]
    rows = []
    for frac in fractions:
        finished = _kill_after(_optimize(work, out), frac * full)
        after_kill = audit(out)
        p, _ = _run(_optimize(work, out))
        after_next = audit(out)
        rows.append({"at": round(frac * full, 1), "finished": finished, "partial": len(after_kill["partial"]),
                     "leftovers_after_kill": after_kill["leftovers"], "next_rc": p.returncode,
                     "partial_after_next": len(after_next["partial"]), "leftovers_after_next": after_next["leftovers"]})
    return {"full_run_s": round(full, 1), "rows": rows}


def kill_export(work, fractions):
    folder = os.path.join(work, "kill-export")
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, "m.tflite")
    args = _cli("export", os.path.join(work, "tiny.keras"), "--mode", "int8", "--data", "digits", "--out", target)
    p, full = _run(args)
    assert p.returncode == 0, p.stderr[-2000:]
    from tflite_export import inspect

    rows = []
    for frac in fractions:
        finished = _kill_after(args, frac * full)
        try:
            inspect(target)
            whole = True
        except Exception:  # noqa: BLE001 - any failure to read is a half-written file
            whole = False
        after_kill = len(leftovers(folder))
        p, _ = _run(args)
        rows.append({"at": round(frac * full, 1), "finished": finished, "file_whole": whole,
                     "leftovers_after_kill": after_kill, "next_rc": p.returncode,
                     "leftovers_after_next": len(leftovers(folder))})
    return {"full_run_s": round(full, 1), "rows": rows}


@contextlib.contextmanager
def tmpfs(size_kb):
    """A fresh tmpfs of ``size_kb`` KiB (root and mount needed), or None with the reason."""
    mnt = tempfile.mkdtemp(prefix="tfc-full-")
    if os.geteuid() != 0 or not shutil.which("mount"):
        yield None, "not root, or no mount command"
        os.rmdir(mnt)
        return
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", mnt], capture_output=True, text=True)
    if p.returncode != 0:
        yield None, f"mount failed: {p.stderr.strip()[:120]}"
        os.rmdir(mnt)
        return
    try:
        yield mnt, None
    finally:
        subprocess.run(["umount", mnt], check=False)
        os.rmdir(mnt)


def _fill(mnt, leave_kb):
    with open(os.path.join(mnt, "filler"), "wb") as f:
        st = os.statvfs(mnt)
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_kb * 1024))


def full_disk(work, levels):
    """Each command with its output on a filled tmpfs; then the search resumes with the space back."""
    commands = {
        "optimize": lambda m: _optimize(work, os.path.join(m, "out")),
        "optimize --tensorboard": lambda m: _optimize(work, os.path.join(work, "tb-out"), "plain",
                                                      "--tensorboard", os.path.join(m, "tb")),
        "export": lambda m: _cli("export", os.path.join(work, "tiny.keras"), "--mode", "int8", "--data", "digits",
                                 "--out", os.path.join(m, "m.tflite")),
        "check --markdown": lambda m: _cli("check", os.path.join(work, "tiny.keras"), "--markdown",
                                           os.path.join(m, "check.md")),
        "tune": lambda m: _tune(work, os.path.join(m, "tune"), "process"),
        "tune --isolation session": lambda m: _tune(work, os.path.join(m, "tune"), "session"),
    }
    rows, skipped = [], None
    for leave in levels:
        for name, make in commands.items():
            if leave > 64 and not name.startswith("tune"):
                continue  # room for a trial or two: only the search gets that far
            with tmpfs(2048) as (mnt, why):
                if mnt is None:
                    skipped = why
                    break
                _fill(mnt, leave)
                p, secs = _run(make(mnt))
                row = {"command": name, "free_kb": leave, **_outcome(p), "seconds": round(secs, 1),
                       "leftovers": len(leftovers(mnt))}
                if name.startswith("tune"):
                    os.remove(os.path.join(mnt, "filler"))  # space is back: the same command resumes
                    p, _ = _run(make(mnt))
                    row.update(_resume(os.path.join(mnt, "tune"), p))
                    row["leftovers"] += len(leftovers(mnt))
                rows.append(row)
        if skipped:
            break
    return {"rows": rows, "skipped": skipped}


def _tune(work, directory, isolation, trials=2):
    return _cli("tune", "--model", os.path.join(work, "tiny.keras"), "--dataset", "digits", "--space",
                os.path.join(work, "space.yaml"), "--recipe", os.path.join(work, "tune.yaml"), "--epochs", "1",
                "--max-trials", str(trials), "--train-subset", "200", "--isolation", isolation, "--dir", directory,
                "--quiet")


def _resume(directory, p, trials=2):
    states = {}
    for path in glob.glob(os.path.join(directory, "search", "trial_*", "trial.json")):
        with open(path, encoding="utf-8") as f:
            s = json.load(f)
        states[s["trial_id"]] = s["status"]
    log = os.path.join(directory, "search", "runs-tuner0.log")
    runs = open(log).read().split() if os.path.exists(log) else []
    done = [t for t, s in states.items() if s == "COMPLETED"]
    return {"resume_rc": p.returncode, "completed": len(done), "lost": trials - len(done),
            "reruns": len(runs) - len(set(runs))}


def concurrent(work):
    out = os.path.join(work, "two")
    procs = [subprocess.Popen(_optimize(work, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=_env(), cwd=ROOT) for _ in range(2)]
    rcs = [p.wait(timeout=600) for p in procs]
    a = audit(out)
    return {"rcs": rcs, "report": a["report"], "partial": len(a["partial"]), "leftovers": a["leftovers"]}


def stale(work):
    out = os.path.join(work, "stale")
    p1, _ = _run(_optimize(work, out, "int4"))
    had = os.path.exists(os.path.join(out, "int4.tflite"))
    p2, _ = _run(_optimize(work, out, "plain"))
    a = audit(out)
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        notes = json.load(f)["notes"]
    return {"rcs": [p1.returncode, p2.returncode], "int4_after_first": had,
            "int4_after_second": os.path.exists(os.path.join(out, "int4.tflite")), "stale": len(a["partial"]),
            "said": any(n.startswith("Removed int4.tflite") for n in notes), "leftovers": a["leftovers"]}


def kill_tune(work, trials=4):
    directory = os.path.join(work, "kill-tune")
    args = _tune(work, directory, "process", trials)
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if glob.glob(os.path.join(directory, "search", "trial_*", "result.json")):
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    q, _ = _run(args)
    return {"killed_after_trials": 1, **_resume(directory, q, trials), "leftovers": len(leftovers(directory))}


def _markdown(r):
    ko, ke, fd = r["kill_optimize"], r["kill_export"], r["full_disk"]
    lines = [
        "## Faults: kill -9, a full disk, concurrent runs, stale files", "",
        f"`{r['command']}` on {r['machine']}; a tiny conv net on the embedded digits data. Partial: a report.json "
        "beside files it does not describe. Leftovers: staging folders and temporary files.", "",
        "| case | runs | partial after | leftovers after the fault | partial after the next run | "
        "leftovers after the next run |",
        "|---|---|---|---|---|---|",
        f"| kill -9 of `optimize` (full run {ko['full_run_s']} s) | {len(ko['rows'])} kill points | "
        f"{sum(x['partial'] for x in ko['rows'])} | {sum(x['leftovers_after_kill'] for x in ko['rows'])} | "
        f"{sum(x['partial_after_next'] for x in ko['rows'])} | {sum(x['leftovers_after_next'] for x in ko['rows'])} |",
        f"| kill -9 of `export` over an existing file (full run {ke['full_run_s']} s) | {len(ke['rows'])} kill "
        "points | "
        f"{sum(not x['file_whole'] for x in ke['rows'])} half-written files | "
        f"{sum(x['leftovers_after_kill'] for x in ke['rows'])} | - | "
        f"{sum(x['leftovers_after_next'] for x in ke['rows'])} |",
        f"| two `optimize` runs at once into one `--out` (exit {r['concurrent']['rcs']}) | 2 | "
        f"{r['concurrent']['partial']} | - | - | {r['concurrent']['leftovers']} |",
        f"| an int4 run, then a run without int4 into one `--out` | 2 | - | - | {r['stale']['stale']} stale "
        f"(int4.tflite left: {'yes' if r['stale']['int4_after_second'] else 'no'}; said so in the report: "
        f"{'yes' if r['stale']['said'] else 'no'}) | {r['stale']['leftovers']} |",
        f"| kill -9 of `tune` ({r['kill_tune']['completed'] + r['kill_tune']['lost']} trials) after its first trial, "
        f"then the same command | 2 | - | - | {r['kill_tune']['lost']} trials lost, {r['kill_tune']['reruns']} re-run |"
        f" {r['kill_tune']['leftovers']} |", "",
    ]
    if fd["skipped"]:
        lines += [f"Full disk: not run ({fd['skipped']}).", ""]
    else:
        lines += [
            "A full disk: each command with its output on a 2 MiB tmpfs filled to the free space shown; for `tune`, "
            "the filler is then removed and the same command run again (re-run: trials started twice; the trial "
            "the full disk stopped runs again by design, its first start recorded no result).", "",
            "| command | free | exit | crash | stderr lines | traceback | leftovers | resumed: exit, trials lost, "
            "re-run | last line |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for x in fd["rows"]:
            resumed = (f"{x['resume_rc']}, {x['lost']}, {x['reruns']}" if "resume_rc" in x else "-")
            last = x["last"].replace("|", "\\|")
            lines.append(f"| `{x['command']}` | {x['free_kb']} KiB | {x['rc']} | {'yes' if x['crash'] else 'no'} | "
                         f"{x['stderr_lines']} | {'yes' if x['traceback'] else 'no'} | {x['leftovers']} | {resumed} | "
                         f"{last} |")
        lines += ["", "`export` prints the TFLite converter's own `fully_quantize: ...` log line to stderr before "
                  "its error line (it does on success too).", ""]
    crashes = sum(x["crash"] for x in fd["rows"])
    lines += [f"No command died from a signal on a full disk: {'yes' if crashes == 0 else f'no ({crashes})'}.", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer kill points and one fill level (a smoke run)")
    p.add_argument("--table-only", action="store_true", help="rewrite results/faults.md from results/faults.json")
    args = p.parse_args(argv)
    if args.table_only:
        with open(os.path.join(_results.RESULTS, "faults.json"), encoding="utf-8") as f:
            result = json.load(f)
        _results.write("faults", result, _markdown(result))
        return 0
    fractions = [0.4, 0.6, 0.8] if args.quick else [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tfc-faults-") as work:
        _prepare(work)
        result = {"command": _results.command(COMMAND), "machine": _results.machine()}
        for name, fn in (("stale", lambda: stale(work)), ("concurrent", lambda: concurrent(work)),
                         ("kill_tune", lambda: kill_tune(work)),
                         ("full_disk", lambda: full_disk(work, [0] if args.quick else [0, 24, 120])),
                         ("kill_export", lambda: kill_export(work, [0.3, 0.5, 0.7, 0.85, 0.95] if not args.quick
                                                             else fractions)),
                         ("kill_optimize", lambda: kill_optimize(work, fractions))):
            t = time.perf_counter()
            result[name] = fn()
            print(f"{name}: {time.perf_counter() - t:.0f} s", flush=True)
    result["machine"] = _results.machine(load=True)
    result["seconds"] = round(time.perf_counter() - t0)
    md = _markdown(result)
    print(md)
    _results.write("faults" + ("_quick" if args.quick else ""), result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
