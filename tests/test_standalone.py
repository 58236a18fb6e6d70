"""tflite_export works in a process where tfcompress cannot be imported."""

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent(r'''
    import importlib.abc, os, sys

    class NoTfcompress(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tfcompress" or name.startswith("tfcompress."):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, NoTfcompress())
    try:
        import tfcompress  # noqa: F401
        raise SystemExit("tfcompress imported despite the blocker")
    except ImportError:
        pass

    import numpy as np
    import tf_keras as keras

    import tflite_export
    from tflite_export import ExportError, loader

    out = sys.argv[1]
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8)(inp)))
    x = np.random.RandomState(0).rand(16, 4).astype("float32")

    # A model object to .tflite, then run it.
    rep = tflite_export.export(model, os.path.join(out, "obj.tflite"), mode="int8", representative_data=x)
    assert rep.input_dtype == "int8", rep
    assert tflite_export.predict(rep.path, x).shape == (16, 3)

    # Files through the loader: plain ones load, a Lambda layer is refused before its code runs.
    marker = os.path.join(out, "marker")
    ns = {}
    exec(f"def evil(t):\n    open({marker!r}, 'w').write('ran')\n    return t * 2.0\n", ns)
    lam = keras.Model(inp, keras.layers.Lambda(ns["evil"], name="evil")(inp))
    os.remove(marker)  # building the model ran it once
    for ext in (".h5", ".keras"):
        path = os.path.join(out, "plain" + ext)
        model.save(path)
        loaded = loader.load_model(path)
        assert np.allclose(loaded(x), model(x), atol=1e-6)
        rep = tflite_export.export(path, os.path.join(out, "file" + ext + ".tflite"), mode="float32")
        assert np.allclose(tflite_export.predict(rep.path, x), model(x), atol=1e-5)
        bad = os.path.join(out, "lambda" + ext)
        lam.save(bad)
        for call in (lambda: loader.load_model(bad),
                     lambda: tflite_export.export(bad, os.path.join(out, "bad.tflite"), mode="float32")):
            try:
                call()
                raise SystemExit(f"{bad} was not refused")
            except ExportError as e:
                assert "Lambda layer(s) evil" in str(e) and "safe_mode=False" in str(e), e
        assert not os.path.exists(marker), f"{bad}: the Lambda layer's code ran"

    # Inspect, time, and the standalone CLI (whose --data NAME needs tfcompress's datasets: exit 2).
    from tflite_export import cli

    obj = os.path.join(out, "obj.tflite")
    assert tflite_export.inspect(obj).ops["FULLY_CONNECTED"] == 2
    assert tflite_export.benchmark(obj, min_runs=2, min_seconds=0, warmup_seconds=0).ok
    assert cli.main(["inspect", obj]) == 0
    assert cli.main(["export", "m.keras", "--data", "digits", "--out", os.path.join(out, "x.tflite")]) == 2
    assert "tfcompress" not in sys.modules
    print("STANDALONE OK")
''')


def test_tflite_export_works_without_tfcompress(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0 and "STANDALONE OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]
