"""Benchmark the tuner: Hyperband vs random search vs Bayesian optimisation.

LeNet-5 on Fashion-MNIST (the whole training split by default), the same
epoch budget for every algorithm (training + compression fine-tuning epochs),
one size constraint. For each algorithm: the best validation accuracy among
trials meeting the constraint, the epochs spent until a trial came within 0.5
point of the best accuracy any algorithm found (and of its own best), and the
share of trial time spent exporting int8 and timing it.

Writes ``benchmarks/results/tuner.json`` and ``benchmarks/results/tuner.md``.

Example:
    $ flock /tmp/tfcompress-bench.lock python benchmarks/bench_tuner.py
    $ python benchmarks/bench_tuner.py --dataset digits --model digits_cnn --budget 12  # quick check
"""

import argparse
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

SPACE = {
    "learning_rate": {"min": 2e-4, "max": 5e-3, "sampling": "log"},
    "batch_size": [32, 64, 128],
    "optimizer": ["adam", "rmsprop", "sgd"],
    "lr_decay": ["none", "exponential", "cosine"],
    "decay_rate": {"min": 0.5, "max": 0.95},
    "cosine_alpha": {"min": 0.0, "max": 0.2},
    "final_sparsity": {"min": 0.5, "max": 0.95},
    "pruning_end": {"min": 0.4, "max": 0.9},
    "pruning_frequency": [10, 25, 50],
    "pruning_epochs": 1,
    "qat_epochs": 1,
}


def _epochs_to_reach(rows, target):
    """Cumulative epochs (all trials, in completion order) until a feasible
    trial reached ``target`` accuracy; None if none did."""
    spent = 0.0
    for r in rows:
        spent += r["metrics"].get("epochs", 0) if r["status"] == "COMPLETED" else 0
        if r["status"] == "COMPLETED" and r["feasible"] and r["metrics"]["accuracy"] >= target:
            return spent
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--train-subset", type=int, default=0,
                    help="use only this many training examples; 0: all (default: %(default)s)")
    ap.add_argument("--val-subset", type=int, default=0,
                    help="use only this many validation examples; 0: all (default: %(default)s)")
    ap.add_argument("--budget", type=int, default=60, help="epochs per algorithm (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs per trial; Hyperband's max "
                    "(default: %(default)s)")
    ap.add_argument("--constraint", default="size_kb<=20")
    ap.add_argument("--max-trials", type=int, default=40)
    ap.add_argument("--algorithms", default="hyperband,random,bayesian")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--initial-points", type=int, default=4,
                    help="Bayesian optimisation's random trials before the GP (default: %(default)s)")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)

    from tfcompress import datasets
    from tfcompress.tuning import tune

    data = datasets.load(args.dataset)
    x, y = data.validation
    n_train, n_val = args.train_subset or len(data.train[0]), args.val_subset or len(x)
    data = type(data)(name=data.name, train=(data.train[0][:n_train], data.train[1][:n_train]),
                      validation=(x[:n_val], y[:n_val]), test=data.test,
                      num_classes=data.num_classes, class_names=data.class_names)
    work = tempfile.mkdtemp(prefix="bench-tuner-")
    runs, t_all = {}, time.perf_counter()
    for algo in [a.strip() for a in args.algorithms.split(",") if a.strip()]:
        t0 = time.perf_counter()
        print(f"== {algo}: budget {args.budget} epochs", flush=True)
        result = tune(args.model, data, space=SPACE, algorithm=algo, max_trials=args.max_trials,
                      objectives=["accuracy", "size", "latency"], constraints=[args.constraint],
                      epochs=args.epochs, epoch_budget=args.budget, directory=os.path.join(work, algo),
                      seed=args.seed, timing_runs=20, timing_seconds=0.2, progress=print,
                      num_initial_points=args.initial_points)
        rows = sorted(result.rows, key=lambda r: int(r["trial_id"]))
        done = [r for r in rows if r["status"] == "COMPLETED"]
        overhead = [r["metrics"]["export_seconds"] / r["metrics"]["seconds"] for r in done]
        runs[algo] = {
            "seconds": time.perf_counter() - t0,
            "trials": len(rows), "completed": len(done), "feasible": len(result.feasible),
            "epochs_spent": sum(r["metrics"].get("epochs", 0) for r in done),
            "best": None if result.best is None else {
                "trial_id": result.best["trial_id"], **{k: result.best["metrics"][k]
                                                        for k in ("accuracy", "size_kb", "latency_ms")},
                "recipe": result.best["recipe"], "values": result.best["values"]},
            "pareto": result.pareto,
            "export_share_mean": sum(overhead) / len(overhead) if overhead else None,
            "export_share_max": max(overhead) if overhead else None,
            "export_share_total": (sum(r["metrics"]["export_seconds"] for r in done)
                                   / sum(r["metrics"]["seconds"] for r in done)) if done else None,
            "trial_seconds_mean": sum(r["metrics"]["seconds"] for r in done) / len(done) if done else None,
            "export_seconds_mean": (sum(r["metrics"]["export_seconds"] for r in done) / len(done)) if done else None,
            "rows": [{"trial_id": r["trial_id"], "status": r["status"], "feasible": r["feasible"],
                      "reason": r["reason"], "metrics": r["metrics"], "values": r["values"]} for r in rows],
        }
        runs[algo]["_rows_full"] = rows
    best_all = max((r["best"]["accuracy"] for r in runs.values() if r["best"]), default=None)
    for r in runs.values():
        rows = r.pop("_rows_full")
        own = r["best"]["accuracy"] if r["best"] else None
        r["epochs_to_within_0.5pt_of_overall_best"] = _epochs_to_reach(rows, best_all - 0.005) if best_all else None
        r["epochs_to_within_0.5pt_of_own_best"] = _epochs_to_reach(rows, own - 0.005) if own else None
    total = time.perf_counter() - t_all
    shutil.rmtree(work, ignore_errors=True)

    command = "flock /tmp/tfcompress-bench.lock python benchmarks/bench_tuner.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    report = {
        "command": command.strip(), "dataset": args.dataset, "model": args.model,
        "train_examples": n_train, "validation_examples": n_val, "epoch_budget": args.budget,
        "epochs_per_trial": args.epochs, "constraint": args.constraint, "seed": args.seed, "space": SPACE,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                   f"load avg {os.getloadavg()[0]:.1f} at the end",
        "total_seconds": total, "best_accuracy_overall": best_all, "runs": runs,
    }
    os.makedirs(args.out, exist_ok=True)
    from tfcompress.report import atomic_write_json, atomic_write_text, markdown_table

    atomic_write_json(os.path.join(args.out, "tuner.json"), report)

    def pct(v):
        return "—" if v is None else f"{v:.2%}"

    table_rows = []
    for algo, r in runs.items():
        b = r["best"]
        table_rows.append([
            algo, r["trials"], f"{r['completed']}/{r['feasible']}", f"{r['epochs_spent']:.0f}",
            pct(b and b["accuracy"]), "—" if not b else f"{b['size_kb']:.1f}",
            "—" if not b else f"{b['latency_ms']:.3g}",
            "not reached" if r["epochs_to_within_0.5pt_of_overall_best"] is None
            else r["epochs_to_within_0.5pt_of_overall_best"],
            r["epochs_to_within_0.5pt_of_own_best"],
            pct(r["export_share_mean"]), f"{r['trial_seconds_mean']:.1f}" if r["trial_seconds_mean"] else "—",
            f"{r['seconds']:.0f}",
        ])
    md = [
        "# Tuner benchmark: Hyperband vs random search vs Bayesian optimisation", "",
        f"Command: `{report['command']}`", "",
        f"{args.model} on {args.dataset}: {n_train} training and {n_val} validation examples; "
        f"the same budget of **{args.budget} epochs** per algorithm (training + pruning + QAT "
        f"fine-tuning epochs of all trials); constraint `{args.constraint}` (int8 zipped); {args.epochs} training "
        "epochs per trial (Hyperband: at most that); Bayesian optimisation starts with "
        f"{args.initial_points} random trials; all three draw their random trials from the same seed, so they "
        "start from the same configurations. One seed per algorithm: differences of a point or two are "
        f"within run-to-run noise. Machine: {report['machine']}; total {total / 60:.1f} min.", "",
        markdown_table(["algorithm", "trials", "completed/feasible", "epochs spent", "best accuracy (feasible)",
                        "size KB", "latency ms", "epochs to ≤0.5 pt of overall best", "epochs to ≤0.5 pt of own best",
                        "export+timing share", "s/trial", "wall s"], table_rows), "",
        "Export+timing share: int8 conversion plus LiteRT timing (20 runs, ≥0.2 s) over the whole trial time "
        "(training, compression, export, timing), mean over completed trials (max: "
        + ", ".join(f"{a} {pct(r['export_share_max'])}" for a, r in runs.items()) + "; export seconds per trial: "
        + ", ".join(f"{a} {r['export_seconds_mean']:.2f}" for a, r in runs.items() if r["export_seconds_mean"])
        + "); target ≤ 10 %.", "",
        "The oracle's score is the accuracy minus a penalty per unit of relative constraint violation "
        "(capped at 1 per constraint): 10 for Hyperband and random search (a broken constraint outranks any "
        "accuracy gain), 1 for Bayesian optimisation (a slope its Gaussian process can fit).", "",
        "Accuracy is the compressed (QAT) Keras model's validation accuracy.", "",
    ]
    atomic_write_text(os.path.join(args.out, "tuner.md"), "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
