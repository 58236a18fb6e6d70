"""``tfcompress latency-model``: this machine's cached per-op latency model, and what it predicts for a file.

Example:
    $ tfcompress latency-model --threads 1                 # the cached op costs, costliest first
    $ tfcompress latency-model m_int8.tflite --compare     # predicted per op, and against a measured run
"""

import json

from tflite_export import benchmark
from tflite_export.argtypes import thread_count
from tflite_export.latency_model import LatencyModel
from tflite_export.tables import text_table

__all__ = ["add_subcommands", "run"]


def add_subcommands(subparsers):
    """Register ``latency-model`` on an argparse subparsers object.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returns.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser(); add_subcommands(p.add_subparsers(dest="command"))
        >>> p.parse_args(["latency-model", "--threads", "2"]).threads
        2
    """
    p = subparsers.add_parser(
        "latency-model", help="this machine's measured per-op latency costs (cached), or a file's predicted latency",
        description="Without FILE: print the op costs cached for this CPU and thread count (costliest first). "
        "With .tflite FILEs: predict each one's latency as the sum of its ops' costs, timing each op "
        "not cached yet on its own (LiteRT/XNNPACK) and caching it; --compare also times the whole file. "
        "The cache lives in $TFCOMPRESS_CACHE or ~/.cache/tfcompress, one file per CPU, thread count "
        "and LiteRT version.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help=".tflite files to predict")
    p.add_argument("--threads", type=thread_count, default=1, help="XNNPACK threads (default: %(default)s)")
    p.add_argument("--cache", default=None, metavar="DIR", help="cache folder (default: $TFCOMPRESS_CACHE or "
                   "~/.cache/tfcompress)")
    p.add_argument("--compare", action="store_true", help="also time each whole file and print the error")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=run)


def run(args):
    """Runs ``tfcompress latency-model`` (see :func:`add_subcommands`); returns the exit status.

    Example:
        >>> import argparse
        >>> args = argparse.Namespace(files=["m.tflite"], threads=1, cache=None, compare=True, json=False)
        >>> run(args)  # doctest: +SKIP
        m.tflite: predicted 0.01712 ms (sum of ops, 9 ops, 0 timed now, 1 thread(s)); measured 0.0172 ms, error -0.6%
    """
    lm = LatencyModel(args.threads, args.cache)
    if not args.files:
        rows = lm.table()
        if args.json:
            print(json.dumps({"cache": lm.path, "overhead_ms": lm.overhead_ms, "ops": rows}, indent=1))
            return 0
        print(f"cache: {lm.path} ({len(rows)} op costs, {args.threads} thread(s); an empty invoke costs "
              f"{lm.overhead_ms if lm.overhead_ms is not None else '?'} ms)")
        if rows:
            print(text_table(["op", "shapes", "ms"], [[r["op"], r["shapes"], r["ms"]] for r in rows]))
        return 0
    out = []
    for path in args.files:
        p = lm.predict(path)
        row = p.to_dict()
        if args.compare:
            t = benchmark(path, threads=args.threads, min_runs=100, min_seconds=1.0)
            row["measured_ms"] = t.median_ms
            row["error"] = p.predicted_ms / t.median_ms - 1 if t.median_ms else None
        out.append(row)
        if not args.json:
            print(f"{path}: predicted {p.predicted_ms:.4g} ms ({p.method}, {len(p.ops)} ops, {p.measured_now} timed "
                  f"now, {args.threads} thread(s))" + (f"; measured {row['measured_ms']:.4g} ms, error "
                                                      f"{100 * row['error']:+.1f}%" if args.compare else ""))
            print(text_table(["op", "ms"], [[k, v] for k, v in p.by_op().items()]))
    if args.json:
        print(json.dumps(out, indent=1))
    return 0
