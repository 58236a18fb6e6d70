"""Budget mode's per-op precision choice: no file slower than float32 when a mix exists that is not.

When the budget file (int8 or int4) runs slower than the float32 file of the
same model on the timing backend (LiteRT with XNNPACK, same threads), the
fine-tuned model's float32 ``.tflite`` is quantized op by op with
ai-edge-quantizer (:class:`tflite_export.mixed.Mixer`) and each mix is timed
beside the float32 file:

1. every op ``float16`` (float16 weights, float32 arithmetic: XNNPACK runs it
   at float32 speed, half the weight bytes), and every op ``float32`` (the
   float32 file itself); the smaller of those not slower;
2. from there, one weight layer at a time, largest first, lowered to
   ``int4`` (dynamic range) or ``int8``, each change kept while the file stays
   within :data:`TOLERANCE` of the float32 latency and within the drop
   budget.

The kept mix is the smallest such file (or, minimising latency, the fastest).
It is reported with the per-layer precisions that make it, so it can be
written with :func:`tflite_export.mixed.export_mixed` or the ``precision``
recipe stage; none is kept when even the float32 file times slower than
itself beyond the tolerance (timing noise) or misses the drop budget.

Example:
    >>> fast = faster_mix(result.model, rep_x, xv, yv, ref_acc, threads=1, max_drop=1.0)  # doctest: +SKIP
    >>> fast["per_layer"], fast["default"]  # doctest: +SKIP
    ({'fc1': 'int4'}, 'float16')
"""

import io
import os
import shutil
import tempfile
import zipfile

import tflite_export
from tfcompress._keras import keras, quiet_native_logs
from tfcompress.errors import TfcompressError, first_line
from tfcompress.scoring import take
from tflite_export.mixed import Mixer, export_mixed, weight_layers

__all__ = ["faster_mix", "float_model", "export_file", "side_by_side", "TOLERANCE", "LOWER"]

#: A mix counts as not slower than float32 within this share of the float32 median (timing noise).
TOLERANCE = 0.05
#: The precisions a weight layer is lowered to, tried in this order.
LOWER = ("int4", "int8")


def _zipped(data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.tflite", data)
    return len(buf.getvalue())


def float_model(model, snap=False):
    """A plain float copy of a QAT model: each wrapper replaced by its layer (the trained float weights), the input
    quantizer by an identity; a model without QAT wrappers comes back as it is.

    With ``snap``, each quantized weight is the value the QAT model computes with (its weight quantizer applied,
    e.g. on the 4-bit grid of ``quantization.weights: int4``) instead of the float weight it trains: an int8
    export then stores those grid values in int8 tensors.

    Example:
        >>> [type(layer).__name__ for layer in float_model(qat_model).layers]  # doctest: +SKIP
        ['Activation', 'Conv2D', 'Flatten', 'Dense', 'Dense']
    """
    kinds = {type(layer).__name__ for layer in model.layers}
    if not kinds & {"QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer"}:
        return model

    def unwrap(layer):
        kind = type(layer).__name__
        if kind in ("QuantizeWrapper", "QuantizeWrapperV2"):
            config = layer.layer.get_config()
            act = config.get("activation")
            if isinstance(act, dict) and act.get("class_name") == "QuantizeAwareActivation":
                config["activation"] = act["config"]["activation"]
            return layer.layer.__class__.from_config(config)
        if kind == "QuantizeLayer":
            return keras.layers.Activation("linear", name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    out = keras.models.clone_model(model, clone_function=unwrap)
    for new, old in zip(out.layers, model.layers):
        by_name = {v.name.split("/")[-1]: v.numpy() for v in old.weights}  # kernel:0, bias:0 (beside quantizers')
        for weight, quantizer, variables in (getattr(old, "_weight_vars", None) or []) if snap else []:
            by_name[weight.name.split("/")[-1]] = quantizer(weight, False, weights=variables).numpy()  # as QAT runs
        if new.weights:
            new.set_weights([by_name[v.name.split("/")[-1]] for v in new.weights])
    return out


def faster_mix(model, rep_x, x, y, ref_acc, threads, max_drop=None, max_bytes=None, minimize="size", say=None,
               scorer=None):
    """The smallest (or fastest) per-op precision mix not slower than the float32 file (see the module docstring).

    Args:
        model: the fine-tuned tf_keras model.
        rep_x: calibration inputs (a few hundred at most are used).
        x, y: the validation data the drop is measured on.
        ref_acc: the reference score (the float model's, on ``x, y``): an
            accuracy, or with ``scorer`` its points.
        threads: XNNPACK threads of the timings.
        max_drop: the drop budget (points), or None. Defaults to `None`.
        max_bytes: the size budget (zipped bytes), or None. Defaults to `None`.
        minimize: ``"size"`` (the smallest file that is not slower) or
            ``"latency"`` (the fastest). Defaults to `"size"`.
        say: called with one line per mix tried. Defaults to `None`.
        scorer: a :class:`~tfcompress.scoring.Scorer`: drops in the task's
            metric. Defaults to `None` (accuracy points).

    Returns:
        ``{"per_layer", "default", "accuracy", "drop", "zipped_bytes", "ms",
        "float32_ms", "tried"}`` for the kept mix, or ``{"error": ...}`` /
        ``{"none": True, "tried": [...]}`` when no mix is kept.
    """
    say = say or (lambda line: None)
    tmp = tempfile.mkdtemp(prefix="tfcompress-mix-")
    tried = []

    def measure(per_layer, default):
        data = mixer.quantize(per_layer, default)
        path = os.path.join(tmp, f"mix{len(tried)}.tflite")
        with open(path, "wb") as f:
            f.write(data)
        with quiet_native_logs():
            acc = tflite_export.evaluate(path, x, y) if scorer is None else scorer.file(path, x, y)
            ms = tflite_export.benchmark(path, threads=threads, min_runs=50, min_seconds=0.3).median_ms
            f32 = tflite_export.benchmark(f32_path, threads=threads, min_runs=50, min_seconds=0.3).median_ms
        row = {"per_layer": dict(per_layer), "default": default,
               **({"accuracy": acc} if scorer is None else {scorer.name: scorer.value(acc)}),
               "drop": round(100.0 * (ref_acc - acc) if scorer is None else scorer.drop(ref_acc, acc), 3),
               "zipped_bytes": _zipped(data), "ms": ms, "float32_ms": f32}
        row["ok"] = (ms <= f32 * (1 + TOLERANCE) and (max_drop is None or row["drop"] <= max_drop + 1e-9)
                     and (max_bytes is None or row["zipped_bytes"] <= max_bytes))
        tried.append(row)
        say(f"mix {default} + {per_layer or '{}'}: {ms:.3g} ms (float32 {f32:.3g}), {row['zipped_bytes']} B zipped, "
            f"drop {row['drop']:.2f}: {'kept' if row['ok'] else 'no'}")
        return row

    try:
        with quiet_native_logs():
            float_bytes, _ = tflite_export.convert_bytes(float_model(model, snap=True), "float32")
        f32_path = os.path.join(tmp, "float32.tflite")
        with open(f32_path, "wb") as f:
            f.write(float_bytes)
        mixer = Mixer(float_bytes, take(rep_x, 100))
        bases = [measure({}, "float16"), measure({}, "float32")]  # float32: the float32 file itself
        ok = [r for r in bases if r["ok"]]
        if not ok:
            return {"none": True, "tried": tried}
        best = min(ok, key=lambda r: r["zipped_bytes"] if minimize == "size" else r["ms"])
        sizes = {w["layer"]: w["params"] for w in weight_layers(float_bytes)}
        per_layer = {}
        for layer in sorted(mixer.layers, key=lambda n: -sizes.get(n, 0)):
            for p in LOWER:
                row = measure({**per_layer, layer: p}, best["default"])
                better = row["zipped_bytes"] < best["zipped_bytes"] if minimize == "size" else row["ms"] < best["ms"]
                if row["ok"] and better:
                    per_layer, best = row["per_layer"], row
                    break
    except TfcompressError as e:
        return {"error": first_line(e), "tried": tried}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**{k: v for k, v in best.items() if k != "ok"}, "tried": tried}


def export_file(result, path, representative_data):
    """Write the file budget mode chose for ``result``: the per-op mix when it shipped one, else its int8/int4 file.

    Args:
        result: an ``optimize(..., target=...)`` result.
        path: the ``.tflite`` path.
        representative_data: calibration inputs (a few hundred).

    Returns:
        The :class:`tflite_export.ExportReport` of the written file.

    Example:
        >>> export_file(result, "model.tflite", x_train[:200]).zipped_bytes  # doctest: +SKIP
        9301
    """
    b = result.report.budget
    strip = bool(b.get("strip_names"))  # a size budget's files: inner tensor names emptied, as the rounds measured
    if b.get("file") == "mixed":
        fast = b["faster_file"]
        return export_mixed(float_model(result.model, snap=True), path, fast["per_layer"], fast["default"],
                            representative_data[:100], strip_names=strip)
    return tflite_export.export(result.model, path, mode=b.get("weights", "int8"),
                                representative_data=representative_data, strip_names=strip)


def side_by_side(paths, threads, passes=3):
    """Each file's median latency, the files timed alternately ``passes`` times (the median of the passes).

    Budget mode's rounds are each timed once, in their own sitting, on a machine
    others share (ResNet-8 at 2 threads: one round timed 0.063 ms between two at
    0.027-0.033); alternated, the files share whatever load there is, and the
    fastest met round is chosen on these.

    Args:
        paths: ``.tflite`` files.
        threads: XNNPACK threads.
        passes: rounds over all the files. Defaults to `3`.

    Returns:
        A list of milliseconds, one per path.

    Example:
        >>> side_by_side(["round-1.tflite", "round-2.tflite"], threads=2)  # doctest: +SKIP
        [0.0301, 0.0274]
    """
    times = [[] for _ in paths]
    for _ in range(passes):
        for i, p in enumerate(paths):
            times[i].append(tflite_export.benchmark(p, threads=threads, min_runs=20, min_seconds=0.2).median_ms)
    return [sorted(t)[len(t) // 2] for t in times]
