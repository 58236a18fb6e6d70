"""Budget mode: say the budget (``"drop<=1.0"``, ``"size<=40KB"``, ``"latency<=2ms"``), get the model.

``tfcompress.optimize(model, data, val, target=..., minimize=...)`` runs
:func:`tfcompress.target.plan.run`: a per-layer sensitivity scan
(:mod:`~tfcompress.target.sensitivity`), a greedy allocation under the budget
(:mod:`~tfcompress.target.allocate`; size plans thin channels too:
:mod:`~tfcompress.target.joint`), the plan written as an ordinary recipe,
fine-tuning with distillation, and the budget checked on the exported int8
(or int4; a latency plan where int8 is slow: float32) file against the drop
predicted (:mod:`~tfcompress.target.predict`),
the next round aimed by what the measured ones taught, the default recipe tried when no
round meets it; the scan and the rounds see a planning part of the
validation data and the claim is measured on a held-back part
(:mod:`~tfcompress.target.heldout`), and again on the shipped file
(:mod:`~tfcompress.target.shipped`); a file slower than float32 gets a per-op
precision mix that is not (:mod:`~tfcompress.target.fast`). The target string is parsed in
:mod:`~tfcompress.target.budget`.

Example:
    >>> from tfcompress.target import parse_target
    >>> parse_target("drop<=1.0").limit
    1.0
"""

from tfcompress.target.allocate import Allocation, greedy
from tfcompress.target.budget import Target, check_minimize, parse_target
from tfcompress.target.fast import export_file, faster_mix
from tfcompress.target.plan import run
from tfcompress.target.recipeplan import plan_recipe
from tfcompress.target.sensitivity import channel_options, weight_options

__all__ = ["Target", "parse_target", "check_minimize", "greedy", "Allocation", "plan_recipe", "run", "export_file",
           "faster_mix", "weight_options", "channel_options"]
