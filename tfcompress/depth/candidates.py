"""Which blocks of a model can be replaced by identity, and what each costs.

Two kinds of candidate, found on the channels dependency graph
(:class:`tfcompress.channels.graph.Analysis`, the same walk channel pruning
uses):

- ``"residual"``: the branch between a tensor ``x`` and the two-input ``Add``
  that joins it back (``Add([x, f(x)])`` with equal shapes), when every layer of
  the branch is used only inside it. Removing it drops the branch and the
  ``Add``: the ``Add``'s consumers read ``x`` (exactly the original model with
  ``f(x) = 0``).
- ``"layer"``: a Conv/Dense (or depthwise/separable conv) whose output shape
  equals its input shape, with the channel-wise layers (BatchNorm,
  activations, dropout) that follow it alone; its consumers read its input.

Example:
    >>> from tfcompress.depth import find_blocks
    >>> [(b.name, b.kind) for b in find_blocks(model).blocks]   # doctest: +SKIP
    [('b0', 'residual'), ('b1', 'residual')]
"""

import os
from collections import defaultdict
from dataclasses import dataclass, field

from tfcompress._keras import keras
from tfcompress.channels.cost import count_flops, layer_costs
from tfcompress.channels.graph import _key, _kind, _shape, analyze

__all__ = ["Block", "Candidates", "find_blocks"]

_WEIGHTED = ("conv", "depthwise", "separable", "dense")


@dataclass
class Block:
    """One removable block.

    Attributes:
        name: the block's name (the common prefix of its layers' names, else
            the ``Add``'s or the unit's first layer's name).
        kind: ``"residual"`` or ``"layer"``.
        layers: names of the layers that go (the ``Add`` included).
        in_key: the tensor the block's consumers read once it is gone.
        out_key: the tensor the block produced (the ``Add``'s output).
        branch_key: the branch's output tensor (residual blocks only).
        flops: FLOPs the removal saves (one sample).
        params: parameters the removal saves.
    """

    name: str
    kind: str
    layers: tuple
    in_key: tuple = field(repr=False)
    out_key: tuple = field(repr=False)
    branch_key: tuple | None = field(default=None, repr=False)
    flops: int = 0
    params: int = 0
    order: int = field(default=0, repr=False)


@dataclass
class Candidates:
    """The removable blocks of one model and the analysis they refer to.

    Attributes:
        analysis: the :class:`~tfcompress.channels.graph.Analysis` (of the
            model with nested models inlined).
        blocks: the :class:`Block` list, in model order.
        flops: FLOPs of the whole model (one sample).
        params: parameters of the whole model.
    """

    analysis: object
    blocks: list
    flops: int
    params: int

    @property
    def model(self):
        """The analysed (flat) model."""
        return self.analysis.model

    def tensor(self, key):
        """The KerasTensor of ``key`` in the analysed model."""
        for _, _, outs in self.analysis.nodes:
            for t in outs:
                if _key(t) == key:
                    return t
        raise KeyError(key)  # pragma: no cover

    def block_of(self, layer_name):
        """The block a layer belongs to, else None."""
        for b in self.blocks:
            if layer_name in b.layers:
                return b
        return None


def _name(names, fallback):
    prefix = os.path.commonprefix(list(names)).rstrip("_/.-")
    return prefix if len(prefix) >= 2 else fallback


def find_blocks(model):
    """The blocks of ``model`` that can be replaced by identity.

    Args:
        model: a tf_keras Sequential or Functional model.

    Returns:
        a :class:`Candidates`; nested blocks (a residual block inside another's
        branch) are both listed: the removal never takes two that overlap.

    Raises:
        UnsupportedModelError: Keras 3, subclassed or unbuilt model.
    """
    a = analyze(model)
    nodes = a.nodes
    producer, consumers = {}, defaultdict(list)
    for i, (_, ins, outs) in enumerate(nodes):
        for t in outs:
            producer[_key(t)] = i
        for t in ins:
            consumers[_key(t)].append(i)
    outputs = {_key(t) for t in a.model.outputs}
    costs = layer_costs(a.model)
    blocks = []

    def own(i):  # a layer used once (not shared), single output
        return nodes[i][0].name in a.layer_io and len(nodes[i][2]) == 1

    def make(kind, idx, in_key, out_key, branch_key, fallback):
        names = tuple(nodes[i][0].name for i in sorted(idx))
        flops = sum(costs.get(n, (0, 0))[0] for n in names)
        params = sum(int(nodes[i][0].count_params()) for i in idx)
        return Block(_name(names, fallback), kind, names, in_key, out_key, branch_key, flops, params, max(idx))

    for i, (layer, ins, outs) in enumerate(nodes):
        if not isinstance(layer, keras.layers.Add) or len(ins) != 2 or not own(i):
            continue
        if len({_shape(t) for t in ins + outs}) != 1 or _key(outs[0]) in outputs:
            continue
        for skip, branch in ((ins[0], ins[1]), (ins[1], ins[0])):
            body = _branch(nodes, producer, consumers, outputs, _key(skip), _key(branch), i, own)
            if body:
                blocks.append(make("residual", body | {i}, _key(skip), _key(outs[0]), _key(branch), layer.name))
                break
    in_residual = {n for b in blocks for n in b.layers}
    for i, (layer, ins, outs) in enumerate(nodes):
        if _kind(layer) not in _WEIGHTED or layer.name in in_residual or len(ins) != 1 or not own(i):
            continue
        shape = _shape(ins[0])
        if _shape(outs[0]) != shape:
            continue
        unit, j = [i], i
        while True:
            out = _key(nodes[j][2][0])
            nxt = consumers.get(out, [])
            if out in outputs or len(nxt) != 1:
                break
            k = nxt[0]
            lk = nodes[k][0]
            if (_kind(lk) != "pass" or len(nodes[k][1]) != 1 or not own(k) or lk.name in in_residual
                    or _shape(nodes[k][2][0]) != shape):
                break
            unit.append(k)
            j = k
        out = _key(nodes[unit[-1]][2][0])
        if out in outputs:
            continue
        blocks.append(make("layer", set(unit), _key(ins[0]), out, None, layer.name))
    blocks.sort(key=lambda b: b.order)
    return Candidates(a, blocks, count_flops(a.model), int(a.model.count_params()))


def _branch(nodes, producer, consumers, outputs, skip, branch, add, own):
    """Node indices between ``skip`` and the ``Add`` (exclusive), or None
    when the branch does not start at ``skip`` alone or leaks elsewhere."""
    if skip == branch:
        return None
    body, stack = set(), [branch]
    while stack:
        k = stack.pop()
        if k == skip:
            continue
        i = producer.get(k)
        if i is None or not nodes[i][1] or not own(i):
            return None  # reaches a model input or a shared layer without passing through skip
        if i in body:
            continue
        body.add(i)
        stack.extend(_key(t) for t in nodes[i][1])
    if not body:
        return None
    for i in body:
        out = _key(nodes[i][2][0])
        if out in outputs or any(c not in body and c != add for c in consumers.get(out, [])):
            return None
    return body
