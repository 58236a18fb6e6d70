import math

import pytest

from tfcompress import Pruning, Quantization, Recipe, RecipeError, models


def test_yaml_round_trip(tmp_path):
    r = Recipe(pruning=Pruning(final_sparsity=0.9, schedule="constant", begin=0.1, end=0.5, frequency=7),
               quantization=Quantization(epochs=3, preserve_sparsity=False), batch_size=16,
               learning_rate=2e-4, optimizer="sgd")
    path = tmp_path / "r.yaml"
    r.save_yaml(path)
    assert Recipe.from_yaml(path) == r
    assert Recipe.from_yaml_string(r.to_yaml()) == r


def test_disabled_stage_round_trips():
    r = Recipe(quantization=None)
    back = Recipe.from_yaml_string(r.to_yaml())
    assert back.quantization is None and [n for n, _ in back.stages] == ["pruning"]


def test_reference_recipes_load():
    for name in models.names():
        assert isinstance(models.get(name).recipe(), Recipe)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"pruning": {"final_sparsity": 1.0}}, "pruning.final_sparsity must be in [0, 1)"),
        ({"pruning": {"final_sparsity": -0.1}}, "pruning.final_sparsity must be in [0, 1)"),
        ({"pruning": {"begin": 0.5, "end": 0.5}}, "pruning.end (0.5) must be greater than pruning.begin (0.5)"),
        ({"pruning": {"begin": 0.6, "end": 0.2}}, "must be greater than pruning.begin"),
        ({"pruning": {"final_sparsity": 0.8, "sparsity": 0.5}}, "unknown key 'sparsity' in pruning"),
        ({"quantisation": {}}, "unknown key 'quantisation' in recipe"),
        ({"pruning": {"schedule": "cubic"}}, "pruning.schedule must be one of"),
        ({"pruning": {"final_sparsity": "high"}}, "pruning.final_sparsity must be float"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"optimizer": "lion"}, "recipe.optimizer.name must be one of"),
        ({"pruning": [1, 2]}, "pruning must be a mapping"),
    ],
)
def test_invalid_recipes_raise_one_clear_error(data, fragment):
    with pytest.raises(RecipeError) as e:
        Recipe.from_dict(data)
    msg = str(e.value)
    assert fragment in msg and "\n" not in msg


def test_invalid_yaml_text():
    with pytest.raises(RecipeError, match="not valid YAML"):
        Recipe.from_yaml_string("pruning: [unclosed")


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="cannot read recipe"):
        Recipe.from_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize("n, bs, epochs", [(1000, 32, 4), (1298, 32, 8), (60000, 64, 3), (10, 4, 1), (100, 100, 2)])
@pytest.mark.parametrize("begin, end, freq", [(0.0, 0.7, None), (0.2, 0.9, 5), (0.0, 1.0, 100)])
def test_step_maths_reaches_final_sparsity(n, bs, epochs, begin, end, freq):
    s = Pruning(begin=begin, end=end, frequency=freq, epochs=epochs).steps(n, bs)
    assert s.total_steps == math.ceil(n / bs) * epochs
    # TF-MOT reaches the final sparsity only on a pruning turn at/after end_step,
    # and the wrapper's step counter runs 1..total_steps.
    assert (s.end_step - s.begin_step) % s.frequency == 0
    assert s.begin_step < s.end_step <= s.total_steps - 1 or s.total_steps <= 2
    assert s.frequency >= 1


def test_too_short_run_is_an_error():
    with pytest.raises(RecipeError, match="at least 2 training steps"):
        Pruning(epochs=1).steps(num_samples=10, batch_size=32)


# --- the later stages and fields ------------------------------------------------
from tfcompress import Clustering, Distillation, Penalty  # noqa: E402
from tfcompress.recipe import STAGE_ORDER  # noqa: E402


def test_full_recipe_yaml_round_trip(tmp_path):
    r = Recipe(
        penalty=Penalty(l1=1e-4, l2=1e-5, epochs=2),
        pruning=Pruning(final_sparsity=0.6, sparsity_m_by_n=None, block_size=(1, 4), pruning_policy="xnnpack",
                        include=["Conv2D", "fc.*"], exclude=["logits"], per_layer={"fc1": 0.3, "conv.*": 0.5}),
        clustering=Clustering(number_of_clusters=32, centroid_init="density_based", preserve_sparsity=True,
                              per_channel=True, epochs=3, learning_rate_scale=0.2, exclude=["conv1"]),
        quantization=Quantization(epochs=1, scheme="pcqat"),
        distillation=Distillation(alpha=0.2, temperature=3.0),
        mixed_precision=True,
    )
    path = tmp_path / "r.yaml"
    r.save_yaml(path)
    back = Recipe.from_yaml(path)
    assert back == r
    assert back.pruning.block_size == (1, 4) and back.pruning.include == ("Conv2D", "fc.*")
    assert [n for n, _ in back.stages] == ["penalty", "pruning", "clustering", "quantization"]
    assert "block_size:\n  - 1\n  - 4" in r.to_yaml()


def test_two_four_round_trip():
    r = Recipe.from_yaml_string("pruning: {sparsity_m_by_n: [2, 4]}\nquantization: null\n")
    assert r.pruning.sparsity_m_by_n == (2, 4)
    assert Recipe.from_yaml_string(r.to_yaml()) == r


def test_stage_switches_true_and_false():
    r = Recipe.from_dict({"clustering": True, "distillation": True, "quantization": False})
    assert r.clustering == Clustering() and r.distillation == Distillation() and r.quantization is None


def test_stage_order_constant_and_stages_property():
    assert STAGE_ORDER == ("train", "depth", "channels", "lowrank", "penalty", "pruning", "clustering", "quantization",
                           "precision")
    r = Recipe(penalty=Penalty(), clustering=Clustering())
    assert [n for n, _ in r.stages] == ["penalty", "pruning", "clustering", "quantization"]


@pytest.mark.parametrize(
    "fields, scheme",
    [
        ({}, "pqat"),
        ({"pruning": None}, "qat"),
        ({"clustering": Clustering()}, "pcqat"),
        ({"pruning": None, "clustering": Clustering()}, "cqat"),
        ({"quantization": Quantization(preserve_sparsity=False)}, "qat"),
        ({"quantization": Quantization(scheme="qat")}, "qat"),
        ({"quantization": None}, None),
    ],
)
def test_quantization_scheme_follows_stages(fields, scheme):
    assert Recipe(**fields).quantization_scheme() == scheme


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("quantization: {}\npruning: {}\n", "list them in the order they run: pruning → quantization"),
        ("clustering: {}\npruning: {}\n", "'clustering' would undo the stages written after it"),
        ("quantization: {}\nclustering: {}\n", "clustering → quantization"),
        ("pruning: {}\npenalty: {}\n", "penalty → pruning"),
    ],
)
def test_stage_order_errors(text, fragment):
    with pytest.raises(RecipeError) as e:
        Recipe.from_yaml_string(text)
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"clustering": {"number_of_clusters": 1}}, "clustering.number_of_clusters must be an integer of at least 2"),
        ({"clustering": {"number_of_clusters": 2.5}}, "clustering.number_of_clusters must be int"),
        ({"clustering": {"centroid_init": "kmeans"}}, "clustering.centroid_init must be one of"),
        ({"clustering": {"per_channel": "yes"}}, "clustering.per_channel must be bool"),
        ({"clustering": {"clusters": 8}}, "unknown key 'clusters' in clustering"),
        ({"pruning": None, "clustering": {"preserve_sparsity": True}},
         "clustering.preserve_sparsity is true but the recipe has no pruning stage"),
        ({"pruning": {"sparsity_m_by_n": [4, 4]}}, "must have m < n"),
        ({"pruning": {"sparsity_m_by_n": [2]}}, "pruning.sparsity_m_by_n must be a pair of positive integers"),
        ({"pruning": {"sparsity_m_by_n": "2:4"}}, "pruning.sparsity_m_by_n must be a list"),
        ({"pruning": {"sparsity_m_by_n": [2, 4], "block_size": [1, 4]}}, "cannot be combined"),
        ({"pruning": {"block_size": [0, 4]}}, "pruning.block_size must be a pair of positive integers"),
        ({"pruning": {"pruning_policy": "gpu"}}, "pruning.pruning_policy must be one of None, 'xnnpack'"),
        ({"pruning": {"include": ["fc("]}}, "pruning.include: 'fc(' is not a valid regular expression"),
        ({"pruning": {"exclude": [3]}}, "pruning.exclude must be a list of layer names"),
        ({"pruning": {"per_layer": {"fc1": 1.0}}}, "pruning.per_layer['fc1'] must be a sparsity in [0, 1)"),
        ({"pruning": {"per_layer": [0.5]}}, "pruning.per_layer must be a mapping or null"),
        ({"pruning": {"per_layer": {"fc1": 0.5}, "sparsity_m_by_n": [2, 4]}}, "does not apply to sparsity_m_by_n"),
        ({"pruning": {"schedule": {"class": "PolynomialDecay"}}}, "pruning.schedule must be str"),
        ({"quantization": {"scheme": "int4"}}, "quantization.scheme must be one of"),
        ({"quantization": {"scheme": "cqat"}}, "quantization.scheme 'cqat' preserves what the clustering stage"),
        ({"pruning": None, "quantization": {"scheme": "pqat"}}, "has no pruning stage"),
        ({"penalty": {"l1": 0, "l2": 0}}, "penalty needs penalty.l1 or penalty.l2 above 0"),
        ({"penalty": {"l1": -1}}, "penalty.l1 must be in [0, 1]"),
        ({"penalty": {"epochs": 0}}, "penalty.epochs must be an integer of at least 1"),
        ({"distillation": {"alpha": 1.5}}, "distillation.alpha must be in [0, 1]"),
        ({"distillation": {"temperature": 0}}, "distillation.temperature must be in (0, 100]"),
        ({"distillation": {"teacher": "x"}}, "unknown key 'teacher' in distillation"),
        ({"mixed_precision": "yes"}, "recipe.mixed_precision must be bool"),
    ],
)
def test_invalid_new_fields(data, fragment):
    with pytest.raises(RecipeError) as e:
        Recipe.from_dict(data)
    assert fragment in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_custom_schedule_object_is_python_only():
    class Every:  # stands in for a tfmot PruningSchedule
        def __call__(self, step):
            return True, 0.5

        def get_config(self):
            return {}

    r = Recipe(pruning=Pruning(schedule=Every()))
    assert r.pruning.custom_schedule
    assert r.to_dict()["pruning"]["schedule"] == "custom: Every"
    with pytest.raises(RecipeError, match="Every object, which YAML cannot hold: use schedule 'polynomial'"):
        r.to_yaml()
    with pytest.raises(RecipeError, match="per_layer needs the 'polynomial' or 'constant' schedule"):
        Pruning(schedule=Every(), per_layer={"fc1": 0.5})


def test_python_constructor_checks_types():
    with pytest.raises(RecipeError, match="clustering must be a Clustering or None"):
        Recipe(clustering=Pruning())
    with pytest.raises(RecipeError, match="distillation must be a Distillation or None"):
        Recipe(distillation={"alpha": 0.5})
