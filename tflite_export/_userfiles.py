"""Opening files a user names, without trusting them.

A path on the command line may be a FIFO (``open`` would wait for a writer
for ever), a device, or a regular file far bigger than what it claims to be.
:func:`refuse_special` says so in one line before anything opens it;
:func:`read_limited` opens without blocking, checks the file is regular and
reads at most a cap. tfcompress's YAML, model and data readers use these too
(tflite_export never imports tfcompress), so the rule is the same everywhere.

Example:
    >>> refuse_special("missing.yaml", "recipe")  # a missing path is the caller's to report
"""

from __future__ import annotations

import os
import stat

from .errors import ExportError

__all__ = ["refuse_special", "read_limited", "special_kind"]


def special_kind(mode: int) -> str | None:
    """What a file of this ``st_mode`` is, when it is neither a regular file nor a folder (else None)."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _refusal(path, what: str, kind: str, error):
    return error(f"{what} {path} is {kind}, not a file: reading it could wait for ever; pass a regular file.")


def refuse_special(path, what: str, error=ExportError) -> None:
    """Refuses a FIFO, socket or device at ``path`` without opening it (a missing path passes).

    Args:
        path: the path given.
        what: what the path is for, for the message (``"--model"``, ``"recipe"``).
        error: the exception class raised. Defaults to `ExportError`.

    Raises:
        error: ``path`` exists and is neither a regular file nor a folder.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    kind = special_kind(mode)
    if kind is not None:
        raise _refusal(path, what, kind, error)


def read_limited(path, what: str, limit: int, error=ExportError) -> bytes:
    """The bytes of a regular file, at most ``limit + 1`` of them (the caller tells "too big").

    The file is opened with ``O_NONBLOCK``, so a FIFO is refused at once rather
    than waited on.

    Args:
        path: the file.
        what: what the file is, for messages (``"recipe"``).
        limit: the most bytes the caller accepts.
        error: the exception class raised. Defaults to `ExportError`.

    Raises:
        error: the file cannot be opened, or is not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}.") from None
    with os.fdopen(fd, "rb") as f:
        kind = special_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise _refusal(path, what, kind, error)
        try:
            return f.read(limit + 1)
        except OSError as e:
            raise error(f"cannot read {what} {path}: {e.strerror}.") from None
