"""Recurrent layers (LSTM, GRU, SimpleRNN) converted as their unrolled steps.

TensorFlow 2.21's converter turns a Keras recurrent layer's loop into a
TensorList that needs a static batch size (a model with a free batch size
fails with ``'tf.TensorListReserve' op requires element_shape to be static``),
and at batch size 1 it fuses an LSTM into ``UNIDIRECTIONAL_SEQUENCE_LSTM``,
whose outputs differ from Keras's (measured on a trained Conv1D + LSTM audio
classifier: outputs off by up to 0.98, accuracy 100 % in Keras and 65 % in the
file; a numpy LSTM agrees with Keras to 1e-7). The same layers traced with
``unroll=True`` convert at any batch size to plain builtin ops that match Keras
to float precision (GRU and SimpleRNN too), so :func:`unrolled` switches the
layers to their unrolled form for the conversion only and back afterwards. The
time dimension must be known and at most :data:`MAX_STEPS` steps (an unrolled
graph grows with it); longer or unknown sequences are left as they are.

Example:
    >>> import tf_keras as keras
    >>> m = keras.Sequential([keras.Input((8, 3)), keras.layers.LSTM(4)])
    >>> with unrolled(m) as names:
    ...     names, m.layers[0].unroll
    (['lstm'], True)
    >>> m.layers[0].unroll
    False
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["unrolled", "MAX_STEPS"]

#: The longest sequence unrolled for conversion (the unrolled graph has one copy of the cell per step).
MAX_STEPS = 1024


def _recurrent(model: Any) -> list:
    """Keras recurrent layers (a ``cell`` and an ``unroll`` switch) in ``model``, nested models included."""
    layers = getattr(model, "submodules", None) or ()
    return [m for m in layers if hasattr(m, "cell") and hasattr(m, "unroll") and not m.unroll]


def _steps(layer: Any) -> int | None:
    try:
        shape = layer.input_shape
    except (AttributeError, RuntimeError):
        return None
    if isinstance(shape, list):  # initial states given as extra inputs
        shape = shape[0]
    if not shape or len(shape) < 3:
        return None
    steps = shape[0] if getattr(layer, "time_major", False) else shape[1]
    return int(steps) if steps is not None else None


@contextlib.contextmanager
def unrolled(model: Any) -> Iterator[list]:
    """Within the block, ``model``'s recurrent layers with a known, short time dimension run unrolled.

    Yields:
        The names of the layers switched (empty: nothing to do).
    """
    switched = []
    for layer in _recurrent(model):
        steps = _steps(layer)
        if steps is None or steps > MAX_STEPS:
            continue
        switched.append((layer, layer.__dict__.get("_could_use_gpu_kernel")))
        layer.unroll = True
        if "_could_use_gpu_kernel" in layer.__dict__:  # LSTM/GRU: the fused-kernel path ignores unroll
            layer._could_use_gpu_kernel = False
    try:
        yield [layer.name for layer, _ in switched]
    finally:
        for layer, fused in switched:
            layer.unroll = False
            if fused is not None:
                layer._could_use_gpu_kernel = fused
