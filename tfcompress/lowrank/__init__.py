"""Low-rank factorisation of Dense layers and 1×1 convolutions: ``W ≈ A · B`` by truncated SVD, then fine-tuning.

A recipe's ``lowrank`` stage (after ``channels``, before ``pruning`` and
``quantization``) replaces each chosen ``Dense`` by two: ``Dense(r,
use_bias=False)`` then the layer itself with ``r`` inputs (a 1×1 stride-1
``Conv2D``: ``Conv2D(r, 1, use_bias=False)`` then itself). On LeNet-5 /
Fashion-MNIST the thinned ``fc1`` (200 × 32) at rank 16 holds 3,712 weights
instead of 6,400 (``benchmarks/bench_lowbit.py``).

Example:
    >>> from tfcompress.lowrank import LowRank, rank_of
    >>> rank_of(0.5, 200, 32)
    16
    >>> LowRank(per_layer={"fc1": 16}, epochs=3).epochs
    3
"""

from tfcompress.lowrank.config import LowRank
from tfcompress.lowrank.surgery import factorize, matrix_shape, rank_of, svd_factors

__all__ = ["LowRank", "factorize", "matrix_shape", "rank_of", "svd_factors"]
