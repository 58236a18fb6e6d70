"""The ``penalty`` stage's core: L1/L2 penalties on the prunable kernels.

Added as model losses on a copy of the model (not as layer regularizers), so
the next stage's clone drops them and the exported model is unchanged.

Example:
    >>> from tfcompress import models
    >>> from tfcompress import Penalty
    >>> m, records = apply_penalty(models.get("digits_cnn").build(), Penalty(l1=1e-4))
    >>> records["fc1"], len(m.losses)
    ('penalised (l1=0.0001)', 4)
"""

from tfcompress._keras import tf
from tfcompress._model import clone
from tfcompress.pruning.weights import prunable_weights

__all__ = ["apply_penalty"]


def apply_penalty(model, stage):
    """A copy of ``model`` whose losses include the stage's L1/L2 penalties.

    Args:
        model: a tf_keras model (left untouched).
        stage: a :class:`~tfcompress.recipe.Penalty`.

    Returns:
        ``(model_copy, records)``: records map layer name to
        ``"penalised (...)"`` for each layer with prunable kernels.
    """
    copy = clone(model)
    l1, l2 = float(stage.l1), float(stage.l2)
    what = ", ".join(f"{n}={v:g}" for n, v in (("l1", l1), ("l2", l2)) if v)
    records = {}
    for layer in copy.layers:
        for w in prunable_weights(layer):
            copy.add_loss(_penalty(w, l1, l2))
            records[layer.name] = f"penalised ({what})"
    return copy, records


def _penalty(w, l1, l2):
    def loss():
        out = 0.0
        if l1:
            out += l1 * tf.reduce_sum(tf.abs(w))
        if l2:
            out += l2 * tf.reduce_sum(tf.square(w))
        return out

    return loss
