"""tfcompress: make tf_keras models smaller and faster for phones and CPUs.

Compose TF-MOT pruning and quantization-aware training in one recipe, export
to ``.tflite`` and time it with LiteRT.

Example:
    >>> import tfcompress
    >>> result = tfcompress.optimize(model, (x, y), recipe="recipe.yaml")  # doctest: +SKIP
    >>> tflite_export.export(result.model, "model.tflite", representative_data=x)  # doctest: +SKIP
"""

from tfcompress import (
    _keras,  # noqa: F401  (sets up tf_keras and quiet logs first)
    datasets,
    models,
)
from tfcompress._version import __version__
from tfcompress.check import CheckReport, check
from tfcompress.errors import (
    DataError,
    ExportError,
    OutputError,
    RecipeError,
    TfcompressError,
    UnsupportedModelError,
)
from tfcompress.io import load_model
from tfcompress.optimize import OptimizeResult, optimize
from tfcompress.recipe import Channels, Clustering, Depth, Distillation, Penalty, Pruning, Quantization, Recipe

__all__ = [
    "__version__",
    "optimize",
    "OptimizeResult",
    "Recipe",
    "Depth",
    "Channels",
    "Penalty",
    "Pruning",
    "Clustering",
    "Quantization",
    "Distillation",
    "datasets",
    "models",
    "load_model",
    "check",
    "CheckReport",
    "TfcompressError",
    "RecipeError",
    "UnsupportedModelError",
    "DataError",
    "OutputError",
    "ExportError",
]
