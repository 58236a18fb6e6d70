"""Hostile inputs for bench_robustness.py: the files, built here by code, and the cases.

Nothing is copied from the tests: the files are generated from a small tf_keras
model whose ``Lambda`` would write a marker file, from YAML written to blow up
a reader, from FIFOs, damaged images and ``.npz`` files and zip bombs. Every
case runs ``tfcompress ...`` or ``python -m tflite_export ...`` in a child
process with a time limit and an address-space cap (``_hostile_report.py``
runs them and writes the tables), and is classified:

* **clear**: exit 2, exactly one ``error:`` line, no traceback, within
  :data:`CLEAR_S` seconds;
* **accepted**: exit 0 where the case says why accepting is right (a link to
  itself leads nowhere and is skipped, as Keras skips it; a few aliases within
  the limits);
* **FAIL**: a traceback, a signal, the time limit, the memory cap, an
  acceptance without a reason, an unclear refusal (several lines, exit 1), or
  the marker written by the file's code.

Each child gets its own marker path (``TFC_BENCH_MARKER``), so cases can run
two at a time; controls run three files with ``--unsafe`` and must write it,
or the disguises prove nothing.
"""

import json
import os
import shutil
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
TIMEOUT_S = 60
MEMORY_CAP = 6 << 30  # RLIMIT_AS of each child: TensorFlow needs ~2-3 GiB of address space
CLEAR_S = 30  # a refusal slower than this is not "at once" (TensorFlow's import takes ~6 s here)
PAYLOAD = "tfc_bench_payload"
MARKER_ENV = "TFC_BENCH_MARKER"
EXPORT_CLI = [sys.executable, "-m", "tflite_export"]
TFCOMPRESS = [os.path.join(BIN, "tfcompress")]

# ----------------------------------------------------------------------------- disguised Lambda files

_EVIL = (
    "def evil(t):\n"
    f"    __import__('builtins').open(__import__('os').environ.get({MARKER_ENV!r}, '/dev/null'), 'w').write('ran')\n"
    "    return t * 2.0\n"
)


def _payload_module(root):
    """A module that writes the marker when imported and when its ``touch`` is called."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, f"{PAYLOAD}.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write("import os\n\n\ndef touch(x=None, **_):\n"
                f"    open(os.environ.get({MARKER_ENV!r}, os.devnull), 'w').write('ran')\n    return x\n\n\ntouch()\n")
    return root


def _dicts(obj):
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _dicts(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _dicts(v)


def _lambdas(config):
    return [d for d in _dicts(config) if d.get("class_name") == "Lambda"]


def _aim(entry, how):
    """Point a Lambda entry of a .keras config at code that writes the marker (.h5 keeps its bytecode)."""
    cfg = entry["config"]
    if how == "pydoc":  # pydoc.pipepager(text, cmd) starts a shell
        fn, module, args = "pipepager", "pydoc", {"cmd": f'touch "${MARKER_ENV}"'}
    else:
        fn, module, args = "touch", PAYLOAD, {}
    cfg.update(function={"module": module, "class_name": "function", "config": fn, "registered_name": fn},
               module=module, arguments=args, function_type="function")


def _respell(cls=None, registered=None, module=None, drop_module=False):
    def edit(entry):
        if cls is not None:
            entry["class_name"] = cls
        entry["registered_name"] = registered
        if drop_module:
            entry.pop("module", None)
        elif module is not None:
            entry["module"] = module
    return edit


#: name -> (what it is, formats, how a Lambda entry is respelled, where its code points in a .keras file)
DISGUISES = {
    "plain Lambda": ("an undisguised Lambda", ("keras", "h5"), None, "payload"),
    "NoOpActivation": ("class_name NoOpActivation, registered_name Lambda, module tf_keras.layers",
                       ("keras", "h5"), _respell("NoOpActivation", "Lambda", "tf_keras.layers"), "payload"),
    "NoOpActivation + pydoc": ("as NoOpActivation, the function pydoc.pipepager running a shell",
                               ("keras",), _respell("NoOpActivation", "Lambda", "tf_keras.layers"), "pydoc"),
    "layers.Lambda": ("dotted class_name layers.Lambda under module tf_keras", ("keras", "h5"),
                      _respell("layers.Lambda", None, "tf_keras"), "payload"),
    "Custom>Lambda": ("class_name Dense, registered_name Custom>Lambda", ("keras", "h5"),
                      _respell("Dense", "Custom>Lambda"), "payload"),
    "pydoc.pipepager": ("a plain Lambda whose function is pydoc.pipepager", ("keras",), None, "pydoc"),
    "module = payload": ("class_name Dense, module naming the payload module (importing it runs it)",
                         ("keras", "h5"), _respell("Dense", "Dense", PAYLOAD), "payload"),
    "nested Functional": ("the Lambda inside a nested Functional model", ("keras", "h5"), None, "payload"),
    "name with a line break and a lone surrogate": (
        "an undisguised Lambda named 'evil\\n\\udb8f' (a message quoting it raw breaks its line or its encoding)",
        ("keras", "h5"), lambda e: e["config"].update(name="evil\n\udb8f"), "payload"),
    "nested + NoOpActivation": ("the NoOpActivation disguise inside a nested Functional model", ("keras", "h5"),
                                _respell("NoOpActivation", "Lambda", "tf_keras.layers"), "payload"),
}
H5_WHITESPACE = {"newline+space": "\n ", "tab": "\t", "space+CRLF": " \r\n", "BOM": "\ufeff"}
ENTRY_POINTS = ("tfcompress check", "tfcompress export", "python -m tflite_export export")


def _rewrite_keras(src, dst, edit):
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    return dst


def _rewrite_h5(src, dst, edit, prefix=""):
    import h5py

    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        raw = f.attrs["model_config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        edit(config)
        f.attrs["model_config"] = prefix + json.dumps(config)
    return dst


def _tf_keras_models(root):
    """A Lambda model and a model holding it as a nested Functional, each saved as .keras and .h5."""
    from tfcompress._keras import keras

    ns = {}
    exec(_EVIL, ns)  # noqa: S102  (the code the disguised files carry; it writes the marker only under the env var)
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    flat = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Lambda(ns["evil"])(inp)))
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Lambda(ns["evil"])(inner_in), name="inner")
    outer_in = keras.Input((4,))
    nested = keras.Model(outer_in, keras.layers.Dense(3, activation="softmax")(inner(outer_in)))
    out = {}
    for name, m in (("flat", flat), ("nested", nested)):
        for fmt in ("keras", "h5"):
            out[name, fmt] = os.path.join(root, f"base_{name}.{fmt}")
            m.save(out[name, fmt])
    return out, flat


def _hidden_savedmodel(root, ns_evil):
    """A SavedModel whose keras_metadata.pb is empty, its Lambda's metadata moved into saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tf_keras.protobuf import saved_metadata_pb2

    from tfcompress._keras import keras

    inp = keras.Input((4,))
    folder = os.path.join(root, "hidden_metadata_savedmodel")
    keras.Model(inp, keras.layers.Lambda(ns_evil)(inp)).save(folder, save_format="tf")
    meta = saved_metadata_pb2.SavedMetadata()
    with open(os.path.join(folder, "keras_metadata.pb"), "rb") as f:
        meta.ParseFromString(f.read())
    graph = saved_model_pb2.SavedModel()
    with open(os.path.join(folder, "saved_model.pb"), "rb") as f:
        graph.ParseFromString(f.read())
    for node in meta.nodes:
        graph.meta_graphs[0].object_graph_def.nodes[node.node_id].user_object.metadata = node.metadata
    with open(os.path.join(folder, "saved_model.pb"), "wb") as f:
        f.write(graph.SerializeToString())
    with open(os.path.join(folder, "keras_metadata.pb"), "wb") as f:
        f.write(saved_metadata_pb2.SavedMetadata().SerializeToString())
    return folder


def _keras3_files(root):
    import keras as k3

    ns = {}
    exec(_EVIL, ns)  # noqa: S102
    inp = k3.Input((4,))
    model = k3.Model(inp, k3.layers.Dense(3)(k3.layers.Lambda(ns["evil"])(inp)))
    base, base_h5 = os.path.join(root, "k3_base.keras"), os.path.join(root, "k3_base.h5")
    model.save(base)
    model.save(base_h5)
    noop = _respell("NoOpActivation", "Lambda", "keras.layers")
    files = {
        ("Keras 3: plain Lambda", "keras"): _rewrite_keras(
            base, os.path.join(root, "k3_plain.keras"), lambda c: [_aim(e, "payload") for e in _lambdas(c)]),
        ("Keras 3: NoOpActivation", "keras"): _rewrite_keras(
            base, os.path.join(root, "k3_noop.keras"),
            lambda c: [(_aim(e, "payload"), noop(e)) for e in _lambdas(c)]),
        ("Keras 3: plain Lambda", "h5"): base_h5,
    }
    return files


def build_disguises(root):
    """``{(disguise, format): path}`` for every disguise, and the descriptions for the table."""
    bases, _ = _tf_keras_models(root)
    files = {}
    for name, (_, formats, respell, how) in DISGUISES.items():
        kind = "nested" if name.startswith("nested") else "flat"
        for fmt in formats:
            def edit(config, fmt=fmt, respell=respell, how=how):
                for e in _lambdas(config):
                    if fmt == "keras":
                        _aim(e, how)
                    if respell is not None:
                        respell(e)
            slug = "".join(ch if ch.isalnum() else "_" for ch in name)
            dst = os.path.join(root, f"{slug}.{fmt}")
            files[name, fmt] = (_rewrite_keras if fmt == "keras" else _rewrite_h5)(bases[kind, fmt], dst, edit)
    for name, prefix in H5_WHITESPACE.items():
        files[f"whitespace ({name}) before model_config", "h5"] = _rewrite_h5(
            bases["flat", "h5"], os.path.join(root, f"ws_{len(files)}.h5"), lambda c: None, prefix=prefix)
    ns = {}
    exec(_EVIL, ns)  # noqa: S102
    files["SavedModel metadata hidden in saved_model.pb", "savedmodel"] = _hidden_savedmodel(root, ns["evil"])
    files.update(_keras3_files(root))
    return files


def disguise_descriptions():
    out = {k: v[0] for k, v in DISGUISES.items()}
    out.update({f"whitespace ({k}) before model_config": f"{v!r} before the .h5 model_config JSON"
                for k, v in H5_WHITESPACE.items()})
    out["SavedModel metadata hidden in saved_model.pb"] = "keras_metadata.pb empty, the Lambda's metadata in " \
                                                          "the object graph (tf_keras's fallback)"
    out["Keras 3: plain Lambda"] = "a Keras 3 file, its Lambda calling the payload (.keras) or its bytecode (.h5)"
    out["Keras 3: NoOpActivation"] = "a Keras 3 .keras file, the NoOpActivation disguise under keras.layers"
    return out


def _model_argv(entry, path, tmp):
    out = os.path.join(tmp, "o.tflite")
    return {
        "tfcompress check": [*TFCOMPRESS, "check", path, "--no-convert"],
        "tfcompress export": [*TFCOMPRESS, "export", path, "--mode", "float32", "--out", out],
        "python -m tflite_export export": [*EXPORT_CLI, "export", path, "--mode", "float32", "--out", out],
    }[entry]


# ----------------------------------------------------------------------------- the other hostile files


def _laughs(levels, width=9):
    rows = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(rows) + "\n"


def yaml_files(root):
    """name -> (path, reason to accept or None)."""
    huge_lines = "".join(f"k{i}: [{', '.join(['0.5'] * 20)}]\n" for i in range(20_000))  # ~2.3 MB, all valid YAML
    texts = {
        "billion laughs, 3 levels (729 values)": (_laughs(3), "within the alias limits: an ordinary bad recipe"),
        "billion laughs, 5 levels (59k values)": (_laughs(5), None),
        "billion laughs, 9 levels (387M values)": (_laughs(9), None),
        "billion laughs, 30 levels x 2": (_laughs(30, 2), None),
        "50k aliases of one anchor": ("x: &x 1\n" + "".join(f"k{i}: *x\n" for i in range(50_000)), None),
        "alias inside its own anchor": ("a: &a [1, *a]\n", None),
        "deep flow nesting (100k [)": ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", None),
        "deep block nesting (300 levels)": ("".join(" " * i + f"k{i}:\n" for i in range(300)) + " " * 300 + "v\n",
                                            None),
        "huge file (2.3 MB of valid YAML)": (huge_lines, None),
        "a C1 control character (U+0093) in UTF-8 text": ("pruning: {final_sparsity: 0.5}\n# \x93\n", None),
        "duplicate key": ("pruning: {final_sparsity: 0.5}\nseed: 1\npruning: {final_sparsity: 0.9}\n", None),
        "duplicate key inside a mapping": ("learning_rate: {min: 0.001, max: 0.01, min: 0.1}\n", None),
    }
    out = {}
    for i, (name, (text, reason)) in enumerate(texts.items()):
        path = os.path.join(root, f"y{i}.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        out[name] = (path, reason)
    path = os.path.join(root, "sparse.yaml")
    with open(path, "wb") as f:  # 200 MB apparent size, sparse: a reader that reads it all would blow up
        f.truncate(200 << 20)
    out["huge file (200 MB, sparse zeros)"] = (path, None)
    return out


def image_folders(root):
    """name -> (folder, reason to accept or None); two classes of 8x8 grey PNGs, then damaged."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)

    def fresh(name):
        folder = os.path.join(root, name)
        for c in ("a", "b"):
            os.makedirs(os.path.join(folder, c))
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(os.path.join(folder, c, f"{i}.png"))
        return folder

    out = {}
    f = fresh("loop_top")
    os.symlink(f, os.path.join(f, "a", "up"))
    out["symlink to the top folder"] = (f, None)
    f = fresh("loop_class")
    os.symlink(os.path.join(f, "b"), os.path.join(f, "b", "again"))
    out["symlink to its own class folder"] = (f, None)
    f = fresh("loop_pair")
    os.makedirs(os.path.join(f, "a", "x"))
    os.symlink(os.path.join(f, "a"), os.path.join(f, "a", "x", "back"))
    out["symlink two levels up"] = (f, None)
    f = fresh("self_link")
    os.symlink(os.path.join(f, "a", "me"), os.path.join(f, "a", "me"))
    out["symlink to itself"] = (f, "a link to itself leads nowhere; skipped, as Keras skips it")
    f = fresh("zero_byte")
    open(os.path.join(f, "a", "0.png"), "wb").close()
    out["zero-byte .png"] = (f, None)
    f = fresh("text_png")
    for c in ("a", "b"):
        with open(os.path.join(f, c, "1.png"), "w", encoding="utf-8") as fh:
            fh.write("this is text, not a PNG\n")
    out["text saved as .png"] = (f, None)
    f = fresh("corrupt_png")
    p = os.path.join(f, "b", "2.png")
    raw = open(p, "rb").read()
    with open(p, "wb") as fh:
        fh.write(raw[:16] + bytes(rng.integers(0, 256, len(raw) - 16, dtype=np.uint8)))
    out["PNG signature, corrupt body"] = (f, None)
    f = fresh("truncated_png")
    p = os.path.join(f, "a", "3.png")
    raw = open(p, "rb").read()
    with open(p, "wb") as fh:
        fh.write(raw[: len(raw) // 3])
    out["truncated .png"] = (f, None)
    return out


def npz_files(root):
    """name -> path of damaged .npz files."""
    import numpy as np

    rng = np.random.default_rng(1)
    good = os.path.join(root, "good.npz")
    np.savez(good, x_train=rng.random((40, 8, 8, 1)).astype("float32"), y_train=np.arange(40) % 2)
    raw = open(good, "rb").read()
    out = {}

    def put(name, data):
        path = os.path.join(root, f"npz{len(out)}.npz")
        with open(path, "wb") as f:
            f.write(data)
        out[name] = path

    put("truncated at half", raw[: len(raw) // 2])
    put("truncated to 100 bytes", raw[:100])
    put("zero bytes", b"")
    comp = os.path.join(root, "comp.npz")
    np.savez_compressed(comp, x_train=rng.random((40, 8, 8, 1)).astype("float32"), y_train=np.arange(40) % 2)
    data = bytearray(open(comp, "rb").read())
    at = data.index(b"x_train.npy") + len("x_train.npy") + 30
    data[at: at + 64] = bytes(rng.integers(0, 256, 64, dtype=np.uint8))
    put("corrupt deflate member", bytes(data))

    def member(header, body):
        header = header + " " * (117 - len(header)) + "\n"
        return b"\x93NUMPY\x01\x00" + bytes([len(header), 0]) + header.encode() + body

    for name, header in (("header claims 40 TB", "{'descr': '<f4', 'fortran_order': False, 'shape': "
                                                  "(100000, 100000, 1000), }"),
                         ("header claims 6 GB (beyond the cap)", "{'descr': '<f8', 'fortran_order': False, "
                                                                 "'shape': (800000000,), }"),
                         ("header with a negative shape",
                          "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 8), }"),
                         ("header that is not a dict", "[1, 2, 3]")):
        path = os.path.join(root, f"npz{len(out)}.npz")
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("x_train.npy", member(header, b"\0" * 64))
            z.writestr("y_train.npy", member("{'descr': '<i8', 'fortran_order': False, 'shape': (8,), }", b"\0" * 64))
        out[name] = path
    path = os.path.join(root, f"npz{len(out)}.npz")
    np.savez(path, x_train=np.array([object()] * 4, dtype=object), y_train=np.arange(4))
    out["object array (pickle)"] = path
    return out, good


def zip_bombs(root, model_keras):
    """name -> path of .keras files whose zip directory promises far more than the file holds."""
    out = {}
    with open(model_keras, "rb") as f:
        base = f.read()

    def bomb(name, claimed, members):
        path = os.path.join(root, f"bomb{len(out)}.keras")
        with open(path, "wb") as f:
            f.write(base)
        with zipfile.ZipFile(path, "a") as z:
            for i in range(members):
                z.writestr(f"assets/p{i}", b"\0" * 512, compress_type=zipfile.ZIP_DEFLATED)
        if claimed:
            data = bytearray(open(path, "rb").read())
            cd = data.index(b"PK\x01\x02")
            for i in range(members):  # the central directory's "uncompressed size" of each member
                at = data.index(f"assets/p{i}".encode(), cd) - 46
                data[at + 24: at + 28] = claimed.to_bytes(4, "little")
            with open(path, "wb") as f:
                f.write(data)
        out[name] = path

    bomb("one member claiming 4 GB", 4_000_000_000, 1)
    bomb("8 members claiming 2 GB each", 2_000_000_000, 8)
    bomb("20,000 members", 0, 20_000)
    path = os.path.join(root, f"bomb{len(out)}.keras")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:  # a real 1 GiB of zeros, packed ~1 MB
        with z.open("config.json", "w") as fh:
            for _ in range(1024):
                fh.write(b" " * (1 << 20))
    out["config.json of 1 GiB of spaces (real deflate)"] = path
    return out


# ----------------------------------------------------------------------------- the cases


def _good_model(root):
    from tfcompress._keras import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(2, activation="softmax")])
    path = os.path.join(root, "m.keras")
    m.save(path)
    return path


def build_cases(root):
    """Every hostile case: ``{"group", "name", "entry", "argv", ...}``, files built under ``root``."""
    payload = _payload_module(os.path.join(root, "payload"))
    files = build_disguises(root)
    model = _good_model(root)
    out = "{work}/out"
    cases = []

    def add(group, name, entry, argv, **kw):
        cases.append({"group": group, "name": name, "entry": entry, "argv": argv, **kw})

    for (name, fmt), path in files.items():
        for entry in ENTRY_POINTS:
            add("untrusted", name, entry, _model_argv(entry, path, "{work}"), fmt=fmt, pythonpath=payload,
                settle=0.5 if "pydoc" in name else 0)
    for name, fmt in (("plain Lambda", "h5"), ("NoOpActivation", "keras"), ("NoOpActivation + pydoc", "keras"),
                      ("whitespace (tab) before model_config", "h5")):
        add("control", f"{name} ({fmt}) with --unsafe", "python -m tflite_export export",
            [*EXPORT_CLI, "export", files[name, fmt], "--unsafe", "--mode", "float32", "--out", "{work}/o.tflite"],
            pythonpath=payload, control=True, settle=1.0)
    for name, (path, reason) in yaml_files(root).items():
        add("yaml", name, "check --recipe", [*TFCOMPRESS, "check", "digits_cnn", "--no-convert", "--recipe", path],
            accept=reason)
        add("yaml", name, "tune --space", [*TFCOMPRESS, "tune", "--model", "digits_cnn", "--dataset", "digits",
                                           "--space", path, "--dir", "{work}/t", "--isolation", "session",
                                           "--max-trials", "1", "--epochs", "1", "--train-subset", "64"],
            accept=reason)
    npzs, good = npz_files(root)
    fifo = {}
    for ext in ("keras", "yaml", "npz", "tflite"):
        fifo[ext] = os.path.join(root, f"fifo.{ext}")
        os.mkfifo(fifo[ext])
    for entry, argv in {
        "optimize --model": [*TFCOMPRESS, "optimize", "--model", fifo["keras"], "--data", good, "--out", out],
        "optimize --recipe": [*TFCOMPRESS, "optimize", "--model", model, "--data", good, "--recipe", fifo["yaml"],
                              "--out", out],
        "optimize --data": [*TFCOMPRESS, "optimize", "--model", model, "--data", fifo["npz"], "--out", out],
        "check MODEL": [*TFCOMPRESS, "check", fifo["keras"]],
        "check --recipe": [*TFCOMPRESS, "check", model, "--recipe", fifo["yaml"]],
        "tune --space": [*TFCOMPRESS, "tune", "--model", model, "--data", good, "--space", fifo["yaml"],
                         "--dir", "{work}/t"],
        "tfcompress export MODEL": [*TFCOMPRESS, "export", fifo["keras"], "--mode", "float32", "--out",
                                    "{work}/o.tflite"],
        "tflite_export export MODEL": [*EXPORT_CLI, "export", fifo["keras"], "--mode", "float32", "--out",
                                       "{work}/o.tflite"],
        "tflite_export export --data": [*EXPORT_CLI, "export", model, "--data", fifo["npz"], "--out",
                                        "{work}/o.tflite"],
        "tflite_export inspect FILE": [*EXPORT_CLI, "inspect", fifo["tflite"]],
    }.items():
        add("fifo", "a FIFO", entry, argv)
    for name, (folder, reason) in image_folders(root).items():
        add("images", name, "check --data", [*TFCOMPRESS, "check", model, "--data", folder, "--no-convert"],
            accept=reason)
    add("images", "symlink to the top folder", "optimize --data",
        [*TFCOMPRESS, "optimize", "--model", model, "--data", os.path.join(root, "loop_top"), "--out", out])
    for name, path in npzs.items():
        add("npz", name, "check --data", [*TFCOMPRESS, "check", model, "--data", path, "--no-convert"])
        add("npz", name, "tflite_export export --data", [*EXPORT_CLI, "export", model, "--data", path, "--out",
                                                         "{work}/o.tflite"])
    for name, path in zip_bombs(root, model).items():
        for entry in ENTRY_POINTS:
            add("zip", name, entry, _model_argv(entry, path, "{work}"))
        add("zip", name, "optimize --model", [*TFCOMPRESS, "optimize", "--model", path, "--data", good, "--out", out])
    return cases
