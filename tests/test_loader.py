"""The one model resolver (tfcompress.io.resolve_model) and the one loader (tflite_export.loader)."""

import pickle

import numpy as np
import pytest

import tfcompress
import tflite_export
from tfcompress import models
from tfcompress._keras import keras
from tfcompress.io import ModelBuilder, resolve_model
from tfcompress.tuning.search import resolve_model as tune_resolve
from tflite_export import loader


def _tiny():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.Dense(3)(inp), name="tiny")


def test_reference_names_resolve_to_their_spec():
    src = resolve_model("digits-cnn", input_shape=(8, 8, 1), num_classes=10)
    assert src.kind == "reference" and src.spec.name == "digits_cnn" and src.name == "digits_cnn"
    assert src.model().output_shape == (None, 10)
    assert pickle.loads(pickle.dumps(src.build))().output_shape == (None, 10)  # trials rebuild it


@pytest.mark.parametrize("ext", [".keras", ".h5", ""])
def test_files_and_folders_resolve_and_load_once(tmp_path, ext):
    m = _tiny()
    path = str(tmp_path / f"m{ext}")  # "" = a SavedModel folder
    m.save(path)
    src = resolve_model(path)
    assert src.kind == "file" and src.name == path and src.spec is None
    x = np.ones((2, 4), "float32")
    assert np.allclose(src.model()(x), m(x), atol=1e-6)
    assert src.model() is src.model()
    assert isinstance(pickle.loads(pickle.dumps(src.build))(), keras.Model)


def test_objects_and_builders_pass_through():
    m = _tiny()
    src = resolve_model(m)
    assert src.kind == "object" and src.model() is m
    src = resolve_model(_tiny)
    assert src.kind == "builder" and src.name == "_tiny" and src.model().name == "tiny"
    assert resolve_model(models.get("lenet5")).spec.name == "lenet5"
    layer = keras.layers.Dense(2)  # callable, but not a builder: check_model's message applies
    assert resolve_model(layer).kind == "object"
    with pytest.raises(tfcompress.UnsupportedModelError, match="expected a tf_keras Model"):
        tfcompress.check(layer, convert=False)


def test_unknown_names_say_what_is_accepted():
    with pytest.raises(tfcompress.UnsupportedModelError) as ei:
        resolve_model("resnet9000")
    msg = str(ei.value)
    assert "unknown reference model" in msg and "neither a model file nor a known model name" in msg
    assert "MobileNetV2" not in msg
    with pytest.raises(tfcompress.UnsupportedModelError, match="MobileNetV2"):
        resolve_model("resnet9000", applications=True)


def test_applications_only_where_asked():
    with pytest.raises(tfcompress.UnsupportedModelError):
        resolve_model("MobileNetV2")
    src = resolve_model("MobileNetV2", input_shape=(32, 32, 3), applications=True)
    assert src.kind == "application" and src.build.input_shape == (32, 32, 3)


def test_a_reference_name_wins_over_a_same_named_folder(tmp_path, monkeypatch):
    (tmp_path / "lenet5").mkdir()  # e.g. an earlier --out folder
    monkeypatch.chdir(tmp_path)
    assert resolve_model("lenet5").kind == "reference"


def test_tune_refuses_a_model_object_it_cannot_rebuild():
    with pytest.raises(tfcompress.UnsupportedModelError, match="fresh model for every trial"):
        tune_resolve(_tiny())
    build, name, recipe = tune_resolve(ModelBuilder("digits_cnn"))
    assert name == "digits_cnn" and recipe is not None


def test_load_model_needs_a_path():
    with pytest.raises(tfcompress.UnsupportedModelError, match="needs the path"):
        tfcompress.load_model(None)


def test_savedmodel_metadata_is_read_without_loading(tmp_path):
    path = str(tmp_path / "sm")
    _tiny().save(path)
    fmt, _, nodes = loader.read_config(path)
    assert fmt == "saved_model" and any(n.get("class_name") == "Dense" for n in nodes)
    with pytest.raises(tflite_export.ExportError, match="folder without saved_model.pb"):
        loader.read_config(str(tmp_path))


def test_export_translates_keras3_files_when_tfcompress_is_loaded(tmp_path):
    k3 = pytest.importorskip("keras")
    inp = k3.Input((4,))
    m = k3.Model(inp, k3.layers.Dense(2)(inp))
    path = str(tmp_path / "k3.keras")
    m.save(path)
    rep = tflite_export.export(path, str(tmp_path / "k3.tflite"), mode="float32")
    x = np.random.RandomState(0).rand(3, 4).astype("float32")
    assert np.allclose(tflite_export.predict(rep.path, x), np.asarray(m(x)), atol=1e-5)
