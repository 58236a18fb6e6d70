"""Benchmark the tuner: Hyperband vs random search vs Bayesian optimisation, 3 seeds each.

The digits CNN on scikit-learn digits by default (a LeNet-5 / Fashion-MNIST
trial took 40-125 s on the loaded 2 cores; trials run in this process), the
same epoch budget for every run (60: training + compression fine-tuning
epochs), Hyperband with max_epochs 9 and factor 3, random search and Bayesian
optimisation (2 random trials first) training 9 epochs a trial, one size
constraint. A trial costs ~12-17 s of CPU whatever its epochs (graph building
of the TF-MOT-wrapped models): 9 runs are ~75 trials, ~20 min of CPU, over
2 h in one niced process on the shared cores at load 8-14;
``--seeds N --partial F`` runs one seed, ``--merge F1 F2 F3`` reports several.
For each algorithm and seed: the best validation accuracy among trials
meeting the constraint, and the epochs spent until a trial came within 0.5
point of the best accuracy any algorithm found with that seed (and
of the best of all runs, and of its own best); then per algorithm the mean and
spread over seeds, and Hyperband's epochs as a share of random search's
(target: <= 1/3).

``--compare-scaling`` runs Hyperband with scaled compression (the default:
a trial of ``tuner/epochs`` e fine-tunes its compression stages on e/9 of the
training data, counted as such in its epochs), Hyperband without it
(``hyperband-unscaled``: every trial pays full compression epochs) and random
search, at the same budget (180 epochs unless ``--budget``: several brackets).

Writes ``benchmarks/results/tuner.json`` and ``benchmarks/results/tuner.md``.

Example:
    $ nice -n 10 python -m benchmarks.bench_tuner
    $ python -m benchmarks.bench_tuner --seeds 2 --partial s2.json  # one seed; then --merge s1.json s2.json ...
    $ python -m benchmarks.bench_tuner --budget 8 --seeds 1 --algorithms hyperband  # quick check
    $ nice -n 10 python -m benchmarks.bench_tuner --compare-scaling --seeds 1 --partial s1.json
    $ python -m benchmarks.bench_tuner --dataset fashion-mnist --model lenet5 --train-subset 3000 --budget 24
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time

from benchmarks import _results

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

SPACE = {
    "learning_rate": {"min": 2e-4, "max": 5e-3, "sampling": "log"},
    "batch_size": [32, 64, 128],
    "optimizer": ["adam", "rmsprop", "sgd"],
    "lr_decay": ["none", "exponential", "cosine"],
    "decay_rate": {"min": 0.5, "max": 0.95},
    "cosine_alpha": {"min": 0.0, "max": 0.2},
    "final_sparsity": {"min": 0.5, "max": 0.9},
    "pruning_end": {"min": 0.4, "max": 0.9},
    # digits has 11-41 steps an epoch: prune every few steps, over 2 epochs, so that a
    # high sparsity is reached gradually (1 epoch at frequency 10-50 pruned in 1-4 jumps).
    "pruning_frequency": [2, 5, 10],
    "pruning_epochs": 2,
    "qat_epochs": 1,
}


def _epochs_to_reach(rows, target):
    """Cumulative epochs until a feasible trial reached ``target``; None if none did (or no target)."""
    if target is None:
        return None
    return _epochs_to_reach_target(rows, target)


def _epochs_to_reach_target(rows, target):
    """Cumulative epochs (all trials, in completion order) until a feasible
    trial reached ``target`` accuracy; None if none did."""
    spent = 0.0
    for r in rows:
        spent += r["metrics"].get("epochs", 0) if r["status"] == "COMPLETED" else 0
        if _replayable(r) and r["metrics"]["accuracy"] >= target:
            return spent
    return None


def _replayable(row):
    """A feasible completed trial whose recipe repeats it: every stage on all the data (not a
    scaled-compression Hyperband trial, whose recipe is the full one it did not run)."""
    return row["status"] == "COMPLETED" and row["feasible"] and row.get("compression_share", 1.0) >= 1.0


def _best(rows):
    """The run's best replayable trial: trial id, accuracy, size, latency (None when there is none)."""
    best = max((r for r in rows if _replayable(r)), key=lambda r: r["metrics"]["accuracy"], default=None)
    return best and {"trial_id": best["trial_id"],
                     **{k: best["metrics"][k] for k in ("accuracy", "size_kb", "latency_ms")}}


def _run_one(args, data, algo, seed, work):
    """One tuner search; its summary and its rows in trial order."""
    from tfcompress.tuning import tune

    t0 = time.perf_counter()
    print(f"== {algo} seed {seed}: budget {args.budget} epochs", flush=True)
    # "hyperband-unscaled": Hyperband whose every trial pays its compression stages in full.
    result = tune(args.model, data, space=SPACE, algorithm=algo.split("-")[0], max_trials=args.max_trials,
                  objectives=["accuracy", "size", "latency"], constraints=[args.constraint],
                  epochs=args.epochs, epoch_budget=args.budget, directory=os.path.join(work, f"{algo}-{seed}"),
                  seed=seed, timing_runs=20, timing_seconds=0.2, progress=print,
                  num_initial_points=args.initial_points, isolation="session",
                  scale_compression=not algo.endswith("-unscaled"))
    return _summarise_search(result.rows, algo, seed, time.perf_counter() - t0)


def _within(rows, budget):
    """The trials a search with this epoch budget would have run: each one starts while the
    trials before it (trial order) spent less than the budget."""
    out, spent = [], 0.0
    for r in sorted(rows, key=lambda r: int(r["trial_id"])):
        if budget is not None and spent >= budget:
            break
        out.append(r)
        spent += r["metrics"].get("epochs", 0) if r["status"] == "COMPLETED" else 0
    return out


def _summarise_search(rows, algo, seed, seconds, budget=None):
    """A search's summary (a run) and its rows in trial order (those within ``budget`` epochs);
    ``seconds`` None: the sum of its trials' seconds."""
    rows = _within(rows, budget)
    done = [r for r in rows if r["status"] == "COMPLETED"]
    if seconds is None:
        seconds = sum(r["metrics"].get("seconds", 0) for r in done)
    overhead = [r["metrics"]["export_seconds"] / r["metrics"]["seconds"] for r in done]
    run = {
        "algorithm": algo, "seed": seed, "seconds": seconds,
        "trials": len(rows), "completed": len(done), "feasible": sum(bool(r["feasible"]) for r in done),
        "epochs_spent": sum(r["metrics"].get("epochs", 0) for r in done),
        "best": _best(rows),
        "export_share_mean": sum(overhead) / len(overhead) if overhead else None,
        "trial_seconds_mean": sum(r["metrics"]["seconds"] for r in done) / len(done) if done else None,
        "scaled_trials": sum(r.get("compression_share", 1.0) < 1.0 for r in done),
        "rows": [{"trial_id": r["trial_id"], "status": r["status"], "feasible": r["feasible"],
                  "compression_share": r.get("compression_share", 1.0),
                  "reason": r["reason"], "metrics": r["metrics"], "values": r["values"]} for r in rows],
    }
    return run, rows


def _stats(values):
    """``(mean, spread)`` of the non-None values (spread: max - min); ``(None, None)`` when none."""
    v = [x for x in values if x is not None]
    return (sum(v) / len(v), max(v) - min(v)) if v else (None, None)


def _summarise(runs, budget):
    """Per algorithm over seeds: best accuracy mean/spread and epochs to the targets.

    An unreached target counts as the whole budget in the mean (a lower bound: it was
    not reached within it), and the count of unreached seeds is kept beside it.
    """
    out = {}
    for algo in dict.fromkeys(r["algorithm"] for r in runs):
        mine = [r for r in runs if r["algorithm"] == algo]
        acc = _stats([r["best"] and r["best"]["accuracy"] for r in mine])
        row = {"best_accuracy_mean": acc[0], "best_accuracy_spread": acc[1],
               "best_accuracies": [r["best"] and r["best"]["accuracy"] for r in mine],
               "epochs_spent_mean": _stats([r["epochs_spent"] for r in mine])[0]}
        for key in ("seed_best", "overall_best"):
            e = [r[f"epochs_to_within_0.5pt_of_{key}"] for r in mine]
            row[f"epochs_to_{key}"] = e
            row[f"epochs_to_{key}_mean"] = _stats([budget if x is None else x for x in e])[0]
            row[f"unreached_{key}"] = sum(x is None for x in e)
        out[algo] = row
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="digits_cnn")
    ap.add_argument("--train-subset", type=int, default=0,
                    help="use only this many training examples; 0: all (default: %(default)s)")
    ap.add_argument("--val-subset", type=int, default=0,
                    help="use only this many validation examples; 0: all (default: %(default)s)")
    ap.add_argument("--budget", type=int, default=None, help="epochs per run (default: 60; 180 with "
                    "--compare-scaling)")
    ap.add_argument("--compare-scaling", action="store_true",
                    help="run hyperband (scaled compression), hyperband-unscaled and random search")
    ap.add_argument("--epochs", type=int, default=9, help="training epochs per trial; Hyperband's max_epochs, "
                    "factor 3: 1, 3, 9 (default: %(default)s)")
    ap.add_argument("--constraint", default="size_kb<=20")
    ap.add_argument("--max-trials", type=int, default=40)
    ap.add_argument("--algorithms", default="hyperband,random,bayesian")
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated tuner seeds (default: %(default)s)")
    ap.add_argument("--initial-points", type=int, default=2,
                    help="Bayesian optimisation's random trials before the GP (default: %(default)s)")
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--merge", nargs="+", metavar="RUNS_JSON",
                    help="no search: report the runs in these --partial files (same settings, other seeds)")
    ap.add_argument("--collect", nargs="+", metavar="ALGORITHM:SEED:FOLDER",
                    help="no search: report these search folders (finished or stopped), with any --merge runs")
    ap.add_argument("--partial", default=os.path.join(tempfile.gettempdir(), "bench-tuner-partial.json"),
                    help="runs so far, rewritten after each run (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.compare_scaling and args.algorithms == ap.get_default("algorithms"):
        args.algorithms = "hyperband,hyperband-unscaled,random"
    if args.budget is None:
        args.budget = 180 if args.compare_scaling else 60
    if args.compare_scaling and args.max_trials == ap.get_default("max_trials"):
        args.max_trials = 400  # the budget stops the search, not the trial count

    from tfcompress import datasets

    data = datasets.load(args.dataset)
    x, y = data.validation
    n_train, n_val = args.train_subset or len(data.train[0]), args.val_subset or len(x)
    data = type(data)(name=data.name, train=(data.train[0][:n_train], data.train[1][:n_train]),
                      validation=(x[:n_val], y[:n_val]), test=data.test,
                      num_classes=data.num_classes, class_names=data.class_names)
    algos = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    runs, t_all = [], time.perf_counter()
    if args.merge or args.collect:  # runs of the same settings made by separate processes (e.g. one seed each)
        for path in args.merge or ():
            with open(path) as f:
                runs += json.load(f)
        for spec in args.collect or ():  # a search folder, finished or stopped: ALGORITHM:SEED:FOLDER
            from tfcompress.tuning import load_results

            algo, seed, folder = spec.split(":", 2)
            rows = load_results(folder).rows
            runs.append(_summarise_search(rows, algo, int(seed), None)[0])
        # As if each had run with --budget (a search stopped early keeps what it ran); the best is the best
        # replayable trial (runs written before scaled compression had no share).
        runs = [_summarise_search(r["rows"], r["algorithm"], r["seed"], None, args.budget)[0] for r in runs]
        seeds = list(dict.fromkeys(r["seed"] for r in runs))
    else:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        work = tempfile.mkdtemp(prefix="bench-tuner-")
        for seed in seeds:
            for algo in algos:
                runs.append(_run_one(args, data, algo, seed, work)[0])
                with open(args.partial, "w") as f:
                    json.dump(runs, f, default=str)
        shutil.rmtree(work, ignore_errors=True)
    best_all = max((r["best"]["accuracy"] for r in runs if r["best"]), default=None)
    for seed in seeds:
        mine = [r for r in runs if r["seed"] == seed]
        best_seed = max((r["best"]["accuracy"] for r in mine if r["best"]), default=None)
        for r in mine:
            own = r["best"]["accuracy"] if r["best"] else None
            for key, best in (("seed_best", best_seed), ("overall_best", best_all), ("own_best", own)):
                r[f"epochs_to_within_0.5pt_of_{key}"] = _epochs_to_reach(r["rows"], best and best - 0.005)
    summary = _summarise(runs, args.budget)
    # Merged runs ran side by side: the time is their sum, not the wall clock.
    merged = bool(args.merge or args.collect)
    total = sum(r["seconds"] for r in runs) if merged else time.perf_counter() - t_all
    hb, rnd = summary.get("hyperband"), summary.get("random")
    ratio, bo_ratio, unscaled_ratio = (
        (a["epochs_to_seed_best_mean"] / rnd["epochs_to_seed_best_mean"]
         if a and rnd and rnd["epochs_to_seed_best_mean"] else None)
        for a in (hb, summary.get("bayesian"), summary.get("hyperband-unscaled")))

    # Without the benchmarks' lock: it measures epochs and accuracy, not latency, and holds the cores ~1 h.
    command = "nice -n 10 .venv/bin/python -m benchmarks.bench_tuner " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.merge and not args.collect:
        command = "`, `".join(f"nice -n 10 .venv/bin/python -m benchmarks.bench_tuner --seeds {s} --partial s{s}.json"
                              for s in seeds) + "` side by side, then `" + command
    report = {
        "command": command.strip(), "dataset": args.dataset, "model": args.model,
        "train_examples": n_train, "validation_examples": n_val, "epoch_budget": args.budget,
        "epochs_per_trial": args.epochs, "constraint": args.constraint, "seeds": seeds, "space": SPACE,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                   f"load avg {os.getloadavg()[0]:.1f} at the end",
        "total_seconds": total, "merged": merged, "best_accuracy_overall": best_all, "summary": summary,
        "hyperband_over_random_epochs": ratio, "bayesian_over_random_epochs": bo_ratio,
        "hyperband_unscaled_over_random_epochs": unscaled_ratio, "runs": runs,
    }
    from tfcompress.report import markdown_table

    _results.write("tuner", report, _markdown(args, report, markdown_table), folder=args.out)
    print(_markdown(args, report, markdown_table))
    return 0


def _markdown(args, report, markdown_table):
    def pct(v):
        return "—" if v is None else f"{v:.2%}"

    def eps(values):
        return " / ".join("—" if v is None else f"{v:.3g}" for v in values)

    summary, runs = report["summary"], report["runs"]
    rows = []
    for algo, s in summary.items():
        rows.append([
            algo, f"{pct(s['best_accuracy_mean'])} ± {pct(s['best_accuracy_spread'])}",
            " / ".join(pct(a) for a in s["best_accuracies"]), f"{s['epochs_spent_mean']:.0f}",
            eps(s["epochs_to_seed_best"]), f"{s['epochs_to_seed_best_mean']:.1f}"
            + (f" ({s['unreached_seed_best']} unreached)" if s["unreached_seed_best"] else ""),
            eps(s["epochs_to_overall_best"]), f"{s['epochs_to_overall_best_mean']:.1f}"
            + (f" ({s['unreached_overall_best']} unreached)" if s["unreached_overall_best"] else ""),
        ])
    per_run = [[r["algorithm"], r["seed"], f"{r['trials']}" + (f" ({r['scaled_trials']} scaled)" if r.get(
                    "scaled_trials") else ""), f"{r['completed']}/{r['feasible']}",
                f"{r['epochs_spent']:.0f}", pct(r["best"] and r["best"]["accuracy"]),
                "—" if not r["best"] else f"{r['best']['size_kb']:.1f}",
                eps([r["epochs_to_within_0.5pt_of_seed_best"]]), eps([r["epochs_to_within_0.5pt_of_own_best"]]),
                f"{r['seconds']:.0f}", "—" if r["trial_seconds_mean"] is None else f"{r['trial_seconds_mean']:.0f}"]
               for r in runs]
    ratio = report["hyperband_over_random_epochs"]
    return "\n".join([
        "## Tuner benchmark: " + " vs ".join(summary) + f", seeds {', '.join(map(str, report['seeds']))}", "",
        f"Command: `{report['command']}`", "",
        f"{args.model} on {args.dataset}: {report['train_examples']} training and {report['validation_examples']} "
        f"validation examples; the same budget of **{args.budget} epochs** per run (training + pruning + QAT "
        f"fine-tuning epochs of all trials); constraint `{args.constraint}` (int8 zipped); {args.epochs} training "
        f"epochs per trial (Hyperband: at most that); Bayesian optimisation starts with {args.initial_points} "
        f"random trials; seeds {', '.join(map(str, report['seeds']))} (each seed's three runs draw their random "
        f"trials from the same seed). Machine: {report['machine']}; "
        + (f"the runs took {report['total_seconds'] / 60:.1f} min in all, one process per seed side by side."
           if report.get("merged") else f"total {report['total_seconds'] / 60:.1f} min."), "",
        markdown_table(["algorithm", "best accuracy mean ± spread", "per seed", "epochs spent (mean)",
                        "epochs to ≤0.5 pt of the seed's best, per seed", "mean",
                        "epochs to ≤0.5 pt of the best of all runs, per seed", "mean"], rows), "",
        "Spread: max − min over seeds. Epochs are cumulative over trials in completion order until a feasible "
        "trial came within 0.5 point; an unreached target (—) counts as the whole budget in the mean, so such a "
        "mean is a lower bound. **Hyperband / random search epochs to ≤0.5 pt of the seed's best: "
        + ("—" if ratio is None else f"{ratio:.2f}") + "** (target ≤ 0.33); Bayesian / random: "
        + ("—" if report.get("bayesian_over_random_epochs") is None else f"{report['bayesian_over_random_epochs']:.2f}")
        + "; Hyperband without scaled compression / random: "
        + ("—" if report.get("hyperband_unscaled_over_random_epochs") is None
           else f"{report['hyperband_unscaled_over_random_epochs']:.2f}") + ".", "",
        markdown_table(["algorithm", "seed", "trials", "completed/feasible", "epochs spent", "best accuracy",
                        "size KB", "epochs to ≤0.5 pt of seed best", "of own best", "wall s", "s per trial"],
                       per_run), "",
        "Accuracy is the compressed (QAT) Keras model's validation accuracy.", "",
    ])


if __name__ == "__main__":
    sys.exit(main())
