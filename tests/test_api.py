import subprocess
import sys

import tfcompress


def test_public_api_is_pinned():
    assert set(tfcompress.__all__) == {
        "__version__", "optimize", "OptimizeResult", "tune", "Recipe", "Train", "Pruning", "Quantization",
        "Depth", "Channels", "LowRank", "Penalty", "Clustering", "Precision", "Distillation",
        "datasets", "models", "load_model", "check", "CheckReport", "TfcompressError", "RecipeError",
        "UnsupportedModelError", "DataError", "OutputError", "ExportError", "TuningError",
    }
    for name in tfcompress.__all__:
        assert hasattr(tfcompress, name)


def test_arguments_after_the_data_are_keyword_only():
    import inspect

    from tfcompress.pipeline import run_job

    for fn, data in ((tfcompress.optimize, "validation_data"), (tfcompress.tune, "data"), (run_job, "data")):
        params = list(inspect.signature(fn).parameters.values())
        after = params[[p.name for p in params].index(data) + 1:]
        assert after and all(p.kind is p.KEYWORD_ONLY for p in after), fn.__name__


def test_models_is_not_a_top_level_package():
    code = ("import importlib.util, sys; sys.path = [p for p in sys.path if p not in ('', '.')]; "
            "print(importlib.util.find_spec('models'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "None"


def test_import_after_tensorflow_and_keras3():
    code = (
        "import tensorflow as tf, keras\n"
        "import tfcompress\n"
        "from tfcompress._keras import keras as k2\n"
        "assert k2.__name__.startswith('tf_keras'), k2.__name__\n"
        "m = tfcompress.models.get('digits_cnn').build()\n"
        "assert type(m).__module__.startswith('tf_keras')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_tf_keras_and_tf_mot_are_imported_in_one_module():
    """`tfcompress/_keras.py` is the one Keras boundary: every other module
    takes tf_keras and TF-MOT (internals included) from it."""
    import ast
    import pathlib

    root = pathlib.Path(tfcompress.__file__).parent
    sources = list(root.rglob("*.py")) + list((root.parent / "models").rglob("*.py"))
    offenders = []
    for path in sources:
        if path.name == "_keras.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("tf_keras", "tensorflow_model_optimization"):
                    offenders.append(f"{path.relative_to(root.parent)}:{node.lineno} imports {name}")
    assert len(sources) > 20 and not offenders, offenders


def test_every_error_derives_from_tfcompress_error():
    # ExportError comes from tflite_export, which cannot import tfcompress: the base lives there.
    for cls in (tfcompress.RecipeError, tfcompress.DataError, tfcompress.UnsupportedModelError,
                tfcompress.OutputError, tfcompress.ExportError):
        assert issubclass(cls, tfcompress.TfcompressError), cls
    try:
        raise tfcompress.ExportError("x")
    except tfcompress.TfcompressError:
        pass
