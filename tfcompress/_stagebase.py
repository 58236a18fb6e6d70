"""What every training stage shares: the keyword-only training fields.

A leaf module (the stage dataclasses in each technique's ``config`` module,
such as :mod:`tfcompress.pruning.config` and :mod:`tfcompress.quantization.config`,
derive from :class:`_Trains`), so that each technique's recipe fields can live
with the technique without an import cycle.

Example:
    >>> from tfcompress._stagebase import is_schedule_object
    >>> is_schedule_object("polynomial")
    False
"""

from dataclasses import dataclass, field

from tfcompress._checks import check_range
from tfcompress.schedules import Optimizer, Schedule

__all__ = ["_Trains", "is_schedule_object"]


def is_schedule_object(value):
    """True for a ``tfmot.sparsity.keras.PruningSchedule`` instance (the ``pruning.schedule`` given from Python).

    Checked by shape (callable, with ``get_config``, not a class) so that this
    module does not import TensorFlow.
    """
    return callable(value) and hasattr(value, "get_config") and not isinstance(value, type)


@dataclass(frozen=True)
class _Trains:
    """The training fields every training stage has (keyword-only, after the stage's own).

    Args:
        learning_rate: this stage's learning rate (None: the recipe's, times
            the stage's ``learning_rate_scale`` where it has one). Defaults to `None`.
        optimizer: this stage's :class:`~tfcompress.schedules.Optimizer`, its
            name or a mapping (None: the recipe's). Defaults to `None`.
        lr_schedule: this stage's learning-rate
            :class:`~tfcompress.schedules.Schedule`, its kind or a mapping
            (None: the recipe's). Defaults to `None`.
    """

    learning_rate: float | None = field(default=None, kw_only=True, repr=False)
    optimizer: Optimizer | None = field(default=None, kw_only=True, repr=False)
    lr_schedule: Schedule | None = field(default=None, kw_only=True, repr=False)

    def _check_training(self, where):
        if self.learning_rate is not None:
            check_range(where, "learning_rate", self.learning_rate, 0, 10, lo_open=True)
            object.__setattr__(self, "learning_rate", float(self.learning_rate))
        object.__setattr__(self, "optimizer", Optimizer.coerce(self.optimizer, f"{where}.optimizer"))
        object.__setattr__(self, "lr_schedule", Schedule.coerce(self.lr_schedule, f"{where}.lr_schedule"))

