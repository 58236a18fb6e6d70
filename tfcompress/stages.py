"""The recipe stages: frozen dataclasses that validate themselves.

One class per stage of a :class:`~tfcompress.recipe.Recipe` — :class:`Train`,
:class:`Penalty`, :class:`Clustering` here, and re-exported from their
technique's package: :class:`Pruning` (:mod:`tfcompress.pruning.config`),
:class:`Quantization` and :func:`qat_scheme` (:mod:`tfcompress.quantization.config`),
``Channels`` (:mod:`tfcompress.channels.config`), ``Depth``
(:mod:`tfcompress.depth.config`) — plus :class:`Distillation` (applied to
every fine-tuning stage). The shared training fields are in
:mod:`tfcompress._stagebase`.
Every training stage may set its own ``learning_rate``, ``optimizer`` and
``lr_schedule`` (:mod:`tfcompress.schedules`) or inherit the recipe's.
Each checks its fields with :mod:`tfcompress._checks` and raises
:class:`~tfcompress.errors.RecipeError` naming the field and what is allowed.
:func:`qat_scheme` is where the QAT variant (QAT, PQAT, CQAT, PCQAT) is chosen.

Example:
    >>> from tfcompress.stages import Clustering, Quantization, qat_scheme
    >>> Clustering(number_of_clusters=8).number_of_clusters
    8
    >>> qat_scheme(Quantization(), pruned=True, clustered=False)
    'pqat'
"""

import typing
from dataclasses import dataclass

from tfcompress._checks import check_bool, check_choice, check_int, check_patterns, check_range
from tfcompress._stagebase import _Trains, is_schedule_object
from tfcompress.channels.config import Channels
from tfcompress.depth.config import Depth
from tfcompress.errors import RecipeError
from tfcompress.precision.config import Precision
from tfcompress.pruning.config import PRUNING_POLICIES, Pruning, PruningSteps
from tfcompress.quantization.config import QUANTIZATION_SCHEMES, SCHEME_NEEDS, Quantization, qat_scheme

__all__ = [
    "Train", "Depth", "Channels", "Penalty", "Pruning", "Clustering", "Quantization", "Distillation", "PruningSteps",
    "STAGE_CLASSES", "CENTROID_INITS", "QUANTIZATION_SCHEMES", "PRUNING_POLICIES", "SCHEME_NEEDS",
    "qat_scheme", "is_schedule_object", "Precision",
]

CENTROID_INITS = ("kmeans_plus_plus", "linear", "density_based", "random")


@dataclass(frozen=True)
class Train(_Trains):
    """Train (or continue training) the model before any compression stage.

    With a freshly built model this is the whole training run; with a trained
    one it continues. The tuner's trials train through this stage, so a
    trial's recipe holds its training schedule.

    Args:
        epochs: training epochs. Defaults to `1`.
        learning_rate: overrides ``recipe.learning_rate``. Defaults to `None`.
        optimizer: overrides ``recipe.optimizer``. Defaults to `None`.
        lr_schedule: overrides ``recipe.lr_schedule``. Defaults to `None`.

    Example:
        >>> Train(epochs=5, lr_schedule={"kind": "cosine", "warmup_epochs": 1}).lr_schedule.warmup_epochs
        1.0
    """

    epochs: int = 1

    def __post_init__(self):
        check_int("train", "epochs", self.epochs)
        self._check_training("train")



@dataclass(frozen=True)
class Penalty(_Trains):
    """L1/L2 weight penalty stage: fine-tune with ``l1*|w| + l2*w²`` added to
    the loss so that small weights move towards zero before pruning.

    Args:
        l1: L1 factor, in [0, 1]. Defaults to `1e-5`.
        l2: L2 factor, in [0, 1]. Defaults to `0.0`.
        epochs: fine-tuning epochs of this stage. Defaults to `1`.

    Raises:
        RecipeError: both factors are zero, or a value is out of range.

    Example:
        >>> Penalty(l1=1e-4, epochs=2)
        Penalty(l1=0.0001, l2=0.0, epochs=2)
    """

    l1: float = 1e-5
    l2: float = 0.0
    epochs: int = 1

    def __post_init__(self):
        check_range("penalty", "l1", self.l1, 0, 1)
        check_range("penalty", "l2", self.l2, 0, 1)
        if self.l1 == 0 and self.l2 == 0:
            raise RecipeError("penalty needs penalty.l1 or penalty.l2 above 0: set one, or remove the penalty stage.")
        check_int("penalty", "epochs", self.epochs)
        self._check_training("penalty")


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


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation from the model before compression, applied to
    every fine-tuning stage: ``loss = alpha * task + (1 - alpha) * T² * KL``.

    Args:
        alpha: weight of the task loss, in [0, 1]. Defaults to `0.5`.
        temperature: softening temperature, > 0. Defaults to `4.0`.

    Example:
        >>> Distillation(alpha=0.2, temperature=2)
        Distillation(alpha=0.2, temperature=2)
    """

    alpha: float = 0.5
    temperature: float = 4.0

    def __post_init__(self):
        check_range("distillation", "alpha", self.alpha, 0, 1)
        check_range("distillation", "temperature", self.temperature, 0, 100, lo_open=True)




#: Recipe field name -> stage class, in the order the stages run.
STAGE_CLASSES = {
    "train": Train, "depth": Depth, "channels": Channels, "penalty": Penalty, "pruning": Pruning,
    "clustering": Clustering, "quantization": Quantization, "precision": Precision,
}
