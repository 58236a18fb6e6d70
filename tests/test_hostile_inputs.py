"""Hostile inputs get one line of ours at once: no hang, no blow-up, no traceback (issue 29).

Each case builds its hostile file in ``tmp_path``: YAML bombs and deep nesting
in recipes and search spaces, FIFOs where a file is expected, symlink loops in
image folders, damaged ``.npz`` files and images, and inconsistent options.
Each asserts the error type (ours), that the message is one line naming the
problem, and that it came within seconds; on the command line, exit status 2
with exactly one ``error:`` line and no traceback.
"""

import time

import pytest

from tfcompress.errors import RecipeError, TuningError
from tfcompress.recipe import Recipe
from tfcompress.tuning.space import SearchSpace


def _one_line(e, *fragments):
    msg = str(e.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def _cli_error(capsys, argv, limit=30):
    """Runs ``tfcompress ARGV``; returns its one ``error:`` line (exit 2, no traceback, within ``limit`` s)."""
    from tfcompress.cli import main

    t0 = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refusals
        code = e.code
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    assert seconds < limit, f"took {seconds:.1f} s"
    return lines[0]


# --- 1. YAML: one bounded reader for recipes and search spaces ------------------------------

def _laughs(levels=9):
    """A 'billion laughs': each level lists the one before 9 times (9**levels values from ~300 bytes)."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


YAML_CASES = {
    # name: (text, fragments of the message)
    "billion laughs": (_laughs(), ["aliases that expand to more than 10000 values", "YAML bomb"]),
    "laughs under a field": (_laughs(6).replace("l5: ", "learning_rate: "),
                             ["aliases that expand to more than 10000 values"]),
    "too many aliases": ("b: &b 1\n" + "".join(f"k{i}: *b\n" for i in range(60)), ["more than 50 aliases"]),
    "recursive alias": ("learning_rate: &x [*x]\n", ["alias *x inside its own anchor"]),
    "deep flow nesting": ("learning_rate: " + "[" * 5000 + "]" * 5000 + "\n", ["nests deeper than 50 levels"]),
    "deep block nesting": ("".join(" " * i + f"k{i}:\n" for i in range(200)) + " " * 200 + "v\n",
                           ["nests deeper than 50 levels"]),
    "duplicate key": ("learning_rate: [0.1]\nbatch_size: [8]\nlearning_rate: [0.2]\n",
                      ["has the key 'learning_rate' twice (lines 1 and 3)", "delete one"]),
}


@pytest.mark.parametrize("kind", ["recipe", "space"])
@pytest.mark.parametrize("case", list(YAML_CASES))
def test_yaml_bombs_and_nesting_are_refused_at_once(tmp_path, kind, case):
    text, fragments = YAML_CASES[case]
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    load, error = (Recipe.from_yaml, RecipeError) if kind == "recipe" else (SearchSpace.from_yaml, TuningError)
    t0 = time.perf_counter()
    with pytest.raises(error) as e:
        load(str(path))
    assert time.perf_counter() - t0 < 1
    assert str(path) in _one_line(e, *fragments)


def test_the_laughs_are_small_and_would_blow_up():
    """The bomb is a few hundred bytes; yaml.safe_load builds it (shared), but printing it would need GBs."""
    import yaml

    text = _laughs()
    assert len(text) < 500
    data = yaml.safe_load(text)
    assert len(data["l8"]) == 9 and data["l8"][0] is data["l8"][1]  # 9**9 strings, when expanded


def test_big_values_are_quoted_briefly(tmp_path):
    """A value of 100k items (no alias) gets a message of one short line, not a 600 kB repr."""
    path = tmp_path / "recipe.yaml"
    path.write_text("learning_rate: [" + ", ".join(["1"] * 100_000) + "]\n")
    with pytest.raises(RecipeError) as e:
        Recipe.from_yaml(path)
    assert len(_one_line(e, "learning_rate must be float", "...")) < 200
    with pytest.raises(TuningError) as e:
        SearchSpace({"batch_size": {"min": list(range(100_000)), "max": 2}})
    assert len(_one_line(e, "min and max must be finite numbers", "...")) < 300


def test_anchors_within_limits_still_load(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("pruning: &p {final_sparsity: 0.5, epochs: 2}\nclustering: {number_of_clusters: 8}\n")
    assert Recipe.from_yaml(path).pruning.final_sparsity == 0.5
    space = SearchSpace.from_yaml_string("final_sparsity: &s [0.5, 0.8]\nchannel_ratio: [0.25]\n")
    assert space.params["final_sparsity"].values() == [0.5, 0.8]
    assert SearchSpace.from_yaml_string("learning_rate: {min: 1e-4, max: 1e-2, sampling: log}\n") \
        .params["learning_rate"].kind == "float"  # YAML 1.2 floats, as in recipes


@pytest.mark.parametrize("command", ["optimize", "check", "tune"])
def test_yaml_bomb_on_the_command_line(capsys, tmp_path, command):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_laughs())
    argv = {
        "optimize": ["optimize", "--model", "digits_cnn", "--dataset", "digits", "--recipe", str(bomb),
                     "--out", str(tmp_path / "out")],
        "check": ["check", "digits_cnn", "--recipe", str(bomb)],
        "tune": ["tune", "--model", "digits_cnn", "--dataset", "digits", "--space", str(bomb),
                 "--dir", str(tmp_path / "t"), "--isolation", "session"],
    }[command]
    assert "aliases that expand to more than 10000 values" in _cli_error(capsys, argv)
