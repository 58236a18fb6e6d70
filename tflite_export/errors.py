"""Errors raised by :mod:`tflite_export` (which works without the rest of tfcompress)."""

import errno as _errno

__all__ = ["TfcompressError", "ExportError", "first_line", "write_failure"]

# What a failed write of ours says: the disk, not the input, is at fault, so a run stops there.
_WRITE_ERRNOS = {_errno.ENOSPC, _errno.EDQUOT, _errno.EROFS, _errno.EFBIG, _errno.EIO, _errno.EACCES, _errno.EPERM}
# The same, as native writers (TensorFlow's event files, HDF5) word it in their messages.
_WRITE_WORDS = {"No space left on device": _errno.ENOSPC, "Disk quota exceeded": _errno.EDQUOT,
                "Read-only file system": _errno.EROFS, "Permission denied": _errno.EACCES}


class TfcompressError(Exception):
    """Base class of every error the tfcompress distribution raises on bad input.

    Defined here, in the lower package, so :class:`ExportError` derives from it
    while ``tflite_export`` still works without tfcompress;
    ``tfcompress.errors`` re-exports it.
    """

    #: The ``errno`` of the failed write behind the error (see :func:`write_failure`), else None.
    errno: int | None = None


class ExportError(TfcompressError):
    """A conversion, evaluation or timing request cannot be carried out.

    The message says what is wrong and how to fix it, in one line.
    """


def first_line(e, limit=200):
    """The first line of an exception's message, cut to ``limit`` characters.

    What a one-line error quotes of a cause. tfcompress re-exports it from
    ``tfcompress.errors``.

    Args:
        e: An exception (or anything whose ``str`` is a message).
        limit: Maximum number of characters, or None for the whole line. Defaults to `200`.

    Returns:
        The first non-empty line of ``str(e)``, or the type name of ``e`` when the message is empty.

    Example:
        >>> first_line(ValueError("bad shape\\nTraceback ..."))
        'bad shape'
        >>> first_line(RuntimeError())
        'RuntimeError'
    """
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


def write_failure(e):
    """The ``errno`` of a failed write behind ``e`` (no space, quota, read-only, permission), or None.

    Looks at ``e``, then its ``__cause__``/``__context__`` chain: an ``OSError``, an error of ours
    raised by an atomic write (they carry the ``errno``), or a native writer's message (TensorFlow,
    HDF5) naming the cause.

    Example:
        >>> write_failure(OSError(28, "No space left on device"))
        28
        >>> write_failure(ValueError("bad shape")) is None
        True
    """
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        code = getattr(e, "errno", None)
        if code in _WRITE_ERRNOS:
            return code
        for words, code in _WRITE_WORDS.items():
            if words in str(e):
                return code
        e = e.__cause__ or e.__context__
    return None
