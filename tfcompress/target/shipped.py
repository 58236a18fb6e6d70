"""Budget mode's promise checked on the file that ships, on data the plan was not tuned on.

Each round of :func:`tfcompress.target.plan.run` measures a file it exported
itself; the main job then exports the shipped files again, with the report's
metadata and its own calibration sample, so their bytes (and in principle
their scores) differ. :func:`check_shipped` measures the budget again on the
shipped main file (``int8.tflite``, ``int4.tflite`` or ``fast.tflite``, as
``budget["file"]`` says) and on the shipped ``float32.tflite``, both on the
held-back validation samples the plan never saw (the split that
``budget["held_out"]`` records: :mod:`tfcompress.target.heldout`), with the
drop's 95 % confidence interval, and turns a claim the shipped file does not
keep into "NOT met", said first in the report's notes (the command line then
exits with status 3). The report's own test table is a check too: a main file
that loses more than the budget (or the floor) on the test split is NOT met,
and a held-back confidence interval that reaches past the budget is a note.

Example:
    >>> notes = check_shipped(result.report.budget, job.files, data, task)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import tflite_export
from tfcompress._keras import quiet_native_logs
from tfcompress._nested import count
from tfcompress.scoring import Scorer
from tfcompress.target import heldout
from tfcompress.target.budget import parse_target
from tfcompress.target.fallback import describe

__all__ = ["check_shipped", "main_file"]


def main_file(budget: dict) -> str:
    """The name of the file budget mode ships (``"int8"``, ``"int4"`` or ``"fast"``)."""
    return {"mixed": "fast"}.get(budget.get("file") or "int8", budget.get("file") or "int8")


def _held_back(budget: dict, xv: Any, yv: Any) -> tuple:
    """The held-back samples of ``budget["held_out"]`` in (xv, yv), and a note when they cannot be cut again."""
    held = budget.get("held_out") or {}
    if not held.get("separate"):
        return xv, yv, None
    if held["of"] != count(xv):
        return xv, yv, (f"the validation data holds {count(xv)} samples, not the {held['of']} the plan was split "
                        "from: the shipped file is checked on all of them")
    _, (xh, yh) = heldout.parts(xv, yv, held)
    return xh, yh, None


def _test_drop(scorer: Scorer, f32: dict, row: dict) -> float | None:
    """The main file's drop from float32 on the job's test split, in the budget's metric (None: not scored)."""
    if scorer.name == "accuracy" and f32.get("accuracy") is not None and row.get("accuracy") is not None:
        a, b = f32["accuracy"], row["accuracy"]
    else:
        a, b = (f32.get("scores") or {}).get(scorer.name), (row.get("scores") or {}).get(scorer.name)
    return None if a is None or b is None else round(scorer.drop(scorer.points(a), scorer.points(b)), 3)


def check_shipped(budget: dict, files: list, data: Any, task: Any) -> list:
    """Measure ``budget`` on the shipped main file; update ``budget`` (``"shipped"``, ``"met"``,
    ``"markdown"``) and return the notes the report leads with.

    Args:
        budget: ``report.budget`` of budget mode (edited in place).
        files: the main job's file rows (``name``, ``path``, ``zipped_bytes``; ``float32`` among them).
        data: the job's :class:`~tfcompress._userdata.Dataset` (its validation split is
            the one the budget was planned against; its held-back part is cut again).
        task: the user's :class:`~tfcompress.task.Task`.

    Returns:
        A list of notes: empty when the budget is met and the shipped file keeps it.
    """
    from tfcompress.target.plan import markdown

    target = parse_target(budget["target"])
    rows = {f["name"]: f for f in files}
    name = main_file(budget)
    row = rows.get(name) or rows["int8"]
    scorer = Scorer(task, budget.get("metric", "accuracy"))
    xh, yh, why = _held_back(budget, *data.validation)
    check = heldout.compare(rows["float32"]["path"], row["path"], xh, yh, scorer)
    with quiet_native_logs():
        ms = tflite_export.benchmark(row["path"], threads=budget["threads"], min_runs=20, min_seconds=0.3).median_ms
    drop = check["drop"]
    met = bool(target.met(drop, row["zipped_bytes"], ms))
    unit = scorer.unit
    budget["shipped"] = {"file": f"{row['name']}.tflite", "drop": drop, "ci95": check["ci95"],
                         "samples": check["samples"], "zipped_bytes": row["zipped_bytes"], "ms": ms,
                         "threads": budget["threads"], "met": met}
    seen = (f"drop {drop:.3g} {unit} (95 % CI [{check['ci95'][0]:.3g}, {check['ci95'][1]:.3g}]) on "
            f"{check['samples']} held-back samples against float32.tflite, {row['zipped_bytes']} B zipped, "
            f"{ms:.3g} ms at {budget['threads']} thread(s)")
    notes = [] if why is None else [why]
    which = describe(budget.get("kept_round"))
    test, miss = _test_drop(scorer, rows["float32"], row), None
    if test is not None:  # the report's own test table: a claim it contradicts is not made
        budget["shipped"]["test_drop"] = test
        if met and not target.keeps_floor(test):
            met = budget["shipped"]["met"] = False
            miss = (f"budget {target.describe()} NOT met on the {count(data.test[0])} test samples: the shipped "
                    f"{row['name']}.tflite loses {test:.3g} {unit} there against float32.tflite, though it kept the "
                    f"budget on the held-back samples ({seen}); give more validation data (the plan and its check "
                    "see only that) or a tighter budget.")
    lo, hi = check["ci95"]
    if met and budget["met"] and hi > (target.limit if target.metric == "drop" else (target.floor or float("inf"))):
        notes.append(f"the held-back check is too small to tell: its 95 % CI [{lo:.3g}, {hi:.3g}] {unit} on "
                     f"{check['samples']} samples reaches past the budget; more validation data narrows it")
    if budget["met"] and not met:
        budget["met"] = False
        notes.insert(0, miss or f"budget {target.describe()} NOT met by the shipped {row['name']}.tflite ({seen}), "
                     f"although {which} met it on its own export: the shipped file carries the report's metadata and "
                     "its own calibration; tighten the budget a little and run again.")
    elif not budget["met"]:
        notes.insert(0, f"budget {target.describe()} NOT met: {which} ships as {row['name']}.tflite "
                        f"({seen}).")
    budget["markdown"] = markdown(budget)
    return notes
