"""The user's own model and data: every data form as one Dataset,
scaling explicit and reported, labels checked against the model before any
training, --data on optimize/tune/check/export, and tune() on the user's model
(tuple data, Keras 3, module:function builders, a builder in __main__, the
model/data fit checked once)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

import tfcompress
from tfcompress import DataError, datasets
from tfcompress._keras import keras, tf
from tfcompress.cli import main
from tfcompress.errors import TuningError

L = keras.layers
RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
Y = np.arange(40) % 3
SPACE = {"learning_rate": [1e-3]}
RECIPE = {"pruning": {"epochs": 1}, "quantization": None, "batch_size": 8}
FAST = dict(space=SPACE, recipe=RECIPE, max_trials=1, epochs=1, timing_runs=3, timing_seconds=0.01)


def _tiny(classes=3):
    keras.utils.set_random_seed(0)
    return keras.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                             L.Dense(classes, activation="softmax")])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An image folder: two classes of three 10x12 RGB PNGs each."""
    from PIL import Image

    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    for c in ("cat", "dog"):
        (d / c).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(d / c / f"{i}.png")
    return d


# ------------------------------------------------------------------ data forms


def test_arrays_without_splits_are_carved_seeded_and_uint8_scaled():
    a, b = datasets.from_arrays(X, Y, seed=3), datasets.from_arrays(X, Y, seed=3)
    assert (len(a.train[0]), len(a.validation[0]), len(a.test[0])) == (29, 3, 8)
    assert np.array_equal(a.test[0], b.test[0]) and a.splits == {"validation": "carved", "test": "carved"}
    assert a.train[0].dtype == np.float32 and a.train[0].max() <= 1.0 and a.scale == pytest.approx(1 / 255)
    assert "divided by 255" in a.describe() and a.info()["scaling"] == a.scaling()
    assert a.num_classes == 3 and a.source == "arrays"


def test_arrays_with_splits_keep_them_and_scale_is_explicit():
    d = datasets.from_arrays(X, Y, validation=(X[:4], Y[:4]), test=(X[:5], Y[:5]), scale=None)
    assert len(d.train[0]) == 40 and len(d.test[0]) == 5 and d.splits == {"validation": "given", "test": "given"}
    assert d.scale is None and d.train[0].max() > 1 and "kept as given" in d.describe()
    assert datasets.from_arrays(X, Y, scale=0.5).train[0].max() <= 127.5
    floats = datasets.from_arrays(X.astype("float32") / 255, Y)
    assert floats.scale is None  # "auto" only scales uint8
    with pytest.raises(DataError, match="scale must be"):
        datasets.from_arrays(X, Y, scale="yes")
    with pytest.raises(DataError, match="some splits are uint8"):
        datasets.from_arrays(X, Y, test=(X[:5].astype("float32"), Y[:5]))
    with pytest.raises(DataError, match="cannot be split"):
        datasets.from_arrays(X[:2], Y[:2])


@pytest.mark.parametrize("keys", [
    dict(x=X, y=Y),
    dict(x_train=X, y_train=Y),
    dict(x_train=X, y_train=Y, x_val=X[:4], y_val=Y[:4], x_test=X[:6], y_test=Y[:6]),
    dict(x_train=X, y_train=Y, x_valid=X[:4], y_valid=Y[:4]),
])
def test_npz_key_layouts(tmp_path, keys):
    path = tmp_path / "mine.npz"
    np.savez(path, **keys)
    d = datasets.load(str(path))
    assert d.source == "npz" and d.name == str(path) and d.input_shape == (8, 8, 1)
    assert d.splits["test"] == ("given" if "x_test" in keys else "carved")
    assert d.splits["validation"] == ("given" if any(k.startswith("x_val") for k in keys) else "carved")
    assert d.scale == pytest.approx(1 / 255)


def test_npz_errors_name_the_keys(tmp_path):
    np.savez(tmp_path / "odd.npz", images=X, labels=Y)
    with pytest.raises(DataError, match="no x_train/y_train .* it has images, labels"):
        datasets.load(str(tmp_path / "odd.npz"))
    np.savez(tmp_path / "half.npz", x_train=X)
    with pytest.raises(DataError, match="has x_train but no y_train"):
        datasets.from_npz(tmp_path / "half.npz")
    with pytest.raises(DataError, match="does not exist"):
        datasets.load(str(tmp_path / "missing.npz"))


def test_image_folder_sized_to_the_model(folder):
    d = datasets.load(str(folder), input_shape=(8, 8, 1))
    assert d.input_shape == (8, 8, 1) and d.class_names == ("cat", "dog") and d.num_classes == 2
    assert d.source == "folder" and d.scale == pytest.approx(1 / 255)
    assert sum(len(s[0]) for s in (d.train, d.validation, d.test)) == 6
    native = datasets.from_directory(folder)  # no model: the first image's size and channels
    assert native.input_shape == (10, 12, 3)
    with pytest.raises(DataError, match="not images"):
        datasets.from_directory(folder, input_shape=(64,))


def test_an_image_folder_too_large_for_memory_is_one_error_before_reading(folder, monkeypatch):
    # tfcompress holds data in memory: a folder that cannot fit is refused up front with the arithmetic,
    # not read until the process is killed for memory
    from tfcompress import _userdata

    read = []

    def reader(*args):
        read.append(args)
        return np.zeros((6, 8, 8, 1), np.uint8), np.arange(6) % 2

    monkeypatch.setattr(_userdata, "_read_folder", reader)
    monkeypatch.setattr(_userdata, "_available_memory", lambda: 1000)
    with pytest.raises(DataError, match=r"6 images at 8x8x1 need at least 0\.0 MiB in memory .*more than the 0\.0 MiB "
                                        r"available: use fewer images"):
        datasets.from_directory(folder, input_shape=(8, 8, 1))  # 6 x 8 x 8 x 5 bytes = 1,920 > 1,000
    assert not read
    monkeypatch.setattr(_userdata, "_available_memory", lambda: 1920)  # just fits
    assert datasets.from_directory(folder, input_shape=(8, 8, 1)).input_shape == (8, 8, 1) and read


def test_image_folder_with_split_subfolders(folder, tmp_path):
    import shutil

    for split in ("train", "test"):
        shutil.copytree(folder, tmp_path / split)
    d = datasets.from_directory(tmp_path, input_shape=(6, 6, 3))
    assert d.splits == {"validation": "carved", "test": "given"} and len(d.test[0]) == 6


@pytest.mark.parametrize("batched", [True, False])
def test_tf_data(batched):
    ds = tf.data.Dataset.from_tensor_slices((X, Y))
    ds = ds.batch(7) if batched else ds
    d = datasets.as_dataset(ds, input_shape=(8, 8, 1))
    assert d.source == "tf.data" and len(d.train[0]) + len(d.validation[0]) + len(d.test[0]) == 40
    assert d.scale == pytest.approx(1 / 255)
    with pytest.raises(DataError, match="repeats forever"):
        datasets.from_tf_dataset(ds.repeat())


def test_as_dataset_and_cli_helpers():
    assert datasets.as_dataset((X, Y)).source == "arrays"
    with pytest.raises(DataError, match="an .x, y. pair"):
        datasets.as_dataset(42)
    assert datasets.cli_data("digits") == "digits" and datasets.cli_data(None, "m.npz") == "m.npz"
    with pytest.raises(DataError, match="not both"):
        datasets.cli_data("digits", "m.npz")
    assert datasets.parse_scale("1/255") == pytest.approx(1 / 255) and datasets.parse_scale("NONE") is None
    with pytest.raises(DataError, match="--scale"):
        datasets.parse_scale("-1")


# ------------------------------------------------------------------ labels checked before training


def test_label_output_mismatch_is_caught_before_training(tmp_path, monkeypatch):
    from tfcompress import pipeline

    fits = []
    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: fits.append(1))
    data = datasets.from_arrays(X, Y)
    with pytest.raises(DataError, match="labels span 0..2 but the model has 2 output"):
        pipeline.run_job(_tiny(classes=2), data, out=str(tmp_path / "o"), train_epochs=1, quiet=True)
    assert not fits


def test_check_calibrates_on_the_data_and_checks_labels(tmp_path):
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    report = tfcompress.check(_tiny(), data=str(tmp_path / "d.npz"))
    assert report.conversion["status"] == "ok" and "8 samples" in report.conversion["calibration"]
    assert any("divided by 255" in n for n in report.notes)
    with pytest.raises(DataError, match="2 output unit"):
        tfcompress.check(_tiny(classes=2), data=(X, Y), convert=False)


# ------------------------------------------------------------------ the tuner's inputs


def test_tune_data_mismatch_one_error_before_any_folder(tmp_path):
    out = tmp_path / "t"
    with pytest.raises(DataError, match="2 output unit"):
        tfcompress.tuning.tune(_tiny(classes=2), (X, Y), directory=str(out), **FAST)
    assert not out.exists()


def test_builder_in_main_is_refused_with_the_fix(tmp_path, monkeypatch):
    from tfcompress.tuning.inputs import check_builder

    def local():
        return _tiny()

    # What `def build_model(): ...` in the user's script is: a function of __main__.
    fake = type(local)(local.__code__, globals(), "build_model")
    fake.__module__, fake.__qualname__ = "__main__", "build_model"
    monkeypatch.setattr(sys.modules["__main__"], "build_model", fake, raising=False)
    with pytest.raises(TuningError, match="build_model is defined in __main__.*mymodels:build_model"):
        check_builder(fake)
    with pytest.raises(TuningError, match="cannot be pickled"):
        check_builder(local)
    with pytest.raises(TuningError, match="defined in __main__"):
        tfcompress.tuning.tune(fake, (X, Y), directory=str(tmp_path / "t"), **FAST)
    assert not (tmp_path / "t").exists()


def test_module_function_reference(tmp_path, monkeypatch):
    from tfcompress.io import Builder, resolve_model

    (tmp_path / "mymodels_ref.py").write_text(textwrap.dedent("""
        import keras  # Keras 3

        def build():
            return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    src = resolve_model("mymodels_ref:build")
    assert src.kind == "builder" and isinstance(src.build, Builder)
    assert isinstance(src.model(), keras.Model)  # Keras 3 translated to tf_keras
    with pytest.raises(tfcompress.UnsupportedModelError, match="cannot import 'nosuchmod'.*PYTHONPATH"):
        resolve_model("nosuchmod:build")
    with pytest.raises(tfcompress.UnsupportedModelError, match="has no function 'nope'"):
        resolve_model("mymodels_ref:nope")


def _run_cli(args, cwd, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "tfcompress.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


@pytest.mark.slow
def test_tune_with_a_tuple_and_a_keras3_model_fine_tunes_it(tmp_path):
    import keras as keras3

    keras3.utils.set_random_seed(0)
    k3 = keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Conv2D(4, 3, activation="relu"),
                            keras3.layers.Flatten(), keras3.layers.Dense(3, activation="softmax")])
    result = tfcompress.tuning.tune(k3, (X, Y), directory=str(tmp_path / "t"), **FAST)
    assert [r["status"] for r in result.rows] == ["COMPLETED"]
    assert (tmp_path / "t" / "model.keras").exists()
    settings = json.loads((tmp_path / "t" / "settings.json").read_text())
    assert settings["data"]["scaling"].startswith("inputs divided by 255") and settings["from_scratch"] is False


@pytest.mark.slow
def test_cli_tune_with_a_module_builder_and_npz(tmp_path):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "mymods.py").write_text(textwrap.dedent("""
        import keras  # Keras 3

        def build():
            keras.utils.set_random_seed(0)
            return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                                     keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    """))
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    r = _run_cli(["tune", "--model", "mymods:build", "--data", "d.npz", "--space", "space.yaml", "--recipe",
                  "recipe.yaml", "--max-trials", "1", "--epochs", "1", "--dir", "t"], tmp_path,
                 env={"PYTHONPATH": str(tmp_path / "mods")})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "data: d.npz" in r.stdout and "divided by 255" in r.stdout and "1 completed" in r.stdout


@pytest.mark.slow
def test_cli_optimize_check_export_take_data(tmp_path, folder):
    _tiny().save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x_train=X, y_train=Y)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    r = _run_cli(["optimize", "--model", "m.keras", "--data", "d.npz", "--recipe", "recipe.yaml", "--out", "o",
                  "--quiet"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["data"]["source"] == "npz" and report["data"]["scale"] == pytest.approx(1 / 255)
    r = _run_cli(["optimize", "--model", "m.keras", "--dataset", "d.npz", "--data", "d.npz"], tmp_path)
    assert r.returncode == 2 and "not both" in r.stderr
    r = _run_cli(["check", "m.keras", "--data", "d.npz"], tmp_path)
    assert r.returncode == 0 and "divided by 255" in r.stdout, r.stderr[-2000:]
    r = _run_cli(["export", "m.keras", "--mode", "int8", "--data", str(folder), "--out", "f.tflite"], tmp_path)
    assert r.returncode == 0 and (tmp_path / "f.tflite").exists(), r.stderr[-2000:]


def test_cli_data_errors_exit_2_without_traceback(tmp_path, capsys):
    assert main(["optimize", "--model", "digits_cnn", "--data", str(tmp_path / "nope.npz")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert main(["optimize", "--model", "digits_cnn"]) == 2
    assert "no data" in capsys.readouterr().err
