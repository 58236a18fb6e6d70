"""Budget mode's promise checked on the file that ships, not only on the round's own file.

Each round of :func:`tfcompress.target.plan.run` measures a file it exported
itself; the main job then exports the shipped files again, with the report's
metadata and its own calibration sample, so their bytes (and in principle
their scores) differ. :func:`check_shipped` measures the budget again on the
shipped main file (``int8.tflite``, ``int4.tflite`` or ``fast.tflite``, as
``budget["file"]`` says), on the same validation data, and turns a claim the
shipped file does not keep into "not met", said first in the report's notes.

Example:
    >>> notes = check_shipped(result.report.budget, job.files, data, task)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import tflite_export
from tfcompress._keras import quiet_native_logs
from tfcompress.scoring import Scorer
from tfcompress.target.budget import parse_target

__all__ = ["check_shipped", "main_file"]


def main_file(budget: dict) -> str:
    """The name of the file budget mode ships (``"int8"``, ``"int4"`` or ``"fast"``)."""
    return {"mixed": "fast"}.get(budget.get("file") or "int8", budget.get("file") or "int8")


def check_shipped(budget: dict, files: list, data: Any, task: Any) -> list:
    """Measure ``budget`` on the shipped main file; update ``budget`` (``"shipped"``, ``"met"``,
    ``"markdown"``) and return the notes the report leads with.

    Args:
        budget: ``report.budget`` of budget mode (edited in place).
        files: the main job's file rows (``name``, ``path``, ``zipped_bytes``).
        data: the job's :class:`~tfcompress._userdata.Dataset` (its validation split is
            the one the budget was planned against).
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
    xv, yv = data.validation
    with quiet_native_logs():
        got = scorer.file(row["path"], xv, yv)
        ms = tflite_export.benchmark(row["path"], threads=budget["threads"], min_runs=20, min_seconds=0.3).median_ms
    drop = round(scorer.drop(scorer.points(budget[f"reference_{scorer.name}"]), got), 3)
    met = bool(target.met(drop, row["zipped_bytes"], ms))
    unit = scorer.unit
    budget["shipped"] = {"file": f"{row['name']}.tflite", "drop": drop, "zipped_bytes": row["zipped_bytes"],
                         "ms": ms, "threads": budget["threads"], "met": met}
    seen = (f"drop {drop:.3g} {unit}, {row['zipped_bytes']} B zipped, {ms:.3g} ms at {budget['threads']} "
            "thread(s), on the validation data")
    notes = []
    if budget["met"] and not met:
        budget["met"] = False
        notes.append(f"budget {target.describe()} NOT met by the shipped {row['name']}.tflite ({seen}), although "
                     f"round {budget.get('kept_round')} met it on its own export: the shipped file carries the "
                     "report's metadata and its own calibration; tighten the budget a little and run again.")
    elif not budget["met"]:
        notes.append(f"budget {target.describe()} NOT met: the closest round ships as {row['name']}.tflite ({seen}).")
    budget["markdown"] = markdown(budget)
    return notes
