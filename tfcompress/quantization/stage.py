"""The ``quantization`` (QAT) stage at work inside :func:`tfcompress.optimize`, its ``check``
columns and its entry in :mod:`tfcompress.techniques`.

Example:
    >>> from tfcompress.quantization.stage import TECHNIQUE
    >>> [c.key for c in TECHNIQUE.columns]
    ['quantizable', 'binary', 'low_bit']
"""

import os

import tflite_export
from tfcompress import quantization
from tfcompress.errors import RecipeError
from tfcompress.quantization import binary, configs, nbit
from tfcompress.quantization.config import SCHEME_NEEDS, Quantization, qat_scheme
from tfcompress.technique import CheckColumn, Knob, StageResult, Technique

__all__ = ["TECHNIQUE", "run_stage"]

_SCHEME_NAMES = {
    "qat": "8-bit QAT",
    "pqat": "8-bit QAT, sparsity preserved (PQAT)",
    "cqat": "8-bit QAT, clusters preserved (CQAT)",
    "pcqat": "8-bit QAT, clusters and sparsity preserved (PCQAT)",
}


def run_stage(run, model, stage):
    """Annotate for QAT in the scheme that keeps what earlier stages made, and fine-tune.

    The QAT model is handed on as is (its int8 ``.tflite`` is the deliverable).
    """
    epochs = run.stage_epochs(stage)
    scheme = qat_scheme(stage, pruned="pruning" in run.ran, clustered="clustering" in run.ran)
    result = StageResult(model, epochs=epochs, steps=run.steps(epochs), extra={"scheme": scheme})
    with run.float16_scope("quantization", result):
        qat, result.records = quantization.wrap(model, stage, scheme=scheme)
        # sparsity and clusters kept where TF-MOT does not: n-bit kernels, the layers QAT leaves in float
        keep = [nbit.cluster_keeper(qat) if scheme in ("cqat", "pcqat") else None,
                nbit.zero_keeper(qat, quantized=stage.weights in nbit.BITS) if scheme in ("pqat", "pcqat") else None]
        result.history = run.fit(qat, epochs, callbacks=[k for k in keep if k is not None],
                                 lr_scale=stage.learning_rate_scale, stage=stage, name="quantization")
    result.model = qat
    name = nbit.describe(stage, scheme) if stage.weights in nbit.BITS else _SCHEME_NAMES[scheme]
    name = binary.describe(stage, scheme) if stage.weights in binary.FORMATS else name
    result.details = name + ("" if stage.scheme == "auto" else " (chosen in recipe)")
    return result


def quantizable_column(model, recipe):
    """``check``'s ``quantizable`` column: the quantize config QAT would use, or why none."""
    out = {}
    for layer in model.layers:
        kind, reason = configs.rule(layer)
        out[layer.name] = configs.KINDS[kind] if kind else f"no: {reason}"
    return out


def export(model, folder, recipe, report, rep_x, metadata=None):
    """The main job's extra file: ``int4.tflite`` after 4-/2-bit QAT (weights stored int4); else nothing."""
    if getattr(recipe.quantization, "weights", "int8") not in nbit.BITS:
        return {}
    return {"int4": tflite_export.export(model, os.path.join(folder, "int4.tflite"), mode="int4",
                                         representative_data=rep_x, num_samples=200, metadata=metadata)}


def check_recipe(recipe, stage):
    """A QAT scheme that preserves a stage's work needs that stage in the recipe."""
    missing = [s for s in SCHEME_NEEDS.get(stage.scheme, ()) if getattr(recipe, s) is None]
    if missing:
        # Channel pruning removes whole channels: it leaves no zero weights to preserve.
        why = " (channel pruning leaves no zero weights to keep)" if recipe.channels is not None else ""
        raise RecipeError(
            f"quantization.scheme {stage.scheme!r} preserves what the {' and '.join(missing)} stage makes, "
            f"but the recipe has no {' or '.join(missing)} stage"
            f"{why if 'pruning' in missing else ''}: add it or use scheme 'auto' or 'qat'."
        )


def _per_layer(answer):
    def column(model, recipe):
        return {layer.name: answer(layer, model, recipe) for layer in model.layers}
    return column


TECHNIQUE = Technique(
    name="quantization", recipe_class=Quantization, run=run_stage,
    columns=(CheckColumn("quantizable", "quantize", quantizable_column, needed=True),
             CheckColumn("binary", "binary", _per_layer(binary.check_answer)),
             CheckColumn("low_bit", "low-bit", _per_layer(nbit.low_bit_answer))),
    mixed_precision="QAT's fake-quantization ops need float32",
    knobs={"qat_epochs": Knob("epochs", default={"min": 1, "max": 2}, integer=True), "qat_weights": Knob("weights")},
    export=export, check_recipe=check_recipe,
)
