"""The one Keras Tuner boundary of ``tfcompress.tuning``.

Keras Tuner 1.4.8 imports Keras 3 and TensorFlow, so it is imported here after
:mod:`tfcompress._keras` has quieted TensorFlow's logs, and the two changes
tfcompress makes to it are made here, once, for every module that uses it:

* Keras Tuner prints every failed trial's traceback; tfcompress reports one
  line per trial instead (the traceback stays in ``trial.json``). ``--debug``
  (``TF_CPP_MIN_LOG_LEVEL=0``) turns it back on.
* A trial that cannot write its files (a full disk) raises :class:`SearchStopped`,
  a Keras Tuner ``FatalError``: the search stops instead of failing the trial, and
  the trial, still running in ``oracle.json``, runs again when the search resumes.
* ``Parent.to_proto`` has a leftover debug ``print(self.values[0])``, so every
  conditional parameter sent over gRPC (chief/worker mode) printed a stray
  line ("cosine", "step"). It is that module's only print: shadow it there.

Example:
    >>> from tfcompress.tuning._keras_tuner import FailedTrialError
    >>> issubclass(FailedTrialError, Exception)
    True
"""

import os

import tfcompress._keras  # noqa: F401  (quiets TensorFlow before Keras Tuner imports it)
from tfcompress.errors import OutputError

# isort: split
import keras_tuner
from keras_tuner.src import config as _kt_config
from keras_tuner.src.distribute import utils as dist_utils
from keras_tuner.src.engine import base_tuner
from keras_tuner.src.engine import conditions as _kt_conditions
from keras_tuner.src.engine import trial as trial_module

__all__ = ["keras_tuner", "base_tuner", "dist_utils", "trial_module", "FailedTrialError", "TrialStatus",
           "SearchStopped"]

FailedTrialError = keras_tuner.errors.FailedTrialError
TrialStatus = trial_module.TrialStatus


class SearchStopped(OutputError, keras_tuner.errors.FatalError):
    """A trial could not write its files (no space, a read-only folder): the search stops
    with one line, and resumes from that trial once the folder can be written again."""

_kt_config.DEBUG = os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"
_kt_conditions.print = lambda *args, **kwargs: None
