"""tfcompress.tuning: space, objectives, Pareto front, a tiny search, the CLI."""

import json
import os
import re

import numpy as np
import pytest
import yaml

import tfcompress
from tfcompress import Recipe
from tfcompress._keras import keras
from tfcompress.cli import main
from tfcompress.errors import TfcompressError
from tfcompress.tuning import (
    SearchSpace,
    TuningError,
    load_results,
    pareto_front,
    parse_constraint,
    parse_objectives,
    tune,
)
from tfcompress.tuning.algorithms import canonical_algorithm
from tfcompress.tuning.objectives import PENALTY, Constraint, score
from tfcompress.tuning.oracle import make_oracle, oracle_seed
from tfcompress.tuning.search import format_params
from tfcompress.tuning.trial import TrialContext, failure_reason, weight_seed
from tfcompress.tuning.tuner import CompressionTuner

TINY_SPACE = {"learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"}, "final_sparsity": [0.5, 0.8]}
TINY_RECIPE = {"pruning": {"epochs": 1}, "quantization": None, "batch_size": 64}


def tiny_model(nan=False):
    """~2.6k parameters on 8×8 inputs; ``nan=True`` outputs NaN."""
    L = keras.layers
    init = keras.initializers.Constant(float("nan")) if nan else "glorot_uniform"
    return keras.Sequential([
        L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu", name="conv"), L.Flatten(),
        L.Dense(10, activation="softmax", kernel_initializer=init, name="out"),
    ], name="tiny")


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    tiny_model().save(path)
    return str(path)


# --- space ----------------------------------------------------------------
def test_space_yaml_round_trip_and_kinds():
    space = SearchSpace.default()
    again = SearchSpace.from_yaml_string(space.to_yaml())
    assert again == space and again.fingerprint() == space.fingerprint()
    p = space.params
    assert p["learning_rate"].kind == "float" and p["learning_rate"].sampling == "log"
    assert p["batch_size"].kind == "choice" and p["qat_epochs"].kind == "int"
    hp = space.hyperparameters()
    assert {"learning_rate", "batch_size", "optimizer", "lr_decay", "final_sparsity"} <= {h.name for h in hp.space}


def test_default_space_follows_recipe_stages():
    # Clustering and distillation are searched only where the Recipe has them
    # and the base recipe enables them.
    assert "cluster_count" not in SearchSpace.default(Recipe()).names
    if "clustering" in Recipe.__dataclass_fields__:
        from tfcompress import Clustering

        assert "cluster_count" in SearchSpace.default(Recipe(clustering=Clustering())).names


@pytest.mark.parametrize("spec, message", [
    ({}, "search space is empty"),
    ({"learning_rate": {"min": 0.1, "max": 0.01}}, "min (0.1) is greater than max (0.01)"),
    ({"learning_rate": []}, "empty list"),
    ({"learning_rte": [0.1]}, "unknown parameter 'learning_rte'"),
    ({"optimizer": ["adam", "lion"]}, "optimizer value 'lion'"),
    ({"learning_rate": {"min": 0, "max": 1, "sampling": "log"}}, "log sampling needs min > 0"),
    ({"pruning_begin": {"min": 0.0, "max": 0.6}, "pruning_end": [0.5, 0.9]}, "keep every pruning_begin below"),
    ({"decay_rate": {"min": 0.5, "max": 0.9}}, "add lr_decay"),
])
def test_bad_space_is_one_line_error(spec, message):
    with pytest.raises(TuningError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        SearchSpace(spec)
    assert "\n" not in str(e.value)


def test_values_make_a_valid_recipe():
    space = SearchSpace.default()
    base = Recipe()
    values = {"learning_rate": 3e-3, "batch_size": 64, "optimizer": "sgd", "final_sparsity": 0.7,
              "pruning_begin": 0.1, "pruning_end": 0.6, "pruning_frequency": 25, "qat_epochs": 1,
              "lr_decay": "cosine", "cosine_alpha": 0.1, "tuner/epochs": 2}
    r = space.recipe(values, base)
    assert (r.learning_rate, r.batch_size, r.optimizer.name) == (3e-3, 64, "sgd")
    assert (r.pruning.final_sparsity, r.pruning.begin, r.pruning.end, r.pruning.frequency) == (0.7, 0.1, 0.6, 25)
    assert r.quantization.epochs == 1
    assert Recipe.from_yaml_string(r.to_yaml()) == r
    assert "decay=cosine" in format_params(values) and "ep=2" in format_params(values)
    # Bayesian optimisation proposes numpy scalars; recipes get Python ones.
    r2 = space.recipe({"batch_size": np.int64(32), "pruning_frequency": np.int64(10),
                       "final_sparsity": np.float64(0.6)})
    assert type(r2.batch_size) is int and type(r2.pruning.frequency) is int and type(r2.pruning.final_sparsity) is float


def test_training_names_are_recipe_fields():
    """A trial is a recipe: every searched training value lands in a recipe field."""
    from tfcompress.schedules import Optimizer, Schedule

    space = SearchSpace({"optimizer": ["sgd", "adamw"], "momentum": [0.5, 0.9], "weight_decay": [0.0, 0.01],
                         "lr_decay": ["none", "exponential", "inverse_time", "polynomial", "cosine", "plateau"],
                         "decay_rate": [0.5], "warmup_epochs": [0.0, 1.0], "decay_power": [2.0],
                         "plateau_factor": [0.5], "plateau_patience": [1]})
    r = space.recipe({"optimizer": "sgd", "momentum": 0.5, "weight_decay": 0.01, "lr_decay": "cosine",
                      "warmup_epochs": 1.0, "cosine_alpha": 0.1})
    assert r.optimizer == Optimizer("sgd", momentum=0.5, weight_decay=0.01)
    assert r.train.lr_schedule == Schedule("cosine", warmup_epochs=1.0, alpha=0.1) and r.lr_schedule is None
    assert space.recipe({"lr_decay": "none"}).train.lr_schedule == Schedule("constant")
    assert space.recipe({"optimizer": "adamw", "lr_decay": "plateau", "plateau_patience": 1.0}).train.lr_schedule \
        == Schedule("plateau", patience=1)
    with pytest.raises(TuningError, match="momentum is used only with optimizer"):
        SearchSpace({"momentum": [0.9]})


# --- objectives, constraints, Pareto -----------------------------------------
def test_objectives_and_constraints():
    assert parse_objectives(None) == ["accuracy", "size_kb", "latency_ms"]
    assert parse_objectives("latency, accuracy") == ["latency_ms", "accuracy"]
    with pytest.raises(TuningError, match="unknown objective 'speed'"):
        parse_objectives("accuracy,speed")
    c = parse_constraint("latency_ms <= 0.5")
    assert (c.metric, c.op, c.bound) == ("latency_ms", "<=", 0.5) and str(c) == "latency_ms<=0.5"
    assert parse_constraint("size<=20").ok({"size_kb": 19})
    assert not parse_constraint("accuracy>=0.9").ok({"accuracy": 0.8})
    for bad in ("latency=0.5", "flops<=3", "size_kb<=abc"):
        with pytest.raises(TuningError):
            parse_constraint(bad)
    hp = SearchSpace.default().hyperparameters()
    with pytest.raises(TuningError, match="unknown algorithm 'grid'"):
        make_oracle("grid", hp)
    # Bayesian optimisation leaves its random start after a quarter of the trials.
    assert make_oracle("BayesianOptimization", hp, max_trials=20).num_initial_points == 5
    assert make_oracle("hyperband", hp, max_trials=7, max_epochs=3).max_trials == 7


@pytest.mark.parametrize("text, bound", [
    ("size_kb<=20.0000001", 20.0000001),   # {:g} wrote 20: a different constraint
    ("size_kb<=1234567", 1234567.0),       # {:g} wrote 1.23457e+06
    ("latency_ms<=0.123456789", 0.123456789),
    ("accuracy>=0.9", 0.9),
    ("size_kb<1e-07", 1e-07),
])
def test_constraint_bounds_travel_at_full_precision(text, bound):
    """Constraints reach settings.json, worker command lines and trial
    processes as text: the text reads back as the same bound."""
    c = parse_constraint(text)
    assert c.bound == bound and str(c) == text
    assert parse_constraint(str(c)) == c
    assert str(Constraint("size_kb", "<=", 20.0)) == "size_kb<=20"  # whole numbers stay short


def test_trial_settings_reach_a_trial_process_unchanged():
    """The one dataclass of a trial's settings, as the child process rebuilds it."""
    c = parse_constraint("size_kb<=20.0000001")
    ctx = TrialContext(tiny_model, SearchSpace(TINY_SPACE), Recipe.from_dict(TINY_RECIPE), ["accuracy"], [c],
                       epochs=1, max_epochs=2, train=([1], [2]), validation=([3], [4]), seed=None)
    again = TrialContext.from_payload(ctx.to_payload())
    assert again.constraints == (c,) and again.constraints[0].bound == 20.0000001
    assert again.space == ctx.space and again.base_recipe == ctx.base_recipe
    assert (again.epochs, again.max_epochs, again.train, again.seed, again.penalty) == (1, 2, ([1], [2]), 0, 10.0)


def test_algorithm_names_are_normalised_in_one_place(tmp_path):
    for spelling, name in (("random", "random"), ("RandomSearch", "random"), ("random_search", "random"),
                           ("bayes", "bayesian"), ("Bayesian", "bayesian"), ("BayesianOptimization", "bayesian"),
                           ("bayesian-optimization", "bayesian"), ("HYPERBAND", "hyperband")):
        assert canonical_algorithm(spelling) == name
        assert type(make_oracle(spelling, SearchSpace(TINY_SPACE).hyperparameters())).__name__.lower().startswith(
            {"random": "tfcrandom", "bayesian": "tfcbayesian", "hyperband": "tfchyperband"}[name])
    with pytest.raises(TuningError, match="unknown algorithm 'grid'; use random, bayesian or hyperband"):
        canonical_algorithm("grid")
    t = CompressionTuner(lambda: None, SearchSpace(TINY_SPACE), algorithm="bayes", isolation="session",
                         directory=str(tmp_path))
    assert t.penalty == PENALTY["bayesian"]


def test_tuning_error_is_one_class_in_errors():
    from tfcompress import errors

    assert TuningError is errors.TuningError is tfcompress.TuningError
    assert issubclass(TuningError, TfcompressError) and issubclass(TuningError, ValueError)


def _first_proposals(algorithm, seed, n=3):
    oracle = make_oracle(algorithm, SearchSpace.default().hyperparameters(), max_trials=10, max_epochs=3, seed=seed)
    return [oracle.populate_space(str(i))["values"] for i in range(n)]


@pytest.mark.parametrize("algorithm", ["random", "bayesian", "hyperband"])
def test_seeds_0_and_1_propose_different_trials_and_a_seed_reproduces(algorithm):
    """`seed or 1` made seeds 0 and 1 one search; Keras Tuner turns a seed of 0
    into a random one, so ours are mapped, never to 0."""
    zero, one = _first_proposals(algorithm, 0), _first_proposals(algorithm, 1)
    assert zero[0] != one[0]
    assert one[0] not in zero and zero[0] not in one  # not the same stream, shifted
    assert _first_proposals(algorithm, 0) == zero and _first_proposals(algorithm, 1) == one
    assert _first_proposals(algorithm, None) == zero  # None is the default seed, 0
    assert oracle_seed(None) == oracle_seed(0) == 1 and len({oracle_seed(s) for s in range(-3, 100)}) == 103
    assert all(0 < oracle_seed(s) < 2**32 for s in (-1, 0, 1, 2**31, 2**40))
    with pytest.raises(TuningError, match="seed must be an integer"):
        oracle_seed(0.5)


def test_tuner_seed_none_is_the_default(tmp_path):
    t = CompressionTuner(lambda: None, SearchSpace(TINY_SPACE), isolation="session", seed=None,
                         directory=str(tmp_path))
    assert t.seed == 0 and t.oracle.seed == oracle_seed(0)


def test_weight_seed_of_a_negative_search_seed_is_valid():
    assert weight_seed(0, "3") == 3 and weight_seed(7, "chief") == 7
    for seed, tid in ((-1, "0"), (-5, "2"), (2**32, "1")):
        keras.utils.set_random_seed(weight_seed(seed, tid))  # raised ValueError for seed + id < 0


def test_score_penalty_is_bounded_and_ranks_feasible_first_where_it_must(tmp_path):
    size = [parse_constraint("size_kb<=20")]
    feasible = {"accuracy": 0.60, "size_kb": 18.0, "latency_ms": 1.0}
    near = {"accuracy": 0.80, "size_kb": 22.0, "latency_ms": 1.0}   # 10 % over the bound
    far = {"accuracy": 0.90, "size_kb": 200.0, "latency_ms": 1.0}   # 10x over
    acc = ["accuracy"]
    # Hyperband/random: a broken constraint outranks any accuracy gain.
    assert score(feasible, acc, size, PENALTY["hyperband"]) > score(near, acc, size, PENALTY["hyperband"])
    # Bayesian: a gentle slope (what the Gaussian process fits): near misses with
    # much better accuracy still score well, and nothing falls off a cliff.
    gp = PENALTY["bayesian"]
    assert score(near, acc, size, gp) == pytest.approx(0.70)
    assert score(far, acc, size, gp) == pytest.approx(-0.10)  # violation capped at 1
    assert score(feasible, acc, size, gp) == pytest.approx(0.60)
    # Minimised first objectives score -ln(v): the same relative gain counts the same at any scale.
    a = score({"size_kb": 10.0}, ["size_kb"]) - score({"size_kb": 11.0}, ["size_kb"])
    b = score({"size_kb": 1000.0}, ["size_kb"]) - score({"size_kb": 1100.0}, ["size_kb"])
    assert a == pytest.approx(b) and a > 0
    # The tuner picks the weight from the algorithm.
    hp_space = SearchSpace(TINY_SPACE)
    for algo, want in (("BayesianOptimization", 1.0), ("hyperband", 10.0), ("random", 10.0)):
        t = CompressionTuner(lambda: None, hp_space, algorithm=algo, isolation="session",
                             directory=str(tmp_path / algo))
        assert t.penalty == want


def test_conditional_parameters_cross_grpc_without_stray_output(capsys):
    """Keras Tuner 1.4.8 prints every conditional parameter's parent value when
    it serialises it for chief/worker mode; tfcompress silences that."""
    from keras_tuner.src.engine import conditions

    proto = conditions.Parent("lr_decay", ["cosine"]).to_proto()
    assert proto.parent.name == "lr_decay" and proto.parent.values[0].string_value == "cosine"
    hp = SearchSpace.default().hyperparameters()
    assert any(p.conditions for p in hp.space)  # the default space has conditional parameters
    hp.to_proto()
    assert capsys.readouterr().out == ""


def test_pareto_front_is_non_dominated_set():
    rows = [
        {"accuracy": 0.95, "size_kb": 20, "latency_ms": 1.0},   # best accuracy
        {"accuracy": 0.90, "size_kb": 10, "latency_ms": 1.0},   # smallest
        {"accuracy": 0.89, "size_kb": 12, "latency_ms": 1.0},   # dominated by 1
        {"accuracy": 0.80, "size_kb": 15, "latency_ms": 0.5},   # fastest
        {"accuracy": 0.80, "size_kb": 15, "latency_ms": 0.51},  # a tie within timing noise with 3
    ]
    keys = ["accuracy", "size_kb", "latency_ms"]
    assert pareto_front(rows, keys) == [0, 1, 3, 4]
    assert pareto_front(rows, keys, tolerance={}) == [0, 1, 3]
    assert pareto_front(rows, ["accuracy", "size_kb"]) == [0, 1]
    # Not the summed objective: a point that is best on nothing can still be optimal.
    mid = [{"accuracy": 1.0, "size_kb": 100}, {"accuracy": 0.0, "size_kb": 1}, {"accuracy": 0.6, "size_kb": 50}]
    assert pareto_front(mid, ["accuracy", "size_kb"]) == [0, 1, 2]


def test_failure_reason_takes_the_last_failed_trial_line():
    tb = "Traceback...\nValueError: x\n\nDuring handling...\nkeras_tuner.src.errors.FailedTrialError: NaN loss\n"
    assert failure_reason(tb) == "NaN loss"


# --- a tiny search (in-process trials, one of them NaN) -------------------------
_BUILDS = []


def _sometimes_nan():
    _BUILDS.append(1)
    # Trial 1 builds its model right after seeding with its own seed, weight_seed(0, "1") == 1
    # (the resolver may build the model once more before the trials).
    return tiny_model(nan=int(np.random.get_state()[1][0]) == 1)


def test_search_records_failed_trial_and_goes_on(digits, tmp_path):
    _BUILDS.clear()
    lines = []
    result = tune(_sometimes_nan, digits, space=TINY_SPACE, recipe=TINY_RECIPE, max_trials=3, epochs=1,
                  constraints=["size_kb<=100"], directory=str(tmp_path), isolation="session",
                  timing_runs=5, timing_seconds=0.05, train_subset=400, progress=lines.append,
                  tensorboard=str(tmp_path / "tb"))
    ends = [ln for ln in lines if ln.startswith("trial ")]
    assert len(ends) == 3 and "FAILED: NaN" in ends[1] and "acc" in ends[0]
    # progress inside each trial: its stages and epochs, before the trial's own line
    first = [ln for ln in lines[:lines.index(ends[0])] if ln.startswith("  trial")]
    assert first[0] == "  trial 0: stage 1/2: train, 1 epoch(s)" and first[1].startswith("  trial 0: train epoch 1/1: ")
    assert any(ln.startswith("  trial 0: pruning epoch 1/1: ") for ln in first)
    statuses = [r["status"] for r in result.rows]
    assert statuses == ["COMPLETED", "FAILED", "COMPLETED"]
    assert "NaN" in result.rows[1]["reason"]
    done = result.completed
    for r in done:
        m = r["metrics"]
        assert 0 <= m["accuracy"] <= 1 and 0 < m["size_kb"] < 100 and m["latency_ms"] > 0
        assert m["epochs"] == 2  # 1 training + 1 pruning epoch
    assert result.best["trial_id"] in result.pareto
    for name in ("trials.json", "trials.md", "pareto.png", "best_recipe.yaml"):
        assert os.path.getsize(tmp_path / name) > 0
    chosen = Recipe.from_yaml(str(tmp_path / "best_recipe.yaml"))  # what `optimize --recipe` does
    assert chosen == result.recipe() and chosen.quantization is None
    assert chosen.pruning.final_sparsity in (0.5, 0.8)
    # the trial's whole recipe: its training run (train stage) and seed, nothing left in comments
    assert chosen.train.epochs == 1 and chosen.seed == weight_seed(0, result.best["trial_id"])
    assert "schedule used" not in (tmp_path / "best_recipe.yaml").read_text()
    # ... and optimize() with that recipe on a fresh model repeats the trial
    keras.utils.set_random_seed(chosen.seed)
    again_model = tiny_model()
    x, y = digits.train
    rerun = tfcompress.optimize(again_model, (x[:400], y[:400]), digits.validation, recipe=chosen, verbose=0)
    assert rerun.report.optimized["accuracy"] == pytest.approx(result.best["metrics"]["accuracy"], abs=1e-6)
    # TensorBoard: each trial's stages, and its hyperparameters and metrics for the HParams dashboard
    from test_tensorboard import tags

    board = tmp_path / "tb" / "trial_0"
    assert {"epoch_loss", "epoch_learning_rate"} <= tags(board / "train" / "train")
    assert {"_hparams_/session_start_info", "trial/accuracy", "trial/size_kb"} <= tags(board)
    again = load_results(str(tmp_path))
    assert again.pareto == result.pareto and [r["trial_id"] for r in again.rows] == ["0", "1", "2"]


def test_hyperband_trial_continues_from_parent_weights_or_trains_from_scratch(digits, tmp_path):
    """A Hyperband trial resumes its parent's weights; when the parent ran on
    another machine (no shared folder, no file here) it trains all its epochs."""
    x, y = digits.train
    ctx = TrialContext(tiny_model, SearchSpace(TINY_SPACE), Recipe.from_dict(TINY_RECIPE), ["accuracy"], (),
                       epochs=1, max_epochs=2, train=(x[:300], y[:300]), validation=digits.validation,
                       timing_runs=3, timing_seconds=0.01)
    values = {"learning_rate": 3e-3, "final_sparsity": 0.5}
    first = tmp_path / "t0"
    first.mkdir()
    ctx.run({"trial_id": "0", "values": dict(values, **{"tuner/epochs": 1}), "folder": str(first)})
    child = dict(values, **{"tuner/epochs": 2, "tuner/initial_epoch": 1})
    for tid, parent, continued, epochs in (("1", first / "trained.weights.h5", True, 1 + 1),
                                           ("2", tmp_path / "elsewhere" / "trained.weights.h5", False, 2 + 1)):
        folder = tmp_path / f"t{tid}"
        folder.mkdir()
        metrics = ctx.run({"trial_id": tid, "values": child, "folder": str(folder), "parent_weights": str(parent)})
        assert metrics["epochs"] == epochs  # training epochs run here + 1 pruning epoch
        result = json.loads((folder / "result.json").read_text())
        assert result["continued_from_parent"] is continued


# --- CLI ------------------------------------------------------------------------
def _write(path, obj):
    path.write_text(yaml.safe_dump(obj))
    return str(path)


def test_cli_hyperband_unmeetable_constraint_then_refuses_other_space(tiny_file, tmp_path, capsys):
    space = _write(tmp_path / "space.yaml", TINY_SPACE)
    recipe = _write(tmp_path / "recipe.yaml", TINY_RECIPE)
    out = str(tmp_path / "search")
    argv = ["tune", "--model", tiny_file, "--dataset", "digits", "--space", space, "--recipe", recipe,
            "--algorithm", "hyperband", "--epochs", "3", "--max-trials", "4", "--train-subset", "300",
            "--constraint", "size_kb<=0.01", "--dir", out]
    assert main(argv) == 2
    cap = capsys.readouterr()
    progress = [ln for ln in cap.out.splitlines() if re.match(r"trial \d+ \[tuner0\]", ln)]
    assert len(progress) == 4 and all("size" in ln and "latency" in ln and " s " in ln for ln in progress)
    assert "best trials (none meets the constraints)" in cap.out
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no trial meets the constraints: size_kb<=0.01 (best size_kb")
    trials = json.loads((tmp_path / "search" / "trials.json").read_text())
    # Hyperband: three 1-epoch trials, then the best continues to 3 epochs from its saved weights.
    assert [t["values"]["tuner/epochs"] for t in trials["trials"]] == [1, 1, 1, 3]
    last = trials["trials"][3]
    assert last["status"] == "COMPLETED" and last["values"]["tuner/initial_epoch"] == 1
    assert last["metrics"]["epochs"] == 3  # 2 more training epochs + 1 pruning epoch
    assert trials["best"] is None
    assert not os.path.exists(tmp_path / "search" / "best_recipe.yaml")

    # Same folder, different space: refused before any trial runs.
    other = _write(tmp_path / "other.yaml", {"learning_rate": [0.01], "final_sparsity": [0.5, 0.8]})
    argv2 = list(argv)
    argv2[argv2.index(space)] = other
    assert main(argv2) == 2
    msg = capsys.readouterr().err
    assert "refusing to resume" in msg and "search space differs (learning_rate)" in msg


@pytest.mark.parametrize("extra, message", [
    (["--algorithm", "grid"], "unknown algorithm 'grid'"),
    (["--objective", "speed"], "unknown objective 'speed'"),
    (["--constraint", "flops<=1"], "unknown constraint metric 'flops'"),
])
def test_cli_bad_input_one_line(extra, message, tmp_path, capsys):
    assert main(["tune", "--model", "digits_cnn", "--dataset", "digits", "--dir", str(tmp_path)] + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_empty_space_file(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert main(["tune", "--model", "digits_cnn", "--dataset", "digits", "--space", str(empty),
                 "--dir", str(tmp_path / "o")]) == 2
    assert "search space is empty" in capsys.readouterr().err


def test_channel_ratio_is_searched_when_the_recipe_prunes_channels():
    from tfcompress import Channels, Recipe
    from tfcompress.tuning.space import SearchSpace

    base = Recipe(channels=Channels(ratio=0.5, epochs=1))
    space = SearchSpace.default(base)
    assert "channel_ratio" in space.names
    assert "channel_ratio" not in SearchSpace.default(Recipe()).names  # no channels stage: not searched
    recipe = SearchSpace.from_dict({"channel_ratio": [0.25, 0.5]}).recipe({"channel_ratio": 0.25}, base=base)
    assert recipe.channels.ratio == 0.25 and recipe.channels.epochs == 1
    with pytest.raises(Exception, match="channel_ratio"):
        SearchSpace.from_dict({"channel_ratio": [0.5, 1.0]})
