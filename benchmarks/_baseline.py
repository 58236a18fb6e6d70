"""The trained LeNet-5 / Fashion-MNIST baseline that benchmark rows compare against.

Every technique benchmark measures its rows side by side with the float32 file
of the same trained model. Training it takes minutes on 2 cores, so the
weights are cached under ``bench-out/cache/`` (git-ignored), keyed by the
settings; concurrent benchmarks wait on a file lock instead of training twice.

Example:
    >>> from benchmarks._baseline import lenet5_fashion
    >>> b = lenet5_fashion(quick=True)  # doctest: +SKIP
    >>> round(b.f32_acc, 2), b.f32.zipped_bytes  # doctest: +SKIP
    (0.83, 230837)
"""

import contextlib
import fcntl
import os
import tempfile
import types

import numpy as np

import tflite_export
from tfcompress import datasets, models
from tfcompress._keras import keras
from tfcompress._model import onednn_safe_training
from tfcompress.training import make_optimizer

__all__ = ["lenet5_fashion", "bench_lock", "FULL", "QUICK"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "bench-out", "cache")
#: Fine-tuning subset and baseline epochs (None: the reference recipe's epochs).
FULL = dict(train_samples=24000, base_epochs=None)
QUICK = dict(train_samples=1500, base_epochs=1)
#: The benchmarks' lock: timings of concurrent benchmarks do not overlap.
BENCH_LOCK = "/tmp/tfc-bench.lock"


@contextlib.contextmanager
def bench_lock():
    """Hold the benchmarks' lock while timing (``with bench_lock(): ...``)."""
    with open(BENCH_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def lenet5_fashion(quick=False, seed=0):
    """The trained baseline, its data and its float32 ``.tflite``.

    Args:
        quick: 1 training epoch and a 1,500-sample fine-tuning subset (smoke
            tests). Defaults to `False`.
        seed: seeds the baseline's initial weights and the subset. Defaults to `0`.

    Returns:
        A namespace: ``base`` (the trained tf_keras model), ``spec`` (its
        :class:`~tfcompress.models.ModelSpec`), ``x_ft``/``y_ft`` (the
        fine-tuning subset), ``val`` (validation pair), ``x_test``/``y_test``
        (the 10k test set), ``rep_x`` (200 calibration images), ``f32`` (the
        float32 export's info, ``.path``/``.zipped_bytes``), ``f32_acc`` (its
        test accuracy), ``keras_acc``, ``settings`` and ``tmp`` (a scratch folder).
    """
    s = QUICK if quick else FULL
    data = datasets.load("fashion-mnist")
    x_all, y_all = data.train
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x_all))[: s["train_samples"]]
    spec = models.get("lenet5")
    epochs = s["base_epochs"] or spec.epochs
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"lenet5_fmnist_e{epochs}_s{seed}.h5")
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        keras.utils.set_random_seed(seed)
        base = spec.build()
        base.compile(make_optimizer("adam", spec.learning_rate), "sparse_categorical_crossentropy", ["accuracy"])
        if os.path.exists(path):
            base.load_weights(path)
        else:
            with onednn_safe_training(base):  # oneDNN stays on; its 1x1 stride-2 crash is gone around
                base.fit(x_all, y_all, epochs=epochs, batch_size=spec.batch_size, verbose=0)
            part = path + ".part.h5"
            base.save_weights(part)
            os.replace(part, path)
    tmp = tempfile.mkdtemp(prefix="bench-baseline-")
    x_test, y_test = data.test
    f32 = tflite_export.export(base, os.path.join(tmp, "float32.tflite"), mode="float32")
    return types.SimpleNamespace(
        base=base, spec=spec, x_ft=x_all[idx], y_ft=y_all[idx], val=data.validation,
        x_test=x_test, y_test=y_test, rep_x=x_all[idx][:200], f32=f32,
        f32_acc=tflite_export.evaluate(f32.path, x_test, y_test),
        keras_acc=float(base.evaluate(x_test, y_test, verbose=0)[1]),
        settings=dict(s, base_epochs=epochs, seed=seed), tmp=tmp,
    )
