"""Which ops of a .tflite file XNNPACK runs, and which fall back to builtin kernels.

LiteRT's default XNNPACK delegate replaces each run of ops it supports with one
``DELEGATE`` node appended to the graph; the ops it does not support stay on
LiteRT's builtin (reference or optimised) kernels, and every switch between
the two costs a partition boundary. :func:`delegation` opens the file with
XNNPACK and reads the interpreter's nodes: an original op belongs to a
delegate node when it lies between that node's inputs and outputs; the rest
are the fallbacks. :func:`fallback_summary` turns that into the words a
report prints beside a file slower than its float32 twin.

Example:
    >>> d = delegation("model_int8.tflite", num_threads=1)  # doctest: +SKIP
    >>> d.fallback  # doctest: +SKIP
    {'GELU': 1, 'SOFTMAX': 1}
    >>> fallback_summary(d)  # doctest: +SKIP
    '2 of 5 ops fall back to builtin kernels (not delegated to XNNPACK): GELU x1, SOFTMAX x1; ...'
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ._record import Record
from ._runtime import open_interpreter

__all__ = ["Delegation", "delegation", "split", "fallback_summary"]

_DELEGATE = "DELEGATE"


@dataclass
class Delegation(Record):
    """How a file's ops split between XNNPACK and builtin kernels.

    Attributes:
        ops: ops in the file (delegate nodes not counted).
        delegated: ops XNNPACK runs.
        partitions: XNNPACK delegate nodes (each boundary with builtin ops costs a hand-over).
        fallback: op name -> count of ops left on builtin kernels.
        fallback_nodes: ``(node index, op name)`` of each of them, in graph order.
    """

    ops: int
    delegated: int
    partitions: int
    fallback: dict = field(default_factory=dict)
    fallback_nodes: list = field(default_factory=list)



def _covered(nodes, producers, delegate):
    """Indices of the original nodes between a delegate node's inputs and outputs."""
    stop = {int(t) for t in delegate["inputs"]}
    seen, todo = set(), [int(t) for t in delegate["outputs"]]
    while todo:
        t = todo.pop()
        n = producers.get(t)
        if t in stop or n is None or n in seen:
            continue
        seen.add(n)
        todo += [int(i) for i in nodes[n]["inputs"] if int(i) >= 0]
    return seen


def split(it):
    """A :class:`Delegation` of an allocated interpreter (any delegate's ``DELEGATE`` nodes count).

    Args:
        it: An allocated ``ai_edge_litert.interpreter.Interpreter``.

    Returns:
        A :class:`Delegation`.

    Example:
        >>> split(open_interpreter("m_int8.tflite")).partitions  # doctest: +SKIP
        1
    """
    nodes = {int(d["index"]): d for d in it._get_ops_details()}  # pylint: disable=protected-access
    original = {i: d for i, d in nodes.items() if d["op_name"] != _DELEGATE}
    producers = {int(t): i for i, d in original.items() for t in d["outputs"]}
    delegates = [d for d in nodes.values() if d["op_name"] == _DELEGATE]
    inside = set()
    for d in delegates:
        inside |= _covered(original, producers, d)
    left = [(i, original[i]["op_name"]) for i in sorted(original) if i not in inside]
    return Delegation(ops=len(original), delegated=len(inside), partitions=len(delegates),
                      fallback=dict(Counter(name for _, name in left)), fallback_nodes=left)


def delegation(path, num_threads=1):
    """Which ops of ``path`` XNNPACK takes over and which stay on builtin kernels.

    Args:
        path: The .tflite file (checked before it is opened).
        num_threads: Interpreter threads (delegation does not depend on it).
            Defaults to `1`.

    Returns:
        A :class:`Delegation`.

    Raises:
        ExportError: the file is damaged or LiteRT cannot open it.

    Example:
        >>> delegation("model_float32.tflite").fallback  # doctest: +SKIP
        {}
    """
    return split(open_interpreter(path, num_threads=num_threads, use_xnnpack=True))


def fallback_summary(d):
    """One sentence on a :class:`Delegation`: the ops left on builtin kernels, or that there are none.

    Example:
        >>> d = Delegation(ops=5, delegated=3, partitions=2, fallback={"GELU": 1, "SOFTMAX": 1})
        >>> fallback_summary(d).split(": ", 1)[1]
        'GELU x1, SOFTMAX x1; XNNPACK runs the other 3 in 2 partitions'
        >>> fallback_summary(Delegation(ops=5, delegated=5, partitions=1))
        'all 5 ops run in XNNPACK (1 partition): no op falls back to builtin kernels'
    """
    if not d.fallback:
        return (f"all {d.ops} ops run in XNNPACK ({d.partitions} partition{'s' * (d.partitions != 1)}): "
                "no op falls back to builtin kernels")
    names = ", ".join(f"{name} x{n}" for name, n in sorted(d.fallback.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"{d.ops - d.delegated} of {d.ops} ops fall back to builtin kernels (not delegated to XNNPACK): "
            f"{names}; XNNPACK runs the other {d.delegated} in {d.partitions} "
            f"partition{'s' * (d.partitions != 1)}")
