"""A Keras callback that records each epoch's wall seconds, shared by the benchmarks that time epochs.

Example:
    >>> import tf_keras as keras
    >>> timer = epoch_timer(keras)
    >>> timer.seconds
    []
"""

import time

__all__ = ["epoch_timer"]


def epoch_timer(keras):
    """A callback of ``keras`` (the caller's Keras: tf_keras here) whose ``seconds`` lists each epoch's wall time."""

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.t0)

    return EpochTimes()
