"""tfcompress's own exceptions.

Everything the library raises on bad input derives from :class:`TfcompressError`,
so callers (and the CLI) can catch one type. Each message says what is wrong and
how to fix it, in one line. The base class and ``ExportError`` live in
``tflite_export.errors`` (the lower package, which cannot import tfcompress), so
``except TfcompressError`` catches export errors too.

Example:
    >>> issubclass(ExportError, TfcompressError)
    True
"""

from tflite_export.errors import ExportError, TfcompressError, first_line

__all__ = [
    "TfcompressError",
    "RecipeError",
    "UnsupportedModelError",
    "DataError",
    "OutputError",
    "ExportError",
    "TuningError",
    "first_line",
]


class RecipeError(TfcompressError, ValueError):
    """A recipe field has a wrong value, type or name."""


class UnsupportedModelError(TfcompressError, TypeError):
    """The model is not something tfcompress can compress (Keras 3, subclassed, ...)."""


class DataError(TfcompressError, ValueError):
    """Training or evaluation data is empty or does not fit the model."""


class OutputError(TfcompressError, OSError):
    """An output file or folder cannot be written."""


class TuningError(TfcompressError, ValueError):
    """A search space, objective, constraint, algorithm or search directory is not usable."""
