"""One fine-tuning path: every stage trains through ``_Run.fit`` -> ``distill.fine_tune``.

The channels and depth stages' own distillation (``distill: true`` without a
recipe-wide ``distillation``) once called ``Distiller.fit`` directly and so
dropped the user's callbacks, the validation data, TensorBoard and the
progress lines. Here one recipe runs every training stage for one epoch, and
a counting callback, the progress lines and TensorBoard must see each of them.
"""

import os

import numpy as np

import tfcompress
from tfcompress._keras import keras
from tfcompress.recipe import Recipe

try:
    from tfcompress.models import resnet_tiny
except ImportError:  # running from the source tree
    from models import resnet_tiny


class Counter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.val_epochs = 0, 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1
        self.val_epochs += any(k.startswith("val_") for k in (logs or {}))


def _data(n, seed):
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    return x, (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype("int64") + 2 * (x[:, 4:].mean(axis=(1, 2, 3)) > 0)


def test_every_stage_sees_the_callbacks_progress_validation_and_tensorboard(tmp_path):
    keras.utils.set_random_seed(0)
    model = resnet_tiny.build((8, 8, 1), 4, width=8, blocks=2)
    recipe = Recipe.from_dict({
        "train": {"epochs": 1},
        "depth": {"remove": 1, "epochs": 1, "distill": True},
        "channels": {"ratio": 0.5, "epochs": 1, "distill": True},
        "penalty": {"l1": 1e-5, "epochs": 1},
        "pruning": {"final_sparsity": 0.5, "epochs": 1},
        "clustering": {"number_of_clusters": 8, "epochs": 1},
        "quantization": {"epochs": 1},
        "batch_size": 16,
    })
    counter, lines = Counter(), []
    result = tfcompress.optimize(model, _data(64, 1), _data(32, 2), recipe=recipe, callbacks=[counter],
                                 progress=lines.append, tensorboard=str(tmp_path))
    stages = [s["name"] for s in result.report.stages]
    assert stages == ["train", "depth", "channels", "penalty", "pruning", "clustering", "quantization"]
    assert counter.epochs == counter.val_epochs == len(stages)
    for name in stages:
        assert any(line.startswith(f"{name} epoch 1/1:") and "val_loss" in line for line in lines), (name, lines)
        assert name in os.listdir(tmp_path), name
    # The stages' own distillation really distils: the Distiller's term is in their history.
    for name in ("depth", "channels"):
        assert "distill_loss" in result.history[name], (name, result.history[name])
    assert "distill_loss" not in result.history["pruning"]
