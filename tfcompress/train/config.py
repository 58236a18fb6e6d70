"""The ``train`` stage's recipe class.

Example:
    >>> Train(epochs=5, lr_schedule={"kind": "cosine", "warmup_epochs": 1}).lr_schedule.warmup_epochs
    1.0
"""

from dataclasses import dataclass

from tfcompress._checks import check_int
from tfcompress._stagebase import _Trains

__all__ = ["Train"]


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
