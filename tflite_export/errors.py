"""Errors raised by :mod:`tflite_export` (which works without the rest of tfcompress)."""

__all__ = ["ExportError"]


class ExportError(Exception):
    """A conversion, evaluation or timing request cannot be carried out.

    The message says what is wrong and how to fix it, in one line.
    """
