"""Depth reduction: remove whole residual blocks or same-shape layers.

A block is replaced by identity (a residual branch goes and its ``Add`` passes
the skip tensor on; a same-shape Conv/Dense unit passes its input on), chosen
by a cheap proxy (``branch_norm``) or a sensitivity scan, to a block count or
a FLOPs target; the graph surgery goes through the channels dependency
analysis (:mod:`tfcompress.channels.graph`).

Example:
    >>> from tfcompress import depth
    >>> [b.name for b in depth.find_blocks(model).blocks]        # doctest: +SKIP
    ['b0', 'b1']
    >>> small, report = depth.remove_blocks(model, 1, data=(x, y))   # doctest: +SKIP
"""

from tfcompress.depth.candidates import Block, Candidates, find_blocks
from tfcompress.depth.config import DEPTH_CRITERIA, Depth
from tfcompress.depth.removal import DepthReport, rank_blocks, remove_blocks
from tfcompress.depth.surgery import rebuild_without

__all__ = ["Block", "Candidates", "DEPTH_CRITERIA", "Depth", "DepthReport", "find_blocks", "rank_blocks",
           "rebuild_without", "remove_blocks"]
