"""load_model: both Kerases, both formats, safe mode, and tfcompress's own wrappers."""

import numpy as np
import pytest

import tfcompress
from tfcompress._keras import keras, tfmot

k3 = pytest.importorskip("keras")


def _x(n=4):
    return np.random.RandomState(0).rand(n, 8, 8, 1).astype("float32")


def _tf_keras_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.Add()([x, keras.layers.Conv2D(4, 1)(x)])
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def _k3_model():
    k3.utils.set_random_seed(0)
    inp = k3.Input((8, 8, 1))
    x = k3.layers.Conv2D(4, 3, activation="relu")(inp)
    x = k3.layers.BatchNormalization()(x)
    out = k3.layers.Dense(3)(k3.layers.GlobalAveragePooling2D()(x))
    return k3.Model(inp, out)


def _close(a, b, atol=1e-5):
    assert np.abs(np.asarray(a) - np.asarray(b)).max() <= atol


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_keras3_files_load_as_tf_keras(tmp_path, ext):
    m = _k3_model()
    path = str(tmp_path / f"k3{ext}")
    m.save(path)
    loaded = tfcompress.load_model(path)
    assert isinstance(loaded, keras.Model)
    _close(loaded(_x()), m(_x()))


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_tf_keras_files_load(tmp_path, ext):
    m = _tf_keras_model()
    path = str(tmp_path / f"m{ext}")
    m.save(path)
    _close(tfcompress.load_model(path)(_x()), m(_x()))


def test_lambda_needs_safe_mode_off(tmp_path):
    inp = keras.Input((4,))
    m = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp))
    for ext in (".keras", ".h5"):
        path = str(tmp_path / f"lam{ext}")
        m.save(path)
        with pytest.raises(tfcompress.UnsupportedModelError, match="safe_mode=False"):
            tfcompress.load_model(path)
    assert tfcompress.load_model(path, safe_mode=False).get_layer("double") is not None
    k3_in = k3.Input((4,))
    k3_path = str(tmp_path / "k3lam.keras")
    k3.Model(k3_in, k3.layers.Lambda(lambda t: t * 2.0)(k3_in)).save(k3_path)
    with pytest.raises(tfcompress.UnsupportedModelError, match="safe_mode=False"):
        tfcompress.load_model(k3_path)


def test_files_that_are_not_models(tmp_path):
    text = tmp_path / "notes.keras"
    text.write_text("hello")
    with pytest.raises(tfcompress.UnsupportedModelError, match="not a Keras model"):
        tfcompress.load_model(str(text))
    weights = str(tmp_path / "only.weights.h5")
    _tf_keras_model().save_weights(weights)
    with pytest.raises(tfcompress.UnsupportedModelError, match="weights only"):
        tfcompress.load_model(weights)
    with pytest.raises(tfcompress.UnsupportedModelError, match="does not exist"):
        tfcompress.load_model(str(tmp_path / "missing.keras"))


def test_subclassed_file_is_refused(tmp_path):
    @k3.saving.register_keras_serializable("tfcompress_test")
    class Net(k3.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.d = k3.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    path = str(tmp_path / "sub.keras")
    net.save(path)
    with pytest.raises(tfcompress.UnsupportedModelError, match="subclassed"):
        tfcompress.load_model(path)


def _roundtrip(model, tmp_path, name, x, ext=".keras"):
    path = str(tmp_path / f"{name}{ext}")
    model.save(path)
    loaded = tfcompress.load_model(path)
    _close(loaded(x), model(x))
    return loaded


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_pruning_wrappers_roundtrip(tmp_path, ext):
    m = tfmot.sparsity.keras.prune_low_magnitude(_tf_keras_model())
    loaded = _roundtrip(m, tmp_path, "pruned", _x(), ext)
    assert any("prune_low_magnitude" in l.name for l in loaded.layers)


def test_clustering_wrappers_roundtrip(tmp_path):
    cluster = tfmot.clustering.keras
    m = cluster.cluster_weights(_tf_keras_model(), number_of_clusters=4,
                                cluster_centroids_init=cluster.CentroidInitialization.LINEAR)
    loaded = _roundtrip(m, tmp_path, "clustered", _x())
    assert any("cluster_" in l.name for l in loaded.layers)


def test_qat_wrappers_roundtrip(tmp_path):
    from tfcompress import Quantization
    from tfcompress.quantization import wrap

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(4, 3, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    s = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = keras.layers.Multiply()([x, keras.layers.Activation("hard_sigmoid")(s)])
    out = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    qat, _ = wrap(keras.Model(inp, out), Quantization(), preserve_sparsity=False)
    x = np.random.RandomState(0).rand(2, 8, 8, 3).astype("float32") * 255
    loaded = _roundtrip(qat, tmp_path, "qat", x, ext=".h5")
    assert any(type(l).__name__.startswith("QuantizeWrapper") for l in loaded.layers)
    # tf_keras's .keras format drops quantizer variables: a clear error, not a traceback.
    path = str(tmp_path / "qat.keras")
    qat.save(path)
    with pytest.raises(tfcompress.UnsupportedModelError, match="save them with"):
        tfcompress.load_model(path)
