"""Fuzzing the readers of users' files: every input loads or raises one line of ours.

Hypothesis drives four readers, each for a fixed share of a time budget
(``TFC_FUZZ_SECONDS``, 80 s in all by default), seeded (``hypothesis.seed(0)``):

* the recipe YAML reader (``Recipe.from_yaml_string``): recipe-shaped data
  dumped to YAML, valid recipes mutated character by character, and raw text
  of YAML's special characters (anchors, aliases, brackets, tags);
* the ``.npz`` reader (``tflite_export._userfiles.read_npz``): valid files
  with bytes flipped, cut or inserted, and ``.npy`` headers rewritten with
  generated shapes and dtypes;
* the image-folder reader (``datasets.from_directory``): class folders of
  generated files (valid PNG/JPEG/GIF/BMP, empty, text, truncated, a valid
  signature over garbage), symbolic links (to a folder above, to itself,
  dangling) and input shapes;
* the model-config safety check (``trust.unsafe_entries`` and
  ``loader.check_safe``): generated configs from Keras's vocabulary of class,
  registered and module names, and a real model's config with fields
  replaced. Here the property is stronger: a ``Lambda`` named by any part of a
  ``class_name`` or ``registered_name`` is always refused.

The property: each input either loads or raises the project's error
(``TfcompressError``: ``RecipeError``, ``DataError``, ``ExportError``) with a
one-line message, within :data:`PER_INPUT_S` seconds; never another
exception, never a hang. ``benchmarks/bench_robustness.py`` calls
:func:`run_fuzz` for its figures.

    .venv/bin/python -m pytest -q -m slow tests/test_fuzz.py
"""

import io
import json
import os
import shutil
import signal
import tempfile
import time
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tfcompress.errors import TfcompressError  # noqa: E402
from tflite_export.loader import _walk  # noqa: E402  (every dict of a config, as the loader walks it)

#: The whole fuzzing time, shared by the four readers.
BUDGET_S = float(os.environ.get("TFC_FUZZ_SECONDS", "80"))
#: An input still being read after this is a hang.
PER_INPUT_S = 20


class _BudgetSpent(Exception):
    """Ends a Hypothesis run when the reader's share of the time is spent (the one way to stop it early)."""


class _Hang(BaseException):
    """Raised by the alarm: a BaseException so no reader's ``except Exception`` swallows it."""


def _alarm(*_):
    raise _Hang()


class Stats:
    """What one reader did: inputs tried, loaded, refused (one line of ours), and the failures."""

    def __init__(self, name):
        self.name, self.tried, self.loaded, self.refused, self.failures = name, 0, 0, 0, []
        self.seconds = 0.0

    def judge(self, call, describe):
        """Runs ``call()`` once under the per-input alarm and files the outcome."""
        self.tried += 1
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, PER_INPUT_S)
        try:
            call()
            self.loaded += 1
        except _Hang:
            self._fail("hang", f"still running after {PER_INPUT_S} s", describe)
        except TfcompressError as e:
            if "\n" in str(e).strip():
                self._fail("several lines", str(e)[:300], describe)
            else:
                self.refused += 1
        except Exception as e:  # noqa: BLE001  (anything else is what the fuzz looks for)
            self._fail(type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "", describe)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    def _fail(self, kind, message, describe):
        if len(self.failures) < 20:
            self.failures.append({"kind": kind, "message": message, "input": describe()[:400]})

    def as_dict(self):
        return {"reader": self.name, "tried": self.tried, "loaded": self.loaded, "refused": self.refused,
                "failed": self.tried - self.loaded - self.refused, "seconds": round(self.seconds, 1),
                "failures": self.failures}


def _drive(stats, strategy, check, seconds):
    """Hypothesis over ``strategy`` in seeded batches until ``seconds`` are spent; ``check(x)`` judges one."""
    t0 = time.monotonic()
    end = t0 + seconds

    @hypothesis.seed(0)
    @settings(max_examples=10**7, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(x):
        if time.monotonic() >= end:
            raise _BudgetSpent()
        check(x)

    try:
        run()
    except _BudgetSpent:
        pass
    stats.seconds = time.monotonic() - t0
    return stats


# ----------------------------------------------------------------------------- (a) recipe YAML

_RECIPE_KEYS = ["pruning", "clustering", "quantization", "channels", "depth", "distillation", "final_sparsity",
                "initial_sparsity", "schedule", "begin", "end", "epochs", "learning_rate", "batch_size", "seed",
                "number_of_clusters", "mode", "ratio", "bits", "preserve_sparsity", "temperature", "alpha", "<<"]
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                     st.text(max_size=20), st.sampled_from(["polynomial", "constant", "int8", "1e-3", ".inf"]))
_DATA = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.one_of(st.sampled_from(_RECIPE_KEYS), st.text(max_size=8)),
                                                  inner, max_size=6)), max_leaves=30)
_YAML_CHARS = list("&*[]{}:,-!|>'\"#%@`?~ \t\n\r\\") + ["&a ", "*a", "<<: *a", "!!python/object:os.system",
                                                        "!!binary", "\ufeff", "\x00", "\x85", "---", "..."]


def _mutate_text(text, edits):
    for pos, action, piece in edits:
        i = pos % (len(text) + 1)
        if action == "insert":
            text = text[:i] + piece + text[i:]
        elif action == "delete":
            text = text[:i] + text[i + len(piece):]
        else:  # repeat a line
            line_start = text.rfind("\n", 0, i) + 1
            line_end = text.find("\n", i)
            line = text[line_start: line_end if line_end >= 0 else len(text)]
            text = text[:line_start] + line + "\n" + text[line_start:]
    return text


def _recipe_texts():
    import yaml

    from tfcompress.recipe import Recipe

    bases = [Recipe().to_yaml()]
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "recipes")
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            bases.append(f.read())
    dumped = _DATA.map(lambda d: yaml.safe_dump(d, allow_unicode=True))
    edits = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["insert", "delete", "repeat"]),
                               st.sampled_from(_YAML_CHARS) | st.text(max_size=4)), min_size=1, max_size=8)
    mutated = st.tuples(st.sampled_from(bases), edits).map(lambda p: _mutate_text(*p))
    raw = st.lists(st.sampled_from(_YAML_CHARS + ["pruning", "a", "1", "0.5", "epochs", "  "]), max_size=60) \
        .map("".join)
    return st.one_of(dumped, mutated, raw)


def fuzz_recipe_yaml(seconds):
    from tfcompress.recipe import Recipe

    stats = Stats("recipe YAML (Recipe.from_yaml_string)")
    return _drive(stats, _recipe_texts(), lambda text: stats.judge(
        lambda: Recipe.from_yaml_string(text), lambda: repr(text)), seconds)


# ----------------------------------------------------------------------------- (b) .npz files

_DESCRS = ["<f4", "<f8", "|u1", "<i8", "|b1", "<U10", "|O", "<c16", "V8", "<M8[s]", "|S0", ">f2", "<f4 ", "",
           "float32", "('<f4', (2,))", "[('a', '<f4')]", "<q"]
_DIMS = st.one_of(st.integers(0, 12), st.integers(-5, 2**63), st.sampled_from([0, 1, 2**31, 2**40, -1]))


def _npz_bases():
    rng = np.random.default_rng(0)
    out = []
    for save in (np.savez, np.savez_compressed):
        buf = io.BytesIO()
        save(buf, x_train=rng.random((6, 4, 4, 1)).astype("float32"), y_train=np.arange(6) % 2)
        out.append(buf.getvalue())
    return out


def _npy(descr, shape, fortran, body):
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {tuple(shape)!r}, }}"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1", "replace") + body


def _rewritten_npz(descr, shape, fortran, body, extra):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x_train.npy", _npy(descr, shape, fortran, body))
        if extra:
            z.writestr("y_train.npy", _npy("<i8", (len(body) // 8,), False, body[: len(body) // 8 * 8]))
    return buf.getvalue()


def _npz_bytes():
    bases = _npz_bases()
    flips = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=16)
    flipped = st.tuples(st.sampled_from(bases), flips).map(
        lambda p: bytes(_flip(bytearray(p[0]), p[1])))
    cut = st.tuples(st.sampled_from(bases), st.floats(0, 1)).map(lambda p: p[0][: int(len(p[0]) * p[1])])
    inserted = st.tuples(st.sampled_from(bases), st.integers(0, 10**6), st.binary(min_size=1, max_size=64)).map(
        lambda p: p[0][: p[1] % len(p[0])] + p[2] + p[0][p[1] % len(p[0]):])
    headers = st.builds(_rewritten_npz, st.sampled_from(_DESCRS), st.lists(_DIMS, max_size=4),
                        st.sampled_from([False, True, "None", "'yes'"]), st.binary(max_size=256), st.booleans())
    return st.one_of(flipped, cut, inserted, headers, st.binary(max_size=200))


def _flip(raw, changes):
    for pos, value in changes:
        raw[pos % len(raw)] = value
    return raw


def fuzz_npz(seconds, folder):
    from tflite_export._userfiles import read_npz

    stats = Stats("npz (tflite_export._userfiles.read_npz)")
    path = os.path.join(folder, "fuzz.npz")

    def check(data):
        with open(path, "wb") as f:
            f.write(data)
        stats.judge(lambda: read_npz(path), lambda: repr(data[:300]))

    return _drive(stats, _npz_bytes(), check, seconds)


# ----------------------------------------------------------------------------- (c) image folders

def _image_bytes():
    from PIL import Image

    rng = np.random.default_rng(0)
    out = {}
    for fmt, mode in (("PNG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"), ("JPEG", "RGB"), ("GIF", "L"), ("BMP", "RGB")):
        buf = io.BytesIO()
        size = 8 if fmt != "BMP" else 6
        Image.fromarray(rng.integers(0, 256, (size, size, len(mode)) if len(mode) > 1 else (size, size),
                                     dtype=np.uint8), mode).save(buf, fmt)
        out[f"{fmt} {mode}"] = buf.getvalue()
    return out


_IMAGES = None


def _file_content():
    global _IMAGES
    _IMAGES = _IMAGES or _image_bytes()
    grey = st.just(_IMAGES["PNG L"])  # mostly one kind, so that whole folders can load
    valid = st.one_of(grey, grey, grey, st.sampled_from(sorted(_IMAGES)).map(lambda k: _IMAGES[k]))
    bad = st.one_of(
        st.just(b""), st.just(b"not an image\n"), st.binary(max_size=64),
        st.tuples(valid, st.floats(0, 1)).map(lambda p: p[0][: int(len(p[0]) * p[1])]),
        st.tuples(valid, st.binary(min_size=8, max_size=200)).map(lambda p: p[0][:16] + p[1]))
    # Mostly valid images: a folder with one bad file among good ones is the case that reaches tf.data.
    return st.one_of(valid, valid, valid, valid, bad)


_FILE = st.tuples(st.sampled_from([".png", ".png", ".jpg", ".gif", ".bmp", ".jpeg", ".PNG", ".txt", ""]),
                  st.deferred(_file_content))
_LINK = st.sampled_from(["top", "class", "self", "dangling", "file", "sibling", "parent-of-top"])
_LINKS = st.one_of(*[st.just([])] * 6, st.lists(_LINK, min_size=1, max_size=2))
_FOLDER = st.tuples(
    st.sampled_from([False, False, True]),  # the train/val split layout
    st.lists(st.tuples(st.lists(_FILE, min_size=3, max_size=10), _LINKS), min_size=1, max_size=3),
    st.sampled_from([(8, 8, 1), (8, 8, 3), None, (8, 8, 1), (6, 4, 4), (8, 8, 2)]))


def _make_folder(root, spec):
    split, classes, _ = spec
    top = os.path.join(root, "data")
    os.makedirs(top)
    base = os.path.join(top, "train") if split else top
    for ci, (files, links) in enumerate(classes):
        cdir = os.path.join(base, f"c{ci}")
        os.makedirs(cdir)
        if split:
            os.makedirs(os.path.join(top, "val", f"c{ci}"), exist_ok=True)
        for fi, (ext, data) in enumerate(files):
            where = os.path.join(top, "val", f"c{ci}") if split and fi % 3 == 2 else cdir
            with open(os.path.join(where, f"f{fi}{ext}"), "wb") as f:
                f.write(data)
        for li, kind in enumerate(links):
            link = os.path.join(cdir, f"l{li}" + (".png" if kind in ("dangling", "file") else ""))
            target = {"top": top, "class": cdir, "self": link, "dangling": os.path.join(root, "nowhere.png"),
                      "file": os.path.join(cdir, "f0.png"), "sibling": os.path.join(base, "c0"),
                      "parent-of-top": root}[kind]
            os.symlink(target, link)
    return top


def fuzz_image_folders(seconds, folder):
    from tfcompress import datasets

    stats = Stats("image folder (datasets.from_directory)")

    def check(spec):
        root = tempfile.mkdtemp(dir=folder)
        try:
            top = _make_folder(root, spec)
            stats.judge(lambda: datasets.from_directory(top, input_shape=spec[2]), lambda: _describe_folder(spec))
        finally:
            shutil.rmtree(root, ignore_errors=True)

    return _drive(stats, _FOLDER, check, seconds)


def _describe_folder(spec):
    split, classes, shape = spec
    parts = [f"split={split}", f"shape={shape}"]
    for ci, (files, links) in enumerate(classes):
        parts.append(f"c{ci}: " + ", ".join(f"{ext or '(none)'} {len(d)}B {d[:4]!r}" for ext, d in files)
                     + (f" links {links}" if links else ""))
    return "; ".join(parts)


# ----------------------------------------------------------------------------- (d) model-config safety

_CLASSES = ["Lambda", "layers.Lambda", "keras.layers.Lambda", "Custom>Lambda", "NoOpActivation", "Dense", "Conv2D",
            "Functional", "Sequential", "function", "TFOpLambda", "SlicingOpLambda", "ClassMethod", "__lambda__",
            "TorchModuleWrapper", "TFSMLayer", "InputLayer", "lambda", "LAMBDA", "Lambda ", ">Lambda.", "..", ""]
_MODULES = ["tf_keras.layers", "keras.layers", "keras", "tf_keras", "builtins", "pydoc", "os", "keras..layers",
            "tensorflow_model_optimization.python", "tfcompress", "keras.src.ops.1x", ""]
_FUNCTIONS = ["relu", "exec", "eval", "pipepager", "nn.relu6", "io.gfile.remove", "math.add", "py_function",
              "compat.v1.py_func", "__operators__.add", "os.system", "a.b", "1x", ""]
_ODD = st.one_of(st.none(), st.integers(), st.lists(st.sampled_from(_CLASSES), max_size=2), st.text(max_size=12))


def _entry(children):
    return st.fixed_dictionaries(
        {"class_name": st.one_of(st.sampled_from(_CLASSES), _ODD)},
        optional={"registered_name": st.one_of(st.sampled_from(_CLASSES), _ODD),
                  "module": st.one_of(st.sampled_from(_MODULES), _ODD),
                  "name": st.one_of(st.text(max_size=6), _ODD),
                  "function_type": st.sampled_from(["lambda", "function", "raw"]),
                  "config": st.one_of(children, st.sampled_from(_FUNCTIONS),
                                      st.fixed_dictionaries({}, optional={
                                          "name": st.text(max_size=6), "function": st.sampled_from(_FUNCTIONS),
                                          "cls_symbol": st.sampled_from(["RaggedTensor", "os", "Tensor"]),
                                          "layers": st.lists(children, max_size=3)}))})


_CONFIGS = st.recursive(st.one_of(_SCALARS, _entry(st.none())),
                        lambda inner: st.one_of(st.lists(inner, max_size=4), _entry(inner),
                                                st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                        max_leaves=25)


def _real_config():
    from tfcompress._keras import keras

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(3, activation="relu")(inp)))
    return json.loads(json.dumps(keras.saving.serialize_keras_object(model)))


def _replace_fields(config, edits):
    entries = [d for d in _walk(config)]
    for i, field, value in edits:
        entries[i % len(entries)][field] = value
    return config


def _names_lambda(config):
    """True when some entry names a Lambda in a part of its class_name or registered_name (the oracle)."""
    import re

    for d in _walk(config):
        if "class_name" not in d:
            continue
        for key in ("class_name", "registered_name"):
            v = d.get(key)
            if isinstance(v, str) and "Lambda" in re.split(r"[.>]", v):
                return True
    return False


def fuzz_model_configs(seconds):
    from tflite_export import ExportError, loader
    from tflite_export.trust import unsafe_entries

    stats = Stats("model config (trust.unsafe_entries, loader.check_safe)")
    real = _real_config()
    edits = st.lists(st.tuples(st.integers(0, 100), st.sampled_from(["class_name", "registered_name", "module",
                                                                     "config", "name"]),
                               st.one_of(st.sampled_from(_CLASSES + _MODULES), _ODD)), min_size=1, max_size=5)
    mutated = edits.map(lambda e: _replace_fields(json.loads(json.dumps(real)), e))
    strategy = st.one_of(_CONFIGS, mutated, st.text(max_size=40))

    def check(config):
        def call():
            found = unsafe_entries(config)
            if not (isinstance(found, list) and all(isinstance(n, str) and isinstance(w, str) for n, w in found)):
                raise AssertionError(f"unsafe_entries returned {found!r}")
            try:
                loader.check_safe("fuzzed.keras", config)
            except ExportError:
                if not found:
                    raise AssertionError("check_safe refused what unsafe_entries passed") from None
                raise
            if _names_lambda(config) or not isinstance(config, (dict, list, type(None))):
                raise AssertionError("a Lambda (or an unparsed config) passed the safety check")
        stats.judge(call, lambda: json.dumps(config, default=repr)[:400])

    return _drive(stats, strategy, check, seconds)


# ----------------------------------------------------------------------------- driver and test


def run_fuzz(seconds=BUDGET_S, folder=None):
    """Fuzzes the four readers for ``seconds`` in all (a quarter each); returns one dict per reader."""
    import tfcompress._keras  # noqa: F401  (TensorFlow imported and quiet before the clock starts)

    own = folder is None
    folder = folder or tempfile.mkdtemp(prefix="tfc-fuzz-")
    try:
        share = seconds / 4
        return [s.as_dict() for s in (fuzz_recipe_yaml(share), fuzz_npz(share, folder),
                                      fuzz_image_folders(share, folder), fuzz_model_configs(share))]
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_fuzzed_inputs_load_or_raise_one_line_of_ours(tmp_path):
    results = run_fuzz(BUDGET_S, str(tmp_path))
    for r in results:
        assert r["tried"] >= 5, r  # the budget bought a real search
    failures = [(r["reader"], f) for r in results for f in r["failures"]]
    assert not failures, json.dumps(failures[:5], indent=1)
