"""Low-rank factorisation of Dense layers and 1×1 convolutions: the recipe stage, exact surgery, skips, optimize,
export, check."""

import numpy as np
import pytest

import tfcompress
import tflite_export
from tfcompress._keras import keras
from tfcompress.errors import RecipeError
from tfcompress.lowrank import LowRank, factorize, rank_of, svd_factors
from tfcompress.recipe import Recipe

L = keras.layers


def _mlp(seed=0, rank=None):
    """8x8x1 -> conv -> flatten (72) -> fc1 (24) -> out (10); ``rank``: fc1's kernel made of that rank."""
    keras.utils.set_random_seed(seed)
    m = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(2, 3, activation="relu", name="conv"),
                          L.Flatten(name="flat"), L.Dense(24, activation="relu", name="fc1"),
                          L.Dense(10, activation="softmax", name="out")])
    if rank is not None:
        rng = np.random.RandomState(seed)
        w, b = m.get_layer("fc1").get_weights()
        m.get_layer("fc1").set_weights([(rng.normal(0, 0.3, (72, rank)) @ rng.normal(0, 0.3, (rank, 24))
                                         ).astype("float32"), rng.normal(0, 0.1, b.shape).astype("float32")])
    return m


def _x(n=64, seed=1):
    return np.random.RandomState(seed).normal(0, 1, (n, 8, 8, 1)).astype("float32")


@pytest.mark.parametrize("per_layer, match", [
    (None, "must be a mapping"), ({}, "must be a mapping"), (["fc1"], "must be a mapping"),
    ({"fc1": 0}, r"per_layer\['fc1'\] must be an integer"), ({"fc1": 1.0}, r"per_layer\['fc1'\] must be in"),
    ({"fc1": True}, "must be a rank"), ({"fc1": "8"}, "must be a rank"),
    ({"": 4}, "keys must be layer names"), ({"fc[": 4}, "not a valid regular expression"),
])
def test_bad_ranks_are_refused_with_the_field_named(per_layer, match):
    with pytest.raises(RecipeError, match=match):
        LowRank(per_layer=per_layer)


def test_the_stage_reads_and_writes_yaml_in_its_place_in_the_run_order():
    r = Recipe.from_dict({"channels": {"ratio": 0.25}, "lowrank": {"per_layer": {"fc1": 8, "Dense": 0.5}, "epochs": 1},
                          "pruning": None, "quantization": {"weights": "int4"}})
    assert r.lowrank == LowRank(per_layer={"fc1": 8, "Dense": 0.5}, epochs=1)
    assert Recipe.from_yaml_string(r.to_yaml()) == r
    assert [n for n, _ in r.stages] == ["channels", "lowrank", "quantization"]
    with pytest.raises(RecipeError, match="out of order"):
        Recipe.from_dict({"quantization": {}, "lowrank": {"per_layer": {"fc1": 8}}})


def test_ranks_and_factors():
    assert (rank_of(0.25, 200, 32), rank_of(0.26, 200, 32), rank_of(16, 200, 32), rank_of(99, 10, 20)) == (8, 9, 16, 10)
    w = np.random.RandomState(0).normal(0, 1, (30, 12)).astype("float32")
    a, b = svd_factors(w, 12)
    assert a.shape == (30, 12) and b.shape == (12, 12) and np.allclose(a @ b, w, atol=1e-5)
    a4, b4 = svd_factors(w, 4)  # the best rank-4 kernel: its error is the dropped singular values'
    s = np.linalg.svd(w, compute_uv=False)
    assert np.isclose(np.linalg.norm(w - a4 @ b4), np.sqrt(np.sum(s[4:] ** 2)), rtol=1e-4)


def test_a_kernel_of_low_rank_factorises_exactly_and_the_rest_keeps_its_weights():
    m, x = _mlp(rank=4), _x()
    small, rep = factorize(m, {"fc1": 4})
    assert rep["fc1"] == {"rank": 4, "shape": [72, 24], "params_before": 72 * 24, "params_after": 4 * 96,
                          "kept_energy": 1.0}
    assert [l.name for l in small.layers if l.weights] == ["conv", "fc1_lr", "fc1", "out"]
    assert small.get_layer("fc1_lr").get_config()["use_bias"] is False
    assert small.get_layer("fc1").get_config()["activation"] == "relu"
    np.testing.assert_allclose(small.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_array_equal(small.get_layer("out").get_weights()[0], m.get_layer("out").get_weights()[0])
    assert small.count_params() == m.count_params() - 72 * 24 + 4 * 96


def test_a_lower_rank_is_an_approximation_and_layers_it_cannot_help_are_kept_with_the_reason():
    m, x = _mlp(), _x()
    small, rep = factorize(m, {"fc1": 0.25, "out": 8, "Conv2D": 2})
    assert rep["fc1"]["rank"] == 6 and 0 < rep["fc1"]["kept_energy"] < 1
    assert rep["out"] == {"skipped": "rank 8 of a 24×10 kernel saves no parameters (r·(m+n) ≥ m·n)"}
    assert rep["conv"] == {"skipped": "a 3×3 Conv2D: only 1×1 convolutions are factorised"}
    assert "out_lr" not in {l.name for l in small.layers}
    assert small.predict(x, verbose=0).shape == (64, 10)
    inp = keras.Input((6,))
    shared = L.Dense(6, name="shared")
    f = keras.Model(inp, L.Dense(3, name="head")(shared(shared(inp))))
    _, rep = factorize(f, {"shared": 1})
    assert rep["shared"] == {"skipped": "a shared layer (called more than once)"}
    with pytest.raises(RecipeError, match=r"key\(s\) 'fc9' match no layer of the model: .*factorise: fc1, out\)"):
        factorize(m, {"fc1": 4, "fc9": 4})  # a misspelt name is an error, not a stage that did nothing


def test_the_stage_in_optimize_fine_tunes_records_each_layer_and_exports_one_more_fully_connected(tmp_path, digits):
    keras.utils.set_random_seed(0)
    m = _mlp()
    m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", ["accuracy"])
    m.fit(*digits.train, epochs=8, batch_size=64, verbose=0)
    recipe = {"lowrank": {"per_layer": {"fc1": 8}, "epochs": 2}, "pruning": None, "quantization": None}
    res = tfcompress.optimize(m, digits.train, digits.validation, recipe=recipe, batch_size=64, verbose=0)
    stage = res.report.stages[0]
    assert stage["name"] == "lowrank" and stage["epochs"] == 2 and len(res.history["lowrank"]["loss"]) == 2
    assert stage["details"] == "low-rank factorisation of 1 layer(s): kernel params 1,728 → 768"
    assert res.report.layer("fc1").stages["lowrank"].startswith("rank 8 (72×24 → 72×8 + 8×24, ")
    assert res.model.get_layer("fc1_lr").get_weights()[0].shape == (72, 8)
    xv, yv = digits.validation
    base = float(np.mean(np.argmax(m.predict(xv, verbose=0), -1) == yv))
    f32 = tflite_export.export(m, tmp_path / "a.tflite", mode="float32")
    low = tflite_export.export(res.model, tmp_path / "b.tflite", mode="float32")
    assert tflite_export.inspect(low.path).ops.get("FULLY_CONNECTED") == \
        tflite_export.inspect(f32.path).ops.get("FULLY_CONNECTED") + 1
    assert low.bytes < f32.bytes
    assert tflite_export.evaluate(low.path, xv, yv) >= base - 0.05  # rank 8 of 24, fine-tuned: within 5 points


def _pointwise(seed=0, rank=None):
    """6x6x8 -> pw (1x1, 16) -> k3 (3x3, 4) -> pw_s2 (1x1 stride 2, 8) -> pool -> out (3); ``rank``: pw's rank."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6, 6, 8))
    x = L.Conv2D(16, 1, activation="relu", padding="same", name="pw")(inp)
    x = L.Conv2D(4, 3, name="k3")(x)
    x = L.Conv2D(8, 1, strides=2, name="pw_s2")(x)
    m = keras.Model(inp, L.Dense(3, name="out")(L.GlobalAveragePooling2D(name="pool")(x)))
    if rank is not None:
        rng = np.random.RandomState(seed)
        w = rng.normal(0, 0.3, (8, rank)) @ rng.normal(0, 0.3, (rank, 16))
        m.get_layer("pw").set_weights([w.reshape(1, 1, 8, 16).astype("float32"),
                                       rng.normal(0, 0.1, 16).astype("float32")])
    return m


def test_a_pointwise_conv_factorises_as_two_convs_and_other_convs_are_kept_with_the_reason(tmp_path):
    m = _pointwise(rank=4)
    x = np.random.RandomState(2).normal(0, 1, (16, 6, 6, 8)).astype("float32")
    small, rep = factorize(m, {"pw": 4, "k3": 2, "pw_s2": 2})
    assert rep["pw"] == {"rank": 4, "shape": [8, 16], "params_before": 128, "params_after": 96, "kept_energy": 1.0}
    assert rep["k3"] == {"skipped": "a 3×3 Conv2D: only 1×1 convolutions are factorised"}
    assert rep["pw_s2"] == {"skipped": "a strided or grouped 1×1 Conv2D: only stride 1, one group are factorised"}
    first, second = small.get_layer("pw_lr"), small.get_layer("pw")
    assert type(first).__name__ == "Conv2D" and first.get_config()["use_bias"] is False
    assert first.get_weights()[0].shape == (1, 1, 8, 4) and second.get_weights()[0].shape == (1, 1, 4, 16)
    assert second.get_config()["activation"] == "relu" and first.get_config()["padding"] == "same"
    np.testing.assert_allclose(small.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-5)  # exact: rank 4
    assert factorize(m, {"Conv2D": 0.5})[1]["pw"]["rank"] == 4  # the type matches every conv; the 1x1 one is cut
    f32 = tflite_export.export(small, tmp_path / "pw.tflite", mode="float32")
    assert tflite_export.inspect(f32.path).ops.get("CONV_2D") == 4  # pw_lr, pw, k3, pw_s2
    np.testing.assert_allclose(tflite_export.predict(f32.path, x), m.predict(x, verbose=0), atol=1e-4)


def test_a_factorised_pointwise_conv_trains_4bit_and_exports_int4(tmp_path):
    from tflite_export.int4 import int4_weights

    rng = np.random.RandomState(0)
    x, y = rng.normal(0, 1, (256, 6, 6, 8)).astype("float32"), rng.randint(0, 3, 256)
    p = _pointwise()
    m = keras.Model(p.input, L.Softmax()(p.output))
    m.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    recipe = {"lowrank": {"per_layer": {"pw": 4}, "epochs": 1}, "pruning": None,
              "quantization": {"weights": "int4", "epochs": 1}}
    res = tfcompress.optimize(m, (x, y), (x[:64], y[:64]), recipe=recipe, verbose=0)
    assert res.report.layer("pw").stages["lowrank"].startswith("rank 4 (8×16 → 8×4 + 4×16")
    e = tflite_export.export(res.model, tmp_path / "pw4.tflite", mode="int4", representative_data=x[:64])
    with open(e.path, "rb") as f:
        assert "int4" in set(int4_weights(f.read()).values())
    agree = np.argmax(tflite_export.predict(e.path, x[:64]), -1) == np.argmax(res.model.predict(x[:64], verbose=0), -1)
    assert agree.mean() >= 0.9


def test_check_shows_the_rank_each_dense_layer_gets():
    m = _mlp()
    rep = tfcompress.check(m, Recipe.from_dict({"lowrank": {"per_layer": {"fc1": 8, "out": 9}}}), convert=False)
    assert rep.layer("fc1").extra["lowrank"] == "yes: rank 8 of 72×24"
    assert rep.layer("out").extra["lowrank"] == "no: rank 9 of 24×10 saves no parameters"
    assert "lowrank" not in tfcompress.check(m, convert=False).layer("fc1").extra
    p = _pointwise()
    rep = tfcompress.check(p, Recipe.from_dict({"lowrank": {"per_layer": {"Conv2D": 0.5}}}), convert=False)
    assert rep.layer("pw").extra["lowrank"] == "yes: rank 4 of 8×16"
    assert "lowrank" not in rep.layer("k3").extra and "lowrank" not in rep.layer("pw_s2").extra  # not factorisable
