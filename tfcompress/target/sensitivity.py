"""Per-layer sensitivity for budget mode: what each setting of each layer saves, and what it costs in the metric.

Each *unit* (a layer with a prunable kernel, or a channel group) has a list of
:class:`Option` s: the setting (``{"sparsity": 0.9, "clustered": True}`` or
``{"ratio": 0.5}``), what the model then costs (estimated zipped bytes of the
kernel, or the model's latency predicted from measured op costs:
:mod:`tfcompress.target.latency`), and the drop in the task's metric (points for
accuracy or IoU, the metric's own unit for an MAE: :mod:`tfcompress.scoring`)
on a validation sample when **only** that unit is changed, without
fine-tuning. Option 0 is the unit untouched.

The size of a kernel is its int8 (or int4) values (symmetric, per output
channel), laid out as the .tflite file stores them (output channel first;
int4: two values a byte), deflated at level 9 as the file's zip is
(:func:`zipped_bytes`). Pruning adds zeros and clustering leaves ``k``
distinct values, so both lower it. An entropy model (:func:`int8_bits` times
:data:`DEFLATE`) was used before: it priced a 94 % sparse int4 kernel ~20 %
under its deflated size (deflate pays for where the nonzeros are,
docs/RESULTS.md, int4 section), which overrated deep pruning against
thinning. The estimate is re-checked on the exported file anyway.

Example:
    >>> units = weight_options(model, x_val[:1000], y_val[:1000])  # doctest: +SKIP
    >>> [(o.setting, round(o.drop, 2)) for o in units[0].options][:2]  # doctest: +SKIP
    [({}, 0.0), ({'sparsity': 0.0, 'clustered': True}, 0.1)]
"""

import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from tfcompress.channels.sensitivity import sensitivity_scan
from tfcompress.clustering import why_not_clusterable
from tfcompress.pruning.weights import prunable_weights
from tfcompress.scoring import accuracy, count
from tfcompress.target.latency import thinned_ms
from tflite_export import ExportError

__all__ = ["Option", "Unit", "weight_options", "channel_options", "priced_as", "int8_bits", "zipped_bytes",
           "fake_quant", "SPARSITIES", "CLUSTERS", "DEFLATE", "RATIOS"]

#: Sparsity levels scanned per layer.
SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
#: The cluster count of the plan (one for every clustered layer: the clustering stage has one).
CLUSTERS = 16
#: Channel ratios scanned per group for latency.
RATIOS = (0.25, 0.5, 0.75)
#: Zipped bytes per entropy byte of an int8 kernel (deflate's overhead over the entropy).
DEFLATE = 1.15


@dataclass
class Option:
    """One setting of one unit: its cost (bytes, predicted ms or FLOPs) and scanned drop (the metric's unit).

    ``shrink`` (a size plan's channel option, :mod:`tfcompress.target.joint`):
    ``{layer name: share of its kernel kept}``. ``prices`` (a latency plan's option):
    ``{export mode: predicted ms}``, its cost in each mode priced (:func:`priced_as`).
    """

    setting: dict
    cost: float
    drop: float
    shrink: dict | None = None
    prices: dict | None = None

    def to_dict(self):
        out = {"setting": self.setting, "cost": float(f"{float(self.cost):.4g}"), "drop_points": round(self.drop, 3)}
        if self.shrink:
            out["shrink"] = {k: round(float(v), 4) for k, v in self.shrink.items()}
        return out


@dataclass
class Unit:
    """A layer (``kind="weights"``) or channel group (``kind="channels"``) and its options, option 0 untouched.

    ``weight``: scanned points the allocation counts per point of this unit's
    drop (:data:`tfcompress.target.joint.TUNED_WEIGHT` for a briefly fine-tuned
    candidate, whose drop is measured nearer the file's than the raw scan's).
    ``excludes``: the units any other option of this one makes moot (a removed
    block's own channel groups), put back to their option 0 and left there.
    """

    name: str
    kind: str
    weights: int
    options: list = field(default_factory=list)
    weight: float = 1.0
    excludes: tuple = ()

    def to_dict(self):
        out = {"name": self.name, "kind": self.kind, "weights": self.weights,
               "options": [o.to_dict() for o in self.options]}
        if self.weight != 1.0:
            out["drop_weight"] = self.weight
        if self.excludes:
            out["excludes"] = list(self.excludes)
        return out


def _levels(w, bits=8, per_channel=True):
    """``w`` on the symmetric grid of ``bits`` (narrow range: ±(2^(bits-1) - 1)), per output channel (last axis)."""
    w = np.asarray(w, dtype=np.float64)
    flat = w.reshape(-1, w.shape[-1]) if (w.ndim > 1 and per_channel) else w.reshape(-1, 1)
    scale = np.abs(flat).max(axis=0)
    top = 2 ** (bits - 1) - 1
    q = np.round(flat / np.where(scale > 0, scale, 1.0) * top).astype(np.int64)
    return q, scale / top


def int8_bits(w, bits=8, per_channel=True):
    """Entropy in bits per weight of ``w`` quantized to int8 (or ``bits``; symmetric, per channel: the last axis).

    Example:
        >>> round(int8_bits(np.zeros((4, 4))), 2)
        0.0
    """
    q, _ = _levels(w, bits, per_channel)
    p = np.bincount((q - q.min()).ravel()) / q.size
    p = p[p > 0]
    return abs(float((p * np.log2(p)).sum()))


def fake_quant(w, bits=4, per_channel=True):
    """``w`` rounded to its ``bits``-bit grid (zeros stay zero), as the n-bit QAT scheme stores it.

    Example:
        >>> fake_quant(np.array([[0.0, 1.0], [0.5, -0.26]])).round(3).tolist()
        [[0.0, 1.0], [0.5, -0.286]]
    """
    q, step = _levels(w, bits, per_channel)
    return (q * step).reshape(np.shape(w)).astype(np.asarray(w).dtype)


def _prune(w, s):
    if s <= 0:
        return w.copy()
    k = int(round(s * w.size))
    out = w.copy()
    if k:
        idx = np.argsort(np.abs(w), axis=None)[:k]
        out.reshape(-1)[idx] = 0.0
    return out


def _cluster(w, k, iters=12):
    """k-means (linear start) of the nonzero values; zeros stay zero, as sparsity-preserving clustering does."""
    out = w.copy()
    nz = out != 0
    v = out[nz]
    if v.size <= k:
        return out
    c = np.linspace(v.min(), v.max(), k)
    for _ in range(iters):
        a = np.abs(v[:, None] - c[None, :]).argmin(1)
        for j in range(k):
            sel = a == j
            if sel.any():
                c[j] = v[sel].mean()
    out[nz] = c[np.abs(v[:, None] - c[None, :]).argmin(1)]
    return out


def zipped_bytes(w, bits=8, per_channel=True):
    """Deflated bytes of ``w`` quantized to ``bits`` (8 or 4) as a .tflite stores it: output channel first, int4 packed.

    Example:
        >>> zipped_bytes(np.zeros((64, 64))) < 60
        True
    """
    q, _ = _levels(w, bits, per_channel)
    q = np.moveaxis(q.reshape(np.shape(w)), -1, 0).ravel() if np.ndim(w) > 1 else q.ravel()
    if bits == 4:
        q = np.append(q, 0) if q.size % 2 else q
        raw = ((q[0::2] & 0xF) | ((q[1::2] & 0xF) << 4)).astype(np.uint8).tobytes()
    else:
        raw = q.astype(np.int8).tobytes()
    return len(zlib.compress(raw, 9)) - 6  # zlib's header and checksum: not in a zip entry


def _bytes(kernels, bits=8, per_channel=True):
    return float(sum(zipped_bytes(k, bits, per_channel) for k in kernels))


def weight_options(model, x, y, sparsities=SPARSITIES, clusters=CLUSTERS, baseline=None, weights="int8",
                   scorer=None):
    """Prune (and cluster) each prunable layer alone, at each level, and measure the drop.

    With ``weights="int4"`` the layer is also rounded to 4 bits (per output
    channel; per tensor on Dense, as the n-bit QAT scheme does), never
    clustered (the 4-bit grid already bounds its values), and priced as int4:
    option 0 is then the unpruned int4 layer, with its own drop.

    Args:
        model: a tf_keras model (its weights are restored after each try).
        x, y: the validation sample.
        sparsities: the pruning levels. Defaults to :data:`SPARSITIES`.
        clusters: the cluster count tried with each level. Defaults to :data:`CLUSTERS`.
        baseline: the model's score on (x, y) (points), if known. Defaults to `None`.
        weights: ``"int8"`` or ``"int4"`` (the plan's weight format). Defaults to `"int8"`.
        scorer: a :class:`~tfcompress.scoring.Scorer` (the task's metric, in
            points). Defaults to `None` (top-1 accuracy in points).

    Returns:
        A list of :class:`Unit` (cost: estimated zipped kernel bytes).

    Example:
        >>> units = weight_options(model, x, y, sparsities=(0.5,))  # doctest: +SKIP
    """
    score = scorer.model if scorer is not None else (lambda m, a, b: 100.0 * accuracy(m, a, b))
    base = score(model, x, y) if baseline is None else baseline
    int4 = weights == "int4"
    units = []
    for layer in model.layers:
        ws = prunable_weights(layer)
        if not ws:
            continue
        orig = [np.array(w.numpy()) for w in ws]
        per_channel = type(getattr(layer, "layer", layer)).__name__ != "Dense"
        clusterable = not int4 and why_not_clusterable(layer, clusters) is None
        unit = Unit(layer.name, "weights", int(sum(o.size for o in orig)),
                    [] if int4 else [Option({}, _bytes(orig), 0.0)])
        try:
            for s in (0.0, *sparsities):
                for clustered in ((False, True) if clusterable else (False,)):
                    if s == 0 and not clustered and not int4:
                        continue
                    new = [_prune(o, s) for o in orig]
                    if clustered:
                        new = [_cluster(n, clusters) for n in new]
                    if int4:
                        new = [fake_quant(n, 4, per_channel) for n in new]
                    for w, n in zip(ws, new):
                        w.assign(n)
                    drop = base - score(model, x, y)
                    setting = {"sparsity": s} if int4 else {"sparsity": s, "clustered": clustered}
                    unit.options.append(Option(setting, _bytes(new, 4 if int4 else 8, per_channel), drop))
        finally:
            for w, o in zip(ws, orig):
                w.assign(o)
        units.append(unit)
    return units


def channel_options(model, x, y, ratios=RATIOS, scorer=None, threads=1, cost="ms", modes=("int8",)):
    """Thin each channel group alone (``channels.sensitivity_scan``, reused) and measure the drop.

    Args:
        model, x, y: the tf_keras model and the validation sample.
        ratios: the thinning ratios scanned. Defaults to :data:`RATIOS`.
        scorer: a :class:`~tfcompress.scoring.Scorer`. Defaults to `None` (accuracy points).
        threads: XNNPACK threads of the predicted latencies. Defaults to `1`.
        cost: ``"ms"``: each thinned model's latency predicted from this
            machine's measured op costs (:func:`tfcompress.target.latency.thinned_ms`);
            ``"flops"``: its FLOPs (also the fallback when a thinned model
            cannot be priced). Defaults to `"ms"`.
        modes: the export modes priced (``"int8"``, ``"float32"``): the first is each
            option's ``cost``, all of them its ``prices`` (:func:`priced_as`). Defaults to `("int8",)`.

    Returns:
        ``(units, cost_before)``: a list of :class:`Unit` (cost: predicted ms, or
        model FLOPs, with only that group thinned) and the unthinned model's.

    Example:
        >>> units, ms = channel_options(model, x, y, threads=1)  # doctest: +SKIP
    """
    n = count(x)
    rep = sensitivity_scan(model, (x, y), ratios=ratios, max_samples=n, scorer=scorer)
    per_point = 1.0 if scorer is not None else 100.0  # a scorer scores in points already
    flops = {g["name"]: g["flops"] for g in rep.groups}
    priced = {}  # mode -> (ms of the model, {group: {ratio: ms}})
    if cost == "ms":
        try:
            priced = {m: thinned_ms(model, rep, x, threads, mode=m) for m in modes}
        except ExportError:
            priced = {}  # a thinned model that does not convert: priced in FLOPs, as before
    base, costs = priced[modes[0]] if priced else (float(rep.flops_before), flops)
    units = []
    for g in rep.groups:
        opts = [Option({}, base, 0.0, prices={m: p[0] for m, p in priced.items()} or None)]
        for r in rep.ratios:
            opts.append(Option({"ratio": r}, float(costs[g["name"]][r]), per_point * (rep.baseline - g["accuracy"][r]),
                               prices={m: float(p[1][g["name"]][r]) for m, p in priced.items()} or None))
        units.append(Unit(g["name"], "channels", int(g["channels"]), opts))
    return units, base


def priced_as(units, mode, scale=1.0):
    """``units`` with each option's cost its price in export ``mode`` (``Option.prices``; the cost when it has
    none), times ``scale``.

    Example:
        >>> u = Unit("conv", "channels", 8, [Option({}, 2.0, 0.0, prices={"int8": 2.0, "float32": 1.0})])
        >>> priced_as([u], "float32", scale=0.5)[0].options[0].cost
        0.5
    """
    return [replace(u, options=[replace(o, cost=(o.prices or {}).get(mode, o.cost) * scale) for o in u.options])
            for u in units]
