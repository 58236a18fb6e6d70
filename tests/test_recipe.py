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
        ({"optimizer": "adagrad"}, "recipe.optimizer must be one of"),
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
