"""tfcompress's own exceptions.

Everything the library raises on bad input derives from :class:`TfcompressError`,
so callers (and the CLI) can catch one type. Each message says what is wrong and
how to fix it, in one line.
"""

from tflite_export.errors import ExportError, first_line

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


class TfcompressError(Exception):
    """Base class of every error tfcompress raises on bad input."""


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
