"""A tuner trial's time outside its training steps, before and after a change, side by side in one run.

Each side is a source tree of tfcompress: ``--before REV`` (a git revision,
unpacked with ``git archive`` into a temporary folder) and this checkout.
Every round runs one search per side, each in its own child process with
that tree first on ``PYTHONPATH``, the sides alternated so load drifts hit
both: ``tune(<model>, <data>, algorithm="random", isolation="session")``.

Per trial the child records the trial's wall time (``result.json``'s
``seconds``) and its training steps: every fine-tuning ``fit`` gets a batch
timer, and a fit's step time is its step count times its median step (the
first step of a fit traces the function and is not a training step). What
is left is the trial's own overhead: building and wrapping the models,
tracing, validation passes, the report's evaluations, export and timing.
The first trial of each search is left out (it pays the process's one-off
imports and caches). Reported: the median per trial of each side, per
round, and the after/before ratio paired by round (median and min-max).

Example:
    $ nice -n -5 .venv/bin/python -m benchmarks.bench_trial_overhead --before 0c9bef2 --rounds 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

try:
    from benchmarks import _results
except ImportError:  # the child runs this file as a script, with another tree on PYTHONPATH
    _results = None

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COMMAND = "nice -n -5 .venv/bin/python -m benchmarks.bench_trial_overhead"


def _child(args):
    """One search in this process (the tree on PYTHONPATH is the side): per-trial seconds and step seconds."""
    import tfcompress
    import tfcompress.stage_runs as stage_runs
    from tfcompress._keras import keras
    from tfcompress.tuning import trial as trial_mod

    fits = []

    class Steps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.t)

        def on_train_end(self, logs=None):
            if len(self.times) > 1:  # the first step traces the train function: not a training step
                fits.append(len(self.times) * statistics.median(self.times[1:]))

    real_fine_tune = stage_runs.fine_tune

    def fine_tune(*a, callbacks=None, **k):
        return real_fine_tune(*a, callbacks=list(callbacks or []) + [Steps()], **k)

    stage_runs.fine_tune = fine_tune
    per_trial = []
    real_run = trial_mod.TrialContext._run

    def run(self, job, progress=None):
        del fits[:]
        metrics = real_run(self, job, progress)
        per_trial.append({"seconds": metrics["seconds"], "steps": sum(fits),
                          "export": metrics.get("export_seconds")})
        return metrics

    trial_mod.TrialContext._run = run
    with tempfile.TemporaryDirectory() as work:
        tfcompress.tune(args.model, args.data, algorithm="random", max_trials=args.trials, epochs=args.epochs,
                        directory=work, overwrite=True, isolation="session", seed=args.seed)
    json.dump({"trials": per_trial, "tfcompress": os.path.dirname(tfcompress.__file__)}, sys.stdout)


def _side(tree, args):
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--model", args.model, "--data", args.data,
           "--trials", str(args.trials), "--epochs", str(args.epochs), "--seed", str(args.seed)]
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise SystemExit(f"the {tree} side failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if not os.path.realpath(got["tfcompress"]).startswith(os.path.realpath(tree)):
        raise SystemExit(f"the child imported tfcompress from {got['tfcompress']}, not {tree}")
    got["wall"] = time.perf_counter() - t
    return got


def _summary(trials):
    rest = [t["seconds"] - t["steps"] for t in trials[1:]]  # the first trial pays the imports
    return {"trial_s": statistics.median(t["seconds"] for t in trials[1:]),
            "steps_s": statistics.median(t["steps"] for t in trials[1:]),
            "rest_s": statistics.median(rest),
            "export_s": statistics.median(t["export"] for t in trials[1:])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default="c961b7a", help="git revision of the 'before' side (default: c961b7a)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--trials", type=int, default=5, help="trials per search (the first is not counted)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs per trial")
    p.add_argument("--model", default="digits_cnn")
    p.add_argument("--data", default="digits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder/stem of the results (default: results/trial_overhead)")
    p.add_argument("--render", action="store_true", help="only rebuild the .md from results/trial_overhead.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    if args.render:
        with open(os.path.join(_results.RESULTS, "trial_overhead.json"), encoding="utf-8") as f:
            rep = json.load(f)
        _results.write("trial_overhead", rep, _markdown(rep) + "\n")
        return 0
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", args.before], capture_output=True,
                         text=True, check=True).stdout.strip()
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "tfcompress", "tflite_export"],
                                capture_output=True, text=True).stdout.strip())
    rounds = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="tfc-before-") as before:
        archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "tfcompress", "tflite_export"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", before], input=archive, check=True)
        for r in range(args.rounds):
            order = [("before", before), ("after", ROOT)]
            if r % 2:
                order.reverse()
            got = {name: _side(tree, args) for name, tree in order}
            row = {name: _summary(g["trials"]) for name, g in got.items()}
            row["raw"] = {name: g["trials"] for name, g in got.items()}
            rounds.append(row)
            print(f"round {r + 1}: before rest {row['before']['rest_s']:.2f} s, after {row['after']['rest_s']:.2f} s "
                  f"(trial {row['before']['trial_s']:.2f} -> {row['after']['trial_s']:.2f} s)", flush=True)
    ratios = [r["after"]["rest_s"] / r["before"]["rest_s"] for r in rounds]
    report = {
        "command": _results.command(COMMAND, argv),
        "before": rev, "after": head + (" + uncommitted changes" if dirty else ""),
        "search": f"tune({args.model!r}, {args.data!r}, algorithm='random', max_trials={args.trials}, "
                  f"epochs={args.epochs}, isolation='session')",
        "cpu": _results.cpu_flags(), "machine": _results.machine(load=True),
        "minutes": round((time.time() - t0) / 60, 1), "rounds": rounds,
        "rest_ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
    }
    md = _markdown(report)
    _results.write("trial_overhead" if args.out is None else os.path.basename(args.out), report, md + "\n",
                   folder=None if args.out is None else os.path.dirname(args.out))
    print(md)
    return 0


def _markdown(rep):
    """The RESULTS section of a report."""
    q = rep["rest_ratio"]
    lines = [
        "## Tuner trial overhead: before and after, side by side", "",
        f"Command: `{rep['command']}`. Each round runs the same search once per side, each in its own child "
        f"process with that side's source tree first on `PYTHONPATH`, the sides alternated: `{rep['search']}` "
        f"(train 1, pruning 2, QAT 1 epochs a trial). Before: commit {rep['before']}; after: {rep['after']}. Per "
        "trial: wall time, and training-step time (each fine-tuning fit's steps x its median step; a fit's first "
        "step traces and is not counted); rest = wall - steps (building and wrapping the models, tracing, "
        "validation passes, the report's evaluations, int8 export and timing). The first trial of each search "
        "is left out (imports). Medians over the trials of a search.", "",
        f"Machine: {rep['machine']}; CPU {rep['cpu']}; {rep['minutes']} min.", "",
        "| round | before: trial s | before: steps s | before: rest s | after: trial s | after: steps s "
        "| after: rest s | after / before (rest) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(rep["rounds"], 1):
        b, a = r["before"], r["after"]
        lines.append(f"| {i} | {b['trial_s']:.2f} | {b['steps_s']:.2f} | {b['rest_s']:.2f} | {a['trial_s']:.2f} "
                     f"| {a['steps_s']:.2f} | {a['rest_s']:.2f} | {a['rest_s'] / b['rest_s']:.2f} |")
    lines.append(f"\nRest after / before, paired by round: **{q['median']:.2f}** ({q['min']:.2f}-{q['max']:.2f}); "
                 f"the target was 0.50 or less.")
    if rep.get("reading"):  # written after the run, from the profiles that explain it
        lines += ["", rep["reading"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
