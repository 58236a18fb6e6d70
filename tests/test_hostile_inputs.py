"""Hostile inputs get one line of ours at once: no hang, no blow-up, no traceback.

Each case builds its hostile file in ``tmp_path``: YAML bombs and deep nesting
in recipes and search spaces, FIFOs where a file is expected, symlink loops in
image folders, damaged ``.npz`` files and images, and inconsistent options.
Each asserts the error type (ours), that the message is one line naming the
problem, and that it came within seconds; on the command line, exit status 2
with exactly one ``error:`` line and no traceback.
"""

import json
import os
import shutil
import threading
import time
import zipfile

import numpy as np
import pytest

from tfcompress import datasets
from tfcompress.errors import DataError, RecipeError, TuningError, UnsupportedModelError
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
    # refused before expanding anything: ~0.2 s here (a bomb would take minutes and GBs); 5 s leaves room for
    # a loaded CI machine (1.1 s was seen with two test workers on two cores)
    assert time.perf_counter() - t0 < 5
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


@pytest.mark.parametrize("text, char", [("pruning: {final_sparsity: 0.5}\n# \x93\n", "#x0093"),
                                        ('learning_rate: "a\x00b"\n', "#x0000"), ("a: \x1b[31m\n", "#x001b")])
def test_a_control_character_in_yaml_is_one_line(tmp_path, capsys, text, char):
    """Found by tests/test_fuzz.py: PyYAML's reader refuses control characters when the loader is built,
    which was outside the reader's try: yaml.reader.ReaderError, a traceback on the command line."""
    with pytest.raises(RecipeError) as e:
        Recipe.from_yaml_string(text)
    _one_line(e, f"holds the control character {char} at offset")
    with pytest.raises(TuningError) as e:
        SearchSpace.from_yaml_string(text)
    _one_line(e, char)
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    if "\x00" not in text:  # a NUL byte is refused earlier, as a binary file
        assert char in _cli_error(capsys, ["check", "digits_cnn", "--no-convert", "--recipe", str(path)])


# --- 2. FIFOs and symlink loops: refused at once, never waited on -------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny 8x8x1 model (.keras and .tflite), good data, and an image folder of two classes."""
    from PIL import Image

    import tflite_export
    from tfcompress._keras import keras

    d = tmp_path_factory.mktemp("hostile")
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(2, activation="softmax")])
    m.save(d / "m.keras")
    tflite_export.export(m, str(d / "m.tflite"), mode="float32")
    rng = np.random.default_rng(0)
    np.savez(d / "good.npz", x_train=rng.random((40, 8, 8, 1)).astype("float32"), y_train=np.arange(40) % 2)
    for c in ("cat", "dog"):
        (d / "images" / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(d / "images" / c / f"{i}.png")
    return d


def _images(files, tmp_path):
    """A fresh copy of the good image folder, to damage."""
    return shutil.copytree(files / "images", tmp_path / "images")


@pytest.fixture
def fifo(tmp_path):
    """``tmp_path/NAME`` as a FIFO. Should anything open it and wait, a writer comes after 20 s, so the
    test fails on its time limit instead of hanging the suite."""
    made = []

    def make(name):
        path = tmp_path / name
        if not path.exists():
            os.mkfifo(path)
            made.append(path)
        return str(path)

    stop = threading.Event()

    def rescue():
        if stop.wait(20):
            return
        for path in made:
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # nobody reading it
                pass

    threading.Thread(target=rescue, daemon=True).start()
    yield make
    stop.set()


def _fifo_cases(files, fifo, tmp_path):
    out = str(tmp_path / "out")
    keras_, tfl, npz = str(files / "m.keras"), str(files / "m.tflite"), str(files / "good.npz")
    return {
        "optimize --model": ["optimize", "--model", fifo("m.keras"), "--data", npz, "--out", out],
        "optimize --recipe": ["optimize", "--model", keras_, "--data", npz, "--recipe", fifo("r.yaml"),
                              "--out", out],
        "optimize --data": ["optimize", "--model", keras_, "--data", fifo("d.npz"), "--out", out],
        "check MODEL": ["check", fifo("m.keras")],
        "tune --model": ["tune", "--model", fifo("m.keras"), "--data", npz, "--dir", out],
        "tune --space": ["tune", "--model", keras_, "--data", npz, "--space", fifo("s.yaml"), "--dir", out],
        "export MODEL": ["export", fifo("m.keras"), "--mode", "float32", "--out", str(tmp_path / "o.tflite")],
        "export --data": ["export", keras_, "--data", fifo("d.npz"), "--out", str(tmp_path / "o.tflite")],
        "inspect FILE": ["inspect", fifo("m.tflite")],
        "bench FILE": ["bench", tfl, fifo("n.tflite")],
    }


FIFO_CASES = ["optimize --model", "optimize --recipe", "optimize --data", "check MODEL", "tune --model",
              "tune --space", "export MODEL", "export --data", "inspect FILE", "bench FILE"]


@pytest.mark.parametrize("case", FIFO_CASES)
def test_a_fifo_is_refused_at_once(capsys, files, fifo, tmp_path, case):
    argv = _fifo_cases(files, fifo, tmp_path)[case]
    line = _cli_error(capsys, argv, limit=15)
    assert "FIFO (named pipe), not a file" in line


def test_a_fifo_through_the_api(files, fifo):
    import tfcompress

    with pytest.raises(UnsupportedModelError) as e:
        tfcompress.load_model(fifo("m.keras"))
    _one_line(e, "is a FIFO (named pipe)")
    with pytest.raises(DataError) as e:
        datasets.from_npz(fifo("d.npz"))
    _one_line(e, "is a FIFO (named pipe)")


def test_a_fifo_named_like_an_image_is_refused(files, fifo, tmp_path):
    folder = _images(files, tmp_path)
    os.rename(fifo("x.png"), folder / "cat" / "x.png")
    with pytest.raises(DataError) as e:
        datasets.from_directory(folder, input_shape=(8, 8, 1))
    _one_line(e, "cat/x.png is a FIFO (named pipe), not an image file")


@pytest.mark.parametrize("target", ["top", "class", "self"])
def test_a_symlink_loop_in_an_image_folder_is_refused(files, tmp_path, target):
    folder = _images(files, tmp_path)
    link = folder / "cat" / "loop"
    os.symlink({"top": folder, "class": folder / "cat", "self": link}[target], link)
    t0 = time.perf_counter()
    if target == "self":  # a link to itself leads nowhere: skipped, as Keras skips it
        assert datasets.from_directory(folder, input_shape=(8, 8, 1)).num_classes == 2
        return
    with pytest.raises(DataError) as e:
        datasets.from_directory(folder, input_shape=(8, 8, 1))
    _one_line(e, "is a symbolic link to", "a folder that contains it", "remove the link")
    assert time.perf_counter() - t0 < 5


def test_a_symlink_loop_on_the_command_line(capsys, files, tmp_path):
    folder = _images(files, tmp_path)
    os.symlink(folder, folder / "dog" / "up")
    line = _cli_error(capsys, ["optimize", "--model", str(files / "m.keras"), "--data", str(folder),
                               "--out", str(tmp_path / "out")])
    assert "dog/up is a symbolic link" in line


def test_links_that_multiply_a_tree_are_capped(files, tmp_path, monkeypatch):
    from tfcompress import _imagefiles

    folder = _images(files, tmp_path)
    for i in range(5):  # no loop: each link is another path to the same images
        os.symlink(folder / "dog", folder / "cat" / f"copy{i}")
    monkeypatch.setattr(_imagefiles, "MAX_ENTRIES", 20)
    with pytest.raises(DataError) as e:
        datasets.from_directory(folder, input_shape=(8, 8, 1))
    _one_line(e, "holds more than 20 files and folders")


# --- 3. damaged .npz files and .keras zip bombs ---------------------------------------------------

def _damaged_npz(files, tmp_path, case):
    raw = (files / "good.npz").read_bytes()
    path = tmp_path / f"{case}.npz"
    if case == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "plain .npy":
        np.save(tmp_path / "a.npy", np.zeros(3))
        os.rename(tmp_path / "a.npy", path)
    elif case == "corrupt member":
        np.savez_compressed(path, x_train=np.zeros((40, 8, 8, 1), "float32"), y_train=np.arange(40) % 2)
        data = bytearray(path.read_bytes())
        start = data.index(b"x_train.npy") + len("x_train.npy")  # the member's deflate stream follows its name
        data[start + 20: start + 60] = os.urandom(40)
        path.write_bytes(bytes(data))
    elif case == "huge header":
        with zipfile.ZipFile(path, "w") as z:  # a header claiming 23 TiB, backed by 80 bytes
            header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2000000, 3000000, 1), }"
            header += " " * (117 - len(header)) + "\n"
            z.writestr("x_train.npy", b"\x93NUMPY\x01\x00" + bytes([len(header), 0]) + header.encode() + b"\0" * 80)
            z.writestr("y_train.npy", b"")
    elif case == "object array":
        np.savez(path, x_train=np.array([{"a": 1}] * 4, dtype=object), y_train=np.arange(4))
    return path


NPZ_CASES = {
    "truncated": "as .npz (",
    "empty": "as .npz (",
    "plain .npy": "as .npz (File is not a zip file)",
    "corrupt member": "as .npz (",
    "huge header": "claims a 2000000x3000000x1 float32 array (21.8 TiB) but the member holds 208 bytes",
    "object array": "x_train.npy holds Python objects, which are never unpickled",
}


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_a_damaged_npz_is_one_line_naming_the_file(files, tmp_path, case):
    path = _damaged_npz(files, tmp_path, case)
    t0 = time.perf_counter()
    with pytest.raises(DataError) as e:
        datasets.load(str(path))
    assert str(path) in _one_line(e, NPZ_CASES[case])
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("command", ["optimize", "export"])
@pytest.mark.parametrize("case", ["truncated", "corrupt member", "huge header"])
def test_a_damaged_npz_on_the_command_line(capsys, files, tmp_path, command, case):
    path = str(_damaged_npz(files, tmp_path, case))
    argv = (["optimize", "--model", str(files / "m.keras"), "--data", path, "--out", str(tmp_path / "out")]
            if command == "optimize" else
            ["export", str(files / "m.keras"), "--data", path, "--out", str(tmp_path / "o.tflite")])
    line = _cli_error(capsys, argv)
    assert path in line and NPZ_CASES[case] in line


def _keras_bomb(files, tmp_path, claimed=4_000_000_000, members=1):
    """The tiny .keras plus members whose directory claims ``claimed`` bytes each (the bytes are few)."""
    path = tmp_path / "bomb.keras"
    shutil.copy(files / "m.keras", path)
    with zipfile.ZipFile(path, "a") as z:
        for i in range(members):
            z.writestr(f"assets/pad{i}.bin", b"\0" * 1000, compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    for i in range(members):  # claim more in the central directory, as an overlapping-member bomb does
        at = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02"))
        at = data.index(f"assets/pad{i}.bin".encode(), at) - 46
        data[at + 24: at + 28] = claimed.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def test_a_keras_zip_bomb_is_refused_before_loading(files, tmp_path):
    import tfcompress

    path = _keras_bomb(files, tmp_path)
    with pytest.raises(UnsupportedModelError) as e:
        tfcompress.load_model(path)
    _one_line(e, "unpacks to 3.7 GiB", "a zip bomb")


def test_a_keras_zip_bomb_on_the_command_line(capsys, files, tmp_path):
    path = str(_keras_bomb(files, tmp_path))
    assert "a zip bomb" in _cli_error(capsys, ["export", path, "--mode", "float32", "--out",
                                               str(tmp_path / "o.tflite")])
    assert "a zip bomb" in _cli_error(capsys, ["check", path])


def test_good_model_and_data_files_still_load(files):
    import tfcompress

    assert tfcompress.load_model(files / "m.keras").output_shape == (None, 2)
    assert len(datasets.load(str(files / "good.npz")).train[0]) == 29  # 40 less 8 test, 3 validation
    from tflite_export.cli import _load_npz

    assert _load_npz(str(files / "good.npz"))[0].shape == (40, 8, 8, 1)


def test_names_in_a_refused_config_are_one_printable_line(tmp_path):
    """Found by tests/test_fuzz.py: a layer or TensorFlow function name holding a line break made the
    safety refusal several lines, and a lone surrogate (JSON's \\udb8f) one that UTF-8 cannot print."""
    from tflite_export import ExportError, loader
    from tflite_export.trust import unsafe_entries

    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "Lambda", "config": {"name": "evil\n\udb8f" + "x" * 500}},
        {"class_name": "TFOpLambda", "config": {"name": "op", "function": "io.gfile\nremove"}},
        {"class_name": "Dense", "module": "os\r\n", "config": {"name": "d"}}]}}
    found = unsafe_entries(config)
    assert [n for n, _ in found] == ["evil\\n\\udb8f" + "x" * 65 + "...", "op", "d"]  # cut to 80 characters
    assert all(why.isprintable() for _, why in found)
    with pytest.raises(ExportError) as e:
        loader.check_safe("m.keras", config)
    _one_line(e, "evil\\n\\udb8f", "tf.io.gfile\\nremove").encode("utf-8")  # printable and encodable
    path = tmp_path / "named.keras"
    with zipfile.ZipFile(path, "w") as z:  # the same name through a file and the loader
        z.writestr("config.json", json.dumps({"class_name": "Functional", "config": {"layers": [
            {"class_name": "Lambda", "config": {"name": "evil\n\udb8f"}}]}}))
    with pytest.raises(ExportError) as e:
        loader.load_model(path)
    _one_line(e, "Lambda layer(s) evil\\n\\udb8f").encode("utf-8")


# --- 4. image folders: bad images and no images --------------------------------------------------

def _damage(folder, case):
    cat = folder / "cat"
    if case == "zero-byte":
        (cat / "0.png").write_bytes(b"")
    elif case == "text as png":
        (cat / "0.png").write_text("not an image")
        (folder / "dog" / "3.png").write_text("nor this")
    elif case == "corrupt png":  # a PNG signature, then garbage: only decoding finds it
        raw = (cat / "1.png").read_bytes()
        (cat / "1.png").write_bytes(raw[:16] + os.urandom(len(raw) - 16))


IMAGE_CASES = {
    "zero-byte": ["cat/0.png is empty (0 bytes)", "(1 of 8 files)"],
    "text as png": ["cat/0.png is not a PNG, JPEG, GIF or BMP image", "2 of 8 files are bad"],
    "corrupt png": ["cat/1.png cannot be decoded as an image", "(1 of"],
}


@pytest.mark.parametrize("shape", [(8, 8, 1), None], ids=["model's size", "first image's size"])
@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_bad_images_are_one_line_naming_the_first(files, tmp_path, case, shape):
    folder = _images(files, tmp_path)
    _damage(folder, case)
    with pytest.raises(DataError) as e:
        datasets.from_directory(folder, input_shape=shape)
    _one_line(e, *IMAGE_CASES[case])


def test_bad_images_on_the_command_line(capsys, files, tmp_path):
    folder = _images(files, tmp_path)
    _damage(folder, "text as png")
    line = _cli_error(capsys, ["optimize", "--model", str(files / "m.keras"), "--data", str(folder),
                               "--out", str(tmp_path / "out")])
    assert "2 of 8 files are bad" in line


@pytest.mark.parametrize("shape", [(8, 8, 1), None], ids=["model's size", "first image's size"])
def test_a_folder_with_no_images(files, tmp_path, shape):
    folder = tmp_path / "empty"
    for c in ("cat", "dog"):
        (folder / c).mkdir(parents=True)
        (folder / c / "notes.txt").write_text("x")
    with pytest.raises(DataError) as e:
        datasets.from_directory(folder, input_shape=shape)
    _one_line(e, "holds no image (.png", "class subfolders cat, dog")


# --- 5. inconsistent inputs ------------------------------------------------------------------------

def _mismatched(tmp_path):
    path = tmp_path / "mismatch.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.random((40, 8, 8, 1)).astype("float32"), y_train=np.arange(39) % 2)
    return str(path)


@pytest.mark.parametrize("command", ["optimize", "check", "tune", "export"])
def test_x_and_y_of_different_lengths_in_every_command(capsys, files, tmp_path, command):
    data, model = _mismatched(tmp_path), str(files / "m.keras")
    argv = {
        "optimize": ["optimize", "--model", model, "--data", data, "--out", str(tmp_path / "out")],
        "check": ["check", model, "--data", data],
        "tune": ["tune", "--model", model, "--data", data, "--dir", str(tmp_path / "t")],
        "export": ["export", model, "--data", data, "--out", str(tmp_path / "o.tflite")],
    }[command]
    line = _cli_error(capsys, argv)
    assert "x has 40 examples but y has 39" in line or "x_train has 40 examples but y_train has 39" in line


@pytest.mark.parametrize("scale, fragment", [
    ("1e-300", "--scale 1e-300 is 0 in float32"),
    ("1e300", "--scale 1e300 is infinite in float32"),
])
def test_a_scale_that_makes_the_data_zero_or_infinite(capsys, files, tmp_path, scale, fragment):
    line = _cli_error(capsys, ["optimize", "--model", str(files / "m.keras"), "--data", str(files / "good.npz"),
                               "--scale", scale, "--out", str(tmp_path / "out")])
    assert fragment in line


@pytest.mark.parametrize("scale, fragment", [
    (1e-41, "makes the train inputs zero in float32"),
    (1e38, "makes the train inputs infinite in float32"),
])
def test_from_arrays_refuses_a_scale_that_ruins_the_data(scale, fragment):
    x = np.full((20, 4), 255, np.uint8)
    with pytest.raises(DataError) as e:
        datasets.from_arrays(x, np.arange(20) % 2, scale=scale)
    _one_line(e, fragment, "pick a factor such as 1/255")
    assert datasets.from_arrays(x, np.arange(20) % 2, scale=1e-30).train[0].max() > 0  # tiny, yet not zero


@pytest.mark.parametrize("objective", ["", " , "])
def test_tune_with_an_empty_objective(capsys, tmp_path, objective):
    line = _cli_error(capsys, ["tune", "--model", "digits_cnn", "--dataset", "digits", "--objective", objective,
                               "--dir", str(tmp_path / "t")])
    assert "argument --objective: must name at least one of accuracy, size, latency" in line


def test_bench_delegate_that_is_not_a_delegate(capsys, files, tmp_path, monkeypatch):
    import sys

    benchmark = sys.modules["tflite_export.benchmark"]
    monkeypatch.setattr(benchmark, "benchmark", lambda *a, **k: pytest.fail("timed before checking --delegate"))
    tfl = str(files / "m.tflite")
    text = tmp_path / "libfake.so"
    text.write_text("not a library")
    assert "is not a shared library (not an ELF file)" in _cli_error(capsys, ["bench", tfl, "--delegate", str(text)])
    assert "does not exist" in _cli_error(capsys, ["bench", tfl, "--delegate", str(tmp_path / "missing.so")])
    library = np._core._multiarray_umath.__file__  # a real shared library, but no TFLite delegate
    line = _cli_error(capsys, ["bench", tfl, "--delegate", library])
    assert "is not a loadable TFLite delegate" in line


def test_multiworker_without_tf_config(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    line = _cli_error(capsys, ["optimize", "--model", "digits_cnn", "--dataset", "digits", "--strategy",
                               "multiworker", "--out", str(tmp_path / "out")])
    assert "strategy multiworker needs the cluster in TF_CONFIG, which is not set" in line


@pytest.mark.parametrize("command", ["optimize", "tune"])
def test_tensorboard_on_a_file_is_refused_up_front(capsys, tmp_path, command):
    afile = tmp_path / "afile"
    afile.write_text("x")
    base = (["optimize", "--model", "digits_cnn", "--dataset", "digits", "--out", str(tmp_path / "out")]
            if command == "optimize" else
            ["tune", "--model", "digits_cnn", "--dataset", "digits", "--dir", str(tmp_path / "t")])
    assert "--tensorboard" in _cli_error(capsys, [*base, "--tensorboard", str(afile)])
    line = _cli_error(capsys, [*base, "--tensorboard", str(afile / "logs")])
    assert "cannot be made" in line and "is a file" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "t").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only folders")
def test_tensorboard_in_a_read_only_folder_is_refused_up_front(capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        line = _cli_error(capsys, ["optimize", "--model", "digits_cnn", "--dataset", "digits", "--out",
                                   str(tmp_path / "out"), "--tensorboard", str(ro / "logs")])
    finally:
        ro.chmod(0o700)
    assert "permission denied" in line


def test_tensorboard_check_reads_permissions(tmp_path, monkeypatch):
    """The read-only case where the test runs as root (who may write anywhere): os.access says no."""
    from tflite_export.argtypes import check_writable_dir
    from tflite_export.errors import ExportError

    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(ExportError) as e:
        check_writable_dir(str(tmp_path / "logs"), "--tensorboard")
    _one_line(e, f"cannot write in {tmp_path} (permission denied)")


def test_no_subcommand_prints_the_usage(capsys):
    from tfcompress.cli import main

    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("usage: tfcompress") and "optimize" in out and "examples:" in out
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and lines[0].startswith("error: give a command: demo, optimize, export"), err


def test_a_single_class_dataset_on_a_reference_model_is_refused(tmp_path, capsys):
    from tfcompress.cli import main

    x = np.random.default_rng(0).random((60, 8, 8, 1), dtype=np.float32)
    np.savez(tmp_path / "one.npz", x_train=x, y_train=np.zeros(60, "int64"))
    rc = main(["optimize", "--model", "digits_cnn", "--data", str(tmp_path / "one.npz"), "--out",
               str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and err.count("error:") == 1, err
    assert "one class" in err and not (tmp_path / "out").exists()
