"""Every keras.applications architecture goes in and comes out.

The whole list (``tf_keras.applications``, ``weights=None``, smallest input)
runs under ``-m slow`` through the benchmark's pipeline, one child process per
model: check → optimize (default recipe) → int8 export → LiteRT invoke. In
``make test``, tiny graphs reproduce each failure mode the applications hit:
ConvNeXt's application-private ``LayerScale`` (TF-MOT's rebuild crashed with
"'str' object has no attribute 'name'"), Xception/NASNet-style separable
convolution stacks with padding, cropping and pooling, and a Keras 3 model
with augmentation layers.
"""

import os
import sys

import numpy as np
import pytest

import tfcompress
import tflite_export
from tfcompress import Quantization
from tfcompress._keras import keras
from tfcompress.quantization import layer_classes, wrap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository: benchmarks/
from benchmarks import _applications as apps  # noqa: E402

L = keras.layers


def _layer_scale():
    from tf_keras.src.applications.convnext import LayerScale  # the real application-private class

    return LayerScale


def _zoo(size=16):
    """One small graph with the layers the applications hit: ConvNeXt's
    LayerNormalization + LayerScale + a ``+`` (TFOpLambda), Xception's
    separable convolutions with a strided 1×1 shortcut, NASNet's
    zero-padding, cropping, average pooling and concatenation."""
    inp = keras.Input((size, size, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    # ConvNeXt block
    y = L.DepthwiseConv2D(3, padding="same", name="cnx_dw")(x)
    y = L.LayerNormalization(epsilon=1e-6, name="cnx_ln")(y)
    y = L.Dense(16, activation="gelu", name="cnx_pw1")(y)
    y = L.Dense(8, name="cnx_pw2")(y)
    y = _layer_scale()(1e-6, 8, name="cnx_layer_scale")(y)
    x = x + y
    # Xception block
    r = L.Conv2D(16, 1, strides=2, padding="same", use_bias=False, name="xc_shortcut")(x)
    r = L.BatchNormalization(name="xc_shortcut_bn")(r)
    y = L.SeparableConv2D(16, 3, padding="same", use_bias=False, name="xc_sep1")(x)
    y = L.BatchNormalization(name="xc_sep1_bn")(y)
    y = L.Activation("relu")(y)
    y = L.SeparableConv2D(16, 3, padding="same", use_bias=False, name="xc_sep2")(y)
    y = L.BatchNormalization(name="xc_sep2_bn")(y)
    y = L.MaxPooling2D(3, strides=2, padding="same")(y)
    x = L.add([y, r])
    # NASNet cell
    p = L.ZeroPadding2D(((0, 1), (0, 1)), name="nas_pad")(x)
    p = L.Cropping2D(((1, 0), (1, 0)), name="nas_crop")(p)
    a = L.AveragePooling2D(3, strides=1, padding="same", name="nas_avg")(p)
    s = L.Activation("relu")(x)
    s = L.SeparableConv2D(16, 3, padding="same", name="nas_sep")(s)
    x = L.concatenate([a, s, x])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(4, activation="softmax", name="head")(x), name="zoo")


def test_tf_mot_failure_is_our_error_not_a_raw_exception(monkeypatch):
    from tfcompress import quantization

    real, calls = quantization._q.quantize_apply, []

    def fails_first(*a, **k):  # TF-MOT fails with tfcompress's extra configs only
        calls.append(1)
        if len(calls) == 1:
            raise AttributeError("'str' object has no attribute 'name'")
        return real(*a, **k)

    inp = keras.Input((4,))
    d = L.Dense(4, name="d1")(inp)
    m = keras.Model(inp, L.Dense(2, name="d2")(L.Multiply(name="mul")([d, d])))
    monkeypatch.setattr(quantization._q, "quantize_apply", fails_first)
    with pytest.warns(UserWarning, match="only the layers TF-MOT configures itself"):
        _, records = wrap(m, Quantization())
    assert records["d1"] == "quantized" and records["mul"].startswith("skipped: left in float")

    def boom(*a, **k):
        raise AttributeError("'str' object has no attribute 'name'")

    monkeypatch.setattr(quantization._q, "quantize_apply", boom)
    with pytest.raises(tfcompress.UnsupportedModelError, match="AttributeError"):
        wrap(m, Quantization())


def test_zoo_goes_through_default_recipe_int8_and_litert(tmp_path):
    m = _zoo()
    assert layer_classes(m)["LayerScale"] is _layer_scale()
    skipped = apps.skipped_by_check(tfcompress.check(m, convert=False))
    assert "LayerScale" in skipped["cnx_layer_scale"] and "xc_sep1" not in skipped
    rng = np.random.RandomState(0)
    x, y = rng.rand(16, 16, 16, 3).astype("float32"), rng.randint(0, 4, 16)
    # TF-MOT's rebuild raised AttributeError on LayerScale before
    result = tfcompress.optimize(m, (x, y), epochs=1, batch_size=8, verbose=0)
    qat = {l.name: l.stages["quantization"] for l in result.report.layers if "quantization" in l.stages}
    assert qat["cnx_layer_scale"].startswith("skipped") and qat["xc_sep1"] == "quantized"
    # check said before training what QAT leaves in float
    assert {n for n, r in qat.items() if r.startswith("skipped")} <= set(skipped)
    path = tmp_path / "int8.tflite"
    tflite_export.export(result.model, path, mode="int8", representative_data=x, num_samples=16)
    out = tflite_export.predict(path, x[:2])  # LiteRT prepares the XNNPACK runtime and runs
    assert out.shape == (2, 4) and np.all(np.isfinite(out))


def test_grouped_convolutions_train_with_eager_steps():
    """RegNet's grouped convolutions: tf.config.run_functions_eagerly runs Keras's XLA-compiled
    grouped convolution eagerly too, which has no CPU gradient without oneDNN; the benchmark's
    eager mode runs only the train step in Python (every Model.run_eagerly reads True) and
    trains them either way."""
    from tfcompress._keras import tf

    inp = keras.Input((8, 8, 4))
    x = L.Conv2D(8, 3, padding="same", groups=2, name="grouped")(inp)
    m = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(x)))
    rng = np.random.RandomState(0)
    x, y = rng.rand(8, 8, 8, 4).astype("float32"), rng.randint(0, 3, 8)
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    from tfcompress._keras import ONEDNN_ON

    if not ONEDNN_ON:  # TensorFlow's own eager grouped-convolution gradient exists with oneDNN only
        tf.config.run_functions_eagerly(True)
        try:
            with pytest.raises(Exception, match="[Gg]rouped convolution"):
                m.train_on_batch(x, y)
        finally:
            tf.config.run_functions_eagerly(False)
    before = m.get_layer("grouped").get_weights()[0].copy()
    with apps._eager_training(keras, tf, eager=True, grouped=True):
        assert m.run_eagerly
        m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert not m.run_eagerly and "run_eagerly" in keras.Model.__dict__  # the property is back
    assert not np.allclose(before, m.get_layer("grouped").get_weights()[0])


def test_keras3_augmentation_layers_are_dropped_and_reported():
    k3 = pytest.importorskip("keras")
    if not k3.__version__.startswith("3"):  # pragma: no cover
        pytest.skip("Keras 3 is not installed as `keras`")
    K = k3.layers
    inp = k3.Input((8, 8, 3))
    aug = k3.Sequential([K.RandomFlip(), K.RandomRotation(0.1)], name="augment")(inp)
    z = K.RandomZoom(0.1, name="zoom")(aug)
    z = K.RandomContrast(0.1, name="contrast")(z)
    z = K.RandomTranslation(0.1, 0.1, name="shift")(z)
    z = K.RandomCrop(8, 8, name="crop")(z)
    z = K.Rescaling(1 / 255.0, name="scale")(z)  # a real inference op: kept
    c = K.Conv2D(4, 3, activation="relu", name="conv")(z)
    out = K.Dense(3, activation="softmax", name="head")(K.GlobalAveragePooling2D()(c))
    m3 = k3.Model(inp, out)
    x = np.random.RandomState(0).rand(4, 8, 8, 3).astype("float32") * 255
    with pytest.warns(UserWarning, match="augmentation layers dropped.*zoom \\(RandomZoom\\)"):
        report = tfcompress.check(m3, convert=False)
    note = next(n for n in report.notes if "augmentation" in n)
    for name in ("zoom (RandomZoom)", "contrast (RandomContrast)", "shift (RandomTranslation)",
                 "crop (RandomCrop)", "(RandomFlip)", "(RandomRotation)"):
        assert name in note
    names = [r.name for r in report.layers]
    assert "scale" in names and "zoom" not in names and "augment" not in names
    from tfcompress._keras3 import to_tf_keras

    with pytest.warns(UserWarning):
        tfk = to_tf_keras(m3)
    np.testing.assert_allclose(tfk.predict(x, verbose=0), m3.predict(x, verbose=0), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", apps.model_names())
def test_every_application_comes_out(name):
    row = apps.run_isolated(name, timeout=int(os.environ.get("TFCOMPRESS_APP_TIMEOUT", "1800")))
    assert row["status"].startswith("ok"), row["status"] + "\n" + row.get("traceback", "")
    assert set(row["skipped_in_qat"]) <= set(row["skipped"]), "check must list every layer QAT skips"
    assert row["int8_bytes"] > 0
