"""The LeNet-5 40x-target recipe file (models/recipes/lenet5_thin_int4.yaml) matches the benchmark row."""

import os

from tfcompress.recipe import Recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_lenet5_thin_int4_recipe_is_the_benchmark_row():
    r = Recipe.from_yaml(os.path.join(ROOT, "models", "recipes", "lenet5_thin_int4.yaml"))
    assert r.pruning is None and r.clustering is None
    assert r.channels.per_layer == {"conv2": 0.5, "fc1": 0.73, "fc2": 0.62} and r.channels.epochs == 5
    assert r.quantization.weights == "int4" and r.quantization.epochs == 3
    assert (r.distillation.alpha, r.distillation.temperature) == (0.5, 4.0)
    assert (r.learning_rate, r.batch_size) == (1e-3, 64)
    assert Recipe.from_yaml_string(r.to_yaml()) == r


def test_lenet5_rank_int4_recipe_is_the_benchmark_row():
    from benchmarks.bench_lowbit import rows

    r = Recipe.from_yaml(os.path.join(ROOT, "models", "recipes", "lenet5_rank_int4.yaml"))
    name, fields, mode = next(row for row in rows(quick=False) if "labels only" in row[0])
    assert mode == "int4" and r == Recipe(**{"batch_size": 64, **fields})
    assert r.lowrank.per_layer == {"fc1": 16} and r.lr_schedule.kind == "cosine" and r.distillation.alpha == 1.0
    assert Recipe.from_yaml_string(r.to_yaml()) == r
