"""A latency plan's families: each channel group and residual block priced in predicted ms, per file format.

:func:`families` is step 2 of a latency plan (:mod:`tfcompress.target.plan`).
Every channel group's thinning (:func:`~tfcompress.target.sensitivity.channel_options`)
and every residual block's removal (:func:`~tfcompress.target.depthplan.depth_units`)
is priced from measured op costs (:mod:`tfcompress.target.latency`) as an int8
file; where plain int8 is not :data:`FLOAT_PLAN` times faster than float32 on
this machine (an x86 CPU without VNNI: ResNet-8's int8 ran at 0.70x float32),
priced as a float32 file too: a second family the allocation chooses from. Each
family's ms are scaled to its own measured reference file.

Example:
    >>> fams, units, note = families(model, xs, ys, scorer, 2, ref, (0.25, 0.5), tune_x)  # doctest: +SKIP
    >>> sorted(fams)  # doctest: +SKIP
    ['float32', 'int8']
"""

from tfcompress.target.depthplan import depth_units
from tfcompress.target.joint import tuned_channel_units
from tfcompress.target.sensitivity import channel_options, priced_as

__all__ = ["families", "FLOAT_PLAN"]

#: A latency plan prices thinned float32 files beside int8 ones unless plain int8 runs this many times float32's
#: speed (AVX2 without VNNI: ResNet-8's int8 ran at 0.70x float32; priced in int8 alone, its plan reached 1.42x).
FLOAT_PLAN = 1.25


def families(model, xs, ys, scorer, threads, ref, thin, tune_x, say=None):
    """``({format: (units, reference ms)}, units, note or None)``: the latency plan's priced families.

    Args:
        model: the trained tf_keras model.
        xs, ys: the scan's planning samples.
        scorer: the task's :class:`~tfcompress.scoring.Scorer`.
        threads: XNNPACK threads of the timings.
        ref: ``{"float32": {"ms": ...}, "int8": {"ms": ...}}``, the reference files timed side by side.
        thin: falsy: the candidates are scored untuned and no block is removed.
        tune_x: the inputs each thinned candidate is fine-tuned on briefly.
        say: called with a line as each step of the scan starts (a long one: each thinned
            candidate is converted and priced, then fine-tuned). Defaults to `None`.

    Returns:
        The families (each ``(units priced in that format's ms, its reference file's ms)``), the
        units as scanned (both formats' prices), and the note saying why float32 was priced (or None).
    """
    say = say or (lambda line: None)
    modes = ("int8", "float32") if ref["int8"]["ms"] * FLOAT_PLAN > ref["float32"]["ms"] else ("int8",)
    say(f"scan: each channel group thinned alone, scored and priced as {' and '.join(modes)} files")
    units, base_cost = channel_options(model, xs, ys, scorer=scorer, threads=threads, modes=modes)
    priced = (units[0].options[0].prices if units else None) or {}  # none: priced in FLOPs
    bases = {m: priced[m] for m in modes if m in priced} or {"int8": base_cost}
    if thin:  # each thinned candidate's drop after a short fine-tuning, as size plans score theirs
        say(f"scan: {sum(len(u.options) - 1 for u in units)} thinned candidates fine-tuned briefly")
        units = tuned_channel_units(units, model, xs, ys, scorer, tune_x)
        say("scan: each residual block removed alone, priced and fine-tuned briefly")
        units = [*units, *depth_units(model, xs, ys, bases, units, scorer, threads, tune_x)]
    out = {m: (priced_as(units, m, ref[m]["ms"] / b), ref[m]["ms"]) for m, b in bases.items()}
    return out, units, (_float_note(ref, threads) if "float32" in out else None)


def _float_note(ref, threads):
    """Why a latency plan priced float32 files too: plain int8 is not clearly faster than float32 on this machine."""
    i8, f32 = ref["int8"]["ms"], ref["float32"]["ms"]
    return (f"plain int8 runs at {f32 / i8:.2f}x float32's speed on this machine ({i8:.3g} vs {f32:.3g} ms, {threads} "
            f"thread(s); under {FLOAT_PLAN:g}x): the latency plan priced thinned float32 files beside int8 ones")
