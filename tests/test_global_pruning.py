"""Global (cross-layer) magnitude pruning and gradient-saliency pruning."""

import numpy as np
import pytest

import tfcompress
from tfcompress import Pruning, Recipe, RecipeError
from tfcompress._data import Data
from tfcompress._keras import keras, tf
from tfcompress.pruning import layer_sparsity
from tfcompress.pruning.global_ import allocate, magnitude_scores, plan


def _data(n=64, shape=(8, 8, 1), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32), rng.integers(0, classes, n)


def _small_cnn():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", name="fc"),
        keras.layers.Dense(4, name="logits"),
    ])
    # conv's weights all below the others': without a floor/cap a global threshold takes all of them
    m.get_layer("conv").kernel.assign(m.get_layer("conv").kernel * 1e-3)
    return m


def test_allocate_is_one_threshold_with_caps():
    rng = np.random.default_rng(1)
    scores = {"a": rng.random(100) * 1e-3, "b": rng.random(400), "c": rng.random(300) * 2}
    counts, t = allocate(scores, 0.6, max_layer=0.9, min_layer=0.2)
    assert sum(counts.values()) == round(0.6 * 800)
    assert counts["a"] == 90  # held at the cap: all its weights are below t
    for n in ("b", "c"):
        s = np.sort(scores[n])
        assert 0.2 * s.size <= counts[n] <= 0.9 * s.size
        assert s[counts[n] - 1] < t <= s[counts[n]]  # removed below t, kept at or above: the same t
    # no caps: exactly the global order
    counts, t = allocate(scores, 0.5)
    allv = np.sort(np.concatenate(list(scores.values())))
    assert t == allv[400] and counts["a"] == 100


def test_global_stage_prunes_below_one_threshold_with_caps():
    model = _small_cnn()
    before = {n: np.abs(model.get_layer(n).kernel.numpy()) for n in ("conv", "fc", "logits")}
    stage = Pruning(scope="global", final_sparsity=0.7, max_layer_sparsity=0.9, min_layer_sparsity=0.1,
                    epochs=1, learning_rate=1e-9)  # ~no weight change: the final zeros are the allocation's
    res = tfcompress.optimize(model, _data(), recipe=Recipe(pruning=stage, quantization=None), batch_size=16,
                              verbose=0)
    alloc = res.report.stages[0]["allocation"]
    t = alloc["threshold"]
    assert t is not None and "global magnitude threshold" in res.report.stages[0]["details"]
    sparsity = layer_sparsity(res.model)
    sizes = {n: v.size for n, v in before.items()}
    total = sum(sparsity[n] * sizes[n] for n in sizes) / sum(sizes.values())
    assert total == pytest.approx(0.7, abs=0.01)
    assert sparsity["conv"] == pytest.approx(0.9, abs=1 / sizes["conv"])  # capped, not collapsed
    for n in ("fc", "logits"):
        assert 0.1 <= sparsity[n] <= 0.9 and sparsity[n] == pytest.approx(alloc["allocated"][n], abs=1e-3)
        kept = res.model.get_layer(n).kernel.numpy() != 0
        assert before[n][kept].min() >= t > before[n][~kept].max()


def test_saliency_prunes_a_large_weight_with_no_gradient_first():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu", name="d1"),
                              keras.layers.Dense(3, name="out")])
    d1 = model.get_layer("d1")
    k = d1.kernel.numpy() * 0.1
    k[:, 0] = 5.0  # the largest weights feed unit 0 ...
    b = np.zeros(4, np.float32)
    b[0] = -1e3  # ... which never fires: dL/dw = 0 for them
    d1.set_weights([k, b])
    x, y = np.random.default_rng(0).random((64, 8), dtype=np.float32), np.arange(64) % 3
    # magnitude would remove 8 small weights and keep column 0
    assert not np.any(np.argsort(magnitude_scores([d1])["d1"])[:8] % 4 == 0)
    # out: half its weights, the dead unit's 3 and 3 live ones (these would regrow without TF-MOT's mask)
    stage = Pruning(criterion="saliency", final_sparsity=0.25, per_layer={"out": 0.5}, epochs=1, saliency_batches=2)
    res = tfcompress.optimize(model, (x, y), recipe=Recipe(pruning=stage, quantization=None, learning_rate=0.01),
                              batch_size=16, verbose=0)
    zeros = res.model.get_layer("d1").kernel.numpy() == 0
    assert zeros[:, 0].all() and zeros.sum() == 8  # exactly the dead unit's weights
    out = res.model.get_layer("out").kernel.numpy() == 0
    assert out[0].all() and out.sum() == 6  # the mask chosen at the start is kept through fine-tuning
    assert res.report.stages[0]["allocation"]["criterion"] == "saliency"


def test_global_saliency_plan_zeroes_the_allocated_weights():
    model = _small_cnn()
    stage = Pruning(scope="global", criterion="saliency", final_sparsity=0.5, saliency_batches=1)
    layers = [model.get_layer(n) for n in ("conv", "fc", "logits")]
    data = Data(tf.data.Dataset.from_tensor_slices(_data()).batch(32), 64, True)
    out, targets, info = plan(model, stage, layers, data, keras.losses.SparseCategoricalCrossentropy(True))
    assert out is not model and info["threshold"] is not None
    sp = layer_sparsity(out)
    assert all(sp[n] == pytest.approx(targets[n], abs=1e-6) for n in targets)
    assert info["total_sparsity"] == pytest.approx(0.5, abs=0.001)
    assert max(layer_sparsity(model).values()) == 0  # the input model is untouched


@pytest.mark.parametrize("kwargs, field", [
    ({"scope": "net"}, "scope"),
    ({"criterion": "hessian"}, "criterion"),
    ({"max_layer_sparsity": 1.0}, "max_layer_sparsity"),
    ({"min_layer_sparsity": -0.1}, "min_layer_sparsity"),
    ({"saliency_batches": 0}, "saliency_batches"),
    ({"scope": "global", "final_sparsity": 0.97}, "max_layer_sparsity"),
    ({"scope": "global", "per_layer": {"fc": 0.5}}, "per_layer"),
    ({"criterion": "saliency", "sparsity_m_by_n": (2, 4)}, "sparsity_m_by_n"),
    ({"scope": "global", "block_size": (1, 4)}, "block_size"),
])
def test_bad_fields_are_one_line_recipe_errors(kwargs, field):
    with pytest.raises(RecipeError, match=field) as e:
        Pruning(**kwargs)
    assert "\n" not in str(e.value)


def test_check_shows_each_layers_global_share_only_for_a_global_or_saliency_recipe():
    model = _small_cnn()
    rep = tfcompress.check(model, recipe=Recipe(pruning=Pruning(scope="global", final_sparsity=0.7,
                                                                max_layer_sparsity=0.9)), convert=False)
    assert "global prune" in rep.COLUMNS
    assert rep.layer("conv").extra["global_prune"].startswith("89% (of global 70%, t=")  # 32 of 36 under the 90 % cap
    rep = tfcompress.check(model, recipe=Recipe(pruning=Pruning(criterion="saliency", per_layer={"fc": 0.5})),
                           convert=False)
    assert rep.layer("fc").extra["global_prune"] == "layer saliency: 50% chosen from gradients at run time"
    assert "global prune" not in tfcompress.check(model, recipe=Recipe(), convert=False).COLUMNS
