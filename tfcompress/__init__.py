"""tfcompress: make tf_keras models smaller and faster for phones and CPUs.

Compose TF-MOT pruning and quantization-aware training in one recipe, export
to ``.tflite`` and time it with LiteRT.

Example:
    >>> import tfcompress
    >>> result = tfcompress.optimize(model, (x, y), recipe="recipe.yaml")  # doctest: +SKIP
    >>> tflite_export.export(result.model, "model.tflite", representative_data=x)  # doctest: +SKIP
"""

from tfcompress import (  # type: ignore[attr-defined]  # models: the models/ folder, installed as tfcompress.models
    _keras,  # noqa: F401  (sets up tf_keras and quiet logs first)
    datasets,
    models,
)
from tfcompress._version import __version__
from tfcompress.channels.config import Channels
from tfcompress.check import CheckReport, check
from tfcompress.clustering.config import Clustering
from tfcompress.depth.config import Depth
from tfcompress.errors import (
    DataError,
    ExportError,
    OutputError,
    RecipeError,
    TfcompressError,
    TuningError,
    UnsupportedModelError,
)
from tfcompress.io import load_model
from tfcompress.lowrank.config import LowRank
from tfcompress.optimize import OptimizeResult, optimize
from tfcompress.precision.config import Precision
from tfcompress.pruning.config import Penalty, Pruning
from tfcompress.quantization.config import Quantization
from tfcompress.recipe import Distillation, Recipe
from tfcompress.train.config import Train

__all__ = [
    "__version__",
    "optimize",
    "OptimizeResult",
    "tune",
    "Recipe",
    "Train",
    "Depth",
    "Channels",
    "LowRank",
    "Penalty",
    "Pruning",
    "Clustering",
    "Quantization",
    "Precision",
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
    "TuningError",
]


def __getattr__(name):
    # tune() brings in Keras Tuner: loaded when first asked for, so `import tfcompress` stays as light.
    if name == "tune":
        from tfcompress.tuning.search import tune

        return tune
    raise AttributeError(f"module 'tfcompress' has no attribute {name!r}")
