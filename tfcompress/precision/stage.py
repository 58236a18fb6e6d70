"""The ``precision`` stage at work: plan during ``optimize``, ``mixed.tflite`` in the main job, the check
column, and its entry in :mod:`tfcompress.techniques`.

Example:
    >>> from tfcompress.precision.stage import check_answer
    >>> check_answer(model.get_layer("conv1"), model, recipe)   # doctest: +SKIP
    'int8'
"""

import collections
import dataclasses
import os

import tflite_export
from tfcompress.errors import RecipeError
from tfcompress.precision.config import Precision, matching
from tfcompress.precision.scan import accuracy_of, fit, plan, scan
from tfcompress.technique import CheckColumn, Knob, StageResult, Technique
from tflite_export import mixed

__all__ = ["TECHNIQUE", "run_stage", "check_answer", "export", "stage_plan", "CALIBRATION_SAMPLES"]

#: Training inputs the int8/int16x8 activations are calibrated on (the stage and the export use the same).
CALIBRATION_SAMPLES = 100
_WEIGHT_TYPES = ("Conv2D", "DepthwiseConv2D", "Conv2DTranspose", "Dense", "Conv1D", "SeparableConv2D")


def _fixed(stage, model, layers):
    kinds = {layer.name: type(layer).__name__ for layer in model.layers}
    out = {}
    for name in layers:
        p = matching(stage.per_layer, name, kinds.get(name, ""))
        if p is not None:
            out[name] = p
    return out


def _summary(per_layer):
    counts = collections.Counter(per_layer.values())
    return ", ".join(f"{n} {p}" for p, n in sorted(counts.items(), key=lambda kv: mixed.PRECISIONS.index(kv[0])))


def run_stage(run, model, stage):
    """The recipe's ``precision`` stage: decide each layer's precision (see :class:`~tfcompress.precision.Precision`).

    The model is returned unchanged; the report entry's ``plan`` holds ``{layer: precision}``
    and ``run.recipe`` gets the plan as ``precision.per_layer``.

    Example:
        >>> run_stage(run, model, Precision(max_drop=1.0)).extra["plan"]   # doctest: +SKIP
    """
    x_train = run.train.arrays()[0]
    val = run.val if run.val is not None else run.train
    x_val, y_val = val.arrays()[:2]
    x_val, y_val = x_val[: stage.samples], y_val[: stage.samples]
    float_bytes, _ = tflite_export.convert_bytes(model, "float32")
    mixer = mixed.Mixer(float_bytes, x_train[:CALIBRATION_SAMPLES])
    fixed = _fixed(stage, model, mixer.layers)
    float_acc = accuracy_of(float_bytes, x_val, y_val)
    info = {"float32": {"bytes": len(float_bytes), "accuracy": float_acc}}
    int8 = mixer.quantize({}, "int8")
    info["int8"] = {"bytes": len(int8), "accuracy": accuracy_of(int8, x_val, y_val)}
    say = run.progress or (print if run.verbose else None)
    if stage.planned and len(fixed) < len(mixer.layers):
        s = scan(mixer, x_val, y_val, stage.candidates, fixed, stage.default, progress=say)
        p = plan(s, stage.max_drop, stage.max_bytes)
        f = fit(mixer, s, p, x_val, y_val, stage.max_drop, stage.max_bytes)
        per_layer, data, met = f.per_layer, f.data, f.met
        info.update(scan=s.to_dict(), moves=[list(m) for m in p.moves], cut=p.cut, tries=[list(t) for t in f.tries])
    else:
        per_layer = {layer: fixed.get(layer, stage.default) for layer in mixer.layers}
        data = mixer.quantize(per_layer, stage.default)
        met = None
    acc = accuracy_of(data, x_val, y_val)
    drop = 100 * (float_acc - acc)
    if met is None and stage.planned:
        met = ((stage.max_drop is None or drop <= stage.max_drop + 1e-9)
               and (stage.max_bytes is None or len(data) <= stage.max_bytes))
    real = mixed.layer_precisions(data)
    info.update(plan=per_layer, layer_precisions=real, bytes=len(data), zipped_bytes=tflite_export.zipped_size(data),
                accuracy=acc, drop=drop, met=met)
    budget = []
    if stage.max_drop is not None:
        budget.append(f"max_drop {stage.max_drop:g} pt")
    if stage.max_bytes is not None:
        budget.append(f"max_bytes {stage.max_bytes:,}")
    details = (f"per-layer precision: {_summary(per_layer)} (others {stage.default}); {len(data):,} B "
                       f"(int8 file {len(int8):,} B), {drop:+.2f} pt vs float32 on {len(x_val)} examples"
                       + (f"; budget {', '.join(budget)}: {'met' if met else 'NOT met'}" if budget else ""))
    run.recipe = run.recipe.replace(precision=dataclasses.replace(stage, per_layer=dict(per_layer)))
    records = {layer: f"precision: {real.get(layer, p)}" for layer, p in per_layer.items()}
    return StageResult(model, records, epochs=0, steps=None, details=details, extra=info)


def stage_plan(report):
    """``{layer: precision}`` the precision stage of an optimize report chose, or None.

    Example:
        >>> stage_plan(result.report)   # doctest: +SKIP
        {'conv1': 'float16', 'dense': 'int8'}
    """
    for s in getattr(report, "stages", None) or []:
        if s.get("name") == "precision" and s.get("plan") is not None:
            return s["plan"]
    return None


def export(model, folder, recipe, report, rep_x, metadata=None):
    """The main job's extra file: ``mixed.tflite``, the precision stage's plan applied to ``model``.

    Returns:
        ``{"mixed": <tflite_export result>}``, or ``{}`` without a plan.

    Example:
        >>> export(result.model, "out", recipe, result.report, x_train)["mixed"].path   # doctest: +SKIP
        'out/mixed.tflite'
    """
    per_layer = stage_plan(report)
    if per_layer is None or recipe.precision is None:
        return {}
    return {"mixed": mixed.export_mixed(model, os.path.join(folder, "mixed.tflite"), per_layer,
                                        recipe.precision.default, rep_x[:CALIBRATION_SAMPLES], metadata)}


def check_answer(layer, model, recipe):
    """The ``check`` column: the precision a layer gets, or what the scan may give it.

    None when the recipe has no precision stage or the layer has no weights.

    Example:
        >>> from tfcompress.recipe import Precision, Recipe
        >>> recipe = Recipe(quantization=None, precision=Precision())
        >>> check_answer(model.get_layer("dense"), model, recipe)  # doctest: +SKIP
        'int8'
    """
    stage = getattr(recipe, "precision", None)
    if stage is None or type(layer).__name__ not in _WEIGHT_TYPES:
        return None
    p = matching(stage.per_layer, layer.name, type(layer).__name__)
    if p is not None:
        return p
    if stage.planned:
        return "scan: " + "|".join(stage.candidates) + "|float32"
    return stage.default


def preflight(run, stage):
    """Per-layer precision of the float model's file cannot follow QAT, which trains every layer for int8."""
    if run.recipe.quantization is not None:
        raise RecipeError("precision chooses each layer's precision of the float model's file, but quantization (QAT) "
                          "trains every layer for int8: set quantization to null, or drop the precision stage.")


TECHNIQUE = Technique(
    name="precision", recipe_class=Precision, run=run_stage,
    columns=(CheckColumn("precision", "precision", lambda model, recipe: {
        layer.name: check_answer(layer, model, recipe) for layer in model.layers}),),
    knobs={"precision_max_drop": Knob("max_drop")}, export=export, preflight=preflight,
)
