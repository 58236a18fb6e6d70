"""The ``quantization`` recipe stage: :class:`Quantization` and :func:`qat_scheme`.

Example:
    >>> from tfcompress.quantization.config import Quantization, qat_scheme
    >>> qat_scheme(Quantization(), pruned=True, clustered=False)
    'pqat'
"""

import typing
from dataclasses import dataclass

from tfcompress._checks import check_bool, check_choice, check_int, check_patterns, check_range
from tfcompress._stagebase import _Trains
from tfcompress.errors import RecipeError

__all__ = ["Quantization", "qat_scheme", "QUANTIZATION_SCHEMES", "SCHEME_NEEDS", "WEIGHT_FORMATS"]

#: What QAT stores the weights as: 8-bit (TF-MOT default), or n-bit (the
#: experimental n-bit scheme; the int4 export packs 4-bit weights two a byte).
#: "ternary"/"binary": {-α, 0, +α} / ±α per output channel (quantization/binary.py).
WEIGHT_FORMATS = ("int8", "int4", "int2", "ternary", "binary")
QUANTIZATION_SCHEMES = ("auto", "qat", "pqat", "cqat", "pcqat")
#: The stages whose work a QAT scheme preserves (and so needs in the recipe).
SCHEME_NEEDS = {"qat": (), "pqat": ("pruning",), "cqat": ("clustering",), "pcqat": ("pruning", "clustering")}


@dataclass(frozen=True)
class Quantization(_Trains):
    """Quantization-aware training (TF-MOT ``quantize_apply``), 8-bit.

    The scheme follows from the earlier stages unless ``scheme`` names one:
    QAT; PQAT (pruning ran: zeros kept); CQAT (clustering ran: clusters kept);
    PCQAT (both: clusters and zeros kept).

    Args:
        epochs: fine-tuning epochs of QAT. Defaults to `2`.
        preserve_sparsity: with ``scheme: auto``, keep the zeros an earlier
            pruning stage made (PQAT / PCQAT). Defaults to `True`.
        learning_rate_scale: QAT fine-tunes at ``recipe.learning_rate`` times
            this. Defaults to `0.1`.
        scheme: ``"auto"``, ``"qat"``, ``"pqat"`` (needs a pruning stage),
            ``"cqat"`` (needs clustering) or ``"pcqat"`` (needs both).
            Defaults to `"auto"`.
        weights: the weight format QAT trains for: ``"int8"``, ``"int4"``
            or ``"int2"`` (TF-MOT's n-bit scheme, activations 8-bit).
            Defaults to `"int8"`. ``"ternary"`` / ``"binary"``: {-α, 0, +α} / ±α
            per output channel of Conv2D and Dense kernels, straight-through
            gradients, stored as int8 (the gain is zipped size).
        keep_int8: under ``weights: binary|ternary``, the layers that keep
            8-bit weights: names, layer types, regular expressions, or
            ``"first"`` / ``"last"`` (the first / last Conv2D, DepthwiseConv2D
            or Dense layer). Defaults to `("first", "last")`.

    Example:
        >>> Quantization(epochs=1)  # doctest: +ELLIPSIS
        Quantization(epochs=1, preserve_sparsity=True, ..., weights='int8', keep_int8=('first', 'last'))
    """

    epochs: int = 2
    preserve_sparsity: bool = True
    learning_rate_scale: float = 0.1
    scheme: str = "auto"
    weights: str = "int8"
    keep_int8: typing.Sequence[str] | None = ("first", "last")

    def __post_init__(self):
        check_int("quantization", "epochs", self.epochs)
        self._check_training("quantization")
        check_bool("quantization", "preserve_sparsity", self.preserve_sparsity)
        check_range("quantization", "learning_rate_scale", self.learning_rate_scale, 0, 10, lo_open=True)
        check_choice("quantization", "scheme", self.scheme, QUANTIZATION_SCHEMES)
        check_choice("quantization", "weights", self.weights, WEIGHT_FORMATS)
        object.__setattr__(self, "keep_int8", check_patterns("quantization", "keep_int8", self.keep_int8) or ())
        if self.weights in ("ternary", "binary") and self.scheme in ("cqat", "pcqat"):
            raise RecipeError(f"quantization.scheme {self.scheme!r} keeps clusters, which {self.weights} weights "
                              "replace: use scheme auto, qat or pqat, or weights int8.")



def qat_scheme(stage, pruned, clustered, preserve_sparsity=None):
    """The QAT variant a quantization stage runs: the one place it is chosen.

    ``stage.scheme`` wins when it names one; with ``"auto"`` the variant keeps
    what the earlier stages made: clusters when clustering ran, zeros when
    pruning ran and ``preserve_sparsity`` is on.

    Args:
        stage: a :class:`Quantization` stage.
        pruned: a (magnitude) pruning stage ran, or will run, before QAT.
            Channel pruning does not count: it leaves no zero weights.
        clustered: a clustering stage ran, or will run, before QAT.
        preserve_sparsity: overrides ``stage.preserve_sparsity``. Defaults to
            `None`.

    Returns:
        ``"qat"``, ``"pqat"``, ``"cqat"`` or ``"pcqat"``.

    Example:
        >>> qat_scheme(Quantization(), pruned=True, clustered=True)
        'pcqat'
        >>> qat_scheme(Quantization(preserve_sparsity=False), pruned=True, clustered=False)
        'qat'
    """
    if stage.scheme != "auto":
        return stage.scheme
    preserve = stage.preserve_sparsity if preserve_sparsity is None else preserve_sparsity
    sparse = bool(pruned and preserve)
    if clustered:
        return "pcqat" if sparse else "cqat"
    return "pqat" if sparse else "qat"
