"""What a compression technique is to tfcompress: one :class:`Technique` object per recipe stage.

Each technique package (``pruning/``, ``clustering/``, ``quantization/``,
``channels/``, ``depth/``, ``precision/``, ``train/``) holds its recipe class
and one :class:`Technique`; :mod:`tfcompress.techniques` lists them in the
order they run, and everything that used to be a per-stage table (the stage
order, the stage classes, ``check``'s columns, the stages that run on one
replica, where mixed precision is valid, the tuner's knobs) is read from
there. A stage returns a :class:`StageResult`.

This module is a leaf: it imports nothing of tfcompress, so every technique
package can import it.

Example:
    >>> r = StageResult(model=None, epochs=2, steps=10, details="8-bit QAT")
    >>> r.note("distillation", "distilled (alpha 0.5, T 4)")
    >>> r.entry()["details"]
    '8-bit QAT; distilled (alpha 0.5, T 4)'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Technique", "CheckColumn", "Knob", "StageResult"]


@dataclass(frozen=True)
class CheckColumn:
    """One column of :func:`tfcompress.check`'s table.

    Args:
        key: the answer's key in the report's JSON (``LayerCheck.<key>`` for
            the five base columns, ``LayerCheck.extra[key]`` for the others).
        header: the column's heading in the table.
        answers: ``answers(model, recipe) -> {layer name: answer}``, computed
            once per model (``recipe`` is the checked
            :class:`~tfcompress.Recipe` or None); an answer is ``"yes"``, a
            setting, ``"no: <reason>"``; a layer left out (or None) does not
            apply, and a column no layer answers is left out of the table.
            When it raises, ``check`` notes it and leaves the column empty.
        what: the technique as the note on a failed analysis names it.
            Defaults to `""` (the header).
        needed: the stage finds nothing to do where no layer answers yes
            here (``check`` then notes it for a recipe with the stage).
            Defaults to `False`.
    """

    key: str
    header: str
    answers: Callable[[Any, Any], Mapping[str, str | None]]
    what: str = ""
    needed: bool = False


@dataclass(frozen=True)
class Knob:
    """A tuner search-space name that sets one field of a technique's stage.

    Args:
        field: the stage field it sets (dotted for a field of the stage's
            ``lr_schedule`` / ``optimizer``).
        default: its range or choices in the default search space (None: not
            searched by default). Defaults to `None`.
        integer: the field is an integer (a float a Bayesian oracle proposes
            is rounded). Defaults to `False`.
        loosest: the other knobs' values under which one bound of this one is
            checked alone (``pruning_begin`` against ``pruning_end: 1.0``).
            Defaults to `{}`.
    """

    field: str
    default: Any = None
    integer: bool = False
    loosest: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Technique:
    """One compression technique: its recipe stage and everything tfcompress needs to know about it.

    Args:
        name: the recipe field (and YAML key, report stage name).
        recipe_class: the stage dataclass (frozen, validating itself).
        run: ``run(context, model, stage) -> StageResult``: the stage inside
            :func:`tfcompress.optimize`; ``context`` is the call's
            :class:`tfcompress.stage_runs._Run` (data, recipe, ``fit``, the
            stages that ran before).
        columns: its :class:`CheckColumn` s in ``check``. Defaults to `()`.
        mixed_precision: why ``mixed_float16`` is not valid for this stage
            (it then runs in float32 and the report says why); None where it
            is valid. Defaults to `None`.
        single_replica: condition -> why the stage runs on one replica under
            a multi-replica ``tf.distribute`` strategy; condition None is
            always, ``"mixed_precision"`` when the recipe asks for it.
            Defaults to `{}`.
        knobs: tuner search-space name -> :class:`Knob`. Defaults to `{}`.
        export: ``export(model, folder, recipe, report, rep_x, metadata)
            -> {name: exported file}``: the files the main job writes for this
            stage beside float32/int8 (None: none). Defaults to `None`.
        check_recipe: ``check_recipe(recipe, stage)`` raises RecipeError when
            the stage cannot run with the recipe's other stages (a QAT scheme
            that preserves a stage the recipe lacks); called when a Recipe is
            made. Defaults to `None`.
        preflight: ``preflight(context, stage)`` raises before any stage of
            :func:`tfcompress.optimize` runs (a run too short to prune fails
            at once, not after the earlier stages). Defaults to `None`.
    """

    name: str
    recipe_class: type
    run: Callable[[Any, Any, Any], StageResult]
    columns: tuple[CheckColumn, ...] = ()
    mixed_precision: str | None = None
    single_replica: Mapping[str | None, str] = field(default_factory=dict)
    knobs: Mapping[str, Knob] = field(default_factory=dict)
    export: Callable[..., Mapping[str, Any]] | None = None
    check_recipe: Callable[[Any, Any], None] | None = None
    preflight: Callable[[Any, Any], None] | None = None


@dataclass
class StageResult:
    """What one stage hands back to :func:`tfcompress.optimize`.

    Attributes:
        model: the new model.
        records: layer name -> what the stage did to it (the report's per-layer column).
        history: the Keras ``History.history`` dict of its fine-tuning (empty without).
        epochs: fine-tuning epochs.
        steps: training steps (None where they do not apply).
        details: one line saying what the stage did.
        mixed_precision: ``"mixed_float16"``, ``"skipped: <why>"`` or None
            (the recipe does not ask for it).
        extra: the stage's own report entries (``scheme``, ``schedule_steps``,
            ``channels``, ``plan``, ...), kept in the report's stage entry.
        notes: what :func:`tfcompress.optimize` adds (strategy, distillation):
            key -> text, each also appended to the details.
    """

    model: Any
    records: dict[str, str] = field(default_factory=dict)
    history: dict[str, list] = field(default_factory=dict)
    epochs: int = 0
    steps: int | None = None
    details: str = ""
    mixed_precision: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def note(self, key: str, text: str) -> None:
        """Add ``text`` under ``key`` in the report entry and at the end of the details."""
        self.notes[key] = text

    def entry(self) -> dict[str, Any]:
        """The stage's report entry (without ``name`` and ``seconds``, which optimize adds)."""
        details = self.details
        mp = self.mixed_precision
        if mp is not None:
            details += f"; mixed precision {mp}" if mp.startswith("skipped") else "; mixed_float16"
        for text in self.notes.values():
            details += f"; {text}"
        out: dict[str, Any] = {"epochs": self.epochs, "steps": self.steps}
        if mp is not None:
            out["mixed_precision"] = mp
        out["details"] = details
        return {**out, **self.extra, **self.notes}
