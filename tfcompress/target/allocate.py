"""Allocation: one option per unit, the most cost saved per point of scanned drop, under the budget.

Greedy over the per-unit option tables of :mod:`tfcompress.target.sensitivity`:
from every unit untouched, repeatedly take the move (one unit to any of its
cheaper options) with the highest ``cost saved / (extra drop + EPS)``, while the
summed scanned drops stay within ``max_drop`` (a drop budget), or until the
estimated cost is within ``max_cost`` (a size or latency budget). Greedy by
ratio is the classic approximation of this knapsack; it is what the scans can
support (their drops are measured one unit at a time, on a sample, without
fine-tuning: an exact knapsack over them would be precise about noise).

Example:
    >>> from tfcompress.target.sensitivity import Option, Unit
    >>> u = Unit("fc1", "weights", 100, [Option({}, 100.0, 0.0), Option({"sparsity": 0.9}, 20.0, 0.4)])
    >>> greedy([u], max_drop=1.0).choice
    {'fc1': 1}
"""

from dataclasses import dataclass

__all__ = ["Allocation", "greedy", "EPS"]

#: Points of drop counted for a free move (about the resolution of a 1000-sample scan), so free moves rank by saving.
EPS = 0.05


@dataclass
class Allocation:
    """The chosen option index per unit, with the estimated totals."""

    choice: dict
    saved: float
    drop: float

    def settings(self, units):
        """``{unit name: setting}`` of the units changed."""
        return {u.name: u.options[self.choice[u.name]].setting for u in units if self.choice[u.name]}


def greedy(units, max_drop=None, max_cost=None, base_cost=None):
    """Choose one option per unit (see the module docstring).

    Args:
        units: :class:`~tfcompress.target.sensitivity.Unit` list.
        max_drop: bound on the summed scanned drops (points). Defaults to `None`.
        max_cost: stop once ``base_cost - saved`` is at most this. Defaults to `None`.
        base_cost: the untouched model's cost (for ``max_cost``). Defaults to `None`.

    Returns:
        An :class:`Allocation`.
    """
    choice = {u.name: 0 for u in units}
    by_name, frozen = {u.name: u for u in units}, set()
    saved = drop = 0.0

    def undone(u):  # what moving u off option 0 gives back: the savings and drops of the units it excludes
        back = [(by_name[n], by_name[n].options[choice[n]]) for n in u.excludes if n in by_name]
        return (sum(v.options[0].cost - c.cost for v, c in back),
                sum(v.weight * (max(c.drop, 0.0) - max(v.options[0].drop, 0.0)) for v, c in back))

    while max_cost is None or base_cost - saved > max_cost:
        best = None
        for u in units:
            if u.name in frozen:
                continue
            cur = u.options[choice[u.name]]
            lost = undone(u) if u.excludes and choice[u.name] == 0 else (0.0, 0.0)
            for j, o in enumerate(u.options):
                gain = cur.cost - o.cost - (lost[0] if j else 0.0)
                extra = u.weight * (max(o.drop, 0.0) - max(cur.drop, 0.0)) - (lost[1] if j else 0.0)
                if gain <= 0 or (max_drop is not None and drop + extra > max_drop + 1e-9):
                    continue
                score = gain / (max(extra, 0.0) + EPS)
                if best is None or score > best[0]:
                    best = (score, u.name, j, gain, extra)
        if best is None:
            break
        _, name, j, gain, extra = best
        if choice[name] == 0:
            for n in by_name[name].excludes:
                if n in choice:
                    choice[n] = 0
                    frozen.add(n)
        choice[name] = j
        saved += gain
        drop += extra
    return Allocation(choice, saved, drop)
