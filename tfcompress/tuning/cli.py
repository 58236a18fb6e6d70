"""``tfcompress tune``: search training and compression schedules from the shell.

One progress line per trial, then the table of trials, the Pareto set, a plot
and the chosen recipe (``DIR/best_recipe.yaml``, for ``tfcompress optimize
--recipe``). ``--workers N`` runs a Keras Tuner chief and N workers on this
machine; ``--chief HOST:PORT`` joins workers on another machine to a chief.
See docs/TUNING.md.

Example:
    $ tfcompress tune --model digits_cnn --dataset digits --algorithm hyperband \\
          --epochs 3 --constraint "size_kb<=20" --dir tune-out
    $ tfcompress tune --model lenet5 --dataset fashion-mnist --workers 2 --max-trials 8
"""

import argparse
import os
import socket
import subprocess
import sys
import time

from tfcompress import datasets
from tfcompress._defaults import TUNING_THREADS, TUNING_TIMING_RUNS
from tfcompress.distribute import find_gpus, gpu_assignment, gpu_summary, pin_env
from tfcompress.errors import TuningError
from tflite_export.argtypes import (
    nonnegative_int,
    port_int,
    positive_int,
    seed_int,
    thread_count,
)

__all__ = ["add_subcommands", "run_tune"]

_LOOPBACK = "127.0.0.1"


def add_subcommands(subparsers):
    """Register ``tune`` on the ``tfcompress`` parser."""
    p = subparsers.add_parser(
        "tune", help="search training and compression schedules (Keras Tuner)",
        description="Search learning rate, batch size, LR decay, optimizer and the compression schedule "
        "(sparsity, pruning window and frequency, QAT epochs, ...) with Keras Tuner. Each trial "
        "trains, compresses, exports int8 and times the file; the result is the true Pareto front over "
        "quality (accuracy for a classifier, else the model's own headline metric: its first compiled metric, "
        "e.g. mae or iou), zipped size and latency, and the chosen recipe as YAML.",
    )
    p.add_argument("--model", required=True,
                   help="reference model name (digits_cnn, lenet5), a .keras/.h5 file (tf_keras or Keras 3; "
                   "trials fine-tune its weights) or a module:function builder importable from here")
    p.add_argument("--dataset", default=None, help="digits or fashion-mnist (or use --data)")
    datasets.add_data_options(p)
    p.add_argument("--from-scratch", action="store_true",
                   help="trials start a model file from fresh random weights instead of fine-tuning it")
    p.add_argument("--space", default=None, help="search space YAML (default: tfcompress's default space)")
    p.add_argument("--recipe", default=None, help="base recipe YAML for fields not searched "
                   "(default: the model's default recipe)")
    p.add_argument("--algorithm", default="random", help="random, bayesian or hyperband (default: %(default)s)")
    p.add_argument("--max-trials", type=positive_int, default=10,
                   help="at most this many trials (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=2,
                   help="training epochs per trial; Hyperband's largest (default: %(default)s)")
    p.add_argument("--epoch-budget", type=positive_int, default=None,
                   help="stop once this many epochs (training + compression) were spent")
    p.add_argument("--objective", default="metric,size,latency", type=_objective_list,
                   help="comma-separated: metric (the model's own: accuracy for a classifier, else its first "
                   "compiled metric, also by name, e.g. mae, minimised, or iou, maximised), size, latency; the first "
                   "guides the search, all define the Pareto front (default: %(default)s)")
    # One name per idea: --constraints / --directory are tune()'s constraints= / directory=; the
    # short forms (--constraint, --dir) stay because scripts and the README use them.
    p.add_argument("--constraints", "--constraint", dest="constraints", action="append", default=[],
                   help='e.g. "latency_ms<=0.5", "size_kb<=20", "accuracy>=0.9" or, for a model scored by '
                   'MAE, "mae<=0.3" ("metric" names the model\'s metric too; repeatable); a broken '
                   "constraint lowers a trial's score, and only trials meeting all of them are chosen")
    p.add_argument("--directory", "--dir", dest="directory", default="tune-out",
                   help="search folder; an existing search resumes (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier search in --directory")
    p.add_argument("--train-subset", type=positive_int, default=None, help="train on the first N examples only")
    p.add_argument("--threads", type=thread_count, default=TUNING_THREADS,
                   help="XNNPACK threads for timing: one, so trials of several workers do not contend for cores "
                   "(default: %(default)s)")
    p.add_argument("--timing-runs", type=positive_int, default=TUNING_TIMING_RUNS,
                   help="timed runs of each trial's file at least: tune's timing_runs, what bench calls --min-runs "
                   "(default: %(default)s)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="write TensorBoard logs here: trial_<id>/ per trial (its stages, hyperparameters, metrics)")
    p.add_argument("--workers", type=nonnegative_int, default=0,
                   help="run a chief and this many worker processes on this machine")
    p.add_argument("--chief", default=None, metavar="HOST:PORT",
                   help="join a running chief as worker(s) (with --workers N: N of them)")
    p.add_argument("--bind", default=_LOOPBACK,
                   help="address the chief's oracle binds (default: %(default)s); the oracle has NO "
                   "authentication, so another interface prints a warning")
    p.add_argument("--port", type=port_int, default=0, help="oracle port (default: a free one)")
    p.add_argument("--strategy", choices=["default", "mirrored"], default=None,
                   help="train and fine-tune each trial under this tf.distribute strategy: mirrored uses "
                   "every GPU the trial's process sees (default: one replica)")
    p.add_argument("--isolation", choices=["process", "session"], default="process",
                   help="run trials in a child process replaced every few trials (default; no memory creep) "
                   "or in this process")
    p.add_argument("--no-scale-compression", dest="scale_compression", action="store_false",
                   help="Hyperband: run every trial's compression stages on all the training data (default: a "
                   "trial of tuner/epochs e fine-tunes them on e/max_epochs of it, counted so in its epochs)")
    p.add_argument("--quiet", action="store_true", help="print only the final table")
    p.add_argument("--unsafe", action="store_true",
                   help="load files with Lambda layers (runs their code: only for files you trust); "
                   "safe_mode=False in the Python API")
    p.add_argument("--role", choices=["chief", "worker"], default=None, help=argparse_suppress())
    p.set_defaults(func=run_tune)


def _objective_list(text):
    """--objective: at least one name (an empty one used to mean the default silently)."""
    if not [o for o in str(text).split(",") if o.strip()]:
        raise argparse.ArgumentTypeError(f"must name at least one of accuracy, size, latency (or metric, the "
                                         f"model's own: mae, iou, ...), got {text!r}")
    return text


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def _kwargs(args):
    return dict(
        space=args.space, algorithm=args.algorithm, max_trials=args.max_trials,
        objectives=args.objective, constraints=args.constraints, recipe=args.recipe, epochs=args.epochs,
        epoch_budget=args.epoch_budget, directory=args.directory, overwrite=args.overwrite, seed=args.seed,
        threads=args.threads, timing_runs=args.timing_runs, train_subset=args.train_subset, isolation=args.isolation,
        strategy=getattr(args, "strategy", None), scale=datasets.parse_scale(args.scale), safe_mode=not args.unsafe,
        from_scratch=args.from_scratch, tensorboard=args.tensorboard,
        scale_compression=getattr(args, "scale_compression", True),
    )


def _data(args):
    """--data PATH or --dataset NAME (a path given to --dataset is taken as --data)."""
    return datasets.cli_data(args.dataset, args.data)


def _free_port(host):
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_port(host, port):
    """Refuse a busy --port before any process starts (gRPC would fail later, less clearly)."""
    if not port:
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as e:
        raise TuningError(f"cannot listen on {host}:{port} ({e.strerror or e}): the port is in use or not "
                          "allowed; choose another --port, or omit it for a free one.") from None


def _child_argv(args, role):
    """The command line of a chief/worker child: the same search, no launcher flags."""
    argv = ["tune", "--model", args.model, "--data", _data(args), "--scale", args.scale, "--algorithm", args.algorithm,
            "--max-trials", str(args.max_trials), "--epochs", str(args.epochs), "--objective", args.objective,
            "--directory", args.directory, "--threads", str(args.threads), "--timing-runs", str(args.timing_runs),
            "--seed", str(args.seed), "--role", role,
            "--isolation", args.isolation]
    if getattr(args, "strategy", None):
        argv += ["--strategy", args.strategy]
    for flag, value in (("--space", args.space), ("--recipe", args.recipe), ("--tensorboard", args.tensorboard),
                        ("--epoch-budget", args.epoch_budget), ("--train-subset", args.train_subset)):
        if value is not None:
            argv += [flag, str(value)]
    for c in args.constraints:
        argv += ["--constraints", c]
    if args.quiet:
        argv.append("--quiet")
    if args.from_scratch:
        argv.append("--from-scratch")
    if args.unsafe:
        argv.append("--unsafe")
    if not getattr(args, "scale_compression", True):
        argv.append("--no-scale-compression")
    return [sys.executable, "-m", "tfcompress.cli"] + argv


def _say(args, msg):
    if not args.quiet:
        print(msg, flush=True)


def run_tune(args):
    """Handler of ``tfcompress tune``; returns the exit code."""
    from tfcompress.training import check_log_dir
    from tfcompress.tuning.search import tune

    check_log_dir(args.tensorboard, "--tensorboard")  # before any trial, not when its first log is written
    progress = None if args.quiet else (lambda line: print(line, flush=True))
    if args.workers and not args.chief and args.role is None:
        _check_port(args.bind, args.port)
    if args.role is not None:  # a child started by a launcher (or by hand, with the KERASTUNER_* env)
        result = tune(args.model, _data(args), progress=progress, **_kwargs(args))
        return 0 if result is None or args.role == "chief" else _summary(args, result)
    if args.chief:
        return _join(args, progress)
    if args.workers:
        return _launch(args)
    result = tune(args.model, _data(args), progress=progress, **_kwargs(args))
    return _summary(args, result)


def _join(args, progress):
    from tfcompress.tuning.search import tune

    host, _, port = args.chief.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TuningError(f"--chief must be HOST:PORT with a port in 1..65535, got {args.chief!r}.")
    base_id = f"worker-{socket.gethostname()}-{os.getpid()}"
    env = dict(os.environ, KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=port)
    if args.workers <= 1:
        os.environ.update(env, KERASTUNER_TUNER_ID=base_id)
        tune(args.model, _data(args), progress=progress, **dict(_kwargs(args), overwrite=False))
        return 0
    gpus = find_gpus()  # each worker on its own GPU, round robin
    _say(args, gpu_summary(args.workers, gpus))
    procs = [subprocess.Popen(_child_argv(args, "worker"),
                              env=pin_env(dict(env, KERASTUNER_TUNER_ID=f"{base_id}-{i}"), g))
             for i, g in enumerate(gpu_assignment(args.workers, gpus))]
    return max(p.wait() for p in procs)


def _launch(args):
    from tfcompress.tuning.oracle import is_loopback
    from tfcompress.tuning.search import load_results, tune

    # Validate everything (space, objectives, constraints, folder) and write
    # the settings before starting processes.
    tune(args.model, _data(args), validate_only=True, **_kwargs(args))
    bind = args.bind
    port = args.port or _free_port(_LOOPBACK if bind in ("0.0.0.0", "::") else bind)
    local = _LOOPBACK if bind in ("0.0.0.0", "::") or is_loopback(bind) else bind
    _say(args, f"chief oracle on {bind}:{port}; {args.workers} worker(s) on this machine "
               f"(join more with: tfcompress tune ... --chief <this host>:{port})")
    base = dict(os.environ, KERASTUNER_ORACLE_PORT=str(port))
    gpus = find_gpus()  # each worker on its own GPU, round robin; the chief (no training) on none
    _say(args, gpu_summary(args.workers, gpus))
    chief = subprocess.Popen(_child_argv(args, "chief"), env=pin_env(
        dict(base, KERASTUNER_ORACLE_IP=bind, KERASTUNER_TUNER_ID="chief"), "" if gpus else None))
    workers = [subprocess.Popen(_child_argv(args, "worker"),
                                env=pin_env(dict(base, KERASTUNER_ORACLE_IP=local,
                                                 KERASTUNER_TUNER_ID=f"worker{i}"), g))
               for i, g in enumerate(gpu_assignment(args.workers, gpus))]
    try:
        while any(w.poll() is None for w in workers):
            if chief.poll() is not None and chief.returncode != 0:
                for w in workers:
                    w.terminate()
                for w in workers:
                    w.wait()
                raise TuningError(f"the chief exited with code {chief.returncode} (its error is above); "
                                  "workers stopped.")
            time.sleep(0.5)
        codes = [w.returncode for w in workers]
        try:
            chief.wait(timeout=60)
        except subprocess.TimeoutExpired:
            chief.terminate()
            chief.wait(timeout=30)
    except BaseException:
        for p in workers + [chief]:
            if p.poll() is None:
                p.terminate()
        raise
    failed = [f"worker{i} (exit {c})" for i, c in enumerate(codes) if c != 0]
    if failed:
        print(f"warning: {', '.join(failed)} failed; results below are what finished.", file=sys.stderr)
    result = load_results(args.directory)
    result.write(args.directory)
    return _summary(args, result)


def _summary(args, result):
    from tfcompress.tuning.objectives import parse_constraint

    print()
    print(result.table())
    print()
    done, failed = len(result.completed), len(result.rows) - len(result.completed)
    print(f"{len(result.rows)} trial(s): {done} completed, {failed} failed; "
          f"{len(result.feasible)} meet the constraints. Pareto set (*): {', '.join(result.pareto) or 'none'}")
    png = os.path.join(args.directory, "pareto.png")
    print(f"results: {os.path.join(args.directory, 'trials.md')}" + (f"  plot: {png}" if os.path.exists(png) else ""))
    if result.best is None:
        if not result.completed:
            raise TuningError("no trial completed; see the reasons above.")
        closest = []
        for c in result.constraints:
            con = parse_constraint(c, result.metric)
            vals = [r["metrics"][con.metric] for r in result.completed]
            best = max(vals) if con.op in (">=", ">") else min(vals)
            if not any(con.ok(r["metrics"]) for r in result.completed):
                closest.append(f"{c} (best {con.metric} {best:.4g})")
        print("\nbest trials (none meets the constraints):")
        print(result.table(result.top(5)))
        raise TuningError(f"no trial meets the constraints: {'; '.join(closest) or ', '.join(result.constraints)}; "
                          "relax them or widen the search space.")
    path = os.path.join(args.directory, "best_recipe.yaml")
    print(f"chosen: trial {result.best['trial_id']}; recipe {path} "
          f"(tfcompress optimize --model {args.model} --data {_data(args)} --recipe {path})")
    return 0
