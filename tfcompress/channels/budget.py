"""Budget -> per-group ratios: the searches that turn a FLOPs / parameter
budget into channel-pruning ratios, for :func:`~tfcompress.channels.prune_channels`
and the ``channels`` stage's schedules.

Both work on a pruning plan (``tfcompress.channels.surgery.Plan``: groups,
keep masks, cost estimates), passed in, so this module imports neither the
surgery nor the sensitivity scan.

Example:
    >>> from tfcompress.channels import ratios_for_budget, sensitivity_scan
    >>> rep = sensitivity_scan(model, (x_val, y_val))  # doctest: +SKIP
    >>> per_layer = ratios_for_budget(rep, flops=0.5)  # doctest: +SKIP
"""

from tfcompress._checks import fraction_kept
from tfcompress.errors import RecipeError

__all__ = ["ratios_for_budget", "search_uniform"]


def search_uniform(plan, base, fixed, flops, params):
    """Smallest uniform ratio (on groups not in ``fixed``) meeting the budget."""

    def ok(r):
        ratios = dict(base)
        for g in plan.groups:
            if g not in fixed:
                ratios[g] = r
        f, p = plan.estimate(plan.keep(ratios))
        return (flops is None or f <= flops * plan.flops_before) and (
            params is None or p <= params * plan.params_before
        ), ratios

    lo, hi = 0.0, 0.999
    good, ratios = ok(lo)
    if good:
        return ratios, True
    good, best = ok(hi)
    if not good:
        return best, False
    for _ in range(20):
        mid = (lo + hi) / 2
        good, rr = ok(mid)
        if good:
            hi, best = mid, rr
        else:
            lo = mid
    return best, True



def ratios_for_budget(report, flops=None, params=None, plan=None, max_drop=None):
    """Per-layer ratios meeting a FLOPs / params budget, least sensitive first.

    Greedy: start from no pruning; repeatedly move the group whose next ratio
    costs the least accuracy per FLOP (or parameter) saved (from the scan) one
    ratio up, until the estimated model meets the budget.

    Args:
        report: a :class:`SensitivityReport`.
        flops: fraction of FLOPs to keep, in (0, 1].
        params: fraction of parameters to keep, in (0, 1].
        plan: internal; the pruning plan of the model (defaults to the scan's).
        max_drop: optionally never pick a ratio whose scanned accuracy drop
            exceeds this (in accuracy units, e.g. 0.05).

    Returns:
        dict {group name (a layer name): ratio}, usable as ``per_layer``. If the
        budget cannot be met, the most pruned assignment allowed.

    Raises:
        RecipeError: no budget given, or a budget out of (0, 1].

    Example:
        >>> per_layer = ratios_for_budget(rep, flops=0.5)
    """
    flops = fraction_kept(None, "flops", flops, "FLOPs")
    params = fraction_kept(None, "params", params, "parameters")
    if flops is None and params is None:
        raise RecipeError("ratios_for_budget needs flops= or params= (fraction to keep, in (0, 1]).")
    plan = plan or report.plan
    if plan is None:
        raise RecipeError("this SensitivityReport has no model attached: run sensitivity_scan again.")
    levels = sorted(report.ratios)
    state = {g["name"]: 0 for g in report.groups}  # index into [0] + levels
    info = {g["name"]: g for g in report.groups}
    use_params = flops is None

    def ratios_now():
        out = {}
        for name, lvl in state.items():
            if lvl:
                grp = plan.by_layer.get(name)
                if grp is not None and grp.prunable:
                    out[grp.id] = levels[lvl - 1]
        return out

    def met():
        f, p = plan.estimate(plan.keep(ratios_now()))
        return (flops is None or f <= flops * plan.flops_before) and (
            params is None or p <= params * plan.params_before)

    base_cost = report.params_before if use_params else report.flops_before
    while not met():
        best, best_score = None, None
        for name, lvl in state.items():
            if lvl >= len(levels):
                continue
            r = levels[lvl]
            g = info[name]
            drop = max(0.0, report.baseline - g["accuracy"][r])
            if max_drop is not None and drop > max_drop:
                continue
            saved = base_cost - (g["params"][r] if use_params else g["flops"][r])
            score = (drop + 1e-6) / max(saved, 1)
            if best_score is None or score < best_score:
                best, best_score = name, score
        if best is None:
            break
        state[best] += 1
    return {name: levels[lvl - 1] for name, lvl in state.items() if lvl}
