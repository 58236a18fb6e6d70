"""argparse types and output-path checks shared by every subcommand.

Each type turns a command-line string into a value or raises
``argparse.ArgumentTypeError``, so a bad value is refused at parse time with one
line (``tfcompress bench: error: argument --threads: ...``) and exit status 2,
before any model is loaded or trained. ``tfcompress``'s own subcommands use these
too (tflite_export never imports tfcompress; the dependency goes the other way).

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> _ = p.add_argument("--threads", type=positive_int, default=1)
    >>> p.parse_args(["--threads", "2"]).threads
    2
"""

from __future__ import annotations

import argparse
import math
import os

from ._atomic import free_bytes
from .errors import ExportError

__all__ = [
    "int_in", "positive_int", "nonnegative_int", "seed_int", "port_int", "thread_count", "MAX_THREADS",
    "nonnegative_float", "int_list", "check_writable", "check_writable_dir",
]

# Larger than any sane thread count, epoch count or run count, small enough for int32 counters.
INT_MAX = 2**31 - 1


def _whole(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def int_in(minimum: int, maximum: int = INT_MAX, what: str | None = None):
    """An argparse type: a whole number in ``[minimum, maximum]``.

    Args:
        minimum: The smallest allowed value.
        maximum: The largest allowed value. Defaults to `INT_MAX` (2**31 - 1).
        what: What the message says is allowed. Defaults to `None` (``"a whole number >= minimum"``).

    Returns:
        A function from the option's text to an int.

    Example:
        >>> int_in(1, 8)("4")
        4
    """
    allowed = what or (f"a whole number >= {minimum}" if maximum == INT_MAX else
                       f"a whole number in {minimum}..{maximum}")

    def convert(text: str) -> int:
        value = _whole(text)
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value

    convert.__name__ = f"int_in_{minimum}_{maximum}"
    return convert


positive_int = int_in(1)
positive_int.__doc__ = "A whole number >= 1 (threads, epochs, runs, trials, samples)."
nonnegative_int = int_in(0)
nonnegative_int.__doc__ = "A whole number >= 0 (0 meaning none, e.g. --workers 0)."
seed_int = int_in(0, 2**32 - 1, "a whole number in 0..4294967295 (numpy's seed range)")
seed_int.__doc__ = "A random seed: a whole number in 0..4294967295 (numpy's seed range)."
port_int = int_in(0, 65535, "a TCP port in 0..65535 (0: a free one)")
port_int.__doc__ = "A TCP port in 0..65535 (0: a free one)."
# XNNPACK's thread pool segfaults the process at 100000 threads (measured; 4096 runs): a cap well past any CPU.
MAX_THREADS = 1024
thread_count = int_in(1, MAX_THREADS, f"a whole number of threads in 1..{MAX_THREADS}")
thread_count.__doc__ = f"A thread count in 1..{MAX_THREADS} (XNNPACK's pool crashes far beyond any CPU's)."


def nonnegative_float(text: str) -> float:
    """An argparse type: a finite number >= 0 (seconds).

    Example:
        >>> nonnegative_float("0.5")
        0.5
    """
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def int_list(minimum: int = 1, maximum: int = INT_MAX):
    """An argparse type: comma-separated whole numbers in ``[minimum, maximum]``.

    Example:
        >>> int_list(1)("1, 2,4")
        [1, 2, 4]
    """
    one = int_in(minimum, maximum)

    def convert(text: str) -> list[int]:
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}")
        try:
            return [one(p) for p in parts]
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"every value {str(e).removeprefix('must be ')} "
                                             f"(in {text!r})") from None

    convert.__name__ = "int_list"
    return convert


def check_writable(path: str | None, flag: str) -> None:
    """Makes sure an output file can be written there, before any work.

    The atomic writer creates missing folders, so the nearest existing folder
    above ``path`` must be writable; ``path`` itself must not be a folder.
    ``None`` and ``"-"`` (stdout) pass.

    Args:
        path: The output path given on the command line.
        flag: The option that named it (``"--json"``), for the message.

    Raises:
        ExportError: ``path`` is a folder, a file lies where a folder is needed,
            or the folder is not writable.

    Example:
        >>> check_writable("out/bench.json", "--json")
    """
    if path is None or path == "-":
        return
    full = os.path.abspath(os.fspath(path))
    if os.path.isdir(full):
        raise ExportError(f"{flag} {path} is a folder; give a file path such as {os.path.join(path, 'out')}")
    folder = os.path.dirname(full)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ExportError(f"{flag} {path}: {folder} is a file, not a folder; choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"{flag} {path}: cannot write in {folder} (permission denied); choose another path")


def check_writable_dir(path: str | None, flag: str, min_free: int = 0) -> None:
    """Makes sure an output folder can be made or written there, before any work.

    ``path`` may exist as a folder (it must be writable) or not yet (the
    nearest existing folder above it must be writable); a file there is
    refused. ``None`` passes.

    Args:
        path: The folder given on the command line.
        flag: The option that named it (``"--tensorboard"``), for the message.
        min_free: Bytes that must be free on its disk. Defaults to `0`.

    Raises:
        ExportError: ``path`` or a path above it is a file, the folder is not
            writable, or its disk has less than ``min_free`` bytes free.

    Example:
        >>> check_writable_dir("logs/run1", "--tensorboard")
    """
    if path is None:
        return
    full = os.path.abspath(os.fspath(path))
    folder = full
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        where = "is a file" if folder == full else f"cannot be made: {folder} is a file"
        raise ExportError(f"{flag} {path} {where}, not a folder; choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"{flag} {path}: cannot write in {folder} (permission denied); choose another path")
    free = free_bytes(folder)
    if free is not None and free < min_free:
        raise ExportError(f"{flag} {path}: only {free // 1024} KiB free on its disk (No space left on device); "
                          "free some space or choose another folder")
