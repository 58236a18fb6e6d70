"""The ``clustering`` recipe stage: :class:`Clustering`.

Example:
    >>> Clustering(number_of_clusters=8, centroid_init="linear").number_of_clusters
    8
"""

import typing
from dataclasses import dataclass

from tfcompress._checks import check_bool, check_choice, check_int, check_patterns, check_range
from tfcompress._stagebase import _Trains

__all__ = ["Clustering", "CENTROID_INITS"]

CENTROID_INITS = ("kmeans_plus_plus", "linear", "density_based", "random")

@dataclass(frozen=True)
class Clustering(_Trains):
    """Weight clustering (TF-MOT ``cluster_weights``): each kernel keeps at most
    ``number_of_clusters`` distinct values (per output channel with
    ``per_channel``), fine-tuned, then the wrappers are stripped.

    Args:
        number_of_clusters: distinct values per kernel, at least 2. Defaults
            to `16`.
        centroid_init: ``"kmeans_plus_plus"``, ``"linear"``,
            ``"density_based"`` or ``"random"``. Defaults to
            `"kmeans_plus_plus"`.
        preserve_sparsity: keep the zeros of an earlier pruning stage
            (sparsity-preserving clustering); None turns it on exactly when a
            pruning stage ran. Defaults to `None`.
        per_channel: cluster each output channel of Conv2D kernels separately
            (TF-MOT ``cluster_per_channel``). Defaults to `False`.
        epochs: fine-tuning epochs of this stage. Defaults to `2`.
        learning_rate_scale: fine-tunes at ``recipe.learning_rate`` times
            this. Defaults to `0.5`.
        include: cluster only layers matching one of these names, regular
            expressions or layer types. Defaults to `None` (all).
        exclude: never cluster layers matching one of these. Defaults to `None`.

    Raises:
        RecipeError: fewer than 2 clusters, or another bad value.

    Example:
        >>> Clustering(number_of_clusters=8, centroid_init="linear").number_of_clusters
        8
    """

    number_of_clusters: int = 16
    centroid_init: str = "kmeans_plus_plus"
    preserve_sparsity: bool | None = None
    per_channel: bool = False
    epochs: int = 2
    learning_rate_scale: float = 0.5
    include: typing.Sequence[str] | None = None
    exclude: typing.Sequence[str] | None = None

    def __post_init__(self):
        check_int("clustering", "number_of_clusters", self.number_of_clusters, minimum=2)
        check_choice("clustering", "centroid_init", self.centroid_init, CENTROID_INITS)
        check_bool("clustering", "preserve_sparsity", self.preserve_sparsity, optional=True)
        check_bool("clustering", "per_channel", self.per_channel)
        check_int("clustering", "epochs", self.epochs)
        self._check_training("clustering")
        check_range("clustering", "learning_rate_scale", self.learning_rate_scale, 0, 10, lo_open=True)
        object.__setattr__(self, "include", check_patterns("clustering", "include", self.include))
        object.__setattr__(self, "exclude", check_patterns("clustering", "exclude", self.exclude))
