"""The ``train`` stage: train (or continue training) the model before any compression stage.

:class:`Train` (:mod:`tfcompress.train.config`) is its recipe class and
:data:`tfcompress.train.stage.TECHNIQUE` its entry in :mod:`tfcompress.techniques`.

Example:
    >>> from tfcompress.train.config import Train
    >>> Train(epochs=3).epochs
    3
"""
