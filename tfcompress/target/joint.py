"""Size plans that thin channels too: the thinning scan, and the allocation of thinning with per-layer settings.

A size plan chooses, per layer, a weight setting (prune, cluster, 4-bit:
:func:`~tfcompress.target.sensitivity.weight_options`) and, per channel
group, a thinning ratio (:func:`thin_options`). The two interact: thinning
group ``g`` removes output channels of its member layers **and** input rows of
the layers that read them (the next conv, or the dense layer after a
flatten), so the estimated zipped bytes of a layer are its weight option's
bytes (full width) times the fraction of its kernel every thinning keeps:

    bytes(L) = weight_option_bytes(L) * prod_g kept_g(L)

(:func:`size_of`; pruning and 4-bit rounding keep their bits per weight on the
thinned kernel).

:func:`joint_greedy` is :func:`~tfcompress.target.allocate.greedy`
over both kinds of unit with this cost: each move (one layer to another
weight option, or one group to another ratio) is priced on the whole model,
its scanned drop added to the others' (measured alone).
The chosen settings merge per layer name (``{"sparsity": .., "ratio": ..}``),
which :func:`~tfcompress.target.plan.plan_recipe` turns into
``channels.per_layer`` + ``pruning.per_layer`` + the QAT weight format.

A thinned net is not the net with some weights changed: the next layers
lose inputs they relied on, and a short fine-tuning wins most of it back, far
more than it does for a pruned layer (LeNet-5: the hand recipe's thinning
scans at ~39 points and loses 0.7 on the file after fine-tuning; pruning at
~24 scanned points loses about as much). So, given training inputs,
:func:`thin_options` fine-tunes each candidate briefly (:data:`TUNE_EPOCHS`
epoch on at most :data:`TUNE_SAMPLES` inputs, distilled from the model's own
outputs: no labels needed) before scoring it: its drop predicts the
fine-tuned drop, not the raw one. The allocation then counts each of its
points :data:`TUNED_WEIGHT` times (``Unit.weight``): the rest of the scan is
raw, and the drop budget's margin (:data:`~tfcompress.target.plan.DROP_SCALE`
raw points per budget point in round 1) was measured on raw points; with the
tuned thinning counted once, round 1 on LeNet-5 lost 1.6-2.4 points on the
file for a 1-point budget (3 runs), about 2-3x its prediction.

Example:
    >>> units = thin_options(model, x[:1000], y[:1000], scorer=scorer)  # doctest: +SKIP
    >>> units[0].options[1].setting, units[0].options[1].shrink  # doctest: +SKIP
    ({'ratio': 0.25}, {'conv2': 0.75, 'fc1': 0.75})
"""

from dataclasses import dataclass, replace

from tfcompress._keras import forget_custom_gradients, keras
from tfcompress._nested import take
from tfcompress.channels.surgery import Plan
from tfcompress.pruning.weights import prunable_weights
from tfcompress.scoring import accuracy
from tfcompress.target.allocate import EPS
from tfcompress.target.sensitivity import CLUSTERS, Option, Unit

__all__ = ["thin_options", "tuned_channel_units", "candidate_drop",
           "joint_greedy", "size_of", "JointAllocation", "SIZE_RATIOS", "TUNE_SAMPLES", "TUNE_EPOCHS",
           "TUNED_WEIGHT"]

#: Channel ratios a size plan scans per group (0.625: between the halves, as hand recipes thin fc layers).
SIZE_RATIOS = (0.25, 0.5, 0.625, 0.75)
#: The short fine-tuning of each thinned candidate: at most this many training inputs, this many epochs.
TUNE_SAMPLES, TUNE_EPOCHS = 2048, 1
#: Scanned (raw) points the allocation counts per point of a briefly fine-tuned candidate's drop (module docstring).
TUNED_WEIGHT = 3.0


def _tune(thin, x, teacher, epochs=TUNE_EPOCHS):
    """Fine-tune ``thin`` briefly toward the unthinned model's outputs ``teacher`` (mean squared error)."""
    thin.compile(keras.optimizers.Adam(1e-3), loss="mse")
    with forget_custom_gradients():  # else each candidate's train graph stays in memory
        thin.fit(x, teacher, epochs=epochs, batch_size=64, verbose=0)
    return thin


def _kernel_sizes(model):
    return {layer.name: sum(int(w.shape.num_elements()) for w in prunable_weights(layer))
            for layer in model.layers if prunable_weights(layer)}


def candidate_drop(model, x, y, scorer=None, tune_x=None):
    """``drop(candidate, tune=True)``: the points a changed copy of ``model`` (thinned, a block removed)
    loses on (x, y), after a short fine-tuning toward ``model``'s outputs on ``tune_x`` when given
    (:data:`TUNE_EPOCHS` epoch on at most :data:`TUNE_SAMPLES` inputs; it raises when keras cannot fit it).

    Example:
        >>> drop = candidate_drop(model, x, y, tune_x=x_train)  # doctest: +SKIP
        >>> drop(plan.build(keep))  # doctest: +SKIP
        0.4
    """
    score = scorer.model if scorer is not None else (lambda m, a, b: 100.0 * accuracy(m, a, b))
    base = score(model, x, y)
    if tune_x is not None:
        tune_x = take(tune_x, TUNE_SAMPLES)
        teacher = model.predict(tune_x, batch_size=256, verbose=0)

    def drop(candidate, tune=True):
        if tune and tune_x is not None:
            candidate = _tune(candidate, tune_x, teacher)
        return base - score(candidate, x, y)
    return drop


def thin_options(model, x, y, ratios=SIZE_RATIOS, scorer=None, tune_x=None, drop=None):
    """Thin each channel group alone, at each ratio: the drop, and the share of each layer's kernel kept.

    Args:
        model: a tf_keras model (not changed: thinned copies are built).
        x, y: the validation sample.
        ratios: fractions of each group's channels removed. Defaults to :data:`SIZE_RATIOS`.
        scorer: a :class:`~tfcompress.scoring.Scorer` (points). Defaults to
            `None` (top-1 accuracy in points).
        tune_x: training inputs: each candidate is fine-tuned on (at most
            :data:`TUNE_SAMPLES` of) them before it is scored (module
            docstring). Defaults to `None` (scored as thinned).
        drop: a :func:`candidate_drop` of the same model, sample and ``tune_x``, shared with
            another scan (its teacher outputs and base score computed once). Defaults to `None` (made here).

    Returns:
        A list of :class:`~tfcompress.target.sensitivity.Unit` (``kind="channels"``,
        named by the group's layer name, as ``channels.per_layer`` takes it):
        option 0 untouched; each option's ``shrink`` is ``{layer: kernel share kept}``
        of the layers it changes, its ``cost`` the model's parameter count.

    Example:
        >>> [o.setting for o in thin_options(model, x, y, ratios=(0.5,))[0].options]  # doctest: +SKIP
        [{}, {'ratio': 0.5}]
    """
    drop = drop or candidate_drop(model, x, y, scorer, tune_x)
    plan = Plan(model)
    full = _kernel_sizes(model)
    units = []
    for r, g in plan.groups.items():
        unit = Unit(g.name, "channels", int(g.channels), [Option({}, float(plan.params_before), 0.0, {})],
                    TUNED_WEIGHT if tune_x is not None else 1.0)
        removed = set()
        for ratio in ratios:
            keep = plan.keep({r: ratio})
            n = plan.n_remove(r, ratio)
            if not keep or n in removed:  # a ratio that removes as many channels as a smaller one: the same option
                continue
            removed.add(n)
            thin = plan.build(keep)
            sizes = _kernel_sizes(thin)
            try:
                lost = drop(thin)
            except Exception:  # noqa: BLE001 - a net keras cannot fit so: scored as thinned, untuned
                lost = drop(plan.build(keep), tune=False)
            shrink = {n: sizes[n] / full[n] for n in full if n in sizes and full[n] and sizes[n] != full[n]}
            unit.options.append(Option({"ratio": ratio}, float(plan.estimate(keep)[1]), lost, shrink))
        if len(unit.options) > 1:
            units.append(unit)
    return units


def size_of(wunits, cunits, choice, rest=0.0):
    """Estimated zipped bytes of the model under ``choice`` (``{(kind, name): option index}``; module docstring).

    Example:
        >>> w = [Unit("fc", "weights", 100, [Option({}, 100.0, 0.0)])]
        >>> c = [Unit("fc", "channels", 10, [Option({}, 0.0, 0.0, {}), Option({"ratio": 0.5}, 0.0, 1.0, {"fc": 0.5})])]
        >>> size_of(w, c, {("weights", "fc"): 0, ("channels", "fc"): 1}, rest=20.0)
        70.0
    """
    kept = {}
    for u in cunits:
        for layer, share in (u.options[choice[(u.kind, u.name)]].shrink or {}).items():
            kept[layer] = kept.get(layer, 1.0) * share
    return rest + sum(u.options[choice[(u.kind, u.name)]].cost * kept.get(u.name, 1.0) for u in wunits)


@dataclass
class JointAllocation:
    """The chosen option per unit (``{(kind, name): index}``), the estimated bytes saved and scanned drop added."""

    choice: dict
    saved: float
    drop: float

    def settings(self, units, clusters=CLUSTERS):
        """``{layer name: setting}`` of the units changed, a layer's weight setting and ratio merged.

        A layer thinned until it keeps no more than ``clusters`` nonzero
        weights is not clustered (TF-MOT cannot: the scan checked it at full width).
        """
        out, kept, size = {}, {}, {}
        for u in units:
            j = self.choice.get((u.kind, u.name), 0)
            if u.kind == "weights":
                size[u.name] = u.weights
            for layer, share in (u.options[j].shrink or {}).items():
                kept[layer] = kept.get(layer, 1.0) * share
            if j:
                out.setdefault(u.name, {}).update(u.options[j].setting)
        for name, s in out.items():
            if s.get("clustered") and size.get(name, 0) * kept.get(name, 1.0) * (1 - s.get("sparsity", 0)) <= clusters:
                s["clustered"] = False
                if not s.get("sparsity"):  # nothing left of the weight setting but the ratio
                    s.pop("clustered")
                    s.pop("sparsity", None)
        return out


def tuned_channel_units(units, model, x, y, scorer=None, tune_x=None):
    """A latency plan's channel units (cost: predicted ms) with each candidate's drop after a short fine-tuning.

    The raw scan overstates what thinning a group costs most where the next
    layers relied on its channels (ResNet-8's stem group, tied through every
    residual Add): fine-tuning wins that back, so without it the plan thins only
    the cheap groups (ResNet-8: 1.27x the converter's int8 at 1 thread, with
    1.4 points of the budget unspent). Each candidate is tuned as
    :func:`thin_options` does, and its points count :data:`TUNED_WEIGHT` times.

    Args:
        units: :class:`~tfcompress.target.sensitivity.Unit` list of
            :func:`~tfcompress.target.sensitivity.channel_options`.
        model, x, y: the model and the validation sample they were scanned on.
        scorer: a :class:`~tfcompress.scoring.Scorer`. Defaults to `None` (accuracy points).
        tune_x: the training inputs of the short fine-tuning. Defaults to `None` (``units`` unchanged).

    Returns:
        The units, same costs, tuned drops (a ratio that removes as many channels as
        a smaller one takes that one's).

    Example:
        >>> units = tuned_channel_units(units, model, x, y, scorer, tune_x)  # doctest: +SKIP
    """
    if tune_x is None or not units:
        return units
    ratios = tuple(sorted({o.setting["ratio"] for u in units for o in u.options[1:]}))
    tuned = {u.name: {o.setting["ratio"]: o.drop for o in u.options[1:]}
             for u in thin_options(model, x, y, ratios=ratios, scorer=scorer, tune_x=tune_x)}
    out = []
    for u in units:
        got = tuned.get(u.name)
        if not got:
            out.append(u)
            continue
        opts = [u.options[0]]
        for o in u.options[1:]:
            below = [r for r in got if r <= o.setting["ratio"]]
            opts.append(replace(o, drop=got[max(below)]) if below else o)
        out.append(replace(u, options=opts, weight=TUNED_WEIGHT))
    return out


def joint_greedy(wunits, cunits, max_drop=None, max_cost=None, rest=0.0):
    """Choose one option per layer and per channel group, the most bytes saved per point of scanned drop.

    Args:
        wunits: weight units (cost: the layer's estimated bytes at full width).
        cunits: channel units of :func:`thin_options` (may be empty: then this is
            :func:`~tfcompress.target.allocate.greedy` on ``wunits``).
        max_drop: bound on the summed scanned drops (beyond each option 0's). Defaults to `None`.
        max_cost: stop once the estimated bytes are at most this. Defaults to `None`.
        rest: the bytes no unit changes (biases, the graph). Defaults to `0.0`.

    Returns:
        A :class:`JointAllocation` (``saved`` from the model with every option 0).

    Example:
        >>> w = [Unit("fc", "weights", 100, [Option({}, 100.0, 0.0), Option({"sparsity": 0.9}, 30.0, 2.0)])]
        >>> c = [Unit("fc", "channels", 10, [Option({}, 0.0, 0.0, {}), Option({"ratio": 0.5}, 0.0, 0.5, {"fc": 0.5})])]
        >>> joint_greedy(w, c, max_drop=1.0).settings(w + c)
        {'fc': {'ratio': 0.5}}
    """
    units = list(wunits) + list(cunits)
    choice = {(u.kind, u.name): 0 for u in units}
    start = cost = size_of(wunits, cunits, choice, rest)
    drop = 0.0
    while max_cost is None or cost > max_cost:
        best = None
        for u in units:
            key = (u.kind, u.name)
            cur = u.options[choice[key]]
            for j, o in enumerate(u.options):
                if j == choice[key]:
                    continue
                extra = u.weight * (max(o.drop, 0.0) - max(cur.drop, 0.0))
                if max_drop is not None and drop + extra > max_drop + 1e-9:
                    continue
                new = size_of(wunits, cunits, {**choice, key: j}, rest)
                gain = cost - new
                if gain <= 1e-9:
                    continue
                score = gain / (max(extra, 0.0) + EPS)
                if best is None or score > best[0]:
                    best = (score, key, j, new, extra)
        if best is None:
            break
        _, key, j, cost, extra = best
        choice[key] = j
        drop += extra
    return JointAllocation(choice, start - cost, drop)
