"""The notes a report leads with about its files: worse than the float32 file in the task's metric, slower,
or not holding the weights its name says.

Example:
    >>> worse_than_float([{"name": "float32", "accuracy": 0.9}, {"name": "int8", "accuracy": 0.5}], "accuracy")[0][:12]
    'int8.tflite '
"""

import os

import tflite_export
from tfcompress.report import lower_is_better
from tflite_export import opreport
from tflite_export.int4 import int4_weights

__all__ = ["worse_than_float", "slower_than_float", "none_faster", "main_slower", "fast_not_fast", "budget_slower",
           "unlike_keras", "stored_weights", "misnamed"]


def _value(files, name, key):
    """The ``key`` value (accuracy, score or median ms) of the file called ``name``, or None."""
    return next((f.get(key) for f in files if f["name"] == name), None)


def worse_than_float(files, metric):
    """A note for every file much worse than the float32 file in the task's metric (5 points of
    accuracy, or a tenth of the float32 file's value of another metric): never a broken file
    behind a plausible table.

    Example:
        >>> worse_than_float([{"name": "float32", "score": 0.9}, {"name": "int8", "score": 0.3}], "iou")[0][:34]
        'int8.tflite scores iou 0.3 against'
    """
    key = "accuracy" if metric == "accuracy" else "score"
    base = _value(files, "float32", key)
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
    base = _value(files, "float32", "median_ms")
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
    base = _value(files, "float32", "median_ms")
    timed = [f for f in files if f["name"] != "float32" and f.get("median_ms")]
    if not base or not timed or any(f["median_ms"] < base for f in timed):
        return []
    best = min(timed, key=lambda f: f["median_ms"])
    return [f"No compressed file is faster than float32.tflite on this machine: the fastest, {best['name']}.tflite, "
            f"runs {best['median_ms']:.3g} ms against float32's {base:.3g} ms ({threads} thread(s), XNNPACK). The "
            "compressed files are smaller here, not faster: ship float32 where speed matters (notes below say why)."]


def main_slower(files, name, threads):
    """One note when the file budget mode ships as its main file runs slower than float32: said first,
    since a size plan may ship a smaller file that is slower (int4 kernels, fallbacks) than doing nothing.

    Example:
        >>> main_slower([{"name": "float32", "median_ms": 1.0}, {"name": "int4", "median_ms": 2.0}], "int4", 1)[0][:37]
        'int4.tflite, the file budget mode shi'
    """
    base = _value(files, "float32", "median_ms")
    got = _value(files, name, "median_ms")
    if not base or not got or got <= base:
        return []
    return [f"{name}.tflite, the file budget mode ships, runs slower than float32.tflite on this machine: "
            f"{got:.3g} ms against {base:.3g} ms ({base / got:.2f}x the speed, {threads} thread(s)); it is "
            "smaller, not faster. For speed, ship the fastest file in the table, or run budget mode with "
            "--minimize latency."]


def fast_not_fast(files, threads, tolerance):
    """One note when ``fast.tflite`` (budget mode's per-op mix, chosen for timing within ``tolerance`` of
    float32) times slower than that at shipping: a file named fast must not be slow without a word.

    Example:
        >>> fast_not_fast([{"name": "float32", "median_ms": 1.0}, {"name": "fast", "median_ms": 1.2}], 1, 0.05)[0][:44]
        'fast.tflite is not fast on this machine now:'
    """
    base = _value(files, "float32", "median_ms")
    got = _value(files, "fast", "median_ms")
    if not base or not got or got <= base * (1 + tolerance):
        return []
    return [f"fast.tflite is not fast on this machine now: {got:.3g} ms against float32.tflite's {base:.3g} ms "
            f"({base / got:.2f}x the speed, {threads} thread(s)), though budget mode timed it within "
            f"{100 * tolerance:.0g}% of float32 when it chose it (a loaded machine, or timing noise): time both "
            "again with `tfcompress bench` before shipping it for speed."]


def budget_slower(files, main, threads, tolerance):
    """What budget mode's report says first about speed: its main file slower than float32
    (:func:`main_slower`) and a ``fast.tflite`` beside it that is not fast (:func:`fast_not_fast`);
    nothing when no compressed file is faster (:func:`none_faster` leads then).

    Example:
        >>> files = [{"name": "float32", "median_ms": 1.0}, {"name": "int8", "median_ms": 2.0},
        ...          {"name": "fast", "median_ms": 0.9}]
        >>> [n[:11] for n in budget_slower(files, "int8", 1, 0.05)]
        ['int8.tflite']
    """
    if none_faster(files, threads):
        return []
    return main_slower(files, main, threads) + ([] if main == "fast" else fast_not_fast(files, threads, tolerance))


#: Agreement with its Keras model under which a file is said to compute something else: float32 files, others.
AGREEMENT_FLOOR = {"float32": 0.99, "other": 0.9}


def unlike_keras(files):
    """A note for every file that disagrees with the Keras model it came from (top-1 agreement for a
    classifier, output closeness otherwise): a float32 file must compute what Keras computes, so a
    converter fault never hides behind a plausible accuracy.

    Example:
        >>> unlike_keras([{"name": "float32", "agreement": 0.65}, {"name": "int8", "agreement": 0.97}])[0][:42]
        'float32.tflite agrees with its Keras model'
    """
    notes = []
    for f in files:
        a = f.get("agreement")
        floor = AGREEMENT_FLOOR["float32" if f["name"] == "float32" else "other"]
        if a is not None and a < floor:
            notes.append(f"{f['name']}.tflite agrees with its Keras model on {a:.1%} of the test data (expected "
                         f">= {floor:.0%}): the converted file computes something else than the model; find the "
                         "layer involved with `tflite_export.layer_errors(model, path, x)`.")
    return notes


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


def stored_weights(path):
    """How a file stores its conv / depthwise conv / fully connected weights: ``"int8"``, ``"int4"``,
    ``"float32"``, or several joined by ``+`` (``"int4+int8"``); None for a file without such ops."""
    try:
        with open(path, "rb") as f:
            kinds = sorted(set(int4_weights(f.read()).values()))
    except (OSError, tflite_export.ExportError):
        return None
    return "+".join(kinds) or None


def misnamed(files):
    """A note when ``int8.tflite`` holds int4 weights (a model trained with 4-bit weights converts to int4
    tensors in either mode, and the main job could not copy it to float to store its grid values as int8):
    its name is not what it holds, and beside ``int4.tflite`` it is the same file.

    Example:
        >>> misnamed([{"name": "int8", "weights": "int4"}, {"name": "int4", "weights": "int4"}])[0][:43]
        'int8.tflite holds int4 weights, not int8: t'
    """
    rows = {f["name"]: f for f in files}
    w8 = (rows.get("int8") or {}).get("weights") or ""
    if "int4" not in w8.split("+"):
        return []
    same = "int4" in rows and rows["int4"].get("weights") == w8
    return [f"int8.tflite holds {w8} weights, not int8: the model was trained with 4-bit weights, which convert to "
            "int4 tensors (two a byte) in either mode" + (
                ", so it is int4.tflite again, apart from its metadata; ship int4.tflite" if same else "")
            + " (report.json's files[].weights says what each file stores)."]
