"""Channel merging (Channels(mode="merge")) and the activation criteria (apoz, mean_activation)."""

import numpy as np
import pytest

from tfcompress import channels as ch
from tfcompress._keras import keras
from tfcompress.channels.config import _CRITERIA, _MODES, _SIMILARITIES
from tfcompress.channels.merge import MODES, SIMILARITIES, choose_merges, merge_channels
from tfcompress.channels.surgery import Plan
from tfcompress.errors import DataError, RecipeError

L = keras.layers


def _x(n=32, shape=(8, 8, 1), seed=0):
    return np.random.RandomState(seed).rand(n, *shape).astype("float32")


def _dup_net():
    """conv (ReLU) -> conv -> pool -> Flatten -> Dense (ReLU) -> Dense, with channel 3 of
    'c1' = 2.5 x channel 1 and unit 4 of 'd1' = 3 x unit 0."""
    keras.utils.set_random_seed(0)
    inp = L.Input((8, 8, 1))
    x = L.Conv2D(4, 3, activation="relu", name="c1")(inp)
    x = L.Conv2D(3, 3, name="c2")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(5, activation="relu", name="d1")(x)
    out = L.Dense(2, name="out")(x)
    m = keras.Model(inp, out)
    k, b = m.get_layer("c1").get_weights()
    b[:] = 0.05
    k[..., 3], b[3] = 2.5 * k[..., 1], 2.5 * b[1]
    m.get_layer("c1").set_weights([k, b])
    k, b = m.get_layer("d1").get_weights()
    b[:] = 0.1
    k[:, 4], b[4] = 3.0 * k[:, 0], 3.0 * b[0]
    m.get_layer("d1").set_weights([k, b])
    return m


def _bn_net():
    """linear conv -> BatchNorm -> ReLU -> conv: channel 2 equals 3 x channel 0 only
    after the BatchNorm (kernel 2x, gamma 1.5x, mean 2x, beta 3x)."""
    keras.utils.set_random_seed(1)
    inp = L.Input((8, 8, 1))
    x = L.Conv2D(4, 3, use_bias=False, name="c1")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.Conv2D(3, 3, name="c2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(2, name="out")(x)
    m = keras.Model(inp, out)
    (k,) = m.get_layer("c1").get_weights()
    k[..., 2] = 2.0 * k[..., 0]
    m.get_layer("c1").set_weights([k])
    g = np.array([0.8, 1.1, 1.2, 0.9], "float32")
    beta = np.array([0.1, -0.2, 0.0, 0.3], "float32")
    mean = np.array([0.2, 0.1, 0.0, -0.1], "float32")
    var = np.array([0.5, 1.0, 0.5, 2.0], "float32")
    g[2], mean[2], beta[2], var[2] = 1.5 * g[0], 2.0 * mean[0], 3.0 * beta[0], var[0]
    m.get_layer("bn").set_weights([g, beta, mean, var])
    return m


def _out(model, x):
    return model(x, training=False).numpy()


def _count(model, name):
    return model.get_layer(name).output_shape[-1]


@pytest.mark.parametrize("similarity", ["weights", "activations"])
def test_merging_proportional_channels_is_exact(similarity):
    m, x = _dup_net(), _x()
    small, rep = merge_channels(m, per_layer={"c1": 0.25, "d1": 0.2}, similarity=similarity,
                                data=(x, np.zeros(len(x))))
    assert (_count(small, "c1"), _count(small, "d1"), _count(small, "c2")) == (3, 4, 3)
    np.testing.assert_allclose(_out(small, x), _out(m, x), atol=1e-5)
    c1 = [d for d in rep.merges if d["group"] == "c1"]
    assert c1 == [{"group": "c1", "removed": 1, "into": 3, "scale": 0.4}]
    assert rep.mode == "merge" and rep.merged >= 1
    # Pruning the same channels is not exact: merging did the work.
    pruned, _ = ch.prune_channels(m, per_layer={"c1": 0.25, "d1": 0.2})
    assert np.abs(_out(pruned, x) - _out(m, x)).max() > 1e-3


def test_merging_folds_batchnorm():
    m, x = _bn_net(), _x()
    small, rep = merge_channels(m, per_layer={"c1": 0.25})
    assert rep.merges == [{"group": "c1", "removed": 0, "into": 2, "scale": pytest.approx(1 / 3, rel=1e-5)}]
    assert _count(small, "c1") == 3 and small.get_layer("bn").get_weights()[0].shape == (3,)
    np.testing.assert_allclose(_out(small, x), _out(m, x), atol=1e-5)


def test_choose_merges_scales_and_fallback():
    v = np.array([[1.0, 0.0, -2.0, 0.1], [0.0, 1.0, 0.0, 0.0]])
    # Column 2 is -2 x column 0: no positive scale, so it is never merged into 0 (not exact through ReLU).
    assert all(not (j == 2 and i == 0) for j, i, _ in choose_merges(v, 3))
    assert choose_merges(v, 1) == [(3, 0, pytest.approx(0.1))]
    # merge=False is L2 pruning: smallest columns first, never a target.
    assert [(j, i) for j, i, _ in choose_merges(v, 2, merge=False)] == [(3, None), (0, None)]


def _dead_channel_net():
    """Conv2D(4, ReLU) whose channel 2 is always 0 after the ReLU (inputs in [0, 1],
    kernel -1, bias -0.5) though it has the largest L1 norm; channel 0 is the weakest."""
    keras.utils.set_random_seed(2)
    inp = L.Input((8, 8, 1))
    x = L.Conv2D(4, 3, activation="relu", name="c1")(inp)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(2, name="out")(x)
    m = keras.Model(inp, out)
    k = np.full((3, 3, 1, 4), 0.3, "float32")
    k[..., 0] = 0.05
    k[..., 2] = -1.0
    m.get_layer("c1").set_weights([k, np.array([0.0, 0.1, -0.5, 0.2], "float32")])
    return m


@pytest.mark.parametrize("criterion", ["apoz", "mean_activation"])
def test_activation_criteria_rank_the_dead_channel_first(criterion):
    m, x = _dead_channel_net(), _x()
    plan = Plan(m, criterion, (x, np.zeros(len(x))))
    (scores,) = plan.scores.values()
    assert int(np.argmin(scores)) == 2 and scores[2] == 0.0
    assert int(np.argmin(Plan(m, "l1").scores[next(iter(plan.groups))])) == 0  # l1 would keep it
    small, rep = ch.prune_channels(m, 0.25, criterion=criterion, data=(x, np.zeros(len(x))))
    # The dead channel is gone and the output is unchanged (it contributed nothing).
    np.testing.assert_allclose(_out(small, x), _out(m, x), atol=1e-6)
    with pytest.raises(DataError, match=f"criterion '{criterion}' needs data"):
        ch.prune_channels(m, 0.25, criterion=criterion)


def test_channels_stage_merge_mode_and_validation():
    assert MODES == _MODES and SIMILARITIES == _SIMILARITIES and set(ch.CRITERIA) == set(_CRITERIA)
    with pytest.raises(RecipeError, match="channels.mode must be one of 'prune', 'merge'"):
        ch.Channels(mode="fold")
    with pytest.raises(RecipeError, match="channels.merge_similarity must be one of"):
        ch.Channels(merge_similarity="gradients")
    m, x = _dup_net(), _x()
    with pytest.raises(DataError, match="merge_similarity 'activations' needs data"):
        ch.apply(m, ch.Channels(ratio=0.25, mode="merge", merge_similarity="activations", epochs=0))
    small, rep = ch.apply(m, ch.Channels(per_layer={"c1": 0.25}, ratio=0.0, mode="merge", epochs=0))
    np.testing.assert_allclose(_out(small, x), _out(m, x), atol=1e-5)
    assert rep.mode == "merge" and rep.merged == 1 and rep.criterion == "weights similarity"
    assert rep.to_dict()["merges"][0]["into"] == 3
    assert rep.to_markdown().startswith("**Channel merging**")


def test_optimize_reports_merged_channels():
    import tfcompress
    from tfcompress.recipe import Recipe

    m, x = _dup_net(), _x()
    recipe = Recipe(channels=ch.Channels(per_layer={"c1": 0.25}, ratio=0.0, mode="merge", epochs=0),
                    pruning=None, quantization=None)
    res = tfcompress.optimize(m, (x, np.arange(len(x)) % 2), recipe=recipe, verbose=0, batch_size=16)
    (stage,) = res.report.stages
    assert "weights-similarity channel merging (1 merged, 0 pruned): params" in stage["details"]
    assert stage["channels"]["mode"] == "merge" and stage["channels"]["merges"][0]["into"] == 3
    np.testing.assert_allclose(_out(res.model, x), _out(m, x), atol=1e-5)


@pytest.mark.slow
def test_merging_keeps_more_accuracy_than_l1_before_fine_tuning():
    """On a trained digits CNN (sklearn digits, 3 epochs), at the same ratio and channel
    counts, merging loses less accuracy than l1 pruning straight out of surgery."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.images / 16.0).astype("float32")[..., None], d.target.astype("int64")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        L.Input((8, 8, 1)), L.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        L.Conv2D(32, 3, padding="same", activation="relu", name="conv2"), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(48, activation="relu", name="fc1"), L.Dense(10, activation="softmax", name="out"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1200], y[:1200], epochs=3, batch_size=32, verbose=0)
    xv, yv = x[1200:], y[1200:]

    def acc(m):
        return float((_out(m, xv).argmax(1) == yv).mean())

    for ratio in (0.3, 0.5):
        l1, _ = ch.prune_channels(model, ratio)
        by_w, _ = merge_channels(model, ratio)
        by_a, _ = merge_channels(model, ratio, similarity="activations", data=(x[:256], y[:256]))
        assert l1.count_params() == by_w.count_params() == by_a.count_params()
        assert acc(by_w) > acc(l1) and acc(by_a) > acc(l1), (ratio, acc(l1), acc(by_w), acc(by_a))
