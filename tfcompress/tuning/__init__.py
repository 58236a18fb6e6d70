"""``tfcompress.tuning``: search training and compression schedules with Keras Tuner.

Trials are measured where it matters: validation quality of the compressed
model (accuracy for a classifier, else the task's own headline metric, e.g.
MAE or IoU), zipped int8 ``.tflite`` size, and its latency timed with LiteRT.
The result is a true Pareto front over quality × size × latency, a table, a
plot and the chosen recipe as YAML for ``tfcompress optimize --recipe``.

Example:
    >>> from tfcompress.tuning import tune
    >>> result = tune("digits_cnn", "digits", algorithm="hyperband", epochs=3,  # doctest: +SKIP
    ...               constraints=["size_kb<=20"], directory="tune-out")
    >>> print(result.table())  # doctest: +SKIP
"""

from tfcompress.errors import TuningError
from tfcompress.tuning.objectives import Constraint, pareto_front, parse_constraint, parse_objectives
from tfcompress.tuning.search import TuneResult, load_results, tune
from tfcompress.tuning.space import Param, SearchSpace

__all__ = [
    "tune",
    "TuneResult",
    "load_results",
    "SearchSpace",
    "Param",
    "TuningError",
    "Constraint",
    "parse_constraint",
    "parse_objectives",
    "pareto_front",
    "CompressionTuner",
]


def __getattr__(name):
    # The tuner imports TensorFlow and Keras Tuner; load it only when asked.
    if name == "CompressionTuner":
        from tfcompress.tuning.tuner import CompressionTuner

        return CompressionTuner
    raise AttributeError(name)
