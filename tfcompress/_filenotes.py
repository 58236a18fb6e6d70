"""The notes a report leads with about its files: worse than the float32 file in the task's metric, or slower.

Example:
    >>> worse_than_float([{"name": "float32", "accuracy": 0.9}, {"name": "int8", "accuracy": 0.5}], "accuracy")[0][:12]
    'int8.tflite '
"""

import os

import tflite_export
from tfcompress.report import lower_is_better
from tflite_export import opreport

__all__ = ["worse_than_float", "slower_than_float", "none_faster"]


def worse_than_float(files, metric):
    """A note for every file much worse than the float32 file in the task's metric (5 points of
    accuracy, or a tenth of the float32 file's value of another metric): never a broken file
    behind a plausible table.

    Example:
        >>> worse_than_float([{"name": "float32", "score": 0.9}, {"name": "int8", "score": 0.3}], "iou")[0][:34]
        'int8.tflite scores iou 0.3 against'
    """
    key = "accuracy" if metric == "accuracy" else "score"
    base = next((f.get(key) for f in files if f["name"] == "float32"), None)
    notes = []
    for f in files:
        v = f.get(key)
        if f["name"] == "float32" or base is None or v is None:
            continue
        loss = (v - base) if lower_is_better(metric) else (base - v)
        if loss > (0.05 if metric == "accuracy" else 0.1 * abs(base)):
            notes.append(f"{f['name']}.tflite scores {metric} {v:.4g} against float32.tflite's {base:.4g}: the recipe "
                         "is too aggressive for this model; fine-tune longer (more epochs per stage), prune less, "
                         "or keep QAT only.")
    return notes


def slower_than_float(files, threads):
    """A note for every file slower than the float32 file on the same backend (never a slower file without a word).

    Example:
        >>> slower_than_float([{"name": "float32", "median_ms": 1.0}, {"name": "int8", "median_ms": 2.0}], 1)[0][:40]
        'int8.tflite is slower than float32.tflit'
    """
    base = next((f.get("median_ms") for f in files if f["name"] == "float32"), None)
    notes = []
    for f in files:
        ms = f.get("median_ms")
        if f["name"] != "float32" and base and ms and ms > base:
            notes.append(
                f"{f['name']}.tflite is slower than float32.tflite on XNNPACK here ({ms:.3g} ms vs {base:.3g} ms, "
                f"{base / ms:.2f}x the speed, {threads} thread(s)): {_why_slower(f.get('path'))}; ship float32 "
                "for speed, or compare backends with `tfcompress bench --accelerator cpu,builtin`.")
    return notes


def none_faster(files, threads):
    """One note when no compressed file runs faster than the float32 file here: the report's first line
    then says that the files are smaller, not faster, on this machine.

    Example:
        >>> none_faster([{"name": "float32", "median_ms": 1.0}, {"name": "int8", "median_ms": 2.0}], 1)[0][:46]
        'No compressed file is faster than float32.tfli'
    """
    base = next((f.get("median_ms") for f in files if f["name"] == "float32"), None)
    timed = [f for f in files if f["name"] != "float32" and f.get("median_ms")]
    if not base or not timed or any(f["median_ms"] < base for f in timed):
        return []
    best = min(timed, key=lambda f: f["median_ms"])
    return [f"No compressed file is faster than float32.tflite on this machine: the fastest, {best['name']}.tflite, "
            f"runs {best['median_ms']:.3g} ms against float32's {base:.3g} ms ({threads} thread(s), XNNPACK). The "
            "compressed files are smaller here, not faster: ship float32 where speed matters (notes below say why)."]


def _why_slower(path):
    """Which ops of the file fall back to builtin kernels (tflite_export.opreport), or the kernels' cost."""
    plain = "on this CPU and graph its int8 kernels do not pay for their quantize/requantize work"
    if not path or not os.path.isfile(path):
        return plain
    try:
        d = opreport.delegation(path)
    except tflite_export.ExportError:
        return plain
    return opreport.fallback_summary(d) + ("" if d.fallback else f"; {plain}")
