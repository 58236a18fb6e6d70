"""The budget section of the report (``report.budget["markdown"]``): the target, rounds, held-back check, plan.

Each round's row says its scanned drop, the drop predicted on the file
(:mod:`tfcompress.target.predict`) and the drop measured on the file.

Example:
    >>> print(markdown(res.report.budget))  # doctest: +SKIP
"""

from tfcompress.report import markdown_table
from tfcompress.target.fallback import FALLBACKS, PLAIN, describe

__all__ = ["markdown"]


#: The setting keys of the structural units (a channel group's ratio, a Dense layer's rank); the rest are weights'.
_OWN = {"channels": ("ratio",), "rank": ("rank",)}


def _scanned(units, name, setting):
    """The scanned drop of a layer's plan setting: its weight option's plus its channel and rank options'."""
    total = 0.0
    for u in units:
        if u["name"] == name:
            own = _OWN.get(u.get("kind"), ())
            want = {k: v for k, v in setting.items()
                    if (k in own if own else not any(k in keys for keys in _OWN.values()))} or None
            o = next((o for o in u["options"] if o["setting"] == want), None) if want else None
            total += o["drop_points"] * u.get("drop_weight", 1.0) if o else 0.0
    return total


def markdown(b):
    """The budget section of the report: the target, each round, the held-back check, the per-layer plan and why."""
    f32, unit = b["reference"]["float32"], "pts" if b.get("unit", "points") == "points" else b["unit"]
    held = any("held_out_drop" in r for r in b["rounds"])  # rounds compared on held-back samples by the fallback
    lines = [f"### Budget `{b['target']}` (minimize {b['minimize']}): {'met' if b['met'] else 'NOT met'}", "",
             f"Drops in {b.get('metric', 'accuracy')} ({unit}; "
             f"{'lower' if b.get('lower_is_better') else 'higher'} is better), against the float32 model.", "",
             markdown_table(
                 ("round", "weights", f"scanned drop ({unit})", f"predicted drop ({unit})",
                  f"drop on the file ({unit})", *([f"held-back drop ({unit})"] if held else []),
                  "zipped B", "× vs float32", "ms", "met"),
                 [(str(r["round"]), r.get("weights", "int8"),
                   "-" if r["scanned_drop"] is None else f"{r['scanned_drop']:.3g}",
                   "-" if r.get("predicted_drop") is None else f"{r['predicted_drop']:.3g}", f"{r['drop']:.3g}",
                   *([f"{r['held_out_drop']:.3g}" if "held_out_drop" in r else "-"] if held else []),
                   str(r["zipped_bytes"]), f"{f32['zipped_bytes'] / r['zipped_bytes']:.1f}", f"{r['ms']:.3g}",
                   "yes" if r["met"] else "no") for r in b["rounds"]])]
    h = b.get("held_out")
    if h:  # the kept round's file on the samples the plan never saw (tfcompress.target.heldout)
        part = (f"{h['samples']} of {h['of']} validation samples held back (seeded; the scan and the rounds saw "
                f"the other {h['planning_samples']})" if h["separate"] else
                f"all {h['of']} validation samples (too few to hold any back: the plan was tuned on them)")
        lines += ["", f"Drops in the table: on the planning samples. Kept round {b['kept_round']} on {part}: drop "
                  f"{h['drop']:.3g} {unit}, 95 % CI [{h['ci95'][0]:.3g}, {h['ci95'][1]:.3g}] ({h['ci_method']}): "
                  f"{'meets' if h['met'] else 'does NOT meet'} the budget."]
    s = b.get("shipped")
    if s:  # the budget measured again on the file that ships (tfcompress.target.shipped)
        ci = f", 95 % CI [{s['ci95'][0]:.3g}, {s['ci95'][1]:.3g}]" if s.get("ci95") else ""
        test = f"; drop {s['test_drop']:.3g} {unit} on the test samples" if s.get("test_drop") is not None else ""
        lines += ["", f"Shipped `{s['file']}`: drop {s['drop']:.3g} {unit}{ci} on {s.get('samples', '?')} held-back "
                  f"samples{test}, {s['zipped_bytes']} B zipped, {s['ms']:.3g} ms ({s['threads']} thread(s)): "
                  f"{'meets' if s['met'] else 'does NOT meet'} the budget."]
    kept = next(r for r in b["rounds"] if r["round"] == b["kept_round"])
    if kept["round"] in FALLBACKS:
        why = ("the planned rounds that met the budget on the planning samples missed it on the held-back ones"
               if any(r["met"] for r in b["rounds"] if r["round"] not in FALLBACKS) else
               "no planned round met the budget")
        what = ("The default recipe ships (no per-layer plan): the recipe given, its own stages" if kept["round"] ==
                "default" else f"{describe(PLAIN)[0].upper()}{describe(PLAIN)[1:]} ships (no stage ran), as the "
                "default recipe did not meet the budget either")
        lines += ["", f"{what}; {why}."]
    else:
        lines += ["", f"Plan of round {kept['round']} (scan: one layer or channel group at a time; a "
                  "thinned or factorised candidate fine-tuned briefly, the others not; "
                  f"{b['scan_samples']} planning samples; the kept round):", "",
                  markdown_table(("layer", "setting", f"scanned drop ({unit})"), [
                      (name, setting, f"{_scanned(b['sensitivity'], name, setting):.3g}")
                      for name, setting in kept["plan"].items()])]
    lines += [f"- note: {n}" for n in b["notes"]]
    return "\n".join(lines) + "\n"
