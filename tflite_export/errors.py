"""Errors raised by :mod:`tflite_export` (which works without the rest of tfcompress)."""

__all__ = ["TfcompressError", "ExportError", "first_line"]


class TfcompressError(Exception):
    """Base class of every error the tfcompress distribution raises on bad input.

    Defined here, in the lower package, so :class:`ExportError` derives from it
    while ``tflite_export`` still works without tfcompress;
    ``tfcompress.errors`` re-exports it.
    """


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
