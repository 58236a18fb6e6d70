"""Depth removal in budget mode's latency plans (tfcompress.target.depthplan): priced, allocated, planned, run."""

import numpy as np
import pytest

import tfcompress
from tfcompress._keras import keras
from tfcompress.recipe import Recipe
from tfcompress.target import greedy, plan_recipe
from tfcompress.target.depthplan import depth_units
from tfcompress.target.sensitivity import Option, Unit

try:
    from tfcompress.models import resnet_tiny
except ImportError:  # the models package beside tfcompress in a source checkout
    from models import resnet_tiny


@pytest.fixture(scope="module")
def tiny_resnet(digits):
    keras.utils.set_random_seed(0)
    m = resnet_tiny.build((8, 8, 1), 10, width=8, blocks=2)
    for layer in m.layers:  # moving statistics that keep up with 120 steps (the default 0.99 scores at chance)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
    m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", ["accuracy"])
    m.fit(*digits.train, epochs=6, batch_size=64, verbose=0)
    return m


def test_a_removed_block_puts_its_own_thinning_back_and_counts_only_its_own_saving():
    inner = Unit("b0_conv1", "channels", 8, [Option({}, 1.0, 0.0), Option({"ratio": 0.5}, 0.7, 0.0)])
    block = Unit("b0", "depth", 100, [Option({}, 1.0, 0.0), Option({"remove": True}, 0.5, 0.1)], excludes=("b0_conv1",))
    alloc = greedy([inner, block], max_drop=5.0)
    # thinning first (free), then the removal: 0.5 saved in all, not 0.3 + 0.5 (the thinned layers are gone)
    assert alloc.choice == {"b0_conv1": 0, "b0": 1} and alloc.saved == pytest.approx(0.5)
    assert alloc.settings([inner, block]) == {"b0": {"remove": True}}
    # a removal whose net saving is no better than the thinning it undoes is not taken
    small = Unit("b0", "depth", 100, [Option({}, 1.0, 0.0), Option({"remove": True}, 0.7, 0.1)], excludes=("b0_conv1",))
    assert greedy([inner, small], max_drop=5.0).choice == {"b0_conv1": 1, "b0": 0}


def test_each_residual_block_is_priced_scored_and_excludes_the_groups_it_holds_or_carries(tiny_resnet, digits):
    x, y = digits.validation
    channel = [Unit("b1_conv1", "channels", 8, [Option({}, 1.0, 0.0), Option({"ratio": 0.5}, 0.9, 1.0)]),
               Unit("stem_conv", "channels", 8, [Option({}, 1.0, 0.0), Option({"ratio": 0.5}, 0.9, 1.0)])]
    units = depth_units(tiny_resnet, x[:200], y[:200], 1.0, channel, threads=1, tune_x=digits.train[0][:256])
    assert [u.name for u in units] == ["b0", "b1"] and all(u.kind == "depth" for u in units)
    # b1's own group, and the stem's group in both: its channels run through each block's Add (priced with
    # the block in, thinning it and removing a block would count the block's ops twice)
    assert [u.excludes for u in units] == [("stem_conv",), ("b1_conv1", "stem_conv")]
    assert all(u.options[1].setting == {"remove": True} and 0 < u.options[1].cost for u in units)
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    assert depth_units(flat, np.zeros((4, 4)), np.zeros(4), 1.0) == []  # no block: no unit


def test_a_plan_that_removes_blocks_is_a_depth_stage_that_runs(tiny_resnet, digits):
    plan = plan_recipe(Recipe(), {"b1": {"remove": True}, "stem_conv": {"ratio": 0.5}})
    assert plan.depth.remove == 1 and tuple(plan.depth.include) == ("b1",)
    assert plan.channels.per_layer == {"stem_conv": 0.5}
    assert plan_recipe(Recipe(), {"fc1": {"sparsity": 0.5}}).depth is None
    res = tfcompress.optimize(tiny_resnet, digits.train, digits.validation, recipe=plan, epochs=1, seed=0, verbose=0)
    names = {layer.name.removeprefix("quant_") for layer in res.model.layers}  # QAT's wrappers
    assert "b0_conv1" in names and not {"b1_conv1", "b1_conv2"} & names
    assert "removed (block b1)" in res.report.layer("b1_conv1").stages["depth"]
    # b1_out read b1's Add, now b0_out: a ReLU after a ReLU, left out of the model (and of the .tflite file)
    assert "b1_out" not in names and "left out" in res.report.layer("b1_out").stages["depth"]


@pytest.mark.slow  # a latency plan: the channel and depth scans, priced, and up to three fine-tuning rounds
def test_a_latency_plan_offers_each_block_and_reports_what_it_removed(tiny_resnet, digits):
    res = tfcompress.optimize(tiny_resnet, digits.train, digits.validation, target="drop<=30", minimize="latency",
                              epochs=1, seed=0, verbose=0, threads=1)
    b = res.report.budget
    depth = [u for u in b["sensitivity"] if u["kind"] == "depth"]
    assert [u["name"] for u in depth] == ["b0", "b1"] and all(u["options"][1]["setting"] == {"remove": True}
                                                              for u in depth)
    removed = {n for n, s in b["rounds"][b["kept_round"] - 1]["plan"].items() if s.get("remove")}
    # a 30-point budget on 8x8 digits: removing a block is among the first moves, and the shipped model lost it
    assert removed and set(res.plan.depth.include) == removed and res.plan.depth.remove == len(removed)
    names = {layer.name.removeprefix("quant_") for layer in res.model.layers}
    assert all(f"{n}_conv1" not in names for n in removed)
