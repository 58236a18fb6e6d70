"""``tfcompress export | inspect | bench`` subcommands (registered by tfcompress's CLI).

Each handler returns an exit code and raises :class:`ExportError` for bad input
(the main CLI prints ``error: <message>`` and exits 2).

Example:
    $ tfcompress export model.keras --mode int8 --data digits --out m_int8.tflite
    $ tfcompress inspect m_int8.tflite --json -
    $ tfcompress bench m_f32.tflite m_int8.tflite --threads 1,2 --accelerator cpu,gpu \\
          --json bench.json --markdown bench.md --plot bench.png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings

import numpy as np

from ._atomic import atomic_write_bytes
from ._userfiles import check_model_file, read_npz, refuse_special
from .argtypes import MAX_THREADS, check_writable, int_list, nonnegative_float, nonnegative_int, positive_int
from .bench_report import bench_table, plot_timings
from .errors import ExportError, TfcompressError

__all__ = ["add_subcommands", "cmd_export", "cmd_inspect", "cmd_bench", "load_data", "bench_table"]


def add_subcommands(subparsers, load_dataset=None) -> None:
    """Registers ``export``, ``inspect`` and ``bench`` on an argparse subparsers object.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers()``.
        load_dataset: A function from a dataset name to an object with ``train`` and
            ``test`` ``(x, y)`` pairs, used for ``export --data NAME`` (tfcompress passes
            ``tfcompress.datasets.load``; tflite_export never imports tfcompress). Defaults
            to `None`: ``--data`` then takes .npz files only.

    Example:
        >>> p = argparse.ArgumentParser(); add_subcommands(p.add_subparsers(dest="command"))
    """
    _add_export(subparsers, load_dataset)
    _add_inspect(subparsers)
    _add_bench(subparsers)


def _add_export(subparsers, load_dataset) -> None:
    from .convert import IO_TYPES, MODES

    ex = subparsers.add_parser(
        "export",
        help="convert a saved tf_keras model to .tflite",
        description="Convert a .keras/.h5 file or SavedModel folder to TFLite (float32, float16, dynamic, "
        "int8, int16x8, int4), write it atomically with metadata, and report size and (with --data) LiteRT accuracy.",
    )
    ex.add_argument("model", metavar="MODEL_FILE", help=".keras/.h5 file or SavedModel folder")
    ex.add_argument("--mode", default="int8", choices=MODES, help="conversion flavour (default: %(default)s)")
    ex.add_argument("--io", default="int8", choices=IO_TYPES, help="int8 mode input/output type (default: %(default)s)")
    ex.add_argument(
        "--data",
        default=None,
        help="digits | fashion-mnist | file.npz (x_train[, y_train, x_test, y_test]) | (under tfcompress) an "
        "image folder, one subfolder per class; needed for int8/int16x8",
    )
    ex.add_argument("--num-samples", type=positive_int, default=200,
                    help="representative samples (default: %(default)s)")
    ex.add_argument("--sparse", action="store_true", help="store pruned weights sparse (EXPERIMENTAL_SPARSITY)")
    ex.add_argument("--strip-names", action="store_true",
                    help="empty inner tensors' names, drop converter notes and recipe metadata: some 100s of B")
    ex.add_argument("--metadata", default=None, help="JSON object stored in the file's metadata")
    ex.add_argument("--out", required=True, help="output .tflite path")
    ex.add_argument("--json", default=None, metavar="PATH", help="write the report as JSON ('-' = stdout)")
    ex.add_argument("--unsafe", action="store_true", help="load files with Lambda layers (runs their code: only "
                    "for files you trust); safe_mode=False in the Python API")
    ex.set_defaults(func=cmd_export, load_dataset=load_dataset)


def _add_inspect(subparsers) -> None:
    ins = subparsers.add_parser("inspect", help="show metadata, ops, dtypes and quantization of a .tflite file")
    ins.add_argument("file", metavar="FILE.tflite", help="the .tflite file to read")
    ins.add_argument("--tensors", action="store_true", help="list every tensor")
    ins.add_argument("--json", default=None, metavar="PATH", help="write everything as JSON ('-' = stdout)")
    ins.set_defaults(func=cmd_inspect)


def _add_bench(subparsers) -> None:
    from .benchmark import ACCELERATORS

    b = subparsers.add_parser(
        "bench",
        help="time .tflite files on this machine (XNNPACK, builtin, LiteRT CPU/GPU) or Android",
        description="Time each file for each thread count and accelerator with benchmark_model rigour "
        "(warm-up >= 1 run and 0.5 s, then >= 50 runs and 1 s); unavailable accelerators are reported, never "
        "replaced by CPU. Prints one comparison table (speed-up relative to the first file).",
    )
    b.add_argument("files", nargs="+", metavar="FILE.tflite", help="the .tflite files to time, side by side")
    b.add_argument("--threads", type=int_list(1, MAX_THREADS), default="1",
                   help="comma-separated thread counts (default: %(default)s)")
    b.add_argument("--accelerator", default="cpu",
                   help=f"comma-separated: {', '.join(ACCELERATORS)}, android (default: %(default)s)")
    b.add_argument("--delegate", default=None, help="external delegate library (.so) to time as well")
    b.add_argument("--pin", type=int_list(0), default=None, help="comma-separated CPU ids to pin to, e.g. 0 or 0,1")
    b.add_argument("--roofline", action="store_true", help="add MACs, GOPS and fraction of measured peak")
    b.add_argument("--min-runs", type=positive_int, default=50, help="timed runs at least (default: %(default)s)")
    b.add_argument("--min-seconds", type=nonnegative_float, default=1.0,
                   help="timed seconds at least (default: %(default)s)")
    b.add_argument("--warmup-runs", type=nonnegative_int, default=1,
                   help="warm-up runs at least (default: %(default)s)")
    b.add_argument("--warmup-seconds", type=nonnegative_float, default=0.5,
                   help="warm-up seconds at least (default: %(default)s)")
    b.add_argument("--android-binary", default=None, help="benchmark_model binary for --accelerator android")
    b.add_argument("--serial", default=None, help="adb device serial for android")
    b.add_argument("--json", default=None, metavar="PATH", help="write all timings as JSON ('-' = stdout)")
    b.add_argument("--markdown", default=None, metavar="PATH", help="write the table as Markdown")
    b.add_argument("--plot", default=None, metavar="PATH", help="write a bar chart PNG (matplotlib)")
    b.set_defaults(func=cmd_bench)


# ------------------------------------------------------------------------------ helpers


def _write_json(obj, dest: str | None) -> None:
    if not dest:
        return
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    if dest == "-":
        print(text)
        return
    atomic_write_bytes(dest, (text + "\n").encode("utf-8"))


def _load_npz(name: str):
    arrays = read_npz(name, ExportError, hint="save it with numpy.savez(path, x_train=..., x_test=..., y_test=...)")
    x = arrays.get("x_train", arrays.get("x"))
    if x is None:
        raise ExportError(f"{name} has no x_train (or x) array; it has {', '.join(arrays) or 'nothing'}")
    if x.dtype.kind not in "biuf":  # strings, complex, datetimes...: not calibration inputs
        raise ExportError(f"{name}: x_train holds {x.dtype} values, not real numbers; save numeric inputs "
                          "(e.g. float32 scaled as the model expects)")
    y, xte, yte = arrays.get("y_train", arrays.get("y")), arrays.get("x_test"), arrays.get("y_test")
    for kx, ky, a, b in (("x_train", "y_train", x, y), ("x_test", "y_test", xte, yte)):
        if a is not None and b is not None and len(np.atleast_1d(a)) != len(np.atleast_1d(b)):
            raise ExportError(f"{name}: {kx} has {len(np.atleast_1d(a))} examples but {ky} has "
                              f"{len(np.atleast_1d(b))}; they must match")
    return x.astype(np.float32), y, xte, yte


def load_data(name: str, load_dataset=None, model=None):
    """Returns ``(x_train, y_train, x_test, y_test)`` (labels may be None) for --data.

    Args:
        name: A .npz file with ``x_train`` (or ``x``) and optionally ``y_train``,
            ``x_test``, ``y_test``; or a dataset name for ``load_dataset``.
        load_dataset: Dataset name -> object with ``train`` and ``test`` ``(x, y)``
            pairs (``tfcompress.datasets.load`` under ``tfcompress export``), called with
            ``model=`` when ``model`` is given; it then also reads .npz files (scaled as
            tfcompress scales them) and image folders (at the model's input size); a .npz
            it refuses (one with no labels) is read here. Defaults to `None`.
        model: The model file being exported. Defaults to `None`.

    Returns:
        A 4-tuple of arrays (or None where absent).

    Raises:
        ExportError: Unreadable file, missing arrays, or a dataset name without a loader.

    Example:
        >>> xtr, ytr, xte, yte = load_data("calib.npz")   # doctest: +SKIP
    """
    refuse_special(name, "--data")
    is_npz = name.lower().endswith(".npz") or os.path.isfile(name)
    if load_dataset is not None and model is not None and (is_npz or os.path.isdir(name)):
        try:
            d = load_dataset(name, model=model)
            return d.train[0], d.train[1], d.test[0], d.test[1]
        except TfcompressError:
            if not is_npz:
                raise
    if is_npz:
        return _load_npz(name)
    if load_dataset is None:
        raise ExportError(
            f"--data {name} is not a .npz file; dataset names (digits, fashion-mnist) need tfcompress "
            "(run `tfcompress export`), or pass a .npz file"
        )
    d = load_dataset(name)
    return d.train[0], d.train[1], d.test[0], d.test[1]


def _parse_list(text: str, conv, what: str) -> list:
    try:
        vals = [conv(v.strip()) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ExportError(f"--{what} must be a comma-separated list, got {text!r}") from None
    if not vals:
        raise ExportError(f"--{what} is empty")
    return vals


# ------------------------------------------------------------------------------ export


def _parse_metadata(text: str | None):
    if not text:
        return None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise ExportError(f"--metadata is not valid JSON ({e.msg}); pass e.g. '{{\"recipe\": \"prune50\"}}'") from None
    if not isinstance(meta, dict):
        raise ExportError("--metadata must be a JSON object, e.g. '{\"recipe\": \"prune50\"}'")
    return meta


def cmd_export(args) -> int:
    """Handler of ``tfcompress export``.

    Args:
        args: The parsed ``export`` arguments.

    Returns:
        0.

    Raises:
        ExportError: Bad arguments, unreadable data or a failed conversion.

    Example:
        >>> main(["export", "m.keras", "--mode", "float32", "--out", "m.tflite"])   # doctest: +SKIP
        0
    """
    from .convert import export
    from .evaluate import score_summary

    meta = _parse_metadata(args.metadata)
    check_model_file(args.model)  # a FIFO would block, a zip bomb unpack, before the data is even read
    check_writable(args.out, "--out")
    check_writable(args.json, "--json")
    xtr = xte = yte = None
    if args.data:
        xtr, _, xte, yte = load_data(args.data, getattr(args, "load_dataset", None), model=args.model)
        meta = dict(meta or {})
        meta.setdefault("dataset", os.path.basename(args.data))
    elif args.mode in ("int8", "int16x8"):
        raise ExportError(f"--mode {args.mode} needs --data (digits, fashion-mnist or a .npz) for calibration")
    rep = export(
        args.model,
        args.out,
        mode=args.mode,
        representative_data=xtr,
        num_samples=args.num_samples,
        metadata=meta,
        io=args.io,
        sparse=args.sparse,
        strip_names=args.strip_names,
        safe_mode=not args.unsafe,
    )
    out = rep.to_dict()
    line = (
        f"wrote {rep.path}: {rep.mode}, {rep.bytes} bytes ({rep.zipped_bytes} zipped), "
        f"input {rep.input_dtype}, output {rep.output_dtype}"
    )
    if rep.sparse_tensors:
        line += f", {rep.sparse_tensors} sparse tensors"
    if xte is not None and yte is not None:
        scores, text = score_summary(rep.path, xte, yte)
        out, line = {**out, **scores}, line + text
    if args.json != "-":
        print(line)
    _write_json(out, args.json)
    return 0


# ----------------------------------------------------------------------------- inspect


def _tensor_line(t: dict) -> str:
    q = t["quantization"]
    if not q:
        qs = ""
    elif "scale" in q:
        qs = f" scale={q['scale']:.6g} zp={q['zero_point']}"
    else:
        qs = f" per-channel x{q['num_scales']} dim={q['quantized_dimension']}"
    const = " const" if t["constant"] else "      "
    sparse = " sparse" if t["sparse"] else ""
    return f"  [{t['index']:3d}] {t['dtype']:8s} {str(t['shape']):18s}{const}{sparse}{qs}  {t['name'][:60]}"


def cmd_inspect(args) -> int:
    """Handler of ``tfcompress inspect``.

    Args:
        args: The parsed ``inspect`` arguments.

    Returns:
        0.

    Raises:
        ExportError: The file is missing, not TFLite or damaged.

    Example:
        >>> main(["inspect", "m.tflite", "--tensors"])   # doctest: +SKIP
        0
    """
    from .inspection import inspect

    check_writable(args.json, "--json")
    info = inspect(args.file)
    if args.json != "-":
        print(info.summary())
        if args.tensors:
            for t in info.tensors:
                print(_tensor_line(t))
    _write_json(info.to_dict(tensors=True), args.json)
    return 0


# ------------------------------------------------------------------------------- bench


def _bench_accelerators(args) -> list[str]:
    from .benchmark import _ALIASES, ACCELERATORS

    accels = [_ALIASES.get(a.lower(), a.lower()) for a in _parse_list(args.accelerator, str, "accelerator")]
    for a in accels:
        if a not in ACCELERATORS and a != "android":
            raise ExportError(f"unknown accelerator {a!r}; use {', '.join(ACCELERATORS)} or android")
    if "android" in accels and not args.android_binary:
        raise ExportError("--accelerator android needs --android-binary path/to/benchmark_model")
    return accels


def _time_one(args, path: str, accelerator: str, threads: int, pin):
    """One Timing of ``path``; with --roofline, MACs, GOPS and % of peak are added after timing."""
    from .android import benchmark_on_device
    from .benchmark import benchmark
    from .roofline import add_roofline

    kw = dict(
        warmup_runs=args.warmup_runs,
        warmup_seconds=args.warmup_seconds,
        min_runs=args.min_runs,
        min_seconds=args.min_seconds,
    )
    if accelerator == "android":
        return benchmark_on_device(path, args.android_binary, threads=threads, serial=args.serial, **kw)
    if accelerator == "delegate":
        tm = benchmark(path, threads=threads, delegate=args.delegate, cpu_affinity=pin, **kw)
    else:
        tm = benchmark(path, threads=threads, accelerator=accelerator, cpu_affinity=pin, **kw)
    if args.roofline:
        add_roofline(tm)
    return tm


def _check_pin(pin):
    """--pin ids this process may run on (checked before timing: a bad id fails every run)."""
    if not pin:
        return None
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: leave it to the benchmark, which reports it per row
        return pin
    bad = [c for c in pin if c not in allowed]
    if bad:
        raise ExportError(f"--pin {','.join(map(str, bad))}: not a CPU this process may use; choose among "
                          f"{','.join(map(str, allowed))}")
    return pin


def _check_delegate(path: str) -> None:
    """--delegate must be a library LiteRT loads as a delegate (checked once, before timing: a row saying
    "unavailable" would hide a wrong path)."""
    from .probe import delegate_load_failure

    refuse_special(path, "--delegate")
    if not os.path.isfile(path):
        raise ExportError(f"--delegate {path} does not exist; pass the path of a TFLite external delegate .so")
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            raise ExportError(f"--delegate {path} is not a shared library (not an ELF file); pass the path of a "
                              "TFLite external delegate .so")
    why = delegate_load_failure(path)
    if why is not None:
        raise ExportError(f"--delegate {path} is not a loadable TFLite delegate ({why}); pass the path of a TFLite "
                          "external delegate .so")


def _check_outputs(args) -> None:
    """Output paths are checked before any timing, so a typo does not cost the whole run."""
    for flag, path in (("--json", args.json), ("--markdown", args.markdown), ("--plot", args.plot)):
        check_writable(path, flag)
    if args.plot:
        from .bench_report import check_figure_path

        check_figure_path(args.plot, "--plot")


def cmd_bench(args) -> int:
    """Handler of ``tfcompress bench``.

    Args:
        args: The parsed ``bench`` arguments.

    Returns:
        0 (unavailable accelerators are rows with an "unavailable: ..." status).

    Raises:
        ExportError: Bad arguments or a missing/damaged file.

    Example:
        >>> main(["bench", "a.tflite", "b.tflite", "--threads", "1,2", "--roofline"])   # doctest: +SKIP
        0
    """
    from .safety import check_file

    threads = args.threads  # parsed and range-checked by argparse
    accels = _bench_accelerators(args)
    if args.delegate:
        _check_delegate(args.delegate)
    pin = _check_pin(args.pin)
    _check_outputs(args)
    for f in args.files:
        check_file(f)  # fail fast with a clear message before timing anything
    names = [os.path.basename(f) for f in args.files]
    if len(set(names)) != len(names):
        names = list(args.files)
    rows = []
    configs = [(a, t) for a in accels for t in threads]
    if args.delegate:
        configs += [("delegate", t) for t in threads]
    for a, t in configs:
        for f, name in zip(args.files, names):
            tm = _time_one(args, f, a, t, pin)
            rows.append(dict(file=name, **tm.to_dict()))
            if args.json != "-":
                lat = tm.median_ms if tm.median_ms is not None else tm.mean_ms
                print(f"  {name} [{a} x{t}]: " + (f"{lat:.4f} ms" if tm.ok else tm.status), file=sys.stderr)
    table = bench_table(rows)
    if args.json != "-":
        print(table)
    if args.markdown:
        atomic_write_bytes(args.markdown, (table + "\n").encode("utf-8"))
    if args.plot:
        plot_timings(rows, args.plot)
    _write_json({"timings": rows}, args.json)
    return 0


@contextlib.contextmanager
def plain_warnings():
    """While a command runs, each warning is one ``warning: <message>`` line on stderr, not Python's
    ``path.py:123: UserWarning: ...`` and the source line after it.

    Example:
        >>> with plain_warnings():  # doctest: +SKIP
        ...     args.func(args)
    """
    saved = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = saved


def main(argv=None) -> int:
    """Standalone entry point (``python -m tflite_export.cli``) when tfcompress is absent.

    Args:
        argv: Command-line arguments without the program name; None reads ``sys.argv``.

    Returns:
        The exit code: 0, or 2 after printing ``error: <message>`` for an ExportError.

    Example:
        >>> main(["inspect", "m.tflite"])   # doctest: +SKIP
        0
    """
    parser = argparse.ArgumentParser(prog="tflite_export")
    add_subcommands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        with plain_warnings():
            return int(args.func(args) or 0)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
