"""Structure rules the code base keeps, and the bugs found by reading it.

The import graph is built from the source (function-level imports included),
so a cycle hidden inside a function fails here as well as one at the top.
"""

import ast
import pathlib

import numpy as np

import tfcompress
from tfcompress import Channels, Recipe
from tfcompress._keras import keras
from tfcompress.channels.graph import analyze

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {"tfcompress": "tfcompress", "tflite_export": "tflite_export", "tfcompress.models": "models"}
MAX_LINES = 500


def _modules():
    mods = {}
    for pkg, folder in PACKAGES.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            parts = [p for p in f.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            mods[".".join([pkg, *parts])] = f
    return mods


def _known(name, mods):
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name


def import_graph():
    """{module: set of our modules it imports}, from every import statement in it."""
    mods = _modules()
    graph = {}
    for name, f in mods.items():
        is_pkg = f.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                edges.update(_known(a.name, mods) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_pkg else name.split(".")[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join(here + ([base] if base else []))
                for a in node.names:
                    full = f"{base}.{a.name}"
                    edges.add(full if full in mods else _known(base, mods))
        edges.discard("")
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_sees_a_function_level_cycle():
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert find_cycles(graph) == [["a", "b"]]


def test_graph_includes_function_level_imports():
    graph = import_graph()
    # tfcompress.check imports tfcompress.optimize inside check()
    assert "tfcompress.optimize" in graph["tfcompress.check"]


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (move the shared piece to a leaf both import): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_keras_boundary_is_a_leaf():
    # _keras.py sets up TensorFlow/tf_keras/TF-MOT: it must not import anything of ours.
    assert import_graph()["tfcompress._keras"] == set()


def test_tflite_export_never_imports_tfcompress():
    graph = import_graph()
    bad = {m: sorted(e for e in edges if e.startswith("tfcompress"))
           for m, edges in graph.items() if m.startswith("tflite_export")}
    assert not {m: e for m, e in bad.items() if e}


def test_no_module_over_max_lines():
    long = {str(f.relative_to(ROOT)): n for f in _modules().values()
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines; split them along a seam: {long}"


def test_consumers_recorded_after_an_add_merge_stay_in_the_group():
    # 'c' consumes conv b's output after the Add merged b's group into a's:
    # it used to be recorded on the stale group id and dropped from Group.consumers.
    L = keras.layers
    i = L.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", name="a")(i)
    b = L.Conv2D(4, 3, padding="same", name="b")(i)
    c = L.Conv2D(4, 1, name="c")(b)
    d = L.Conv2D(4, 1, name="d")(L.Add(name="add")([a, b]))
    out = L.GlobalAveragePooling2D()(L.Add(name="add2")([c, d]))
    groups = {tuple(g.members): g for g in analyze(keras.Model(i, out)).groups()}
    assert set(groups[("a", "b")].consumers) == {"add", "c", "d"}


def _channels_run(recipe_epochs, epochs):
    """optimize() a tiny two-conv model with only a channels stage; its result."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    i = L.Input((8, 8, 1))
    h = L.Conv2D(8, 3, activation="relu", name="conv1")(i)
    h = L.Conv2D(8, 3, activation="relu", name="conv2")(h)
    model = keras.Model(i, L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(h)))
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    recipe = Recipe(channels=Channels(ratio=0.25, epochs=recipe_epochs), pruning=None, quantization=None)
    return tfcompress.optimize(model, (x, np.arange(32) % 3), recipe=recipe, epochs=epochs, verbose=1,
                               batch_size=16)


def test_epochs_override_is_what_the_channels_stage_prints_and_trains(capsys):
    res = _channels_run(recipe_epochs=3, epochs=1)
    assert "stage 1/1: channels, 1 epoch(s)" in capsys.readouterr().out
    assert res.report.stages[0]["epochs"] == 1


def test_epochs_override_leaves_a_channels_stage_without_fine_tuning_alone(capsys):
    _channels_run(recipe_epochs=0, epochs=2)
    assert "stage 1/1: channels, 0 epoch(s)" in capsys.readouterr().out
