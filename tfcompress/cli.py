"""The ``tfcompress`` command line.

Bad input prints one ``error: ...`` line and exits 2 (``--debug`` shows the
traceback).

Example:
    $ tfcompress demo --out out/
    $ tfcompress optimize --model lenet5 --dataset fashion-mnist --recipe r.yaml
"""

import argparse
import contextlib
import os
import sys
import traceback

from tfcompress import check_cli, datasets, latency_cli, leftovers
from tfcompress._defaults import TIMING_RUNS, TIMING_THREADS
from tfcompress.tuning import cli as tuning_cli
from tflite_export import cli as export_cli
from tflite_export.argtypes import nonnegative_int, positive_int, seed_int, thread_count

__all__ = ["main", "build_parser", "BUDGET_NOT_MET"]

#: Exit status of ``optimize --target`` when the budget is not met on the file that ships (the files are written).
BUDGET_NOT_MET = 3

EPILOG = """examples:
  tfcompress demo                          # digits CNN: train, prune+QAT, int8 export, time
  tfcompress demo --dataset fashion-mnist  # the same with LeNet-5 on Fashion-MNIST
  tfcompress optimize --model lenet5 --dataset fashion-mnist --recipe my.yaml --out out/
  tfcompress optimize --model trained.keras --dataset digits --out out/
  tfcompress optimize --model my.keras --data mydata.npz --out out/   # your own model and data
  tfcompress optimize --model my.keras --data mydata.npz --target "drop<=1.0" --minimize size

  tfcompress optimize --model segmenter.keras --data masks.npz --out seg/  # scored in its own metric
  tfcompress latency-model out/int8.tflite --compare   # predicted from this CPU's measured op costs

Outputs go to --out: float32.tflite, int8.tflite, report.json, report.md, report.png; a run
replaces the files an earlier run left there (removing those it does not make, and saying so),
and removes what killed runs left: `tfcompress clean FOLDER` does that alone.
Every stage trains, and the report scores, with the model's own compiled loss and metrics
(--loss/--metric for a file saved without them).
Errors print one line and exit with status 2; add --debug for the traceback. A --target
budget that the shipped file does not meet exits 3 (the files and report are written).
tfcompress sets TF_USE_LEGACY_KERAS=1 (TF-MOT needs tf_keras) and leaves oneDNN on.
"""


def _common(p):
    p.add_argument("--out", default="tfcompress-out", help="output folder (default: %(default)s)")
    p.add_argument("--threads", type=thread_count, default=TIMING_THREADS,
                   help="XNNPACK threads for timing (default: %(default)s)")
    p.add_argument("--timing-runs", type=positive_int, default=TIMING_RUNS,
                   help="timed runs of each file at least: run_job's timing_runs, what bench calls --min-runs "
                   "(default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="override every recipe stage's fine-tuning epochs")
    p.add_argument("--quiet", action="store_true", help="print only the final table")


def build_parser():
    """The ``tfcompress`` argument parser with every subcommand (the CLI reference is generated from it).

    Returns:
        An ``argparse.ArgumentParser``; ``main`` parses with it.

    Example:
        >>> build_parser().parse_args(["demo", "--epochs", "1"]).epochs
        1
    """
    parser = argparse.ArgumentParser(
        prog="tfcompress",
        description="Compress tf_keras models (pruning, QAT) and export them to small, fast TFLite files.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from tfcompress._version import __version__

    parser.add_argument("--version", action="version", version=f"tfcompress {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks and TensorFlow logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="run the main job on a built-in dataset",
        description="Train the reference CNN for the dataset, optimize it with its default recipe "
        "(gradual magnitude pruning, then sparsity-preserving QAT), export float32 and int8 "
        ".tflite files, evaluate both with LiteRT on the test split, time both on XNNPACK, "
        "and print a summary table.",
    )
    demo.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist"],
                      help="digits (embedded, default) or fashion-mnist (Debian package)")
    _common(demo)
    demo.set_defaults(func=_cmd_demo)

    opt = sub.add_parser(
        "optimize", help="optimize a reference model or a saved model file with a recipe",
        description="Like demo, for any reference model name or saved tf_keras model file "
        "(.keras/.h5; assumed trained) and an optional recipe YAML.",
    )
    opt.add_argument("--model", required=True,
                     help="reference model name (digits_cnn, lenet5), a .keras/.h5 file or a SavedModel folder")
    opt.add_argument("--dataset", default=None, help="digits or fashion-mnist (or use --data)")
    datasets.add_data_options(opt)
    opt.add_argument("--recipe", default=None, help="recipe YAML (default: the model's default recipe)")
    opt.add_argument("--train-epochs", type=nonnegative_int, default=None,
                     help="train the model this many epochs first, 0 for none (default: a reference model's "
                     "own setting; none for a file)")
    opt.add_argument("--unsafe", action="store_true",
                     help="load files with Lambda layers (runs their code: only for files you trust); "
                     "safe_mode=False in the Python API")
    opt.add_argument("--seed", type=seed_int, default=None,
                     help="seed Python, NumPy and TensorFlow before building and training, for a repeatable run "
                     "(default: the recipe's seed; a tuner's best_recipe.yaml has its trial's)")
    opt.add_argument("--tensorboard", default=None, metavar="DIR",
                     help="write TensorBoard logs here: one folder per stage (loss, accuracy, learning rate, sparsity)")
    opt.add_argument("--target", default=None, metavar="BUDGET",
                     help="budget mode: 'drop<=1.0' (in the task's metric: accuracy/IoU points, an MAE's unit), "
                     "'size<=40KB' (zipped) or 'latency<=2ms', optionally with an accuracy floor "
                     "('size<=40KB, drop<=2'); planned on 70%% of the validation data, checked on the other 30%% "
                     "and on the file that ships (exit status 3 when it is not met); the plan is "
                     "chosen per layer from a sensitivity scan (--recipe then gives only the training settings) and "
                     "saved as plan.yaml in --out")
    opt.add_argument("--minimize", choices=["size", "latency"], default=None,
                     help="with a drop budget: what to minimise (default: size)")
    opt.add_argument("--loss", default=None, metavar="NAME",
                     help="the task's loss for a model file saved without one (a Keras loss name: mse, mae, "
                     "binary_crossentropy, ...); default: the loss the file was compiled with, else the "
                     "classification loss its output implies (classifiers only)")
    opt.add_argument("--metric", action="append", default=None, metavar="NAME",
                     help="a metric to score with (repeatable: --metric mae --metric mse); default: the file's "
                     "compiled metrics, else accuracy")
    opt.add_argument("--no-baseline-check", action="store_true",
                     help="compress even when the model scores at chance on the data before compression "
                     "(by default that stops the run: it is almost always a data problem, e.g. inputs scaled twice)")
    opt.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default=None,
                     help="fine-tune under this tf.distribute strategy: mirrored (this machine's GPUs) or "
                     "multiworker (cluster from TF_CONFIG; run the same command on every worker)")
    _common(opt)
    opt.set_defaults(func=_cmd_optimize)

    # Other subcommands live beside the code they drive.
    export_cli.add_subcommands(sub, load_dataset=datasets.load)  # tflite_export never imports tfcompress
    for module in (check_cli, tuning_cli, leftovers, latency_cli):
        module.add_subcommands(sub)
    return parser


def _print_job(job, args):
    print()
    print(job.table())
    for note in job.notes:
        print(f"note: {note}")
    print(f"\nreport: {os.path.join(args.out, 'report.md')}  json: {os.path.join(args.out, 'report.json')}"
          f"  plot: {os.path.join(args.out, 'report.png')}  ({job.seconds.get('total', 0):.0f} s)")
    budget = (getattr(job, "optimize", None) or {}).get("budget") or {}
    if budget.get("met") is False:  # the files are written; the promise is not kept
        print(f"budget {job.optimize['budget']['target']} not met (see the first note): exit status 3",
              file=sys.stderr)
        return BUDGET_NOT_MET
    return 0


def _cmd_demo(args):
    from tfcompress import models
    from tfcompress.pipeline import run_job

    spec = models.get("digits_cnn" if args.dataset == "digits" else "lenet5")
    data = datasets.load(args.dataset)
    model = spec.build(data.input_shape, data.num_classes)
    job = run_job(model, data, recipe=spec.recipe(), out=args.out, train_epochs=spec.epochs,
                  threads=args.threads, batch_size=spec.batch_size,
                  learning_rate=spec.learning_rate, epochs=args.epochs, quiet=args.quiet, timing_runs=args.timing_runs)
    return _print_job(job, args)


def _cmd_optimize(args):
    from tfcompress import distribute
    from tfcompress.io import resolve_inputs
    from tfcompress.pipeline import run_job
    from tfcompress.recipe import Recipe
    from tfcompress.training import check_log_dir, set_seed

    check_log_dir(args.tensorboard, "--tensorboard")  # before training, not when its first log is written
    if args.target is not None or args.minimize is not None:  # a bad budget fails before any work
        from tfcompress.target import check_minimize, parse_target

        check_minimize(parse_target(args.target or "drop<=1.0"), args.minimize)
    strategy = distribute.resolve(args.strategy)  # first: a MultiWorkerMirroredStrategy must come before other TF work
    out = distribute.output_dir(args.out, strategy)
    source, data = resolve_inputs(args.model, datasets.cli_data(args.dataset, args.data),
                                  scale=datasets.parse_scale(args.scale), safe_mode=not args.unsafe)
    if not args.quiet:
        print(f"data: {data.describe()}", flush=True)
    given = Recipe.from_yaml(args.recipe) if args.recipe else None
    seed = args.seed if args.seed is not None else (given.seed if given is not None else None)
    if seed is not None:  # seeded before the model is built: its initial weights repeat too
        set_seed(seed)
    spec = source.spec
    model = source.build() if seed is not None and source.build is not None else source.model()
    if spec is None:  # a model file: assumed trained
        recipe = given or Recipe()
        train_epochs, bs, lr = args.train_epochs, None, None  # the recipe's batch size and learning rate
    else:
        recipe = given or spec.recipe()
        # a recipe with a train stage trains the fresh model itself (a tuner's best_recipe.yaml)
        own = 0 if recipe.train is not None else spec.epochs
        train_epochs = args.train_epochs if args.train_epochs is not None else own
        bs, lr = spec.batch_size, spec.learning_rate
    if seed is not None:
        recipe = recipe.replace(seed=seed)
    job = run_job(model, data, recipe=recipe, out=out, train_epochs=train_epochs, threads=args.threads,
                  batch_size=bs, learning_rate=lr, epochs=args.epochs, quiet=args.quiet, strategy=strategy,
                  tensorboard=args.tensorboard, target=args.target, minimize=args.minimize, loss=args.loss,
                  metrics=args.metric, check_baseline=not args.no_baseline_check, timing_runs=args.timing_runs)
    return _print_job(job, argparse.Namespace(**dict(vars(args), out=out)))


def main(argv=None):
    """Entry point of the ``tfcompress`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    import tfcompress._keras  # noqa: F401  (quiet TensorFlow before anything imports it)

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()  # the commands and examples; the one error line goes to stderr
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        print(f"error: give a command: {', '.join(commands)} (tfcompress COMMAND --help for its options)",
              file=sys.stderr)
        return 2
    from tfcompress.errors import TfcompressError
    from tflite_export.cli import plain_warnings
    from tflite_export.errors import ExportError

    try:
        with contextlib.nullcontext() if debug else plain_warnings():  # --debug: Python's own, with the line
            return int(args.func(args) or 0)
    except (TfcompressError, ExportError) as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a write no writer of ours wrapped (a full disk, a read-only folder): still one line
        from tflite_export.errors import write_failure

        if debug or write_failure(e) is None:
            raise
        where = f"cannot write {e.filename} " if e.filename else "a write failed "
        print(f"error: {where}({e.strerror or e}); free some space or choose a writable folder", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
