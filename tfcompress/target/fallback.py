"""Budget mode's fallbacks: the default recipe, when no planned round meets the budget or the kept one fails held-back.

:func:`tfcompress.target.plan.run` keeps the best planned round. Two cases
run the default recipe (``base``'s own stages, what ``optimize`` does without
``target=``) once, measured like a round:

- :func:`default_round`: no planned round met the budget on the planning
  samples; the default recipe is kept when it ranks better.
- :func:`held_back_fallback`: the kept round met the budget on the planning
  samples but not on the held-back ones (the plan was tuned on the first).
  The next planned round that met on the planning samples and meets on the
  held-back ones ships instead (its file is written: only the comparison
  runs), else the default recipe when its file meets the budget on both; the
  held-back samples then chose between files, and the report says so.
  Otherwise the planned round stays, NOT met, and the note gives the default
  recipe's drops. So a drop budget ships a met file whenever the default
  recipe's file meets it on both the planning and the held-back samples.

Last of all (in both), when neither a planned round nor the default recipe met the
budget and the plain int8 reference file did (the model as it is, post-training
int8, measured in step 1), that file's round (:data:`PLAIN`) is measured alike and
ships: a missed file does not ship while the plain post-training int8 file meets
the budget on the planning samples (MobileNetV2 at 2 epochs a stage: the size
plan's file lost 1.99 points on the test set and the default recipe's 2.47, the
converter's plain int8 none; the held-back check still has the last word).

All need the caller's ``attempt(label, recipe, fmt) -> (result, path, got, met)``
(fine-tune, export, measure on the planning samples) and ``rank(got, met)``.

Example:
    >>> from tfcompress.target.budget import parse_target
    >>> closest(parse_target("size<=40KB, drop<=2"), 1.5)
    'the closest that keeps the accuracy floor'
"""

from __future__ import annotations

from tfcompress.errors import TfcompressError, first_line
from tfcompress.quantization import nbit

__all__ = ["default_round", "held_back_fallback", "closest", "meets", "weights_of", "describe",
           "PLAIN", "FALLBACKS"]

#: The label of the plain int8 file's round: the model as it is (no stage), post-training int8.
PLAIN = "plain"
#: The labels of the rounds that are not planned.
FALLBACKS = ("default", PLAIN)


def describe(label):
    """How the notes name a round: ``round 2``, ``the default recipe``, ``the plain int8 file``.

    Example:
        >>> describe(2), describe("plain")
        ('round 2', 'the plain int8 file (the model post-training quantized, not fine-tuned)')
    """
    names = {"default": "the default recipe", PLAIN: "the plain int8 file (the model post-training quantized, not "
             "fine-tuned)"}
    return names.get(label, f"round {label}")


def weights_of(recipe):
    """The weight format a recipe's QAT trains (``"int4"`` for 4- and 2-bit weights: stored int4), else ``"int8"``."""
    q = recipe.quantization
    return "int4" if q is not None and q.weights in nbit.BITS else "int8"


def meets(target, got, check):
    """Whether a round's file (``got``: its bytes and ms) meets ``target`` at the held-back drop of ``check``."""
    return bool(target.met(check["drop"], got["zipped_bytes"], got["ms"]))


def closest(target, drop):
    """Why a missed round ships: the closest, among those keeping the accuracy floor when one does."""
    if target.metric != "drop" and target.floor is not None and target.keeps_floor(drop):
        return "the closest that keeps the accuracy floor"
    return "the closest"


def _run(attempt, label, recipe, history, notes, target, scorer, say, why, stages=""):
    """A fallback round once (``label``: ``"default"`` or :data:`PLAIN`), in ``history``; None if it fails."""
    name = describe(label) + stages
    say(f"{why}: {name}, once")
    try:
        result, path, got, met = attempt(label, recipe, weights_of(recipe))
    except TfcompressError as e:
        notes.append(f"{name} failed on this model: {first_line(e)}")
        return None
    history.append({"round": label, "scale": None, "weights": weights_of(recipe), "estimated_cost": None,
                    "scanned_drop": None, "predicted_drop": None, "plan": {}, **got, "met": met})
    say(f"{name}: drop {got['drop']:.3g} {scorer.unit}, {got['zipped_bytes']} B zipped, {got['ms']:.3g} ms: "
        f"{'met' if met else 'missed'}")
    return {"result": result, "plan": recipe, "met": met, "got": got, "round": label, "path": path}


def default_round(attempt, rank, base, kept, history, notes, target, scorer, say, ref=None):
    """No planned round met the budget: run the default recipe once; the better of it and ``kept`` is returned.

    Missed too, the plain int8 file runs once if its reference ``ref`` (the plain int8 file's measurement
    on the planning samples: ``drop``, ``zipped_bytes``, ``ms``) met the budget, and ships when it ranks better.
    """
    why = f"no planned round met {target.describe()}"
    stages = _stages(base)
    d = _run(attempt, "default", base, history, notes, target, scorer, say, why, f" ({stages})")
    p = None
    if (d is None or not d["met"]) and ref is not None and target.met(ref["drop"], ref["zipped_bytes"], ref["ms"]):
        p = _run(attempt, PLAIN, _plain(base), history, notes, target, scorer, say, f"{why}, nor the default recipe")
    for t in (d, p):
        if t is not None:
            t["rank"] = rank(t["got"], t["met"])
    best = min((t for t in (kept, d, p) if t is not None), key=lambda t: t["rank"], default=None)
    if best is d and d is not None:
        notes.append(f"{why}; the default recipe ({stages}) did on the planning data: it ships" if d["met"] else
                     f"{why}, nor the default recipe ({stages}); it ships, {closest(target, d['got']['drop'])}")
    elif best is p and p is not None:
        notes.append(f"{why}, nor the default recipe ({stages}): {describe(PLAIN)} "
                     + ("did on the planning data: it ships" if p["met"] else
                        f"missed too; it ships, {closest(target, p['got']['drop'])}"))
    elif d is not None:
        notes.append(f"the default recipe ({stages}) missed {target.describe()} too (drop {d['got']['drop']:.3g} "
                     f"{scorer.unit}, {d['got']['zipped_bytes']} B zipped){', and the plain int8 file' if p else ''}: "
                     "the closest planned round ships")
    return best


def held_back_fallback(attempt, base, kept, check, others, compare, history, notes, target, scorer, say, ref):
    """The kept planned round met on the planning samples, not held back: another file that meets both ships.

    First the other planned rounds that met on the planning samples, best
    ranked first (their files are written already: only the held-back
    comparison runs), then the default recipe, once, then the plain int8 file
    when its reference met the budget on the planning samples (``ref``, as
    :func:`default_round` takes it).

    Args:
        others: the other met planned rounds (``tried`` entries with ``path``
            and ``got``), in rank order.
        compare: ``compare(path) -> check``, the held-back comparison of a file
            (:func:`tfcompress.target.heldout.compare` against the float32 file).

    Returns:
        ``(kept, check)``: the first round whose file meets the budget on both
        parts, and its held-back check, else the ones given.
    """
    unit = scorer.unit
    why = (f"round {kept['round']} met {target.describe()} on the planning samples but not on the held-back ones "
           f"(drop {check['drop']:.3g} {unit})")

    def chosen(t, c, what):  # its history row has its held-back drop already
        notes.append(f"{why}; {what} meets it on both (held-back drop {c['drop']:.3g} {unit}): it ships. The "
                     "held-back samples chose between these files, so their drop is a slightly optimistic estimate")
        say(notes[-1])
        return t, c

    for t in others:
        c = compare(t["path"])
        next(h for h in history if h["round"] == t["round"])["held_out_drop"] = c["drop"]
        if meets(target, t["got"], c):
            return chosen(t, c, f"round {t['round']}")
    fallbacks = [("default", base, f" ({_stages(base)})")]
    if target.met(ref["drop"], ref["zipped_bytes"], ref["ms"]):  # the plain int8 file met it in step 1: last
        fallbacks.append((PLAIN, _plain(base), ""))
    for label, recipe, stages in fallbacks:
        name = describe(label) + stages
        d = _run(attempt, label, recipe, history, notes, target, scorer, say, why, stages)
        if d is None:
            continue
        if not d["met"]:
            notes.append(f"{name} missed {target.describe()} on the planning samples too (drop "
                         f"{d['got']['drop']:.3g} {unit})")
            continue
        d_check = compare(d["path"])
        history[-1]["held_out_drop"] = d_check["drop"]
        if not meets(target, d["got"], d_check):
            notes.append(f"{name} missed {target.describe()} on the held-back samples too (drop "
                         f"{d_check['drop']:.3g} {unit})")
            continue
        return chosen(d, d_check, name)
    notes.append(f"round {kept['round']} ships, NOT met on the held-back samples")
    return kept, check


def _stages(recipe):
    """A recipe's stages as the notes name them: ``pruning → quantization``, or ``no stage``."""
    return " → ".join(n for n, _ in recipe.stages) or "no stage"


def _plain(base):
    """``base`` with every stage off: its file is the model's plain post-training int8 conversion."""
    return base.replace(**{n: None for n, _ in base.stages})
