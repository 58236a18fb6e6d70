"""Tests of structured (channel / filter / neuron) pruning: tfcompress.channels."""

import json
import os

import numpy as np
import pytest

import tflite_export
from tfcompress import channels as ch
from tfcompress._keras import keras
from tfcompress.channels.graph import Analysis
from tfcompress.errors import DataError, RecipeError, UnsupportedModelError

try:
    from tfcompress.models import resnet_tiny
except ImportError:  # running from the source tree
    from models import resnet_tiny

L = keras.layers


# -- tiny models --------------------------------------------------------------

def digits_cnn(seed=0):
    """Conv-BN-ReLU x2, Flatten, Dense (Sequential), 8x8x1 input."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        L.Input((8, 8, 1)),
        L.Conv2D(8, 3, padding="same", use_bias=False, name="conv1"),
        L.BatchNormalization(name="bn1"),
        L.ReLU(name="relu1"),
        L.Conv2D(16, 3, padding="same", name="conv2"),
        L.BatchNormalization(name="bn2"),
        L.ReLU(name="relu2"),
        L.MaxPooling2D(2, name="pool"),
        L.Flatten(name="flatten"),
        L.Dense(24, activation="relu", name="fc1"),
        L.Dropout(0.1, name="drop"),
        L.Dense(10, activation="softmax", name="logits"),
    ], name="digits_cnn")


def concat_net(seed=0):
    """Two branches concatenated, then a depthwise conv, GAP and Dense."""
    keras.utils.set_random_seed(seed)
    inp = L.Input((8, 8, 3), name="img")
    a = L.Conv2D(6, 3, padding="same", activation="relu", name="branch_a")(inp)
    b = L.Conv2D(10, 1, name="branch_b")(inp)
    b = L.BatchNormalization(name="bn_b")(b)
    x = L.Concatenate(name="cat")([a, b])
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="bn_dw")(x)
    x = L.Conv2D(12, 1, activation="relu", name="mix")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(5, name="out")(x)
    return keras.Model(inp, out, name="concat_net")


def exotic_net(seed=0):
    """SeparableConv2D, depth_multiplier 2, PReLU, a squeeze-excite Multiply,
    Conv2DTranspose and a Dense on a rank-4 tensor."""
    keras.utils.set_random_seed(seed)
    inp = L.Input((8, 8, 2))
    x = L.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, name="sep")(inp)
    x = L.PReLU(shared_axes=[1, 2], name="prelu")(x)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw2")(x)
    x = L.BatchNormalization(name="bn_dw2")(x)
    x = L.Conv2D(10, 1, activation="relu", name="pw")(x)
    s = L.GlobalAveragePooling2D(name="sq")(x)
    s = L.Dense(4, activation="relu", name="se_reduce")(s)
    s = L.Dense(10, activation="sigmoid", name="se_expand")(s)
    x = L.Multiply(name="se_mul")([x, L.Reshape((1, 1, 10), name="se_reshape")(s)])
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same", name="up")(x)
    x = L.Dense(5, activation="relu", name="dense4d")(x)
    x = L.GlobalMaxPooling2D(name="gmp")(x)
    out = L.Dense(3, name="head")(x)
    return keras.Model(inp, out)


def locked_net(seed=0):
    """A Reshape and a TFOpLambda lock the groups feeding them."""
    keras.utils.set_random_seed(seed)
    inp = L.Input((4, 4, 2))
    x = L.Conv2D(4, 3, padding="same", name="c1")(inp)
    x = L.Reshape((16, 4), name="reshape")(x)
    x = L.Reshape((4, 4, 4), name="reshape_back")(x)
    x = L.Conv2D(6, 3, padding="same", name="c2")(x)
    x = x * 2.0
    x = L.Conv2D(6, 3, padding="same", name="c3")(x)
    x = L.Flatten()(x)
    out = L.Dense(3, name="head")(x)
    return keras.Model(inp, out)


def mobilenet():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10)


def _x(model, n=8, seed=0):
    return np.random.default_rng(seed).random((n,) + tuple(model.input_shape[1:])).astype("float32")


def _randomise_bn(model, seed=0):
    """Non-trivial BatchNorm statistics, so tests exercise their slicing."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])
    return model


def _kill(model, ratio):
    """Zero the ``ratio`` fraction of channels of every prunable group so they
    are exactly 0 in every tensor: pruning them must not change the output."""
    a = Analysis(model)
    dead = {}
    for g in a.groups():
        if not g.prunable:
            continue
        n = int(round(ratio * g.channels))
        n = min(n, g.channels - 1)
        dead[g.id] = np.zeros(g.channels, bool)
        dead[g.id][np.random.default_rng(g.id).permutation(g.channels)[:n]] = True
        for name in g.members:
            layer = model.get_layer(name)
            w = layer.get_weights()
            k = 1 if isinstance(layer, L.SeparableConv2D) else 0  # pointwise kernel
            if isinstance(layer, L.Conv2DTranspose):
                w[0][..., dead[g.id], :] = 0
            else:
                w[k][..., dead[g.id]] = 0
            if len(w) > k + 1:
                w[k + 1][dead[g.id]] = 0
            layer.set_weights(w)
    keep = {gid: ~d for gid, d in dead.items()}
    for layer, ins, _ in a.nodes:
        if layer.name not in a.layer_io or not ins:
            continue
        if isinstance(layer, (L.BatchNormalization, L.DepthwiseConv2D)):
            out_mask = a.mask(a.layer_io[layer.name][1][0], keep)
            w = layer.get_weights()
            if isinstance(layer, L.BatchNormalization):
                for i in (0, 1, 2):
                    w[i][~out_mask] = 0
            elif len(w) > 1:
                w[1][~out_mask] = 0
            layer.set_weights(w)
    return model


def _conv_counts(model):
    return {l.name: (l.filters if hasattr(l, "filters") else l.units)
            for l in model.layers if isinstance(l, (L.Conv2D, L.Dense)) and not isinstance(l, L.DepthwiseConv2D)}


# -- ratio 0 and exactness ------------------------------------------------------

@pytest.mark.parametrize("build", [digits_cnn, concat_net, exotic_net,
                                   lambda: resnet_tiny.build((8, 8, 1), 10)])
def test_ratio_zero_is_identity(build):
    model = _randomise_bn(build())
    small, rep = ch.prune_channels(model, 0.0)
    x = _x(model)
    np.testing.assert_allclose(small(x).numpy(), model(x).numpy(), atol=1e-6)
    assert rep.flops_after == rep.flops_before and rep.params_after == rep.params_before


@pytest.mark.parametrize("build", [digits_cnn, concat_net, exotic_net,
                                   lambda: resnet_tiny.build((8, 8, 1), 10)])
def test_pruning_dead_channels_keeps_outputs(build):
    """Channels that are exactly zero everywhere are the ones l1 removes; the
    pruned model must then compute the same function: checks weight slicing of
    Conv/BN/Depthwise/Dense inputs and outputs, Flatten, Concatenate and Add."""
    model = _kill(_randomise_bn(build()), 0.5)
    small, rep = ch.prune_channels(model, 0.5, criterion="l1")
    x = _x(model)
    np.testing.assert_allclose(small(x).numpy(), model(x).numpy(), atol=1e-5)
    assert rep.params_after < rep.params_before


def test_digits_cnn_counts_drop_as_asked():
    model = digits_cnn()
    small, rep = ch.prune_channels(model, 0.5)
    counts = _conv_counts(small)
    assert counts == {"conv1": 4, "conv2": 8, "fc1": 12, "logits": 10}
    assert small.get_layer("bn2").gamma.shape == (8,)
    assert small.get_layer("fc1").kernel.shape == (4 * 4 * 8, 12)
    assert rep.flops_after < rep.flops_before and rep.flops_after == ch.count_flops(small)
    assert {g["name"]: g["channels_after"] for g in rep.groups}["conv2"] == 8
    json.dumps(rep.to_dict())
    assert "conv2" in rep.to_markdown()


def test_per_layer_and_output_never_pruned():
    model = digits_cnn()
    small, rep = ch.prune_channels(model, per_layer={"conv2": 0.75})
    assert _conv_counts(small) == {"conv1": 8, "conv2": 4, "fc1": 24, "logits": 10}
    with pytest.raises(RecipeError, match="locked"):
        ch.prune_channels(model, per_layer={"logits": 0.5})
    with pytest.raises(RecipeError, match="not a Conv/Dense"):
        ch.prune_channels(model, per_layer={"nope": 0.5})


def test_residual_group_prunes_same_channels():
    model = _randomise_bn(resnet_tiny.build((8, 8, 1), 10))
    groups = {g.name: g for g in ch.dependency_groups(model)}
    assert set(groups["stem_conv"].members) == {"stem_conv", "b0_conv2", "b1_conv2"}
    small, _ = ch.prune_channels(model, 0.5)
    for name in ("stem_conv", "b0_conv2", "b1_conv2", "b0_conv1"):
        assert small.get_layer(name).filters == 8
    small(_x(model))


def test_concat_maps_channel_ranges():
    model = concat_net()
    small, _ = ch.prune_channels(model, per_layer={"branch_a": 0.5})
    assert small.get_layer("branch_a").filters == 3
    assert small.get_layer("dw").depthwise_kernel.shape[2] == 3 + 10
    assert small.get_layer("mix").kernel.shape[2] == 13
    assert small.get_layer("out").units == 5  # output layer never pruned


# -- budgets, criteria, errors ---------------------------------------------------

@pytest.mark.parametrize("criterion", ["l1", "l2", "bn_gamma", "taylor"])
def test_criteria(criterion):
    model = digits_cnn()
    data = (_x(model, 32), np.arange(32) % 10)
    small, rep = ch.prune_channels(model, 0.5, criterion=criterion, data=data)
    assert small.get_layer("conv2").filters == 8 and rep.criterion == criterion


def test_flops_and_params_budget():
    model = resnet_tiny.build((8, 8, 1), 10)
    small, rep = ch.prune_channels(model, flops=0.5)
    assert ch.count_flops(small) <= 0.5 * ch.count_flops(model)
    assert rep.flops_ratio > 0.3  # not pruned far past the budget
    small, rep = ch.prune_channels(model, params=0.6)
    assert ch.count_params(small) <= 0.6 * ch.count_params(model)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, "half", True])
def test_bad_ratio(bad):
    with pytest.raises(RecipeError, match="ratio"):
        ch.prune_channels(digits_cnn(), bad)


def test_bad_args():
    model = digits_cnn()
    with pytest.raises(RecipeError, match="flops"):
        ch.prune_channels(model, flops=0.0)
    with pytest.raises(RecipeError, match="criterion"):
        ch.prune_channels(model, 0.5, criterion="random")
    with pytest.raises(RecipeError, match="target"):
        ch.prune_channels(model)
    with pytest.raises(DataError, match="taylor"):
        ch.prune_channels(model, 0.5, criterion="taylor")


def test_subclassed_model_rejected():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(3)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(UnsupportedModelError):
        ch.prune_channels(net, 0.5)
    with pytest.raises(UnsupportedModelError):
        ch.dependency_groups(net)


def test_zero_channel_protection():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([L.Input((4, 4, 1)), L.Conv2D(2, 3, name="c"), L.Flatten(),
                              L.Dense(1, name="one"), L.Dense(2, name="out")])
    small, rep = ch.prune_channels(model, 0.9)
    assert small.get_layer("c").filters == 1
    assert small.get_layer("one").units == 1
    assert any("kept 1" in n for n in rep.notes)
    assert {g["name"]: g["reason"] for g in rep.groups}["one"] == "has a single channel"


def test_exotic_layers_shrink():
    model = exotic_net()
    groups = {g.name: g for g in ch.dependency_groups(model)}
    assert groups["sep"].prunable and groups["up"].prunable and groups["dense4d"].prunable
    assert not groups["pw"].prunable and "Reshape" in groups["pw"].reason  # SE path reshapes
    small, _ = ch.prune_channels(model, 0.5)
    assert small.get_layer("sep").filters == 4
    assert small.get_layer("dw2").depthwise_kernel.shape[2] == 4
    assert small.get_layer("up").filters == 3 and small.get_layer("dense4d").units == 3  # round(2.5) == 2 removed
    assert small.get_layer("prelu").alpha.shape[-1] == 4
    small(_x(model))


def test_locked_groups_have_reasons():
    groups = {g.name: g for g in ch.dependency_groups(locked_net())}
    assert not groups["c1"].prunable and "Reshape 'reshape'" in groups["c1"].reason
    assert not groups["c2"].prunable and "TFOpLambda" in groups["c2"].reason
    assert groups["c3"].prunable
    assert not groups["head"].prunable and "model output" in groups["head"].reason
    small, _ = ch.prune_channels(locked_net(), 0.5)
    assert _conv_counts(small) == {"c1": 4, "c2": 6, "c3": 3, "head": 3}


def _nested_net(inner_name="inner_dense"):
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([L.Input((6,)), L.Dense(4, activation="relu", name=inner_name)], name="inner")
    inp = L.Input((5,))
    x = L.Dense(6, name="pre")(inp)
    x = inner(x)
    out = L.Dense(2, name="post")(L.Dense(8, name="mid")(x))
    return keras.Model(inp, out, name="outer")


def test_nested_model_is_inlined():
    model = _nested_net()
    groups = {g.name: g for g in ch.dependency_groups(model)}
    assert groups["pre"].prunable and groups["inner_dense"].prunable
    small, rep = ch.prune_channels(model, 0.0)
    x = _x(model)
    np.testing.assert_allclose(small(x).numpy(), model(x).numpy(), atol=1e-6)
    assert any("inlined" in n for n in rep.notes)
    data = (_x(model, 16), np.arange(16) % 2)
    small, _ = ch.prune_channels(model, 0.5, criterion="taylor", data=data)
    assert small.get_layer("inner_dense").units == 2 and small.get_layer("pre").units == 3
    assert small.name == "outer"
    assert any(isinstance(l, keras.Model) for l in model.layers)  # original untouched


def test_nested_model_locked_when_names_clash():
    model = _nested_net(inner_name="mid")
    groups = ch.dependency_groups(model)
    pre = [g for g in groups if g.name == "pre"][0]
    assert not pre.prunable and "nested model 'inner'" in pre.reason
    small, rep = ch.prune_channels(model, 0.5)
    assert any("not inlined" in n for n in rep.notes)
    assert small.get_layer("pre").units == 6


# -- save / reload / TFLite -----------------------------------------------------

def test_save_reload_and_int8_tflite(tmp_path):
    model = _randomise_bn(resnet_tiny.build((8, 8, 1), 10))
    small, _ = ch.prune_channels(model, 0.5)
    x = _x(model, 16)
    for ext in ("keras", "h5"):
        path = str(tmp_path / f"small.{ext}")
        small.save(path)
        back = keras.models.load_model(path, compile=False)
        np.testing.assert_allclose(back(x).numpy(), small(x).numpy(), atol=1e-6)
    path = str(tmp_path / "small.tflite")
    tflite_export.export(small, path, mode="int8", representative_data=x)
    out = tflite_export.predict(path, x)
    assert np.asarray(out).shape == (16, 10)


@pytest.mark.slow
def test_mobilenetv2(tmp_path):
    model = _randomise_bn(mobilenet())
    groups = ch.dependency_groups(model)
    multi = [g for g in groups if len(g.members) > 1]
    assert len(multi) >= 4 and all(g.prunable for g in multi)
    killed = _kill(model, 0.5)
    small, rep = ch.prune_channels(killed, 0.5)
    x = _x(model, 4)
    np.testing.assert_allclose(small(x).numpy(), killed(x).numpy(), atol=1e-4)
    assert rep.flops_ratio < 0.6
    path = str(tmp_path / "mnv2.tflite")
    tflite_export.export(small, path, mode="int8", representative_data=x)
    assert np.asarray(tflite_export.predict(path, x)).shape == (4, 10)


# -- sensitivity and schedules -----------------------------------------------------

def _trained_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target.astype("int64")
    model = digits_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1200], y[:1200], epochs=3, batch_size=64, verbose=0)
    return model, (x[:1200], y[:1200]), (x[1200:1500], y[1200:1500])


def test_sensitivity_scan_and_budget(tmp_path):
    model, _, val = _trained_digits()
    rep = ch.sensitivity_scan(model, val, ratios=(0.25, 0.5, 0.75))
    names = [g["name"] for g in rep.groups]
    assert names == ["conv1", "conv2", "fc1"]
    for g in rep.groups:
        assert set(g["accuracy"]) == {0.25, 0.5, 0.75}
        assert all(0.0 <= a <= 1.0 for a in g["accuracy"].values())
    assert rep.baseline > 0.5
    per_layer = ch.ratios_for_budget(rep, flops=0.5)
    small, crep = ch.prune_channels(model, per_layer=per_layer)
    assert ch.count_flops(small) <= 0.5 * ch.count_flops(model)
    small2, _ = ch.prune_channels(model, flops=0.5, sensitivity=rep)
    assert ch.count_flops(small2) <= 0.5 * ch.count_flops(model)
    png = rep.plot(str(tmp_path / "sens.png"))
    assert os.path.getsize(png) > 1000
    json.dumps(rep.to_dict())
    assert "conv2" in rep.to_markdown()


def test_config_validation():
    assert ch.Channels().ratio == 0.5
    for kwargs, field in [({"ratio": 1.0}, "ratio"), ({"criterion": "x"}, "criterion"),
                          ({"per_layer": {"a": 2}}, "per_layer"), ({"flops": 0}, "flops"),
                          ({"params": 1.5}, "params"), ({"schedule": "x"}, "schedule"),
                          ({"steps": 0}, "steps"), ({"epochs": -1}, "epochs"),
                          ({"alpha": 2.0}, "alpha"), ({"temperature": 0}, "temperature"),
                          ({"distill": "yes"}, "distill")]:
        with pytest.raises(RecipeError, match=f"channels.{field}"):
            ch.Channels(**kwargs)


def test_apply_iterative_calls_fine_tune_between_steps():
    model = digits_cnn()
    calls = []

    def fine_tune(m, epochs):
        calls.append((m.get_layer("conv2").filters, epochs))
        return m

    small, rep = ch.apply(model, ch.Channels(ratio=0.5, schedule="iterative", steps=2, epochs=1),
                          fine_tune=fine_tune)
    assert calls == [(12, 1), (8, 1)]
    assert small.get_layer("conv2").filters == 8
    assert len(rep.steps) == 2 and rep.flops_after < rep.flops_before
    assert {g["name"]: g["channels_after"] for g in rep.groups}["conv2"] == 8


def test_apply_one_shot_with_distillation():
    model, train, val = _trained_digits()
    small, rep = ch.apply(model, ch.Channels(ratio=0.5, epochs=1), data=(train[0][:256], train[1][:256]))
    assert small.get_layer("conv2").filters == 8
    assert model.trainable  # teacher left as it was
    small(val[0][:4])


def test_apply_iterative_budget_without_data():
    model = resnet_tiny.build((8, 8, 1), 10)
    small, rep = ch.apply(model, ch.Channels(flops=0.5, schedule="iterative", steps=2, epochs=0))
    assert ch.count_flops(small) <= 0.5 * ch.count_flops(model)
    assert len(rep.steps) == 2 and rep.steps[0]["flops"] > rep.steps[1]["flops"]
    assert any("uniform ratio" in n for n in rep.notes)


def test_apply_rejects_bad_per_layer():
    with pytest.raises(RecipeError, match="locked"):
        ch.apply(digits_cnn(), ch.Channels(per_layer={"logits": 0.5}, epochs=0))


def test_apply_budget_uses_sensitivity():
    model, train, val = _trained_digits()

    class Data:
        pass

    data = Data()
    data.train, data.validation = train, val
    small, rep = ch.apply(model, ch.Channels(flops=0.5, epochs=0), data=data)
    assert ch.count_flops(small) <= 0.5 * ch.count_flops(model)
    assert any("sensitivity" in n for n in rep.notes)


def test_report_per_layer_costs():
    model = digits_cnn()
    small, rep = ch.prune_channels(model, 0.5)
    layers = {l["name"]: l for l in rep.to_dict()["layers"]}
    assert layers["conv2"]["before"] == 16 and layers["conv2"]["after"] == 8
    assert layers["conv2"]["flops_after"] < layers["conv2"]["flops_before"]
    assert layers["bn2"]["params_before"] == 64 and layers["bn2"]["params_after"] == 32
    assert sum(l["params_after"] for l in layers.values()) == small.count_params()


def test_channels_distillation_schedule_spans_all_epochs(monkeypatch):
    """The stage's own distillation built its optimizer for 1 epoch: a cosine decay hit 0 after the first."""
    import tfcompress
    from tfcompress import stage_runs
    from tfcompress.recipe import Recipe

    seen, real = [], stage_runs.make_optimizer
    monkeypatch.setattr(stage_runs, "make_optimizer", lambda *a, **k: seen.append(a) or real(*a, **k))
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.BatchNormalization()(x))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="out")(x))
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(32, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 32))
    recipe = Recipe(channels=ch.Channels(ratio=0.5, epochs=3), pruning=None, quantization=None,
                    lr_schedule="cosine", batch_size=16)
    tfcompress.optimize(model, data, recipe=recipe, verbose=0)
    assert [a[3:5] for a in seen if len(a) == 5] == [(2, 3)]  # the cosine decays over 3 epochs of 2 steps
