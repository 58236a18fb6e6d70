"""Channel dependency analysis of a tf_keras model.

Every tensor in the model gets a *channel map*: for each position of its last
(channel) axis, the *group* the channel comes from and the channel's index in
that group. A group is a set of producer layers (``Conv*``, ``Dense``) whose
output channels must be pruned together: a residual ``Add`` ties the groups of
its inputs into one; ``Concatenate`` concatenates maps; ``Flatten`` tiles the
map over the spatial positions; channel-wise layers (BatchNorm, activations,
pooling, dropout, ``DepthwiseConv2D``) pass it through. Anything we do not
understand (``Reshape``, ``Lambda``/``TFOpLambda``, nested models, unknown
layers) *locks* the groups that reach it, with the reason recorded, and so do
the model inputs and outputs.

Example:
    >>> from tfcompress.channels import dependency_groups
    >>> for g in dependency_groups(model):
    ...     print(g.name, g.channels, g.prunable, g.reason)
"""

from dataclasses import dataclass, field

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress._model import flatten_nested
from tfcompress.errors import UnsupportedModelError

__all__ = ["Group", "Analysis", "analyze", "dependency_groups", "inline_nested"]

L = keras.layers

# Layers whose output channel c depends only on input channel c.
_PASS_THROUGH = tuple(
    getattr(L, n)
    for n in (
        "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU",
        "ThresholdedReLU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
        "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
        "ActivityRegularization", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
        "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "ZeroPadding1D",
        "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
        "UpSampling1D", "UpSampling2D", "UpSampling3D", "GlobalAveragePooling1D",
        "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
        "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    )
    if hasattr(L, n)
)
_MERGE = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
_CHANNEL_MIXING_ACTIVATIONS = ("softmax", "log_softmax")


@dataclass
class Group:
    """Layers whose output channels are pruned together.

    Attributes:
        id: internal group id.
        members: producer layers (``Conv*``/``Dense``) whose filters/units shrink
            together; empty for the group of a model input or a locked layer's
            output.
        channels: number of channels in the group.
        prunable: True when the group's channels can be removed.
        reason: why the group is locked (None when prunable).
        consumers: layers whose weights or inputs follow the group's channels.
    """

    id: int
    members: list
    channels: int
    prunable: bool
    reason: str | None = None
    consumers: list = field(default_factory=list)
    origin: str = ""

    @property
    def name(self):
        """Name of the group: its first producer layer (or what created it)."""
        return self.members[0] if self.members else self.origin

    def to_dict(self):
        """JSON-able dict of the group."""
        return {
            "name": self.name,
            "members": list(self.members),
            "channels": int(self.channels),
            "prunable": bool(self.prunable),
            "reason": self.reason,
            "consumers": list(self.consumers),
        }


class ChannelMap:
    """Group id and in-group channel index of each channel of a tensor."""

    __slots__ = ("gid", "ch")

    def __init__(self, gid, ch):
        self.gid = np.asarray(gid, dtype=np.int64)
        self.ch = np.asarray(ch, dtype=np.int64)

    def __len__(self):
        return len(self.gid)


def _is(layer, *names):
    return any(hasattr(L, n) and isinstance(layer, getattr(L, n)) for n in names)


def _kind(layer):
    """Role of a layer in channel pruning."""
    if isinstance(layer, keras.Model):
        return "unknown"
    if isinstance(layer, L.InputLayer):
        return "input"
    if _is(layer, "DepthwiseConv2D", "DepthwiseConv1D"):
        return "depthwise"
    if _is(layer, "SeparableConv1D", "SeparableConv2D"):
        return "separable"
    if _is(layer, "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        return "conv_transpose"
    if _is(layer, "Conv1D", "Conv2D", "Conv3D"):
        return "conv"
    if isinstance(layer, L.Dense):
        return "dense"
    if isinstance(layer, _PASS_THROUGH):
        return "pass"
    if isinstance(layer, L.Flatten):
        return "flatten"
    if isinstance(layer, L.Concatenate):
        return "concat"
    if isinstance(layer, _MERGE):
        return "merge"
    return "unknown"


def _shape(t):
    return tuple(None if d is None else int(d) for d in t.shape)


def _key(t):
    layer, node_index, tensor_index = t._keras_history
    return (id(layer), node_index, tensor_index)


def _activation_name(layer):
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", str(act)) if act is not None else ""


class Analysis:
    """Channel dependency analysis of one model (internal).

    Attributes:
        model: the analysed model.
        nodes: (layer, input tensors, output tensors) in topological order.
        maps: tensor key -> :class:`ChannelMap`.
    """

    def __init__(self, model):
        self.model = model
        self.nodes = []
        self.keras_nodes = []  # the Keras Node of each entry of nodes (call_args for rebuilds)
        self.maps = {}
        self._parent = []
        self._ginfo = []  # per gid: dict(members, channels, reasons, origin, consumers)
        self.layer_io = {}  # layer name -> (in_keys, out_keys, in_shapes, out_shapes)
        self._build()

    # -- union-find over groups --------------------------------------------
    def _new_group(self, n, producer=None, reason=None, origin=""):
        gid = len(self._parent)
        self._parent.append(gid)
        self._ginfo.append(
            {
                "members": [producer] if producer else [],
                "channels": int(n),
                "reasons": [reason] if reason else [],
                "origin": origin or producer or "",
                "consumers": [],
            }
        )
        return ChannelMap(np.full(n, gid), np.arange(n))

    def find(self, gid):
        while self._parent[gid] != gid:
            self._parent[gid] = self._parent[self._parent[gid]]
            gid = self._parent[gid]
        return gid

    def _union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        ia, ib = self._ginfo[a], self._ginfo[b]
        # Keep the group with producers as the root so its name is a layer name.
        if not ia["members"] and ib["members"]:
            a, b, ia, ib = b, a, ib, ia
        self._parent[b] = a
        ia["members"] += [m for m in ib["members"] if m not in ia["members"]]
        ia["reasons"] += [r for r in ib["reasons"] if r not in ia["reasons"]]
        ia["consumers"] += [c for c in ib["consumers"] if c not in ia["consumers"]]
        if not ia["origin"]:
            ia["origin"] = ib["origin"]

    def _lock(self, cmap, reason):
        for g in set(int(self.find(x)) for x in np.unique(cmap.gid)):
            if reason not in self._ginfo[g]["reasons"]:
                self._ginfo[g]["reasons"].append(reason)

    def _consume(self, cmap, name):
        # Through find(): a map made before an Add merged its group carries the old gid.
        for g in set(int(self.find(x)) for x in np.unique(cmap.gid)):
            cons = self._ginfo[g]["consumers"]
            if name not in cons:
                cons.append(name)

    def _opaque(self, layer, outs, reason_in, ins):
        for m in ins:
            self._lock(m, reason_in)
        res = []
        for t in outs:
            shp = _shape(t)
            n = shp[-1] if shp and shp[-1] is not None else 0
            res.append(
                self._new_group(
                    n, reason=f"output of {type(layer).__name__} '{layer.name}'",
                    origin=layer.name,
                )
            )
        return res

    # -- graph walk ---------------------------------------------------------
    def _build(self):
        model = self.model
        by_depth = model._nodes_by_depth
        counts = {}
        ordered = []
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                ordered.append(node)
                counts[id(node.layer)] = counts.get(id(node.layer), 0) + 1
        for node in ordered:
            layer = node.layer
            ins = list(node.keras_inputs) if not node.is_input else []
            outs = tf.nest.flatten(node.outputs)
            self.nodes.append((layer, ins, outs))
            self.keras_nodes.append(node)
            in_maps = [self.maps[_key(t)] for t in ins]
            shared = counts[id(layer)] > 1
            out_maps = self._process(layer, ins, outs, in_maps, shared)
            for t, m in zip(outs, out_maps):
                self.maps[_key(t)] = m
            if not shared:
                self.layer_io[layer.name] = (
                    [_key(t) for t in ins], [_key(t) for t in outs],
                    [_shape(t) for t in ins], [_shape(t) for t in outs],
                )
        for t in model.outputs:
            self._lock(self.maps[_key(t)], "feeds a model output")

    def _process(self, layer, ins, outs, in_maps, shared):
        name, cls = layer.name, type(layer).__name__
        kind = _kind(layer)
        if kind == "input":
            n = _shape(outs[0])[-1] or 0
            return [self._new_group(n, reason=f"model input '{name}'", origin=name)]
        if shared:
            return self._opaque(layer, outs, f"feeds shared layer '{name}' (used more than once)", in_maps)
        for m in in_maps:
            self._consume(m, name)
        cfg = layer.get_config()
        fmt = cfg.get("data_format")
        if fmt not in (None, "channels_last"):
            return self._opaque(layer, outs, f"feeds {cls} '{name}' with data_format={fmt}", in_maps)
        if kind == "unknown":
            what = "nested model" if isinstance(layer, keras.Model) else cls
            return self._opaque(layer, outs, f"feeds {what} '{name}' (not supported by channel pruning)", in_maps)
        if len(outs) != 1:
            return self._opaque(layer, outs, f"feeds multi-output layer '{name}'", in_maps)
        out_shape = _shape(outs[0])
        if kind in ("conv", "dense", "separable", "conv_transpose"):
            if len(in_maps) != 1:
                return self._opaque(layer, outs, f"feeds {cls} '{name}' with several inputs", in_maps)
            if cfg.get("groups", 1) != 1:
                return self._opaque(layer, outs, f"feeds grouped conv '{name}'", in_maps)
            n = out_shape[-1]
            m = self._new_group(n, producer=name)
            if _activation_name(layer) in _CHANNEL_MIXING_ACTIVATIONS:
                self._lock(m, f"'{name}' has a {_activation_name(layer)} activation over its channels")
            return [m]
        if len(in_maps) != 1 and kind not in ("concat", "merge"):
            return self._opaque(layer, outs, f"feeds {cls} '{name}' with several inputs", in_maps)
        if kind == "depthwise":
            mult = int(cfg.get("depth_multiplier", 1))
            m = in_maps[0]
            return [ChannelMap(np.repeat(m.gid, mult), np.repeat(m.ch, mult))]
        if kind == "pass":
            if isinstance(layer, L.BatchNormalization):
                axis = cfg.get("axis", -1)
                axis = axis if isinstance(axis, (list, tuple)) else [axis]
                rank = len(out_shape)
                if [a % rank for a in axis] != [rank - 1]:
                    return self._opaque(layer, outs, f"feeds BatchNormalization '{name}' with axis={axis}", in_maps)
            if isinstance(layer, L.Activation) and _activation_name(layer) in _CHANNEL_MIXING_ACTIVATIONS:
                return self._opaque(layer, outs, f"feeds '{name}' ({_activation_name(layer)} over channels)", in_maps)
            if len(in_maps[0]) != out_shape[-1]:
                return self._opaque(layer, outs, f"feeds {cls} '{name}' that changes the channel count", in_maps)
            return [in_maps[0]]
        if kind == "flatten":
            in_shape = _shape(ins[0])
            if any(d is None for d in in_shape[1:]):
                return self._opaque(layer, outs, f"feeds Flatten '{name}' with unknown spatial size", in_maps)
            reps = int(np.prod(in_shape[1:-1])) if len(in_shape) > 2 else 1
            m = in_maps[0]
            return [ChannelMap(np.tile(m.gid, reps), np.tile(m.ch, reps))]
        if kind == "concat":
            rank = len(out_shape)
            if cfg.get("axis", -1) % rank != rank - 1:
                return self._opaque(layer, outs, f"feeds Concatenate '{name}' along axis {cfg.get('axis')}", in_maps)
            return [ChannelMap(np.concatenate([m.gid for m in in_maps]), np.concatenate([m.ch for m in in_maps]))]
        if kind == "merge":
            lens = {len(m) for m in in_maps}
            if len(lens) != 1:
                return self._opaque(layer, outs, f"feeds {cls} '{name}' that broadcasts channels", in_maps)

            def simple(m):
                return len(np.unique(m.gid)) == 1 and np.array_equal(m.ch, np.arange(len(m)))

            if all(simple(m) for m in in_maps):
                g0 = int(in_maps[0].gid[0])
                for m in in_maps[1:]:
                    self._union(g0, int(m.gid[0]))
                return [in_maps[0]]
            roots0 = np.array([self.find(g) for g in in_maps[0].gid])
            same = all(
                np.array_equal(roots0, np.array([self.find(g) for g in m.gid]))
                and np.array_equal(in_maps[0].ch, m.ch)
                for m in in_maps[1:]
            )
            if same:
                return [in_maps[0]]
            return self._opaque(layer, outs, f"feeds {cls} '{name}' whose inputs have mismatched channel maps", in_maps)
        return self._opaque(layer, outs, f"feeds {cls} '{name}'", in_maps)  # pragma: no cover

    # -- results ------------------------------------------------------------
    def groups(self):
        """All groups (roots), in model order, as :class:`Group` objects."""
        out, seen = [], set()
        for gid in range(len(self._parent)):
            r = self.find(gid)
            if r in seen:
                continue
            seen.add(r)
            info = self._ginfo[r]
            reasons = info["reasons"]
            if not info["members"] and not reasons:
                reasons = ["no prunable producer"]
            if info["channels"] < 2 and not reasons:
                reasons = ["has a single channel"]
            out.append(
                Group(
                    id=r, members=list(info["members"]), channels=info["channels"],
                    prunable=not reasons, reason="; ".join(reasons) if reasons else None,
                    consumers=list(info["consumers"]), origin=info["origin"],
                )
            )
        return out

    def mask(self, key, keep):
        """Boolean keep mask of a tensor's channels given ``keep[root] -> bool array``."""
        m = self.maps[key]
        res = np.ones(len(m), dtype=bool)
        for g in np.unique(m.gid):
            r = self.find(int(g))
            if r in keep:
                sel = m.gid == g
                res[sel] = keep[r][m.ch[sel]]
        return res


def _graph_model(layer):
    return isinstance(layer, keras.Model) and getattr(layer, "_is_graph_network", False)


def inline_nested(model):
    """A Functional model equal to ``model`` with nested Sequential/Functional
    sub-models replaced by their layers (same layer objects, same weights), so
    their channels can be pruned too.

    Args:
        model: a tf_keras Sequential or Functional model.

    Returns:
        (model, notes): ``model`` itself when it has no nested models or they
        cannot be inlined (e.g. duplicate layer names; then they stay locked and
        a note says why), else the flat model.
    """
    nested = [l.name for l in model.layers if _graph_model(l)]
    if not nested:
        return model, []
    try:
        flat = flatten_nested(model)  # the boundary's inliner, shared with optimize
    except UnsupportedModelError as e:
        return model, [f"nested model(s) {', '.join(nested)} not inlined ({e}): their channels stay locked"]
    return flat, [f"nested model(s) {', '.join(nested)} inlined: the result is a flat Functional model"]


def analyze(model):
    """Run the dependency analysis (internal; use :func:`dependency_groups`)."""
    from tfcompress._model import check_model

    check_model(model)
    return Analysis(inline_nested(model)[0])


def dependency_groups(model):
    """Groups of layers whose channels must be pruned together.

    Args:
        model: a tf_keras Sequential or Functional model.

    Returns:
        list of :class:`Group`, in model order: each with its producer layers,
        channel count, and whether it is prunable (or the reason it is locked).

    Nested Sequential/Functional sub-models are analysed through (as
    :func:`prune_channels` inlines them); when that is impossible they are
    locked with the reason.

    Raises:
        UnsupportedModelError: for Keras 3, subclassed or unbuilt models.

    Example:
        >>> [(g.name, g.prunable) for g in dependency_groups(model)]
        [('input_1', False), ('conv1', True), ('dense', False)]
    """
    return analyze(model).groups()
