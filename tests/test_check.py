"""tfcompress.check and `tfcompress check`: the per-layer table before training."""

import json

import pytest

import tfcompress
from tfcompress import models
from tfcompress._keras import keras
from tfcompress.cli import main

L = keras.layers


def _se_model():
    """Rescaling, squeeze-and-excitation Multiply, a TF op, hard_sigmoid, a GRU head."""
    inp = keras.Input((8, 8, 3))
    x = L.Rescaling(1 / 255.0, name="rescaling")(inp)
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = keras.activations.relu(x, max_value=6.0)
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(8, 1, activation="hard_sigmoid", name="se")(s)
    x = L.Multiply(name="excite")([x, s])
    x = L.Reshape((16, 32))(L.Conv2D(8, 1, name="pw")(x))
    x = L.GRU(4, name="gru")(x)
    return keras.Model(inp, L.Dense(3, name="head")(x), name="se_net")


def test_check_reports_every_technique_per_layer():
    report = tfcompress.check(_se_model())
    assert report.layer("conv").prunable == "yes"
    assert report.layer("conv").quantizable == "TF-MOT default"
    assert report.layer("bn").quantizable.startswith("folded")
    assert report.layer("excite").quantizable.startswith("output-only")
    assert report.layer("rescaling").quantizable.startswith("output-only")
    assert report.layer("gru").quantizable.startswith("no: GRU")
    assert report.layer("head").clusterable.startswith("no: kernel has 12 weights")
    assert report.layer("pw").xnnpack_sparse.startswith("no: the model is not eligible")
    assert report.xnnpack and "Conv2D 3x3" in report.xnnpack
    assert report.layer("head").channels.startswith("no: locked")
    assert report.conversion["mode"] == "int8"
    assert report.conversion["status"] == "ok" or report.conversion["status"].startswith("failed: ")
    d = report.to_dict()
    json.dumps(d)
    assert d["summary"]["prunable"] == report.count("prunable") >= 4
    md = report.to_markdown()
    assert md.startswith("# tfcompress check: se_net") and "| excite | Multiply |" in md
    assert "trial int8 conversion" in report.table()


def test_check_flattens_nested_backbone_and_uses_recipe():
    inner_in = keras.Input((8, 8, 1))
    backbone = keras.Model(inner_in, L.Conv2D(4, 3, name="bb_conv")(inner_in), name="backbone")
    inp = keras.Input((8, 8, 1))
    out = L.Dense(2, name="head")(L.Flatten()(backbone(inp)))
    recipe = {"pruning": {"final_sparsity": 0.5}, "clustering": {"number_of_clusters": 64}, "quantization": None}
    report = tfcompress.check(keras.Model(inp, out), recipe=recipe, convert=False)
    assert report.layer("bb_conv").prunable == "yes"
    assert report.layer("bb_conv").clusterable.startswith("no: kernel has 36 weights")
    assert any("flattened" in n for n in report.notes)
    assert report.conversion["mode"] == "float32" and report.conversion["status"].startswith("skipped")


def test_xnnpack_eligible_model():
    inp = keras.Input((16, 16, 3))
    x = L.ZeroPadding2D(((1, 1), (1, 1)))(inp)
    x = L.Conv2D(8, 3, strides=2, padding="valid", name="stem")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(8, 1, name="pw")(x)
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    report = tfcompress.check(keras.Model(inp, L.Flatten()(x)), convert=False)
    assert report.xnnpack is None
    assert report.layer("pw").xnnpack_sparse == "yes"
    assert report.layer("stem").xnnpack_sparse.startswith("no: only 1×1")


def test_check_refuses_subclassed_models():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(tfcompress.UnsupportedModelError, match="subclassed"):
        tfcompress.check(Net())


def test_trial_conversion_failure_is_reported_not_raised(monkeypatch):
    import tflite_export

    def boom(*a, **k):
        raise tflite_export.ExportError("converter says no")

    monkeypatch.setattr(tflite_export, "convert_bytes", boom)
    report = tfcompress.check(models.get("digits_cnn").build())
    assert report.conversion["status"] == "failed: converter says no"


def test_cli_check_json_and_markdown(tmp_path, capsys):
    path = str(tmp_path / "m.keras")
    models.get("digits_cnn").build().save(path)
    md = str(tmp_path / "check.md")
    assert main(["check", path, "--json", "--markdown", md]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model"] and d["conversion"]["status"] == "ok"
    assert open(md).read().startswith("# tfcompress check")
    assert main(["check", "digits_cnn", "--no-convert"]) == 0
    assert "conv1" in capsys.readouterr().out


def test_cli_check_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "x.keras"
    bad.write_text("not a model")
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "not a Keras model" in err[0]
    assert main(["check", "no_such_model"]) == 2
    assert "neither a model file nor a known model name" in capsys.readouterr().err


def test_check_accepts_keras3_models():
    k3 = pytest.importorskip("keras")
    inp = k3.Input((8, 8, 3))
    x = k3.layers.Conv2D(4, 3, name="c")(inp)
    m = k3.Model(inp, k3.layers.Dense(2)(k3.layers.Flatten()(x)))
    report = tfcompress.check(m, convert=False)
    assert report.layer("c").prunable == "yes"
    assert "Keras 3 model translated to tf_keras" in report.notes


def test_a_technique_column_appears_only_where_it_answers(monkeypatch):
    from tfcompress import techniques
    from tfcompress.technique import CheckColumn, Technique

    def demo(model, recipe):  # once per model: {layer: answer}
        return {layer.name: "yes" if isinstance(layer, keras.layers.Conv2D) else "no: not a Conv2D"
                for layer in model.layers if layer.weights}

    toy = Technique(name="demo_stage", recipe_class=type("Nothing", (), {}), run=None,
                    columns=(CheckColumn("demo", "demo col", demo), CheckColumn("never", "never col", lambda m, r: {})))
    monkeypatch.setattr(techniques, "_REGISTRY", [*techniques.all_techniques(), toy])
    report = tfcompress.check(_se_model(), convert=False)
    assert report.layer("conv").extra["demo"] == "yes" and "never" not in report.layer("conv").extra
    assert report.layer("head").extra["demo"].startswith("no:")
    assert report.COLUMNS[-1] == "demo col" and "never col" not in report.COLUMNS
    assert report.count("demo") == 3  # conv, se, pw
    assert report.to_dict()["summary"]["demo"] == 3
    assert "demo col" in report.to_markdown() and "demo col" in report.table()
