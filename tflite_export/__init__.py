"""tflite_export: TFLite export, evaluation and on-device timing for any tf_keras model.

Works standalone (no dependency on the rest of tfcompress)::

    import tflite_export as tfl
    rep = tfl.export(model, "m.tflite", mode="int8", representative_data=x_train[:200])
    acc = tfl.evaluate("m.tflite", x_test, y_test)
    t = tfl.benchmark("m.tflite", threads=2)
"""

from .benchmark import ACCELERATORS, Timing, benchmark
from .convert import IO_TYPES, MODES, ExportReport, __version__, export, zipped_size
from .errors import ExportError
from .evaluate import agreement, evaluate, predict
from .safety import check_file

__all__ = [
    "ACCELERATORS",
    "ExportError",
    "ExportReport",
    "IO_TYPES",
    "MODES",
    "Timing",
    "__version__",
    "agreement",
    "benchmark",
    "check_file",
    "evaluate",
    "export",
    "predict",
    "zipped_size",
]
