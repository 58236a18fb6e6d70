"""One set of validation rules: tfcompress._checks, and the places that use it
(recipe stages, the channels stage and functions, the tuner's search space)."""

import numpy as np
import pytest

from tfcompress import Channels, Clustering, Pruning, Quantization, Recipe, RecipeError
from tfcompress._checks import (
    check_bool,
    check_choice,
    check_int,
    check_int_pair,
    check_patterns,
    check_positive,
    check_range,
    fraction_kept,
    fraction_removed,
)
from tfcompress.errors import TuningError
from tfcompress.quantization.config import SCHEME_NEEDS, qat_scheme
from tfcompress.schedules import Schedule
from tfcompress.tuning.space import SearchSpace, default_space, recipe_for, targets


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: check_range("pruning", "end", 0, 0, 1, lo_open=True), "pruning.end must be in (0, 1], got 0."),
        (lambda: check_range("penalty", "l1", "x", 0, 1), "penalty.l1 must be a number in [0, 1], got 'x'."),
        (lambda: check_range("p", "v", True, 0, 1), "p.v must be a number in [0, 1], got True."),
        (lambda: check_choice("recipe", "optimizer", "lion", ("adam", "sgd")),
         "recipe.optimizer must be one of 'adam', 'sgd', got 'lion'."),
        (lambda: check_bool("clustering", "per_channel", "yes"), "clustering.per_channel must be true or false, got"),
        (lambda: check_bool("c", "p", 1, optional=True), "c.p must be true or false or null, got 1."),
        (lambda: check_int("pruning", "epochs", 0), "pruning.epochs must be an integer of at least 1, got 0."),
        (lambda: check_int("pruning", "frequency", 2.5, optional=True),
         "pruning.frequency must be an integer of at least 1 or null, got 2.5."),
        (lambda: check_int(None, "batch_size", 0, phrase="a positive integer"),
         "batch_size must be a positive integer, got 0."),
        (lambda: check_int_pair("pruning", "block_size", [0, 4]), "pruning.block_size must be a pair of positive"),
        (lambda: check_patterns("pruning", "include", ["fc("]), "pruning.include: 'fc(' is not a valid regular"),
        (lambda: check_positive("channels", "temperature", 0), "channels.temperature must be a number > 0, got 0."),
        (lambda: fraction_removed(None, "ratio", 1.0), "ratio must be in [0, 1) (the fraction of channels to remove)"),
        (lambda: fraction_kept(None, "flops", 0.0, "FLOPs"), "flops must be in (0, 1] (the fraction of FLOPs to keep)"),
    ],
)
def test_checks_raise_one_line_naming_field_and_range(call, message):
    with pytest.raises(RecipeError) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_checks_return_what_they_accept():
    assert check_range("d", "t", 2, 0, 100, lo_open=True) == 2
    assert check_range("d", "t", np.float32(0.5), 0, 1) == np.float32(0.5)
    assert check_int("c", "n", np.int64(3)) == 3
    assert check_int("p", "f", None, optional=True) is None
    assert check_int_pair("p", "m", [2, 4]) == (2, 4) and check_int_pair("p", "m", None) is None
    assert check_patterns("p", "exclude", "logits") == ("logits",)
    assert fraction_removed(None, "ratio", 0) == 0.0 and type(fraction_removed(None, "ratio", 0)) is float
    assert fraction_kept(None, "flops", None) is None and fraction_kept(None, "params", 1) == 1.0


# --- the places that use them ------------------------------------------------
@pytest.mark.parametrize("kwargs, fragment", [
    ({"ratio": 1.0}, "channels.ratio must be in [0, 1)"),
    ({"ratio": "half"}, "channels.ratio must be a number in [0, 1)"),
    ({"per_layer": {"a": 2}}, "channels.per_layer['a'] must be in [0, 1)"),
    ({"per_layer": {3: 0.5}}, "channels.per_layer keys must be layer names"),
    ({"flops": 0}, "channels.flops must be in (0, 1] (the fraction of FLOPs to keep)"),
    ({"params": 1.5}, "channels.params must be in (0, 1] (the fraction of parameters to keep)"),
    ({"criterion": "x"}, "channels.criterion must be one of 'l1', 'l2', 'bn_gamma', 'taylor'"),
    ({"schedule": "x"}, "channels.schedule must be one of 'one-shot', 'iterative'"),
    ({"steps": 0}, "channels.steps must be an integer of at least 1"),
    ({"epochs": -1}, "channels.epochs must be an integer of at least 0"),
    ({"temperature": -1}, "channels.temperature must be a number > 0"),
    ({"distill": "yes"}, "channels.distill must be true or false"),
])
def test_channels_stage_uses_the_shared_rules(kwargs, fragment):
    with pytest.raises(RecipeError) as e:
        Channels(**kwargs)
    assert fragment in str(e.value)


def test_stage_constructors_refuse_non_numbers_with_a_recipe_error():
    # Before, Pruning(final_sparsity="high") compared a str with 0 and raised TypeError.
    with pytest.raises(RecipeError, match=r"pruning.final_sparsity must be a number in \[0, 1\)"):
        Pruning(final_sparsity="high")
    with pytest.raises(RecipeError, match="recipe.learning_rate must be a number"):
        Recipe(learning_rate="fast")


def test_channels_package_has_no_sensitivity_surgery_cycle():
    import tfcompress.channels.budget as budget
    import tfcompress.channels.sensitivity as sensitivity
    import tfcompress.channels.surgery as surgery
    from tfcompress import channels

    assert channels.ratios_for_budget is budget.ratios_for_budget is sensitivity.ratios_for_budget
    assert surgery.search_uniform is budget.search_uniform
    with pytest.raises(RecipeError, match="needs flops= or params="):
        budget.ratios_for_budget(None)


# --- preserve_sparsity after a channels stage (bug) ---------------------------
def test_preserve_sparsity_after_only_a_channels_stage_is_refused():
    with pytest.raises(RecipeError) as e:
        Recipe(channels=Channels(), pruning=None, clustering=Clustering(preserve_sparsity=True))
    msg = str(e.value)
    assert "clustering.preserve_sparsity is true but the recipe has no pruning stage" in msg
    assert "channel pruning leaves no zero weights" in msg and "\n" not in msg
    with pytest.raises(RecipeError, match="channel pruning leaves no zero weights"):
        Recipe.from_dict({"channels": {"ratio": 0.5}, "pruning": None,
                          "clustering": {"preserve_sparsity": True}, "quantization": {}})
    for scheme in ("pqat", "pcqat"):
        with pytest.raises(RecipeError, match="no pruning stage.*channel pruning leaves no zero weights"):
            Recipe(channels=Channels(), pruning=None, clustering=Clustering(),
                   quantization=Quantization(scheme=scheme))
    # With a pruning stage after the channels stage, both are fine.
    r = Recipe(channels=Channels(), clustering=Clustering(preserve_sparsity=True))
    assert r.quantization_scheme() == "pcqat"
    # After channels only, the automatic scheme is plain QAT (there are no zeros to keep).
    assert Recipe(channels=Channels(), pruning=None).quantization_scheme() == "qat"
    assert Recipe(channels=Channels(), pruning=None, clustering=Clustering()).quantization_scheme() == "cqat"


# --- the QAT scheme, chosen in one place --------------------------------------
@pytest.mark.parametrize("stage, pruned, clustered, want", [
    (Quantization(), False, False, "qat"),
    (Quantization(), True, False, "pqat"),
    (Quantization(), False, True, "cqat"),
    (Quantization(), True, True, "pcqat"),
    (Quantization(preserve_sparsity=False), True, True, "cqat"),
    (Quantization(preserve_sparsity=False), True, False, "qat"),
    (Quantization(scheme="qat"), True, True, "qat"),
    (Quantization(scheme="cqat"), False, False, "cqat"),
])
def test_qat_scheme(stage, pruned, clustered, want):
    assert qat_scheme(stage, pruned=pruned, clustered=clustered) == want
    assert set(SCHEME_NEEDS) == {"qat", "pqat", "cqat", "pcqat"}


def test_qat_scheme_override_of_preserve_sparsity():
    assert qat_scheme(Quantization(), pruned=True, clustered=False, preserve_sparsity=False) == "qat"
    assert qat_scheme(Quantization(preserve_sparsity=False), True, False, preserve_sparsity=True) == "pqat"


def test_the_qat_scheme_rule_is_written_once():
    import pathlib

    import tfcompress

    root = pathlib.Path(tfcompress.__file__).parent
    rule = [str(f.relative_to(root)) for f in root.rglob("*.py") if '"pqat" if' in f.read_text()]
    assert rule == ["quantization/config.py"]
    users = {str(f.relative_to(root)) for f in root.rglob("*.py") if "qat_scheme(" in f.read_text()}
    assert {"recipe.py", "quantization/__init__.py"} <= users and len(users) >= 4  # + the QAT stage and its config


# --- the tuner's space validates by building the recipe -----------------------
def test_targets_name_real_stage_fields():
    import dataclasses

    from tfcompress import Distillation, techniques

    classes = {**techniques.stage_classes(), "distillation": Distillation}
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    for name, (stage, field) in targets().items():
        cls = Recipe if stage is None else classes[stage]
        field = field.split(".")[0]  # optimizer.momentum, lr_schedule.kind: a field of that field
        assert field in {f.name for f in dataclasses.fields(cls)}, name
        assert stage is None or stage in recipe_fields


@pytest.mark.parametrize("spec, message", [
    ({"cluster_count": [1, 8]}, "search space: cluster_count value 1 is not allowed: "
                                "clustering.number_of_clusters must be an integer of at least 2"),
    ({"cluster_count": {"min": 1, "max": 16}}, "cluster_count value 1 is not allowed"),
    ({"distill_alpha": {"min": 0.5, "max": 1.5}}, "distill_alpha value 1.5 is not allowed: distillation.alpha"),
    ({"distill_temperature": [0, 2]}, "distill_temperature value 0 is not allowed: distillation.temperature"),
    ({"channel_ratio": [0.5, 1.0]}, "channel_ratio value 1.0 is not allowed: channels.ratio must be in [0, 1)"),
    ({"pruning_begin": [0.0, 1.0]}, "pruning_begin value 1.0 is not allowed: pruning.begin"),
    ({"pruning_frequency": [0, 10]}, "pruning_frequency value 0 is not allowed"),
    ({"batch_size": [True]}, "batch_size value True is not allowed"),
    ({"learning_rate": ["fast"]}, "learning_rate value 'fast' is not allowed"),
    ({"qat_epochs": 0}, "qat_epochs value 0 is not allowed: quantization.epochs"),
    ({"pruning_epochs": None}, "pruning_epochs value None is not allowed"),
    ({"lr_decay": ["none", "linear"]}, "lr_decay value 'linear' is not allowed: train.lr_schedule.kind must be one of"),
    ({"lr_decay": ["step"], "step_every": [0, 1]}, "step_every value 0 is not allowed"),
    ({"lr_decay": ["exponential"], "decay_rate": {"min": 0.5, "max": 1.5}}, "decay_rate value 1.5 is not allowed"),
])
def test_space_refuses_a_bound_the_recipe_refuses(spec, message):
    with pytest.raises(TuningError) as e:
        SearchSpace(spec)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_space_accepts_what_the_recipe_accepts():
    space = SearchSpace({"cluster_count": [2, 64], "pruning_begin": [0.0, 0.9], "pruning_end": 1.0,
                         "channel_ratio": {"min": 0.0, "max": 0.9}, "distill_temperature": [1, 100],
                         "pruning_frequency": {"min": 1.5, "max": 30.0}})
    r = space.recipe({"cluster_count": 2, "pruning_begin": 0.9, "pruning_end": 1.0, "channel_ratio": 0.9,
                      "distill_temperature": 100, "pruning_frequency": 1.5})
    assert r.clustering.number_of_clusters == 2 and r.channels.ratio == 0.9 and r.pruning.frequency == 2
    assert SearchSpace(default_space()).names == list(default_space())


def test_recipe_for_maps_names_to_fields_and_rounds_integers():
    r = recipe_for({"cluster_count": 8.0, "qat_epochs": np.int64(2), "lr_decay": "cosine", "tuner/epochs": 3})
    assert r.clustering.number_of_clusters == 8 and type(r.clustering.number_of_clusters) is int
    assert r.quantization.epochs == 2 and type(r.quantization.epochs) is int
    assert recipe_for({}) == Recipe()


def test_schedule_names_map_onto_the_train_stage_schedule():
    with pytest.raises(TuningError, match=r"cosine_alpha value 2 is not allowed: train.lr_schedule.alpha must be in"):
        SearchSpace({"lr_decay": ["cosine"], "cosine_alpha": [0.0, 2]})
    r = recipe_for({"lr_decay": "step", "step_every": 2.0})
    assert r.train.lr_schedule == Schedule("step", every=2) and type(r.train.lr_schedule.every) is int
