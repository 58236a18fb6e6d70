"""Depth removal: candidates, exact surgery, ranking, targets, the recipe stage, check, tuner."""

import numpy as np
import pytest

import tfcompress
from tfcompress._keras import keras
from tfcompress.depth import Depth, find_blocks, rank_blocks, rebuild_without, remove_blocks
from tfcompress.errors import DataError, RecipeError
from tfcompress.recipe import Recipe

try:
    from tfcompress.models import resnet_tiny
except ImportError:  # running from the source tree
    from models import resnet_tiny

L = keras.layers


def _resnet(scale=None, seed=0):
    """resnet_tiny (8x8x1, 2 blocks) with random BN statistics; ``scale``: {block: factor on its last BN gamma}."""
    keras.utils.set_random_seed(seed)
    m = resnet_tiny.build((8, 8, 1), 10, width=8, blocks=2)
    rng = np.random.RandomState(seed)
    for layer in m.layers:
        if isinstance(layer, L.BatchNormalization):
            g, b, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    fc = m.get_layer("logits")  # logits that vary with the input: removing a block changes answers
    fc.set_weights([rng.normal(0, 3, fc.kernel.shape), np.zeros(10)])
    for block, f in (scale or {}).items():
        bn = m.get_layer(f"{block}_bn2")
        w = bn.get_weights()
        w[0] = w[0] * f
        w[1] = w[1] * f
        bn.set_weights(w)
    return m


def _x(n=32, seed=1):
    """Blocky 8x8 images with a per-image offset: the tiny model's answers vary with them."""
    rng = np.random.RandomState(seed)
    return (np.kron(rng.normal(0, 1, (n, 2, 2, 1)), np.ones((1, 4, 4, 1))) + rng.normal(0, 1, (n, 1, 1, 1))
            ).astype("float32")


def test_residual_blocks_found_with_their_cost():
    m = _resnet()
    cands = find_blocks(m)
    assert [(b.name, b.kind) for b in cands.blocks] == [("b0", "residual"), ("b1", "residual")]
    b1 = cands.blocks[1]
    assert b1.layers == ("b1_conv1", "b1_bn1", "b1_relu1", "b1_conv2", "b1_bn2", "b1_add")
    assert b1.params == sum(m.get_layer(n).count_params() for n in b1.layers) == 2 * 9 * 8 * 8 + 2 * 4 * 8
    assert b1.flops == 2 * (2 * 64 * 9 * 8 * 8)  # two 3x3 convs 8->8 on 8x8
    assert cands.block_of("b0_bn1").name == "b0" and cands.block_of("stem_conv") is None


def test_removed_block_is_gone_and_the_model_equals_the_original_with_the_branch_zeroed():
    m = _resnet()
    cands = find_blocks(m)
    b1 = cands.blocks[1]
    new = rebuild_without(cands, [b1])
    names = {l.name for l in new.layers}
    # b1_out read b1's Add and now reads b0_out: a ReLU after a ReLU, left out
    assert not names & set(b1.layers) and "b1_out" not in names and "b0_add" in names and "b0_out" in names
    assert m.count_params() - new.count_params() == b1.params
    bn = m.get_layer("b1_bn2")  # branch output exactly 0: gamma = beta = 0
    w = bn.get_weights()
    bn.set_weights([np.zeros_like(w[0]), np.zeros_like(w[1]), w[2], w[3]])
    x = _x()
    np.testing.assert_array_equal(new(x).numpy(), m(x).numpy())


@pytest.mark.parametrize("stem, after, kept", [
    (None, L.ReLU, True),                      # the block's input is not through a ReLU: the ReLU works
    ("relu", L.ReLU, False),                   # relu after relu: left out
    ("relu", lambda name: L.ReLU(max_value=6.0, name=name), True),  # relu6 after relu clips: kept
    ("relu", lambda name: L.Activation("relu", name=name), False),
    ("relu", lambda name: L.LeakyReLU(0.1, name=name), True),      # not a ReLU
])
def test_a_relu_after_a_removed_block_is_left_out_only_where_it_computes_nothing(stem, after, kept):
    keras.utils.set_random_seed(0)
    inp = L.Input((8, 8, 1))
    x = L.Conv2D(4, 3, padding="same", activation=stem, name="c0")(inp)
    y = L.Conv2D(4, 3, padding="same", name="c1")(x)
    y = L.BatchNormalization(name="bn1")(y)
    x = after(name="out")(L.Add(name="add")([x, y]))
    m = keras.Model(inp, L.Dense(3, name="fc")(L.Flatten(name="flat")(x)))
    cands = find_blocks(m)
    block = [b for b in cands.blocks if b.kind == "residual"]
    assert [b.layers for b in block] == [("c1", "bn1", "add")]
    new = rebuild_without(cands, block)
    assert ("out" in {layer.name for layer in new.layers}) is kept
    ref = keras.Model(inp, m.get_layer("fc")(m.get_layer("flat")(m.get_layer("out")(m.get_layer("c0").output))))
    x = _x()
    np.testing.assert_allclose(new(x).numpy(), ref(x).numpy(), rtol=1e-6, atol=1e-6)


def test_a_same_shape_conv_with_its_bn_and_activation_is_a_layer_candidate():
    keras.utils.set_random_seed(0)
    inp = L.Input((8, 8, 1))
    x = L.Conv2D(4, 3, name="c1")(inp)
    y = L.Conv2D(4, 3, padding="same", name="c2")(x)
    y = L.BatchNormalization(name="bn2")(y)
    y = L.ReLU(name="r2")(y)
    out = L.Dense(3, name="fc")(L.Flatten(name="flat")(y))
    m = keras.Model(inp, out)
    cands = find_blocks(m)
    assert [(b.name, b.kind, b.layers) for b in cands.blocks] == [("c2", "layer", ("c2", "bn2", "r2"))]
    new = rebuild_without(cands, cands.blocks)
    assert [l.name for l in new.layers][1:] == ["c1", "flat", "fc"]
    x = _x()
    cut = keras.Model(inp, m.get_layer("fc")(m.get_layer("flat")(m.get_layer("c1").output)))
    np.testing.assert_array_equal(new(x).numpy(), cut(x).numpy())


@pytest.mark.parametrize("criterion", ["branch_norm", "sensitivity"])
def test_ranking_order_follows_the_criterion(criterion):
    # b1's branch is tiny, b0's large: both criteria remove b1 first (the model order would say b0)
    m = _resnet(scale={"b0": 6.0, "b1": 0.01})
    x = _x(64)
    y = np.argmax(m(x).numpy(), -1)  # the model's own answers: accuracy 1.0
    cands = find_blocks(m)
    scores = rank_blocks(cands, cands.blocks, criterion, (x, y))
    assert scores["b1"] < scores["b0"]
    if criterion == "sensitivity":
        assert scores["b0"] > 0.05  # accuracy points lost
    small, rep = remove_blocks(m, 1, criterion=criterion, data=(x, y))
    assert rep.removed == ["b1"] and [r["name"] for r in rep.candidates] == ["b1", "b0"]
    assert rep.details() == f"removed 1 block: b1 (FLOPs {rep.flops_after / rep.flops_before:.0%})"


def test_targets_count_flops_and_include_exclude():
    m = _resnet(scale={"b0": 6.0, "b1": 0.01})
    x = _x()
    cands = find_blocks(m)
    # each block is 48% of the FLOPs (the stem has one input channel): 0.7 needs one, 0.5 needs two
    _, rep = remove_blocks(m, target_flops=0.7, data=x)
    assert rep.removed == ["b1"] and rep.flops_after == cands.flops - cands.blocks[1].flops
    _, rep = remove_blocks(m, target_flops=0.5, data=x)
    assert rep.removed == ["b1", "b0"] and rep.flops_after <= 0.5 * rep.flops_before
    _, rep = remove_blocks(m, 1, data=x, exclude=["b1"])
    assert rep.removed == ["b0"]
    _, rep = remove_blocks(m, 3, data=x, include=["b0_conv.*"])
    assert rep.removed == ["b0"] and rep.notes == ["asked for 3 blocks; only 1 removable"]


@pytest.mark.parametrize("fields, match", [
    ({"remove": 0}, r"depth\.remove must be an integer of at least 1"),
    ({"remove": 1.5}, r"depth\.remove"),
    ({"remove": 1, "target_flops": 0.5}, r"both remove and target_flops"),
    ({"target_flops": 1.5}, r"depth\.target_flops"),
    ({"target_flops": 0}, r"depth\.target_flops"),
    ({"criterion": "l1"}, r"depth\.criterion"),
    ({"epochs": -1}, r"depth\.epochs"),
    ({"alpha": 2}, r"depth\.alpha"),
    ({"temperature": 0}, r"depth\.temperature"),
    ({"include": ["("]}, r"depth\.include"),
    ({"distill": "yes"}, r"depth\.distill"),
])
def test_bad_fields_raise_recipe_error(fields, match):
    with pytest.raises(RecipeError, match=match):
        Depth(**fields)
    with pytest.raises(RecipeError, match=match):
        Recipe.from_dict({"depth": fields})


def test_models_without_candidates_and_missing_data_say_so():
    plain = keras.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, name="c"), L.Flatten(), L.Dense(3)])
    with pytest.raises(RecipeError, match="no removable block"):
        remove_blocks(plain, 1, data=_x())
    m = _resnet()
    with pytest.raises(RecipeError, match="leave no block: candidates are b0, b1"):
        remove_blocks(m, 1, data=_x(), include=["nothing"])
    with pytest.raises(DataError, match="needs labelled data"):
        remove_blocks(m, 1, criterion="sensitivity", data=_x())
    assert tfcompress.check(plain, convert=False).layer("c").extra == {}


def test_depth_stage_in_optimize_check_column_and_tuner_knob():
    from tfcompress.tuning.space import SearchSpace

    m = _resnet(scale={"b0": 6.0, "b1": 0.01})
    x = _x(32)
    y = np.random.RandomState(2).randint(0, 10, 32)
    rep = tfcompress.check(m, convert=False)
    assert rep.layer("b1_conv1").extra["depth"] == "yes: residual block b1"
    assert rep.layer("stem_conv").extra["depth"].startswith("no:") and "depth" in rep.COLUMNS
    recipe = {"depth": {"remove": 1, "epochs": 0}, "pruning": None, "quantization": None}  # fine-tune: slow test
    result = tfcompress.optimize(m, (x, y), recipe=recipe, batch_size=16, verbose=0)
    names = {l.name for l in result.model.layers}
    assert "b1_conv1" not in names and "b0_conv1" in names
    stage = result.report.stages[0]
    assert stage["name"] == "depth"
    assert stage["details"].startswith("removed 1 block: b1 (FLOPs 52%), params 2,626 → 1,410")
    assert result.report.layer("b1_conv2").stages["depth"] == "removed (block b1)"
    assert SearchSpace.from_dict({"depth_remove": [1, 2]}).recipe({"depth_remove": 2.0}).depth.remove == 2


@pytest.mark.slow
def test_depth_stage_fine_tunes_the_smaller_model_by_distillation():
    m = _resnet(scale={"b0": 6.0, "b1": 0.01})
    x, y = _x(64), np.random.RandomState(2).randint(0, 10, 64)
    recipe = {"depth": {"remove": 1, "epochs": 2, "alpha": 0.3}, "pruning": None, "quantization": None}
    result = tfcompress.optimize(m, (x, y), recipe=recipe, batch_size=16, verbose=0)
    stage = result.report.stages[0]
    assert stage["epochs"] == 2 and len(result.history["depth"]["loss"]) == 2
    before = m.get_layer("b0_conv1").get_weights()[0]
    assert not np.array_equal(result.model.get_layer("b0_conv1").get_weights()[0], before)
