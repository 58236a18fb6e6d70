"""Model surgery: choose the channels to keep, rebuild a smaller dense model
from the original's config and copy the sliced weights.

Example:
    >>> from tfcompress.channels import prune_channels
    >>> small, report = prune_channels(model, 0.5, criterion="l1")
    >>> small.count_params() < model.count_params()
    True
"""

import numpy as np

from tfcompress._checks import fraction_kept, fraction_removed
from tfcompress._keras import keras
from tfcompress._model import check_model
from tfcompress.channels.budget import ratios_for_budget, search_uniform
from tfcompress.channels.cost import count_flops, layer_cost, layer_costs
from tfcompress.channels.graph import Analysis, _kind, inline_nested
from tfcompress.channels.importance import group_importance
from tfcompress.channels.report import ChannelReport
from tfcompress.errors import RecipeError

__all__ = ["prune_channels", "Plan"]


class Plan:
    """Analysis + importance of one model; turns ratios into keep masks, cost
    estimates and pruned models (internal, shared by pruning and sensitivity)."""

    def __init__(self, model, criterion="l1", data=None, loss_fn=None):
        check_model(model)
        self.original = model
        self.model, inline_notes = inline_nested(model)
        self.analysis = Analysis(self.model)
        self.all_groups = self.analysis.groups()
        self.groups = {g.id: g for g in self.all_groups if g.prunable}
        self.by_layer = {}
        for g in self.all_groups:
            for m in g.members:
                self.by_layer[m] = g
        self.criterion = criterion
        self.scores, self.notes = group_importance(self.analysis, self.groups, criterion, data, loss_fn)
        self.notes = inline_notes + self.notes
        self.flops_before, self.params_before = self.estimate({})

    # -- ratios -> keep masks ---------------------------------------------
    def keep(self, ratios, notes=None):
        """dict root -> bool keep mask for ``ratios`` (root -> fraction removed)."""
        keep = {}
        for r, ratio in ratios.items():
            n, n_remove = self.groups[r].channels, self.n_remove(r, ratio, notes)
            if n_remove <= 0:
                continue
            order = np.argsort(self.scores[r], kind="stable")
            mask = np.ones(n, dtype=bool)
            mask[order[:n_remove]] = False
            keep[r] = mask
        return keep

    def n_remove(self, r, ratio, notes=None):
        """How many of group ``r``'s channels ``ratio`` removes (at least one is kept)."""
        g = self.groups[r]
        n_remove = int(round(ratio * g.channels))
        if n_remove >= g.channels:
            n_remove = g.channels - 1
            if notes is not None and ratio > 0:
                notes.append(f"group '{g.name}': ratio {ratio:.2f} would remove all {g.channels} channels; kept 1")
        return n_remove

    def estimate(self, keep):
        """(FLOPs, params) of the model pruned with ``keep``."""
        a = self.analysis
        cache = {}

        def count(key):
            if key not in cache:
                cache[key] = int(a.mask(key, keep).sum())
            return cache[key]

        flops = params = 0
        seen = set()
        for layer, _, _ in a.nodes:
            io = a.layer_io.get(layer.name)
            if io is None:  # shared layer: unchanged
                if id(layer) not in seen:
                    params += layer.count_params()
                    seen.add(id(layer))
                continue
            in_keys, out_keys, in_shapes, out_shapes = io
            if not in_keys or not out_keys:
                continue
            f, p = layer_cost(layer, count(in_keys[0]), count(out_keys[0]), in_shapes[0], out_shapes[0])
            flops += f
            params += p
        return int(flops), int(params)

    # -- rebuild ------------------------------------------------------------
    def build(self, keep, weights=None):
        """A new model with the channels of ``keep`` removed and weights copied
        (``weights``: {layer name: arrays} used instead of a layer's own, e.g.
        the next layers' input weights after channel merging)."""
        a = self.analysis
        counts = {}
        for r, mask in keep.items():
            for name in self.groups[r].members:
                counts[name] = int(mask.sum())

        def clone_fn(layer):
            cfg = layer.get_config()
            if layer.name in counts:
                cfg["filters" if "filters" in cfg else "units"] = counts[layer.name]
            return layer.__class__.from_config(cfg)

        new = keras.models.clone_model(self.model, clone_function=clone_fn)
        if new.name != self.original.name:
            new._name = self.original.name
        for layer in self.model.layers:
            w = (weights or {}).get(layer.name)
            w = layer.get_weights() if w is None else w
            if not w:
                continue
            io = a.layer_io.get(layer.name)
            if io is not None:
                in_mask = a.mask(io[0][0], keep) if io[0] else None
                out_mask = a.mask(io[1][0], keep) if io[1] else None
                w = _slice(layer, w, in_mask, out_mask)
            target = new.get_layer(layer.name)
            shapes = [tuple(v.shape) for v in target.weights]
            got = [tuple(v.shape) for v in w]
            if shapes != got:  # pragma: no cover - would be a bug in the analysis
                raise RuntimeError(f"channel surgery bug: layer '{layer.name}' expects {shapes}, sliced {got}")
            target.set_weights(w)
        return new


def _take(w, mask, axis):
    if mask is None or mask.all() or w.shape[axis] != len(mask):
        return w
    return np.take(w, np.flatnonzero(mask), axis=axis)


def _slice(layer, weights, in_mask, out_mask):
    kind = _kind(layer)
    w = list(weights)
    if kind in ("conv", "dense"):
        w[0] = _take(_take(w[0], in_mask, -2), out_mask, -1)
        if len(w) > 1:
            w[1] = _take(w[1], out_mask, 0)
    elif kind == "conv_transpose":
        w[0] = _take(_take(w[0], out_mask, -2), in_mask, -1)
        if len(w) > 1:
            w[1] = _take(w[1], out_mask, 0)
    elif kind == "depthwise":
        w[0] = _take(w[0], in_mask, -2)
        if len(w) > 1:
            w[1] = _take(w[1], out_mask, 0)
    elif kind == "separable":
        mult = w[0].shape[-1]
        w[0] = _take(w[0], in_mask, -2)
        mid = None if in_mask is None else np.repeat(in_mask, mult)
        w[1] = _take(_take(w[1], mid, -2), out_mask, -1)
        if len(w) > 2:
            w[2] = _take(w[2], out_mask, 0)
    elif kind == "pass":
        w = [_take(v, out_mask, -1) if v.ndim else v for v in w]
    return w


def _resolve_ratios(plan, ratio, per_layer):
    """dict root -> ratio from a global ratio and per-layer overrides."""
    ratios = {}
    if ratio:
        ratios = {r: ratio for r in plan.groups}
    fixed = set()
    for name, value in (per_layer or {}).items():
        value = fraction_removed(None, f"per_layer[{name!r}]", value)
        g = plan.by_layer.get(name)
        if g is None:
            names = ", ".join(sorted(n for gg in plan.groups.values() for n in gg.members)) or "none"
            raise RecipeError(
                f"per_layer names '{name}', which is not a Conv/Dense layer of the model: use one of {names}."
            )
        if not g.prunable:
            raise RecipeError(
                f"per_layer names '{name}', whose channels are locked ({g.reason}): remove it from per_layer."
            )
        ratios[g.id] = max(value, ratios[g.id]) if g.id in fixed else value
        fixed.add(g.id)
    return ratios, fixed


def prune_channels(model, ratio=None, *, per_layer=None, flops=None, params=None,
                   criterion="l1", data=None, sensitivity=None, loss_fn=None):
    """Remove whole filters / channels / neurons: a smaller, dense tf_keras model.

    Args:
        model: a tf_keras Sequential or Functional model (not modified). Nested
            Sequential/Functional sub-models are inlined (the result is then a
            flat Functional model; a note says so) so their channels can shrink.
        ratio: fraction of channels removed from every prunable group, in [0, 1).
        per_layer: {layer name: ratio} overrides (any Conv/Dense member of a group).
        flops: fraction of FLOPs to keep, in (0, 1]; the ratio of the groups not
            in ``per_layer`` is searched (uniform, or from ``sensitivity``).
        params: fraction of parameters to keep, in (0, 1] (like ``flops``).
        criterion: "l1", "l2", "bn_gamma", "taylor", "apoz" or "mean_activation".
        data: (x, y) labelled samples for "taylor", "apoz", "mean_activation".
        sensitivity: a :class:`SensitivityReport`; with ``flops``/``params``,
            ratios come from :func:`ratios_for_budget` instead of a uniform ratio.
        loss_fn: the task's loss for "taylor" (:meth:`tfcompress.task.Task.loss_fn`).
            Defaults to `None` (a classifier's cross-entropy).

    Returns:
        (new_model, ChannelReport). The new model is not compiled.

    Raises:
        RecipeError: ratio out of [0, 1), budget out of (0, 1], unknown or locked
            per_layer name, unknown criterion, or no target given.
        UnsupportedModelError: Keras 3, subclassed or unbuilt model.
        DataError: a data criterion without data.

    Example:
        >>> small, rep = prune_channels(model, 0.5)
        >>> small, rep = prune_channels(model, flops=0.5, criterion="bn_gamma")
    """
    ratio, flops, params = check_targets(model, ratio, per_layer, flops, params)
    plan = Plan(model, criterion, data, loss_fn)
    notes = list(plan.notes)
    ratios = resolve_targets(plan, ratio, per_layer, flops, params, sensitivity, notes)
    keep = plan.keep(ratios, notes)
    new = plan.build(keep)
    target = {"ratio": ratio, "per_layer": dict(per_layer or {}), "flops": flops, "params": params}
    return new, make_report(plan, ratios, keep, new, target, notes)


def check_targets(model, ratio, per_layer, flops, params):
    """Check a pruning target (and the model); returns (ratio, flops, params)."""
    check_model(model)
    if ratio is not None:
        ratio = fraction_removed(None, "ratio", ratio)
    flops = fraction_kept(None, "flops", flops, "FLOPs")
    params = fraction_kept(None, "params", params, "parameters")
    if per_layer is not None and not isinstance(per_layer, dict):
        raise RecipeError(f"per_layer must be a mapping layer name -> ratio, got {type(per_layer).__name__}.")
    if ratio is None and not per_layer and flops is None and params is None:
        raise RecipeError("no pruning target: give ratio=, per_layer=, flops= or params=.")
    return ratio, flops, params


def resolve_targets(plan, ratio, per_layer, flops, params, sensitivity, notes):
    """dict root -> fraction of channels removed, for a checked target."""
    ratios, fixed = _resolve_ratios(plan, ratio, per_layer)
    if flops is not None or params is not None:
        if sensitivity is not None:
            by_name = ratios_for_budget(sensitivity, flops=flops, params=params, plan=plan)
            for name, r in by_name.items():
                g = plan.by_layer.get(name)
                if g is not None and g.prunable and g.id not in fixed:
                    ratios[g.id] = r
            met = True
        else:
            ratios, met = search_uniform(plan, ratios, fixed, flops, params)
        if not met:
            notes.append("budget not reachable (locked layers dominate); pruned as far as possible")
    return ratios


def make_report(plan, ratios, keep, new, target, notes):
    """Build the :class:`ChannelReport` of one pruning step."""
    cost_before, cost_after = layer_costs(plan.model), layer_costs(new)
    groups = []
    for g in plan.all_groups:
        if not g.members:
            continue
        after = int(keep[g.id].sum()) if g.id in keep else g.channels
        groups.append({
            "name": g.name, "members": list(g.members), "channels_before": g.channels,
            "channels_after": after, "ratio": round(1 - after / g.channels, 4) if g.channels else 0.0,
            "prunable": g.prunable, "reason": g.reason,
        })
    layers = []
    for layer in plan.model.layers:
        if layer.name not in cost_before:
            continue
        g = plan.by_layer.get(layer.name)
        io = plan.analysis.layer_io.get(layer.name)
        before = after = None
        if g is not None:
            before = g.channels
            after = int(keep[g.id].sum()) if g.id in keep else g.channels
        elif io is not None and io[1]:
            before = int(len(plan.analysis.maps[io[1][0]]))
            after = int(plan.analysis.mask(io[1][0], keep).sum())
        fb, pb = cost_before[layer.name]
        fa, pa = cost_after.get(layer.name, (0, 0))
        layers.append({
            "name": layer.name, "class": type(layer).__name__, "before": before, "after": after,
            "flops_before": fb, "flops_after": fa, "params_before": pb, "params_after": pa,
        })
    return ChannelReport(
        criterion=plan.criterion, target=target, groups=groups, layers=layers,
        flops_before=count_flops(plan.model), flops_after=count_flops(new),
        params_before=int(plan.model.count_params()), params_after=int(new.count_params()),
        notes=notes,
    )
