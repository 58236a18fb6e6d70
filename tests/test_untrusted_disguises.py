"""Disguised Lambda layers: no spelling of a config runs the file's code.

tests/test_untrusted.py covers a plain ``Lambda``; here its config is rewritten
the ways an attacker would (each found to bypass a check on the spelling):
whitespace before an ``.h5`` file's JSON, a ``class_name`` that tfcompress
registers (``NoOpActivation``) with ``registered_name: "Lambda"``, a dotted
``layers.Lambda``, a function from an arbitrary module (``pydoc.pipepager``
runs a shell), a Lambda inside a nested model, Keras 3 files, SavedModel
metadata hidden in the object graph behind an empty ``keras_metadata.pb``.
Every file goes through every entry point with the default (safe) settings
and the marker its code would write must not appear. A seeded fuzzing pass
mutates the Lambda entry further and checks the same on the loader.
"""

import importlib
import json
import random
import shutil
import sys
import time
import zipfile

import h5py
import numpy as np
import pytest

import tfcompress
import tflite_export
from tfcompress._keras import custom_objects, keras
from tfcompress.cli import main
from tflite_export import ExportError, loader
from tflite_export import cli as export_cli
from tflite_export.trust import unsafe_entries

PAYLOAD = "tfc_disguise_payload"


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    """An importable module whose function writes a marker: what a file names as its 'function'."""
    root = tmp_path_factory.mktemp("payload")
    marker = root / "marker"
    (root / f"{PAYLOAD}.py").write_text(
        f"def touch(x, path={str(marker)!r}):\n    open(path, 'w').write('ran')\n    return x\n")
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    yield root, marker
    sys.path.remove(str(root))
    sys.modules.pop(PAYLOAD, None)


def _base_files(root, marker):
    """A tf_keras model whose Lambda writes the marker, as .keras and .h5.

    In .h5 files (tf_keras's legacy loader ignores safe_mode) the Lambda's own
    marshalled bytecode is the payload; in .keras files the edits below point
    it at a module function, which tf_keras's safe mode does not block.
    """
    ns = {}
    exec(f"def evil(t):\n    open({str(marker)!r}, 'w').write('ran')\n    return t * 2.0\n", ns)  # noqa: S102
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    x = keras.layers.Lambda(ns["evil"], name="evil")(inp)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="head")(x))
    model.save(str(root / "base.keras"))
    model.save(str(root / "base.h5"))
    if marker.exists():
        marker.unlink()  # building the model ran it
    return model


def _payload_function(module=PAYLOAD, name="touch"):
    return {"module": module, "class_name": "function", "config": name, "registered_name": name}


def _point_at_payload(layer_config, marker, function=None, pydoc=False):
    """Make a Lambda entry's config call the payload (or pydoc.pipepager touching the marker).
    Only for .keras configs: an .h5 Lambda keeps its bytecode (see :func:`_base_files`)."""
    if layer_config.get("_h5"):
        del layer_config["_h5"]
        return
    cfg = layer_config["config"]
    if pydoc:
        cfg["function"] = _payload_function("pydoc", "pipepager")
        cfg["arguments"] = {"cmd": f"touch {marker}"}
        cfg["module"] = "pydoc"
    else:
        cfg["function"] = function or _payload_function()
        cfg["arguments"] = {}
        cfg["module"] = PAYLOAD
    cfg["function_type"] = "function"


def _write_keras(src, dst, edit):
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
    return str(dst)


def _write_h5(src, dst, edit, prefix=""):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        raw = f.attrs["model_config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        for d in loader._walk(config):
            if d.get("class_name") == "Lambda":
                d["_h5"] = True  # consumed by _point_at_payload
        edit(config)
        for d in loader._walk(config):
            d.pop("_h5", None)
        f.attrs["model_config"] = prefix + json.dumps(config)
    return str(dst)


def _lambda_entry(config):
    for d in loader._walk(config):
        if d.get("name") == "evil" or (isinstance(d.get("config"), dict) and d["config"].get("name") == "evil"):
            if "class_name" in d:
                return d
    raise AssertionError("no Lambda entry")


def _disguise(cls, registered="Lambda", module="tf_keras.layers", pydoc=False):
    def edit(config, marker):
        e = _lambda_entry(config)
        e["class_name"], e["registered_name"], e["module"] = cls, registered, module
        _point_at_payload(e, marker, pydoc=pydoc)
    return edit


def _plain(pydoc=False):
    def edit(config, marker):
        _point_at_payload(_lambda_entry(config), marker, pydoc=pydoc)
    return edit


def _nested(config, marker):
    """The Lambda moved into a nested Functional model (the outer model wraps the inner one)."""
    inner = json.loads(json.dumps(config))
    inner["config"]["name"] = "inner"
    _point_at_payload(_lambda_entry(inner), marker)
    entry = {"class_name": "Functional", "module": "tf_keras.src.engine.functional", "registered_name": "Functional",
             "name": "inner", "config": inner["config"], "inbound_nodes": [[["input_1", 0, 0, {}]]]}
    layers = config["config"]["layers"]
    input_name = layers[0]["config"]["name"]
    entry["inbound_nodes"] = [[[input_name, 0, 0, {}]]]
    config["config"]["layers"] = [layers[0], entry]
    config["config"]["output_layers"] = [["inner", 0, 0]]


KERAS_DISGUISES = {
    "noop_activation": _disguise("NoOpActivation"),
    "noop_activation_pydoc": _disguise("NoOpActivation", pydoc=True),
    "dotted_layers_lambda": _disguise("layers.Lambda", registered=None, module="tf_keras"),
    "keras_module": _disguise("Dense", module="keras.layers"),
    "unknown_class": _disguise("Identity2"),
    "custom_prefix": _disguise("Dense", registered="Custom>Lambda"),
    "plain_payload": _plain(),
    "plain_pydoc": _plain(pydoc=True),
    "nested_functional": _nested,
}
H5_PREFIXES = {"newline_space": "\n ", "tab": "\t", "crlf": " \r\n", "bom": "\ufeff"}


@pytest.fixture(scope="module")
def disguised(payload, tmp_path_factory):
    root, marker = payload
    out = tmp_path_factory.mktemp("disguised")
    _base_files(out, marker)
    files = {}
    for name, edit in KERAS_DISGUISES.items():
        files[f"{name}.keras"] = _write_keras(out / "base.keras", out / f"{name}.keras", lambda c, e=edit: e(c, marker))
        files[f"{name}.h5"] = _write_h5(out / "base.h5", out / f"{name}.h5", lambda c, e=edit: e(c, marker))
    for name, prefix in H5_PREFIXES.items():
        files[f"ws_{name}.h5"] = _write_h5(out / "base.h5", out / f"ws_{name}.h5", lambda c: None, prefix=prefix)
        files[f"ws_{name}_payload.h5"] = _write_h5(out / "base.h5", out / f"ws_{name}_payload.h5",
                                                    lambda c: _plain()(c, marker), prefix=prefix)
    files["hidden_metadata_savedmodel"] = _hidden_metadata_savedmodel(out)
    files.update(_keras3_files(out, marker))
    return files, marker


def _hidden_metadata_savedmodel(out):
    """A SavedModel whose keras_metadata.pb is empty and whose Lambda metadata sits in saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tf_keras.protobuf import saved_metadata_pb2

    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0, name="evil")(inp))
    folder = out / "hidden_sm"
    model.save(str(folder), save_format="tf")
    meta = saved_metadata_pb2.SavedMetadata()
    meta.ParseFromString((folder / "keras_metadata.pb").read_bytes())
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((folder / "saved_model.pb").read_bytes())
    nodes = sm.meta_graphs[0].object_graph_def.nodes
    for n in meta.nodes:
        nodes[n.node_id].user_object.metadata = n.metadata
    (folder / "saved_model.pb").write_bytes(sm.SerializeToString())
    (folder / "keras_metadata.pb").write_bytes(saved_metadata_pb2.SavedMetadata().SerializeToString())
    return str(folder)


def _keras3_files(out, marker):
    import keras as k3

    inp = k3.Input((4,))
    model = k3.Model(inp, k3.layers.Lambda(lambda t: t * 2.0, name="evil")(inp))
    base = out / "k3_base.keras"
    model.save(str(base))
    files = {}
    for name, edit in {"k3_plain": _plain(), "k3_noop": _disguise("NoOpActivation", module="keras.layers")}.items():
        files[f"{name}.keras"] = _write_keras(base, out / f"{name}.keras", lambda c, e=edit: e(c, marker))
    model.save(str(out / "k3_base.h5"))
    files["k3_plain.h5"] = _write_h5(out / "k3_base.h5", out / "k3_plain.h5", lambda c: _plain()(c, marker))
    return files


def _entry_points(path, tmp):
    out = str(tmp / "m.tflite")
    return {
        "loader.load_model": lambda: loader.load_model(path),
        "tfcompress.load_model": lambda: tfcompress.load_model(path),
        "tflite_export.export": lambda: tflite_export.export(path, out, mode="float32"),
        "cli export": lambda: main(["export", path, "--mode", "float32", "--out", out]),
        "cli check": lambda: main(["check", path, "--no-convert"]),
        "python -m tflite_export export": lambda: export_cli.main(["export", path, "--mode", "float32",
                                                                    "--out", out]),
    }


def _settle(marker):
    # pydoc.pipepager starts a shell and returns: give it time to write before looking.
    for _ in range(10):
        if marker.exists():
            return
        time.sleep(0.05)


def test_payload_really_runs_when_the_user_opts_in(disguised, tmp_path):
    files, marker = disguised
    # The two bypasses and their relatives; the other disguises fail in Keras before any code runs
    # when safe mode is off, but are refused all the same.
    for name in ("noop_activation.keras", "noop_activation_pydoc.keras", "plain_payload.keras", "ws_newline_space.h5",
                 "ws_tab.h5", "plain_payload.h5", "nested_functional.h5"):
        if marker.exists():
            marker.unlink()
        try:
            loader.load_model(files[name], safe_mode=False)
        except ExportError:
            pass  # the payload returns its input unchanged or pipepager fails after running: the load may fail
        time.sleep(0.5)
        assert marker.exists(), f"{name}: the control file did not run its payload, so the test proves nothing"
    marker.unlink()


@pytest.mark.parametrize("name", sorted([*[f"{k}.keras" for k in KERAS_DISGUISES],
                                          *[f"{k}.h5" for k in KERAS_DISGUISES],
                                          *[f"ws_{k}.h5" for k in H5_PREFIXES],
                                          *[f"ws_{k}_payload.h5" for k in H5_PREFIXES],
                                          "hidden_metadata_savedmodel", "k3_plain.keras", "k3_noop.keras",
                                          "k3_plain.h5"]))
def test_no_disguise_runs_on_any_entry_point(disguised, name, tmp_path, capsys):
    files, marker = disguised
    if marker.exists():
        marker.unlink()
    path = files[name]
    for entry, call in _entry_points(path, tmp_path).items():
        try:
            rc = call()
        except (ExportError, tfcompress.UnsupportedModelError) as e:
            assert "\n" not in str(e), (entry, str(e))
        else:
            assert rc == 2, f"{entry} accepted {name} (rc {rc})"
            err = capsys.readouterr().err
            assert "Traceback" not in err and err.count("error:") == 1, (entry, err[-1500:])
        assert not marker.exists(), f"{entry}: the code in {name} ran"
        assert not (tmp_path / "m.tflite").exists(), f"{entry} wrote a .tflite for {name}"
    _settle(marker)
    assert not marker.exists(), f"the code in {name} ran (a shell it started wrote the marker late)"


def test_disguised_lambda_message_names_the_layer_and_the_spelling(disguised):
    files, _ = disguised
    with pytest.raises(ExportError) as e:
        loader.load_model(files["noop_activation.keras"])
    assert "evil (a Lambda layer spelled 'NoOpActivation')" in str(e.value) and "--unsafe" in str(e.value)
    with pytest.raises(ExportError, match="Lambda layer.s. evil"):
        loader.load_model(files["ws_tab.h5"])  # whitespace no longer hides the config


def test_safe_files_still_load(tmp_path):
    # The rules refuse nothing Keras, TF-MOT or tfcompress write themselves.
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", kernel_regularizer="l2")(inp)
    x = tf.nn.relu6(x)  # a TFOpLambda in the numeric namespace
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)]))
    for i, (m, ext) in enumerate([(model, ".h5"), (model, ".keras"), (pruned, ".h5")]):
        path = str(tmp_path / f"m{i}{ext}")
        m.save(path)
        assert unsafe_entries(loader.read_config(path)[2]) == [], path
        loader.load_model(path)
    import keras as k3

    k_in = k3.Input((8, 8, 3))
    k_out = k3.layers.Dense(2, activation="softmax")(k3.layers.Flatten()(k3.layers.Rescaling(1 / 255)(k_in)))
    k3.Model(k_in, k_out).save(str(tmp_path / "k3.keras"))
    assert tfcompress.load_model(str(tmp_path / "k3.keras")).output_shape == (None, 2)


@pytest.mark.parametrize("entry,reason", [
    ({"class_name": "function", "module": "builtins", "config": "exec"}, "Python built-in 'exec'"),
    ({"class_name": "function", "module": "builtins", "config": "relu"}, None),
    ({"class_name": "TFOpLambda", "config": {"name": "op", "function": "io.gfile.remove"}}, "tf.io.gfile.remove"),
    ({"class_name": "TFOpLambda", "config": {"name": "op", "function": "load_op_library"}}, "tf.load_op_library"),
    ({"class_name": "TFOpLambda", "config": {"name": "op", "function": "compat.v1.py_func"}}, "py_func"),
    ({"class_name": "TFOpLambda", "config": {"name": "op", "function": "nn.relu6"}}, None),
    ({"class_name": "TFOpLambda", "config": {"name": "op", "function": "__operators__.add"}}, None),
    ({"class_name": "TorchModuleWrapper", "module": "keras.layers", "config": {"name": "t"}}, "pickled torch"),
    ({"class_name": "Dense", "module": "antigravity", "config": {"name": "d"}}, "module 'antigravity'"),
    ({"class_name": "Dense", "module": "keras.layers", "config": {"name": "d", "function_type": "raw"}},
     "function_type"),
    ({"class_name": ["Lambda"], "config": {"name": "d"}}, "not a string"),
])
def test_rules_on_single_entries(entry, reason):
    found = unsafe_entries({"class_name": "Functional", "config": {"layers": [entry]}})
    if reason is None:
        assert found == []
    else:
        assert len(found) == 1 and reason in found[0][1], found


def test_an_unparsed_config_is_never_called_safe():
    assert unsafe_entries("\n {\"class_name\": \"Lambda\"}")  # a string is not a config: refused
    deep = cur = {}
    for _ in range(300):
        cur["config"] = {"class_name": "Dense"}
        cur = cur["config"]
    assert unsafe_entries(deep)


def test_no_keras_module_exports_a_lambda_under_another_name():
    # The rules decide by name: that holds while every Lambda class is exported as "Lambda".
    import keras as k3

    bases = (keras.layers.Lambda, k3.layers.Lambda)
    aliases = []
    for name, mod in list(sys.modules.items()):
        if name.split(".")[0] not in ("tf_keras", "keras", "tensorflow_model_optimization", "tfcompress"):
            continue
        for attr, value in list(vars(mod).items()):
            if isinstance(value, type) and issubclass(value, bases) and attr != "Lambda":
                aliases.append(f"{name}.{attr}")
    assert not aliases
    assert not [k for k, v in custom_objects().items() if isinstance(v, type) and issubclass(v, bases)]


def _mutant(config, marker, rng, names):
    e = _lambda_entry(config)
    e["class_name"] = rng.choice(["Lambda", "layers.Lambda", "Dense", rng.choice(names)])
    e["registered_name"] = rng.choice([None, "Lambda", "Custom>Lambda", e["class_name"], "Dense"])
    module = rng.choice([None, "tf_keras.layers", "keras.layers", "keras", "tf_keras", PAYLOAD])
    if module is None:
        e.pop("module", None)
    else:
        e["module"] = module
    fn = rng.choice([_payload_function(), _payload_function("builtins", "touch"),
                     {"class_name": "function", "config": "touch"}, "touch"])
    _point_at_payload(e, marker, function=fn)
    if rng.random() < 0.3:
        e["config"].pop("function_type")
    return config


def test_fuzzed_lambda_configs_never_run(payload, tmp_path):
    """60 seeded mutants of the Lambda entry (class, registered name, module, function spelling,
    whitespace): each is refused, or Keras loads it without running the payload."""
    _, marker = payload
    _base_files(tmp_path, marker)
    rng = random.Random(0)
    names = sorted(custom_objects())
    refused = loaded = 0
    for i in range(60):
        prefix = rng.choice(["", "", " ", "\n\t"])
        if rng.random() < 0.5:
            path = _write_keras(tmp_path / "base.keras", tmp_path / f"f{i}.keras",
                                lambda c: _mutant(c, marker, rng, names))
        else:
            path = _write_h5(tmp_path / "base.h5", tmp_path / f"f{i}.h5",
                             lambda c: _mutant(c, marker, rng, names), prefix=prefix)
        try:
            loader.load_model(path)
            loaded += 1
        except ExportError:
            refused += 1
        assert not marker.exists(), f"mutant {i} ({path}) ran its payload"
    assert refused >= 55, (refused, loaded)
    np.testing.assert_equal(refused + loaded, 60)
