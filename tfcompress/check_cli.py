"""``tfcompress check``: the per-layer compression table, before training.

Example:
    $ tfcompress check trained.keras --recipe r.yaml
    $ tfcompress check digits_cnn --json
    $ tfcompress check MobileNetV2 --input-shape 32,32,3 --markdown report.md
"""

import argparse
import json

from tfcompress import datasets
from tfcompress.check import check
from tfcompress.io import resolve_inputs, resolve_model
from tfcompress.report import atomic_write_text
from tflite_export.argtypes import check_writable

__all__ = ["add_subcommands"]


def add_subcommands(subparsers):
    """Register ``check`` on an argparse subparsers object.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returns.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser(); add_subcommands(p.add_subparsers(dest="command"))
    """
    p = subparsers.add_parser(
        "check", help="what pruning, clustering, QAT, XNNPACK sparsity and channel pruning can do, per layer",
        description="Print a per-layer table before any training: prunable? clusterable? quantizable "
        "(with which config)? eligible for XNNPACK sparse inference? can its channels shrink? Then "
        "convert an untrained copy to int8 with random data so converter errors show in seconds.",
    )
    p.add_argument("model", metavar="MODEL_FILE_OR_NAME",
                   help=".keras/.h5 file (tf_keras or Keras 3), a reference model name (digits_cnn, "
                        "lenet5) or a keras.applications name (MobileNetV2, built with weights=None)")
    p.add_argument("--recipe", default=None, help="recipe YAML to check against")
    p.add_argument("--input-shape", type=_input_shape, default=None,
                   help="input shape for a keras.applications name, e.g. 32,32,3 (default: the application's)")
    p.add_argument("--no-convert", action="store_true", help="skip the trial int8 conversion")
    p.add_argument("--loss", default=None, metavar="NAME",
                   help="the task's loss (as optimize --loss); the report says which loss and metrics optimize uses")
    p.add_argument("--metric", action="append", default=None, metavar="NAME", help="a metric (repeatable)")
    datasets.add_data_options(p)  # --data: checked against the model, calibrates the trial conversion
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--markdown", default=None, metavar="PATH", help="also write the report as Markdown")
    p.add_argument("--unsafe", action="store_true",
                   help="load files with Lambda layers (runs their code: only for files you trust); "
                   "safe_mode=False in the Python API")
    p.set_defaults(func=_cmd_check)


def _input_shape(text):
    """argparse type of --input-shape: positive whole numbers separated by commas."""
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 or d > 65536 for d in shape):
        raise argparse.ArgumentTypeError(f"must look like 32,32,3 (whole numbers in 1..65536), got {text!r}")
    return shape


def _cmd_check(args):
    check_writable(args.markdown, "--markdown")
    data = None
    if args.data:
        source, data = resolve_inputs(args.model, args.data, scale=datasets.parse_scale(args.scale),
                                      safe_mode=not args.unsafe, applications=True)
        model = source.model()
    else:
        model = resolve_model(args.model, input_shape=args.input_shape, safe_mode=not args.unsafe,
                              applications=True).model()
    report = check(model, recipe=args.recipe, convert=not args.no_convert, data=data, loss=args.loss,
                   metrics=args.metric)
    if args.markdown:
        atomic_write_text(args.markdown, report.to_markdown())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report.table())
    return 0
