"""tflite_export: TFLite export, evaluation and on-device timing for any tf_keras model.

Works standalone (no dependency on the rest of tfcompress)::

    import tflite_export as tfl
    rep = tfl.export(model, "m.tflite", mode="int8", representative_data=x_train[:200],
                     metadata={"recipe": "prune50"})
    acc = tfl.evaluate("m.tflite", x_test, y_test)
    info = tfl.inspect("m.tflite")            # metadata, ops, dtypes, quantization, MACs
    errs = tfl.layer_errors(model, "m.tflite", x_test[:32])
    t = tfl.benchmark("m.tflite", threads=2)
    tfl.roofline.add_roofline(t)              # MACs, GOPS, fraction of this machine's peak
    g = tfl.benchmark("m.tflite", accelerator="gpu")   # status "unavailable: ..." without a GPU

Every user-facing failure raises :class:`ExportError` with a one-line message.
"""

from .android import benchmark_on_device, parse_benchmark_model_output
from .benchmark import ACCELERATORS, Timing, benchmark, probe_accelerator
from .convert import IO_TYPES, MODES, ExportReport, __version__, convert_bytes, export, zipped_size
from .errors import ExportError
from .evaluate import agreement, closeness, evaluate, predict
from .inspection import ModelInfo, count_macs, inspect, read_metadata
from .roofline import measure_peak_gops
from .safety import check_file
from .strip import strip_export
from .validate import LayerError, LayerErrorReport, layer_errors

__all__ = [
    "ACCELERATORS",
    "ExportError",
    "ExportReport",
    "IO_TYPES",
    "LayerError",
    "LayerErrorReport",
    "MODES",
    "ModelInfo",
    "Timing",
    "__version__",
    "agreement",
    "benchmark",
    "benchmark_on_device",
    "check_file",
    "closeness",
    "convert_bytes",
    "count_macs",
    "evaluate",
    "export",
    "inspect",
    "layer_errors",
    "measure_peak_gops",
    "parse_benchmark_model_output",
    "predict",
    "probe_accelerator",
    "read_metadata",
    "strip_export",
    "zipped_size",
]
