"""Keras 3 out: a Keras 3 model compressed comes back as Keras 3, saves and reloads;
`tfcompress export` takes the Keras 3 files `check` and `optimize` take."""

import numpy as np
import pytest

k3 = pytest.importorskip("keras")
if not k3.__version__.startswith("3"):  # pragma: no cover
    pytest.skip("Keras 3 is not installed as `keras`", allow_module_level=True)

import tfcompress  # noqa: E402
from tfcompress._keras import keras, tfmot  # noqa: E402
from tfcompress._keras3_out import save, to_keras3  # noqa: E402
from tfcompress.cli import main  # noqa: E402
from tflite_export.evaluate import predict  # noqa: E402

L = k3.layers
NO_QAT = {"quantization": None}


def _k3_model():
    """A Keras 3 Functional model with a nested Sequential backbone (BN inside)."""
    k3.utils.set_random_seed(0)
    backbone = k3.Sequential([k3.Input((8, 8, 3)), L.Conv2D(8, 3, padding="same", activation="relu", name="c1"),
                              L.BatchNormalization(name="bn")], name="backbone")
    inp = k3.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c2")(backbone(inp))
    out = L.Dense(3, activation="softmax", name="fc")(L.GlobalAveragePooling2D(name="gap")(x))
    return k3.Model(inp, out, name="mine")


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    return rng.rand(32, 8, 8, 3).astype("float32"), rng.randint(0, 3, 32)


@pytest.fixture(scope="module")
def pruned(data):
    model = _k3_model()
    recipe = {"pruning": {"epochs": 1, "final_sparsity": 0.5}, **NO_QAT}
    return model, tfcompress.optimize(model, data, recipe=recipe, batch_size=16, verbose=0)


@pytest.fixture(scope="module")
def shrunk(data):
    model = _k3_model()
    recipe = {"channels": {"ratio": 0.5, "epochs": 0}, "pruning": {"epochs": 1, "final_sparsity": 0.5}, **NO_QAT}
    return model, tfcompress.optimize(model, data, recipe=recipe, batch_size=16, verbose=0)


def _close(a, b, atol=1e-5):
    assert np.abs(np.asarray(a) - np.asarray(b)).max() <= atol


def test_pruned_keras3_result_keeps_the_users_architecture(pruned, data):
    model, result = pruned
    assert result.keras3_source is model
    out = result.to_keras3()
    assert type(out).__module__.startswith("keras.")
    assert out.name == "mine" and isinstance(out.get_layer("backbone"), k3.Model)  # nesting kept
    _close(out(data[0]), result.model(data[0]))
    kernel = out.get_layer("c2").get_weights()[0]
    assert (kernel == 0).mean() >= 0.45  # the sparsity came with the weights
    model_out = model(data[0])  # the user's model is untouched
    assert np.abs(np.asarray(model_out) - np.asarray(out(data[0]))).max() > 0


def test_channel_pruned_result_is_rebuilt_smaller_in_keras3(shrunk, data, tmp_path):
    model, result = shrunk
    out = result.to_keras3()
    assert type(out).__module__.startswith("keras.")
    assert out.count_params() == result.model.count_params() < model.count_params()
    _close(out(data[0]), result.model(data[0]))
    path = result.save(tmp_path / "small.keras")  # Keras 3, as the input was
    back = k3.saving.load_model(path)
    assert type(back).__module__.startswith("keras.")
    _close(back(data[0]), result.model(data[0]))
    _close(tfcompress.load_model(path)(data[0]), result.model(data[0]))
    tf_path = result.save(tmp_path / "small_tf.keras", keras3=False)
    _close(tfcompress.load_model(tf_path)(data[0]), result.model(data[0]))


def test_rebuild_without_the_original_handles_sequential_and_shared_inputs(data):
    seq = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3), keras.layers.LeakyReLU(0.2),
                            keras.layers.Flatten(), keras.layers.Dense(2)])
    out = to_keras3(seq)
    assert isinstance(out, k3.Sequential)
    _close(out(data[0]), seq(data[0]))
    inp = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(2, 1, name="a")(inp)
    b = keras.layers.DepthwiseConv2D(3, padding="same", name="b")(inp)
    merged = keras.layers.Concatenate()([a, keras.layers.Add()([a, keras.layers.Conv2D(2, 1)(b)])])
    func = keras.Model(inp, [merged, b])
    got, want = to_keras3(func)(data[0]), func(data[0])
    for g, w in zip(got, want):
        _close(g, w)


def test_qat_result_cannot_be_keras3_and_says_the_tflite_is_the_deliverable(tmp_path, data):
    tf_model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                                 keras.layers.Dense(2)])
    qat = tfmot.quantization.keras.quantize_model(tf_model)
    result = tfcompress.OptimizeResult(qat, None, keras3_source=_k3_model())
    with pytest.raises(tfcompress.UnsupportedModelError, match=r"\.tflite is the deliverable"):
        result.to_keras3()
    with pytest.raises(tfcompress.OutputError, match=r"\.h5"):
        result.save(tmp_path / "q.keras")
    path = result.save(tmp_path / "q.h5")  # default for a QAT model: a tf_keras file that reloads
    _close(tfcompress.load_model(path)(data[0]), qat(data[0]))
    with pytest.raises(tfcompress.OutputError, match=r"\.keras or \.h5"):
        save(qat, tmp_path / "q.tflite")


def test_tfcompress_export_takes_a_keras3_file_with_litert_parity(tmp_path, data, capsys):
    model = _k3_model()
    src = tmp_path / "my_keras3.keras"
    model.save(src)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x_train=data[0], y_train=data[1], x_test=data[0], y_test=data[1])
    out = tmp_path / "x.tflite"
    assert main(["export", str(src), "--mode", "int8", "--data", str(calib), "--out", str(out)]) == 0
    assert "int8" in capsys.readouterr().out
    got = predict(str(out), data[0])
    want = np.asarray(model(data[0]))
    assert np.abs(got - want).max() < 0.05  # int8 rounding of softmax outputs
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9


@pytest.mark.parametrize("kind", ["pruned.keras", "clustered.h5", "qat.h5"])
def test_tfcompress_export_takes_files_saved_mid_compression(kind, tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    wrap = {
        "pruned": tfmot.sparsity.keras.prune_low_magnitude,
        "clustered": lambda m: tfmot.clustering.keras.cluster_weights(
            m, number_of_clusters=4, cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR),
        "qat": tfmot.quantization.keras.quantize_model,
    }[kind.split(".")[0]]
    src, params = tmp_path / kind, model.count_params()
    wrap(model).save(src)
    out = tmp_path / "m.tflite"
    args = ["--mode", "float32"]
    if kind.startswith("qat"):
        x = np.random.RandomState(0).rand(8, 8, 8, 3).astype("float32")
        np.savez(tmp_path / "calib.npz", x_train=x, y_train=np.zeros(8, int), x_test=x, y_test=np.zeros(8, int))
        args = ["--mode", "int8", "--data", str(tmp_path / "calib.npz")]
    assert main(["export", str(src), *args, "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    # wrappers are stripped before conversion: no second copy of the kernel in the file
    assert out.stat().st_size < 4 * params + 3000
