"""The technique registry: a technique registered from this file (a folder's worth: its recipe
class and one Technique object) runs through optimize, check, the recipe YAML and the tuner,
with no other change anywhere; and the per-stage tables are read from the registry."""

import dataclasses

import numpy as np
import pytest

import tfcompress
from tfcompress import Recipe, RecipeError, techniques
from tfcompress._checks import check_int, check_range
from tfcompress._keras import keras
from tfcompress.distribute import Placement
from tfcompress.technique import CheckColumn, Knob, StageResult, Technique
from tfcompress.tuning.space import SearchSpace, default_space, targets


@dataclasses.dataclass(frozen=True)
class Shrink:
    """The toy technique's recipe class: scale every Dense kernel by ``factor``, then fine-tune."""

    factor: float = 0.5
    epochs: int = 0

    def __post_init__(self):
        check_range("shrink", "factor", self.factor, 0, 1, lo_open=True)
        check_int("shrink", "epochs", self.epochs, minimum=0)


def _run(run, model, stage):
    records = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            kernel, *rest = layer.get_weights()
            layer.set_weights([kernel * stage.factor, *rest])
            records[layer.name] = f"kernel scaled by {stage.factor:g}"
    history = run.fit(model, stage.epochs, stage=stage, name="shrink") if stage.epochs else {}
    return StageResult(model, records, history, epochs=stage.epochs, steps=run.steps(stage.epochs),
                       details=f"Dense kernels scaled by {stage.factor:g}", extra={"scaled": len(records)})


def _column(model, recipe):
    return {layer.name: "yes" if isinstance(layer, keras.layers.Dense) else "no: not a Dense layer"
            for layer in model.layers if layer.weights}


SHRINK = Technique(
    name="shrink", recipe_class=Shrink, run=_run,
    columns=(CheckColumn("shrinkable", "shrink", _column),),
    mixed_precision="a toy: float32 only",
    single_replica={None: "a toy: one replica"},
    knobs={"shrink_factor": Knob("factor", default=[0.5, 0.9])},
)


@pytest.fixture
def shrink():
    techniques.register(SHRINK, after="pruning")
    yield SHRINK
    techniques.unregister("shrink")


def _tiny():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                             keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax", name="out")])


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1), dtype=np.float32), np.arange(n) % 10


def test_the_stage_tables_come_from_the_registry(shrink):
    assert techniques.names() == ("train", "depth", "channels", "lowrank", "penalty", "pruning", "shrink", "clustering",
                                  "quantization", "precision")
    assert techniques.stage_classes()["shrink"] is Shrink
    assert techniques.single_replica()[("shrink", None)] == "a toy: one replica"
    assert ("pruning", "mixed_precision") in techniques.single_replica()
    assert techniques.mixed_precision_invalid("shrink") == "a toy: float32 only"
    assert targets()["shrink_factor"] == ("shrink", "factor")
    assert default_space()["shrink_factor"] == [0.5, 0.9]
    with pytest.raises(RecipeError, match="already registered"):
        techniques.register(SHRINK)
    with pytest.raises(RecipeError, match="built-in"):
        techniques.unregister("pruning")


def test_the_recipe_and_its_yaml_hold_a_registered_stage(shrink):
    recipe = Recipe(quantization=None).replace(shrink=Shrink(factor=0.25))
    assert recipe.shrink == Shrink(factor=0.25) and Recipe().shrink is None
    assert [n for n, _ in recipe.stages] == ["pruning", "shrink"]
    assert list(recipe.to_dict())[:8] == ["train", "depth", "channels", "lowrank", "penalty", "pruning", "shrink",
                                         "clustering"]
    back = Recipe.from_yaml_string(recipe.to_yaml())
    assert back == recipe and back.shrink.factor == 0.25
    assert Recipe.from_dict({"shrink": True}).shrink == Shrink()
    with pytest.raises(RecipeError, match="out of order"):
        Recipe.from_dict({"clustering": {}, "shrink": {}})
    with pytest.raises(RecipeError, match="shrink.factor"):
        Recipe.from_dict({"shrink": {"factor": 2.0}})
    with pytest.raises(RecipeError, match="shrink must be a Shrink"):
        Recipe(more_stages={"shrink": "half"})


def test_a_registered_technique_runs_in_optimize_and_check(shrink):
    x, y = _data()
    recipe = Recipe(pruning=None, quantization=None, mixed_precision=True).replace(shrink=Shrink(factor=0.5))
    model = _tiny()
    before = model.get_layer("out").get_weights()[0]
    result = tfcompress.optimize(model, (x, y), recipe=recipe, verbose=0, check_baseline=False)
    (entry,) = result.report.stages
    assert entry["name"] == "shrink" and entry["scaled"] == 1
    assert entry["details"] == "Dense kernels scaled by 0.5"  # the toy never asks for float16
    np.testing.assert_allclose(result.model.get_layer("out").get_weights()[0], before * 0.5, rtol=1e-6)
    assert result.report.layer("out").stages["shrink"] == "kernel scaled by 0.5"

    report = tfcompress.check(_tiny(), recipe=recipe, convert=False)
    assert report.layer("out").extra["shrinkable"] == "yes"
    assert report.layer("conv").extra["shrinkable"].startswith("no:")
    assert "shrink" in report.COLUMNS and report.to_dict()["summary"]["shrinkable"] == 1


def test_the_float16_scope_and_one_replica_follow_the_registry(shrink):
    placement = Placement(None, single_replica=techniques.single_replica())
    assert "shrink" in placement.single_replica and "pruning" not in placement.single_replica
    assert "pruning" in Placement(None, mixed_precision=True, single_replica=techniques.single_replica()) \
        .single_replica


def test_the_tuner_searches_a_registered_knob(shrink, tmp_path):
    space = SearchSpace({"shrink_factor": [0.5, 0.9]})
    assert space.recipe({"shrink_factor": 0.9}).shrink == Shrink(factor=0.9)
    assert "shrink_factor" in SearchSpace.default(Recipe().replace(shrink=Shrink())).names
    assert "shrink_factor" not in SearchSpace.default(Recipe()).names
    with pytest.raises(tfcompress.TuningError, match="shrink_factor value 1.5 is not allowed"):
        SearchSpace({"shrink_factor": [0.5, 1.5]})
    x, y = _data(128)
    result = tfcompress.tune(_tiny(), (x, y), space=space, recipe={"pruning": None, "quantization": None},
                             max_trials=2, epochs=1, directory=str(tmp_path), isolation="session",
                             timing_runs=2, timing_seconds=0.01, objectives=["size"])
    assert [r["status"] for r in result.rows] == ["COMPLETED", "COMPLETED"]
    assert result.recipe().shrink.factor in (0.5, 0.9)
    assert Recipe.from_yaml(str(tmp_path / "best_recipe.yaml")).shrink == result.recipe().shrink


def test_every_built_in_stage_is_one_registry_entry():
    stage_fields = [f.name for f in dataclasses.fields(Recipe) if f.name in techniques.names()]
    assert tuple(stage_fields) == techniques.names()  # the Recipe's stage fields, in run order
    for t in techniques.BUILT_IN:
        # the recipe class lives in the technique's own folder and is the public one
        assert t.recipe_class.__module__.split(".")[1] in {"train", "pruning", "clustering", "quantization",
                                                           "channels", "depth", "lowrank", "precision"}, t.name
        assert getattr(tfcompress, t.recipe_class.__name__) is t.recipe_class
        assert t.run.__module__.startswith(t.recipe_class.__module__.rsplit(".", 1)[0]), t.name
