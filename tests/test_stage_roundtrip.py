"""Every stage field, and a recipe holding every stage, survives dict and YAML;
every stage combination's result saves to a file that reloads with the same outputs.

The parameters come from the dataclasses themselves, so a field added to a
stage (or to Recipe) without a non-default value in ``NON_DEFAULT`` fails here
until it is given one and shown to round-trip.
"""

import dataclasses
import typing

import numpy as np
import pytest

import tfcompress
from tfcompress import (
    Channels,
    Clustering,
    Depth,
    Distillation,
    LowRank,
    Penalty,
    Precision,
    Pruning,
    Quantization,
    Recipe,
    Train,
)
from tfcompress._keras import keras
from tfcompress.schedules import Optimizer, Schedule


def _stage_fields():
    """Recipe field name -> its stage class (channels ... quantization, distillation)."""
    out = {}
    for name, tp in typing.get_type_hints(Recipe).items():
        cls = next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)
        if cls is not None and cls not in (Optimizer, Schedule):  # recipe fields, not stages
            out[name] = cls
    return out


STAGES = _stage_fields()

# The training fields every training stage has (tfcompress._stagebase._Trains).
TRAINING = {"learning_rate": 0.01, "optimizer": Optimizer("nesterov", weight_decay=0.001),
            "lr_schedule": Schedule("step", boundaries=(1.0, 2.0))}

# A valid value other than the default for every field of every stage class.
NON_DEFAULT = {
    Train: {"epochs": 3, **TRAINING},
    Depth: {"remove": 2, "target_flops": 0.6, "criterion": "sensitivity", "epochs": 1, "distill": False, "alpha": 0.3,
            "temperature": 2.0, "include": ("block_.*",), "exclude": ("b0",), **TRAINING},
    Channels: {
        "ratio": 0.25, "criterion": "l2", "per_layer": {"conv1": 0.5}, "flops": 0.5, "params": 0.6,
        "schedule": "iterative", "steps": 2, "epochs": 1, "alpha": 0.3, "temperature": 2.0, "distill": False,
        "mode": "merge", "merge_similarity": "activations",
    },
    LowRank: {"per_layer": {"fc1": 16, "Dense": 0.25}, "epochs": 3, "distill": False, "alpha": 0.3, "temperature": 2.0,
              **TRAINING},
    Penalty: {"l1": 1e-3, "l2": 1e-4, "epochs": 2, **TRAINING},
    Pruning: {
        "final_sparsity": 0.6, "initial_sparsity": 0.1, "schedule": "constant", "begin": 0.2, "end": 0.9,
        "frequency": 7, "power": 2.0, "epochs": 3, "sparsity_m_by_n": (2, 4), "block_size": (1, 4),
        "pruning_policy": "xnnpack", "include": ("Conv2D", "fc.*"), "exclude": ("logits",),
        "per_layer": {"fc1": 0.3, "conv.*": 0.5}, "scope": "global", "max_layer_sparsity": 0.9,
        "min_layer_sparsity": 0.1, "criterion": "saliency", "saliency_batches": 4, **TRAINING,
    },
    Clustering: {
        "number_of_clusters": 8, "centroid_init": "linear", "preserve_sparsity": True, "per_channel": True,
        "epochs": 3, "learning_rate_scale": 0.2, "include": ("Dense",), "exclude": ("conv1",), **TRAINING,
    },
    Quantization: {"epochs": 1, "preserve_sparsity": False, "learning_rate_scale": 0.5, "scheme": "pqat",
                   "weights": "int4", "keep_int8": ("conv1", "last"), **TRAINING},
    Precision: {"per_layer": {"conv1": "float16", "Dense": "int4"}, "default": "int16x8", "max_drop": 0.5,
                "max_bytes": 50_000, "candidates": ("int8", "float16"), "samples": 64},
    Distillation: {"alpha": 0.2, "temperature": 2.0},
}

# Top-level Recipe fields that are not stages.
RECIPE_NON_DEFAULT = {"batch_size": 16, "learning_rate": 2e-4, "optimizer": Optimizer("sgd"), "mixed_precision": True,
                      "lr_schedule": Schedule("cosine", warmup_epochs=1), "seed": 7}

# Fields that cannot all be set at once in one stage: the all-stages recipe leaves these at their default.
# M:N excludes block_size and per_layer; global scope and saliency exclude M:N, block_size (and global per_layer)
CONFLICTS = {Pruning: ("sparsity_m_by_n", "scope", "criterion"), Depth: ("target_flops",)}


def _round_trips(recipe):
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    back = Recipe.from_yaml_string(recipe.to_yaml())
    assert back == recipe
    return back


def test_every_stage_class_has_non_default_values():
    assert set(STAGES.values()) == set(NON_DEFAULT), "a stage class has no NON_DEFAULT entry"
    assert set(STAGES) == {"train", "depth", "channels", "lowrank", "penalty", "pruning", "clustering", "quantization",
                            "precision", "distillation"}


@pytest.mark.parametrize(
    "stage, field",
    [(stage, f.name) for stage, cls in STAGES.items() for f in dataclasses.fields(cls)],
)
def test_each_stage_field_round_trips(stage, field):
    cls = STAGES[stage]
    values = NON_DEFAULT.get(cls, {})
    if field not in values:
        pytest.fail(f"{cls.__name__}.{field} has no non-default value in NON_DEFAULT: add one")
    value = values[field]
    default = cls()
    assert getattr(default, field) != value, f"NON_DEFAULT[{cls.__name__}][{field!r}] is the default"
    recipe = Recipe(**{stage: cls(**{field: value})})
    back = _round_trips(recipe)
    got = getattr(getattr(back, stage), field)
    assert got == value and type(got) is type(value)


# more_stages holds the stages of techniques registered at run time (tests/test_registry.py)
@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Recipe) if f.name != "more_stages"])
def test_each_recipe_field_round_trips(field):
    if field in STAGES:
        default = getattr(Recipe(), field)
        # a stage the default recipe runs round-trips switched off, one it does not switched on
        recipe = Recipe(**{field: None if default is not None else STAGES[field]()})
    else:
        if field not in RECIPE_NON_DEFAULT:
            pytest.fail(f"Recipe.{field} has no non-default value in RECIPE_NON_DEFAULT: add one")
        recipe = Recipe(**{field: RECIPE_NON_DEFAULT[field]})
        assert getattr(Recipe(), field) != RECIPE_NON_DEFAULT[field]
    assert _round_trips(recipe) == recipe


def _all_fields(cls):
    skip = CONFLICTS.get(cls, ())
    return cls(**{k: v for k, v in NON_DEFAULT[cls].items() if k not in skip})


def test_recipe_holding_every_stage_round_trips(tmp_path):
    stages = {name: _all_fields(cls) for name, cls in STAGES.items()}
    stages["quantization"] = dataclasses.replace(stages["quantization"], scheme="pcqat")
    recipe = Recipe(**stages, **RECIPE_NON_DEFAULT)
    back = _round_trips(recipe)
    assert [n for n, _ in back.stages] == ["train", "depth", "channels", "lowrank", "penalty", "pruning",
                                           "clustering", "quantization", "precision"]
    path = tmp_path / "all.yaml"
    recipe.save_yaml(path)
    assert Recipe.from_yaml(path) == recipe
    for name, cls in STAGES.items():
        for field in NON_DEFAULT[cls]:
            if field not in CONFLICTS.get(cls, ()) and not (name == "quantization" and field == "scheme"):
                assert getattr(getattr(back, name), field) == NON_DEFAULT[cls][field], (name, field)


def test_m_by_n_pruning_round_trips_with_its_compatible_fields():
    skip = ("block_size", "per_layer", "scope", "criterion")
    pruning = Pruning(**{k: v for k, v in NON_DEFAULT[Pruning].items() if k not in skip})
    assert _round_trips(Recipe(pruning=pruning)).pruning.sparsity_m_by_n == (2, 4)


def test_global_saliency_pruning_round_trips_with_its_compatible_fields():
    skip = ("block_size", "per_layer", "sparsity_m_by_n")
    pruning = Pruning(**{k: v for k, v in NON_DEFAULT[Pruning].items() if k not in skip})
    back = _round_trips(Recipe(pruning=pruning)).pruning
    assert (back.scope, back.criterion, back.max_layer_sparsity) == ("global", "saliency", 0.9)


# --------------------------------------------------------------------------- results save and reload

# One tiny fine-tuning setting per stage: enough for real wrappers, centroids and fake-quant ranges.
SAVE_STAGES = {
    "channels": {"ratio": 0.5, "epochs": 0},
    "penalty": {"l1": 1e-3, "epochs": 1},
    "pruning": {"final_sparsity": 0.5, "epochs": 1},
    "clustering": {"number_of_clusters": 4, "epochs": 1},
    "quantization": {"epochs": 1},
}
COMBOS = [
    ("pruning",), ("clustering",), ("penalty",), ("channels",), ("quantization",),
    ("pruning", "clustering"), ("pruning", "quantization"), ("clustering", "quantization"),
    ("channels", "pruning", "quantization"), ("penalty", "pruning", "clustering", "quantization"),
]
FAST = [("pruning", "clustering", "quantization")]  # PCQAT: every wrapper kind in one fast run


def _tiny_model(k=keras):
    k.utils.set_random_seed(0)
    return k.Sequential([
        k.Input((8, 8, 1)), k.layers.Conv2D(4, 3, activation="relu", name="conv1"),
        k.layers.Conv2D(4, 3, activation="relu", name="conv2"), k.layers.Flatten(),
        k.layers.Dense(3, name="fc"),
    ])


def _saves_and_reloads(combo, tmp_path, k=keras):
    rng = np.random.RandomState(0)
    x, y = rng.rand(32, 8, 8, 1).astype("float32"), rng.randint(0, 3, 32)
    recipe = {name: (SAVE_STAGES[name] if name in combo else None) for name in SAVE_STAGES}
    result = tfcompress.optimize(_tiny_model(k), (x, y), recipe=recipe, batch_size=16, verbose=0)
    want = result.model(x).numpy()
    qat = "quantization" in combo
    if k is not keras and not qat:  # a Keras 3 input comes back as a Keras 3 file Keras 3 reads
        back = k.saving.load_model(result.save(tmp_path / "k3.keras"))
        assert type(back).__module__.startswith("keras.")
        assert np.abs(np.asarray(back(x)) - want).max() <= 1e-6, combo
    for ext in (".h5",) if qat else (".h5", ".keras"):
        path = result.save(tmp_path / f"m{ext}")
        back = tfcompress.load_model(path)
        assert [type(l).__name__ for l in back.layers] == [type(l).__name__ for l in result.model.layers]
        assert np.abs(back(x).numpy() - want).max() <= 1e-6, (combo, ext)
    if qat:
        with pytest.raises(tfcompress.OutputError, match=r"save it to a \.h5 file"):
            result.save(tmp_path / "m.keras")
    if qat and "clustering" in combo:  # Keras's own save keeps CQAT's training variables: the loader says why
        result.model.save(tmp_path / "raw.h5")
        with pytest.raises(tfcompress.UnsupportedModelError, match=r"cluster-preserving QAT.*result\.save"):
            tfcompress.load_model(tmp_path / "raw.h5")


@pytest.mark.parametrize("combo", COMBOS, ids="+".join)
@pytest.mark.slow
def test_every_stage_combination_saves_and_reloads(combo, tmp_path):
    _saves_and_reloads(combo, tmp_path)


@pytest.mark.parametrize("combo", FAST, ids="+".join)
def test_pcqat_result_saves_and_reloads(combo, tmp_path):
    _saves_and_reloads(combo, tmp_path)


@pytest.mark.parametrize("combo", COMBOS + FAST, ids="+".join)
@pytest.mark.slow
def test_every_stage_combination_from_keras3_saves_and_reloads(combo, tmp_path):
    k3 = pytest.importorskip("keras")
    _saves_and_reloads(combo, tmp_path, k3)
