"""oneDNN's crash on 1x1 stride-2 convolutions cannot take the user's process down.

TensorFlow 2.21's oneDNN kernels SIGSEGV while training ``Conv2D(16, 1, strides=2)``
(issue 12); tfcompress turns oneDNN off when imported before TensorFlow, respects
an explicit choice, and warns, naming the layers and the switch, when it is on.
Each case runs in a child process: the switch is read when TensorFlow is imported,
and a crash there must not take pytest down with it.
"""

import os
import subprocess
import sys
import textwrap

REPRO = """
import numpy as np
from tfcompress._keras import keras
L = keras.layers
keras.utils.set_random_seed(0)
model = keras.Sequential([L.Input((60, 60, 8)), L.Conv2D(16, 1, strides=2, padding="same", name="shortcut"),
                          L.GlobalAveragePooling2D(), L.Dense(7, activation="softmax")])
x = np.random.default_rng(0).random((64, 60, 60, 8), dtype=np.float32)
y = np.arange(64) % 7
"""


def _child(*parts, **env):
    """Run the dedented ``parts`` as one script in a child, TF_ENABLE_ONEDNN_OPTS unset unless given."""
    full = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    full.update(env)
    code = "\n".join(textwrap.dedent(p) for p in parts)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=full)


def test_the_repro_model_trains_through_optimize():
    proc = _child("""
        import os, warnings
        import tfcompress
        assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0", os.environ["TF_ENABLE_ONEDNN_OPTS"]
    """, REPRO, """
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # oneDNN is off: no warning
            res = tfcompress.optimize(model, (x, y), recipe={"pruning": {"epochs": 1, "final_sparsity": 0.5},
                                                             "quantization": {"epochs": 1}},
                                      batch_size=16, verbose=0)
        print("sparsity", round(res.report.layer("shortcut").sparsity, 2))
    """)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "sparsity 0.5" in proc.stdout


def test_an_explicit_choice_is_kept_and_the_risk_named():
    proc = _child("""
        import os, warnings
        import tfcompress
        from tfcompress._keras import ONEDNN_ON
        from tfcompress._model import warn_onednn_crash
        print("setting", os.environ["TF_ENABLE_ONEDNN_OPTS"], ONEDNN_ON)
    """, REPRO, """
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            print("at risk", warn_onednn_crash(model))
        print("warning:", w[0].message)
    """, TF_ENABLE_ONEDNN_OPTS="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "setting 1 True" in proc.stdout
    assert "at risk ['shortcut']" in proc.stdout
    assert "TF_ENABLE_ONEDNN_OPTS=0" in proc.stdout and "shortcut" in proc.stdout.split("warning:")[1]


def test_tensorflow_imported_first_is_not_second_guessed():
    proc = _child("""
        import os
        import tensorflow
        import tfcompress
        from tfcompress._keras import ONEDNN_ON
        print("unset", "TF_ENABLE_ONEDNN_OPTS" not in os.environ, ONEDNN_ON)
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "unset True True" in proc.stdout
