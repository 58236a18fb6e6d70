"""The peers of ``bench_peers.py``: one function per tool, each writing one ``.tflite`` from a trained model.

Every peer takes ``(b, path, s)`` (``b``: a baseline namespace such as
:func:`benchmarks._baseline.lenet5_fashion`'s, ``path``: where to write the
file, ``s``: the run's settings) and returns the written path; one that cannot
produce a file raises, and the benchmark records the one-line reason.

Also here: :func:`mobilenetv2_fashion`, MobileNetV2 (alpha 0.35) at 32x32x3
trained from scratch on Fashion-MNIST (each 28x28 image zero-padded to 32x32
and repeated over 3 channels), cached like the other baselines.

Example:
    >>> from benchmarks._peers import converter_int8
    >>> converter_int8(b, "ptq.tflite", {})  # doctest: +SKIP
    'ptq.tflite'
"""

import fcntl
import os
import re
import tempfile
import time
import types

import numpy as np

import tflite_export
from tfcompress import datasets
from tfcompress._keras import keras, tf, tfmot
from tfcompress._model import onednn_safe_training

__all__ = ["mobilenetv2_fashion", "converter_int8", "tfmot_prune_pqat", "aeq_int8", "aeq_int4_weights",
           "keras3_int8", "PEERS"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "bench-out", "cache")
MNV2_FULL = dict(train_samples=12000, base_epochs=12)
MNV2_QUICK = dict(train_samples=1500, base_epochs=1)


def _pad3(x):
    """28x28x1 images as 32x32x3 (zero border of 2, the one channel repeated)."""
    return np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1).astype("float32")


def mobilenetv2_fashion(quick=False, seed=0):
    """MobileNetV2 (alpha 0.35, 32x32x3, no pretrained weights) trained on Fashion-MNIST; as ``resnet8_fashion``."""
    s = MNV2_QUICK if quick else MNV2_FULL
    data = datasets.load("fashion-mnist")
    x_all, y_all = data.train
    idx = np.random.default_rng(seed).permutation(len(x_all))[: s["train_samples"]]
    x_ft, y_ft = _pad3(x_all[idx]), y_all[idx]
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"mnv2a035_32_bn09_fmnist_n{s['train_samples']}_e{s['base_epochs']}_s{seed}.h5")
    settings = dict(s, seed=seed, input="Fashion-MNIST zero-padded to 32x32, repeated to 3 channels")
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        keras.utils.set_random_seed(seed)
        base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
        for layer in base.layers:  # 0.999 leaves the initial statistics in after ~2,000 steps: chance accuracy
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
        steps = s["base_epochs"] * -(-len(x_ft) // 64)
        base.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, steps)),
                     "sparse_categorical_crossentropy", ["accuracy"])
        if os.path.exists(path):
            base.load_weights(path)
        else:
            t0 = time.time()
            with onednn_safe_training(base):
                base.fit(x_ft, y_ft, epochs=s["base_epochs"], batch_size=64, verbose=0)
            settings["train_seconds"] = round(time.time() - t0, 1)
            base.save_weights(path + ".part.h5")
            os.replace(path + ".part.h5", path)
    tmp = tempfile.mkdtemp(prefix="bench-peers-mnv2-")
    x_test, y_test = _pad3(data.test[0]), data.test[1]
    f32 = tflite_export.export(base, os.path.join(tmp, "float32.tflite"), mode="float32")
    val = (_pad3(data.validation[0][:2000]), data.validation[1][:2000])
    return types.SimpleNamespace(
        base=base, spec=None, x_ft=x_ft, y_ft=y_ft, val=val, x_test=x_test, y_test=y_test, rep_x=x_ft[:200],
        f32=f32, f32_acc=tflite_export.evaluate(f32.path, x_test, y_test),
        keras_acc=float(base.evaluate(x_test, y_test, verbose=0)[1]), settings=settings, tmp=tmp)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def _convert(model, rep_x=None):
    """The TFLite converter as its guide shows it: Optimize.DEFAULT, plus a representative dataset for int8."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if rep_x is not None:
        def gen():
            for i in range(len(rep_x)):
                yield [rep_x[i:i + 1].astype("float32")]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def converter_int8(b, path, s):
    """TFLite converter, post-training full-integer int8 (float input/output), 200 calibration images."""
    return _write(path, _convert(b.base, b.rep_x))


def _fit(model, b, epochs, batch, callbacks=()):
    with onednn_safe_training(model):
        model.fit(b.x_ft, b.y_ft, epochs=epochs, batch_size=batch, verbose=0, callbacks=list(callbacks))


def tfmot_prune_pqat(b, path, s):
    """TF-MOT's documented collaborative workflow, written by hand: prune (ConstantSparsity 0.5), strip, PQAT, convert.

    As the TF-MOT "Pruning preserving quantization aware training" guide: ``prune_low_magnitude``
    with ``ConstantSparsity(0.5, begin_step=0, frequency=100)``, fine-tune, ``strip_pruning``, then
    ``quantize_apply(quantize_annotate_model(m), Default8BitPrunePreserveQuantizeScheme())``,
    fine-tune, convert with ``Optimize.DEFAULT`` (and the same calibration images).
    """
    sched = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=100)
    model = keras.models.clone_model(b.base)  # the wrappers share the layers they wrap: prune a copy
    model.set_weights(b.base.get_weights())
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=sched)
    pruned.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", ["accuracy"])
    _fit(pruned, b, s["epochs_prune"], 64, [tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    annotated = tfmot.quantization.keras.quantize_annotate_model(stripped)
    qat = tfmot.quantization.keras.quantize_apply(
        annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    qat.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy", ["accuracy"])
    _fit(qat, b, s["epochs_qat"], 64)
    return _write(path, _convert(qat, b.rep_x))


def _aeq(b, path, recipe_name, calibrate):
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    q = quantizer.Quantizer(b.f32.path, getattr(recipe, recipe_name)())
    calib = None
    if calibrate and q.need_calibration:
        sigs = Interpreter(model_path=b.f32.path).get_signature_list()
        key = next(iter(sigs))
        name = sigs[key]["inputs"][0]
        calib = q.calibrate({key: [{name: b.rep_x[i:i + 1].astype("float32")} for i in range(len(b.rep_x))]})
    res = q.quantize(calib, enable_progress_report=False)
    return _write(path, bytes(res.quantized_model))


def aeq_int8(b, path, s):
    """ai-edge-quantizer ``static_wi8_ai8`` (int8 weights and activations), 200 calibration images."""
    return _aeq(b, path, "static_wi8_ai8", True)


def aeq_int4_weights(b, path, s):
    """ai-edge-quantizer ``weight_only_wi4_afp32`` (int4 weights, float activations)."""
    return _aeq(b, path, "weight_only_wi4_afp32", False)


def keras3_int8(b, path, s):
    """Keras 3's ``model.quantize("int8")`` on the same model rebuilt in Keras 3, exported with ``format="litert"``."""
    from tfcompress._keras3_out import to_keras3

    k3 = to_keras3(b.base)
    k3.quantize("int8")
    try:
        k3.export(path, format="litert", verbose=False)
    except Exception as exc:  # noqa: BLE001 - the converter's message is one long MLIR line: keep its point
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        found = re.search(r"'(tfl\.[^']+)' op .*but got '([^']+)'", text)
        raise RuntimeError("the TFLite converter refuses the int8 Keras 3 model: "
                           + (f"{found.group(1)} gets a raw int8 tensor ({found.group(2)}), it takes float32 or "
                              "quantized int8 only" if found else text[:160])) from exc
    if not os.path.isfile(path):
        raise RuntimeError(f"Keras 3 export wrote no file at {path}")
    return path


#: (row name, function) in table order.
PEERS = [
    ("TFLite converter: post-training int8", converter_int8),
    ("TF-MOT by hand: prune 50% + PQAT", tfmot_prune_pqat),
    ("ai-edge-quantizer: static int8 (wi8/ai8)", aeq_int8),
    ("ai-edge-quantizer: int4 weight-only (wi4/afp32)", aeq_int4_weights),
    ("Keras 3 model.quantize('int8') + export litert", keras3_int8),
]
