"""Bad inputs get one clear error, before any work.

A seeded matrix over what users pass: training/validation data (numpy and
tf.data), optimize()'s arguments, every recipe stage field, recipe files, and
tflite_export's evaluate/agreement. Each case asserts the error type (ours),
that the message is one line, and that it names the problem. Models are tiny
(67 parameters) so the whole file runs in well under a minute.
"""

import dataclasses
import time
import typing

import numpy as np
import pytest

import tfcompress
import tflite_export
from tfcompress import Channels, Clustering, Distillation, Penalty, Pruning, Quantization, Recipe, TfcompressError
from tfcompress._keras import keras, tf
from tfcompress.errors import DataError, RecipeError
from tflite_export import ExportError

N = 32
QUICK = {"pruning": {"epochs": 1}, "quantization": None, "batch_size": 8}


def _one_line(e, *fragments):
    msg = str(e.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def _tiny(units=3, activation="softmax"):
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.layers.Input((4,)),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(units, activation=activation),
    ])


@pytest.fixture(scope="module")
def model():
    return _tiny()


@pytest.fixture(scope="module")
def binary():
    return _tiny(1, "sigmoid")


def _xy(units=3):
    rng = np.random.default_rng(0)
    return rng.random((N, 4)).astype("float32"), rng.integers(0, max(units, 2), N)


def _with(a, index, value):
    a = np.array(a, dtype=float)
    a[index] = value
    return a


X, Y = _xy()
ONE_HOT = np.eye(3, dtype="float32")[Y]


# --- 1. data: checked once, before any work -----------------------------------

DATA_CASES = {
    # name: (train_data, validation_data, fragments in the message)
    "nan in train x": ((_with(X, (5, 1), np.nan), Y), None, ["NaN or Inf in train_data x", "example 5"]),
    "inf in train x": ((_with(X, (7, 0), -np.inf), Y), None, ["NaN or Inf in train_data x", "example 7"]),
    "beyond float32": ((_with(X, (2, 2), 1e39), Y), None, ["NaN or Inf in train_data x", "example 2"]),
    "nan in validation x": ((X, Y), (_with(X, (3, 3), np.nan), Y), ["NaN or Inf in validation_data x"]),
    "label = units": ((X, np.full(N, 3)), None, ["train_data: labels span 3..3", "3 output unit(s)", "0..2"]),
    "negative label": ((X, _with(Y, 4, -1).astype(int)), None, ["train_data: labels span -1..", "0..2"]),
    "nan label": ((X, _with(Y, 6, np.nan)), None, ["NaN or Inf in train_data labels", "example 6"]),
    "fractional label": ((X, _with(Y, 9, 0.5)), None, ["integer class ids or one-hot rows", "example 9"]),
    "validation label out of range": ((X, Y), (X, np.full(N, 10)), ["validation_data: labels span 10..10"]),
    "one-hot row sums to 2": ((X, _with(ONE_HOT, (1, (Y[1] + 1) % 3), 1.0)), None,
                              ["train_data: labels row 1 sums to 2"]),
    "one-hot value above 1": ((X, ONE_HOT * 2), None, ["train_data: labels must be in [0, 1]", "got 2"]),
    "one-hot of the wrong width": ((X, np.eye(5)[Y]), None, ["labels of shape (5,) do not fit"]),
    "string x": ((X.astype(str), Y), None, ["train_data: x holds strings"]),
    "string y": ((X, np.array(["cat"] * N)), None, ["train_data: y holds strings"]),
    "object y": ((X, np.array([object()] * N)), None, ["train_data: y holds values that are not numbers"]),
    "complex x": ((X + 1j, Y), None, ["train_data: x has dtype complex", "not real numbers"]),
    "ragged x": (([[0.0] * 4, [0.0] * 3], [0, 1]), None, ["train_data: x is not an array"]),
    "x/y length mismatch": ((X, Y[:-1]), None, ["train_data: x has 32 examples but y has 31"]),
    "empty": ((X[:0], Y[:0]), None, ["train_data is empty"]),
    "scalars (5, 3)": ((5, 3), None, ["train_data: x must be an array with one row per example", "5"]),
    "not a pair": (X, None, ["train_data must be an (x, y) tuple"]),
    "wrong input shape": ((np.zeros((N, 5)), Y), None, ["inputs have shape (5,) but the model expects (4,)"]),
    "validation wrong shape": ((X, Y), (np.zeros((N, 2)), Y), ["validation_data: inputs have shape (2,)"]),
}


@pytest.fixture
def no_training(monkeypatch):
    """Any fit/evaluate/predict fails the test: bad data must be refused first."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model ran on bad data")

    for name in ("fit", "evaluate", "predict"):
        monkeypatch.setattr(keras.Model, name, refuse)


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_refused_before_any_work(model, no_training, case):
    train, val, fragments = DATA_CASES[case]
    before = [w.copy() for w in model.get_weights()]
    t0 = time.perf_counter()
    with pytest.raises(DataError) as e:
        tfcompress.optimize(model, train, val, recipe=QUICK, verbose=0)
    _one_line(e, *fragments)
    assert time.perf_counter() - t0 < 10
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize(
    "y, fragments",
    [
        (np.full(N, 2), ["labels span 2..2 but the model has 1 output unit(s): labels must be in 0..1"]),
        (np.full((N, 1), 1.5), ["labels must be in [0, 1]", "got 1.5"]),
        (np.zeros((N, 2)), ["labels of shape (2,) do not fit the model output (1,)"]),
    ],
)
def test_binary_labels_are_checked(binary, no_training, y, fragments):
    with pytest.raises(DataError) as e:
        tfcompress.optimize(binary, (X, y), recipe=QUICK, verbose=0)
    _one_line(e, *fragments)


def _ds(x, y, batch=None):
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    return ds.batch(batch) if batch else ds


DATASET_CASES = {
    "nan in a later batch": (lambda: _ds(_with(X, (20, 0), np.nan), Y, 8),
                             ["NaN or Inf in train_data x", "example 20"]),
    "label out of range in a later batch": (lambda: _ds(X, _with(Y, 27, 7).astype(int), 8),
                                            ["train_data: labels span", "..7", "0..2"]),
    "nan label": (lambda: _ds(X, _with(Y, 3, np.nan)), ["NaN or Inf in train_data labels", "example 3"]),
    "string x": (lambda: _ds(X.astype(str), Y), ["the dataset's x has dtype string"]),
    "string y": (lambda: _ds(X, np.array(["a"] * N)), ["the dataset's y has dtype string"]),
    # dicts are keyed by input name (models with several inputs): a wrong key is named
    "dict x": (lambda: _ds({"a": X}, Y), ["x is a dict with keys ['a'], but the model's inputs are named"]),
    "triples": (lambda: tf.data.Dataset.from_tensor_slices((X, Y, Y)), ["must yield (x, y) pairs"]),
    "repeats forever": (lambda: _ds(X, Y).repeat(), ["repeats forever: drop .repeat()"]),
    "empty": (lambda: _ds(X[:0], Y[:0]), ["train_data is empty"]),
    "wrong shape": (lambda: _ds(np.zeros((N, 6), "float32"), Y), ["dataset inputs have shape (6,)"]),
}


@pytest.mark.parametrize("case", list(DATASET_CASES))
def test_bad_dataset_is_refused_before_any_work(model, no_training, case):
    make, fragments = DATASET_CASES[case]
    with pytest.raises(DataError) as e:
        tfcompress.optimize(model, make(), recipe=QUICK, verbose=0)
    _one_line(e, *fragments)


@pytest.mark.parametrize("train_onehot", [True, False], ids=["one-hot train, ids val", "ids train, one-hot val"])
@pytest.mark.parametrize("as_dataset", [False, True], ids=["numpy", "dataset"])
def test_mixed_label_forms_are_converted_to_the_training_form(model, train_onehot, as_dataset):
    from tfcompress._data import prepare

    train_y, val_y = (ONE_HOT, Y) if train_onehot else (Y, ONE_HOT)
    wrap = (lambda x, y: _ds(x, y)) if as_dataset else (lambda x, y: (x, y))
    train = prepare(wrap(X, train_y), model, 8, what="train_data")
    val = prepare(wrap(X, val_y), model, 8, what="validation_data", sparse_labels=train.sparse_labels)
    assert train.sparse_labels is (not train_onehot) and val.sparse_labels is train.sparse_labels
    _, y_batch = next(iter(val.dataset))
    assert y_batch.shape.rank == (2 if train_onehot else 1)
    assert np.array_equal(np.argmax(y_batch, -1) if train_onehot else y_batch, Y[:8])


def test_mixed_label_forms_fine_tune(model):
    result = tfcompress.optimize(model, (X, ONE_HOT), (X, Y), recipe=QUICK, verbose=0)
    assert np.isfinite(result.report.optimized["accuracy"]) and result.report.evaluated_on == "validation"


# --- 3. optimize() arguments and stage fields: ours, naming the field --------

@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"batch_size": -1}, RecipeError, "batch_size must be a positive integer"),
        ({"batch_size": 0}, RecipeError, "batch_size must be a positive integer"),
        ({"batch_size": 2.5}, RecipeError, "batch_size must be a positive integer"),
        ({"batch_size": "8"}, RecipeError, "batch_size must be a positive integer"),
        ({"batch_size": 2**40}, RecipeError, "batch_size must be at most"),
        ({"epochs": -3}, RecipeError, "epochs must be a positive integer"),
        ({"epochs": 0}, RecipeError, "epochs must be a positive integer"),
        ({"epochs": True}, RecipeError, "epochs must be a positive integer"),
        ({"epochs": 1.5}, RecipeError, "epochs must be a positive integer"),
        ({"verbose": "loud"}, RecipeError, "verbose must be one of"),
        ({"callbacks": "early"}, RecipeError, "callbacks must be a list of tf_keras callbacks"),
        ({"callbacks": [print]}, RecipeError, "callbacks[0] must be one of the tf_keras callbacks"),
        ({"recipe": 5}, RecipeError, "recipe must be a Recipe, a dict or a YAML path"),
        ({"recipe": {"pruning": {"epochs": 1}, "batch_size": 64}}, RecipeError, "pruning needs at least 2 training"),
        ({"train_data": (5, 3)}, DataError, "train_data: x must be an array"),
        ({"train_data": None}, DataError, "train_data must be an (x, y) tuple"),
        ({"validation_data": "val.npz"}, DataError, "validation_data must be an (x, y) tuple"),
        ({"model": None}, TfcompressError, "expected a tf_keras Model"),
    ],
)
def test_bad_optimize_arguments(model, no_training, kwargs, error, fragment):
    args = {"model": model, "train_data": (X, Y), "recipe": QUICK, "verbose": 0, **kwargs}
    with pytest.raises(error) as e:
        tfcompress.optimize(**args)
    _one_line(e, fragment)


STAGE_CLASSES = [Penalty, Pruning, Clustering, Quantization, Distillation, Channels, Recipe]


def _types(cls, f):
    tp = typing.get_type_hints(cls)[f.name]
    return typing.get_args(tp) if typing.get_origin(tp) is typing.Union else (tp,)


def _bad_values(cls, f):
    """Values that are wrong for this field, whatever its type."""
    bad = [object()]
    types = _types(cls, f)
    if bool in types:
        bad += ["yes", 1]
    elif int in types or float in types:
        bad += ["0.8", float("nan"), -1, float("inf"), True]
        if f.default is not None:
            bad.append(None)
        if int in types:
            bad += [10**30, 2.5]
    elif isinstance(f.default, str):
        bad += ["no-such-choice", 3]
    return bad


FIELD_CASES = [
    pytest.param(cls, f.name, v, id=f"{cls.__name__}.{f.name}={v!r:.12}")
    for cls in STAGE_CLASSES for f in dataclasses.fields(cls) for v in _bad_values(cls, f)
]


@pytest.mark.parametrize("cls, name, value", FIELD_CASES)
def test_every_stage_field_refuses_bad_values_naming_the_field(cls, name, value):
    with pytest.raises(TfcompressError) as e:
        cls(**{name: value})
    _one_line(e, name)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: Pruning(final_sparsity="0.8"), "pruning.final_sparsity must be a number in [0, 1)"),
        (lambda: Pruning(begin=None), "pruning.begin must be a number in [0, 1)"),
        (lambda: Quantization(learning_rate_scale="x"), "quantization.learning_rate_scale must be a number"),
        (lambda: Channels(temperature=float("inf")), "channels.temperature must be a number > 0"),
        (lambda: Clustering(number_of_clusters=10**30), "clustering.number_of_clusters must be at most"),
    ],
)
def test_issue_examples_raise_recipe_errors(make, fragment):
    with pytest.raises(RecipeError) as e:
        make()
    _one_line(e, fragment)


# --- 2. recipe files -------------------------------------------------------------

RECIPE_FILES = {
    "binary": (b"\x00\x01TFL3\xff\xfe\x00", ["is a binary file, not YAML text"]),
    "latin-1": ("pruning: {final_sparsity: 0.5}  # caf\xe9\n".encode("latin-1"),
                ["is not UTF-8 text (byte 0xe9 at offset 37)"]),
    "invalid utf-8 only": (b"\xff\xfe\xfd", ["is not UTF-8 text (byte 0xff at offset 0)"]),
    "empty": (b"", ["is empty: delete the file to use the default recipe, or write a stage"]),
    "comments only": (b"# nothing yet\n\n", ["is empty: delete the file"]),
    "duplicate stage": (b"pruning: {final_sparsity: 0.5}\nquantization: null\npruning: {epochs: 1}\n",
                        ["has the key 'pruning' twice (lines 1 and 3)", "delete one"]),
    "duplicate field": (b"pruning:\n  final_sparsity: 0.5\n  epochs: 2\n  final_sparsity: 0.9\n",
                        ["has the key 'final_sparsity' twice (lines 2 and 4)"]),
    "duplicate in flow": (b"pruning: {epochs: 1, epochs: 2}\n", ["has the key 'epochs' twice (line 1)"]),
    "invalid yaml": (b"pruning: [unclosed\n", ["is not valid YAML", "(line 2)"]),
    "too big": (b"# " + b"x" * (1 << 20) + b"\n", ["is over 1 MiB"]),
}


@pytest.mark.parametrize("case", list(RECIPE_FILES))
def test_bad_recipe_files(tmp_path, case):
    raw, fragments = RECIPE_FILES[case]
    path = tmp_path / "recipe.yaml"
    path.write_bytes(raw)
    with pytest.raises(RecipeError) as e:
        Recipe.from_yaml(path)
    msg = _one_line(e, *fragments)
    assert str(path) in msg


def test_recipe_file_errors_reach_optimize(tmp_path, model, no_training):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"")
    with pytest.raises(RecipeError) as e:
        tfcompress.optimize(model, (X, Y), recipe=str(path), verbose=0)
    _one_line(e, "is empty")


def test_good_recipe_files_still_load(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_bytes("\ufeffpruning: {final_sparsity: 0.5}\n# café\n".encode())  # a BOM, as Notepad writes
    assert Recipe.from_yaml(path).pruning.final_sparsity == 0.5
    assert Recipe.from_yaml_string("{}") == Recipe()
    with pytest.raises(RecipeError, match="write a stage"):
        Recipe.from_yaml_string("")


# --- tflite_export.evaluate / agreement ----------------------------------------

@pytest.fixture(scope="module")
def tflite_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("tfl") / "tiny.tflite"
    tflite_export.export(model, str(path), mode="float32")
    return str(path)


EVALUATE_CASES = {
    "nan x": (lambda: (_with(X, (4, 0), np.nan), Y), ["NaN or Inf in x", "sample 4"]),
    "inf x": (lambda: (_with(X, (0, 0), np.inf), Y), ["NaN or Inf in x"]),
    "nan y": (lambda: (X, _with(Y, 2, np.nan)), ["NaN or Inf in y", "sample 2"]),
    "label = outputs": (lambda: (X, np.full(N, 3)), ["y spans 3..3 but the file has 3 output(s)", "0..2"]),
    "negative label": (lambda: (X, np.full(N, -1)), ["y spans -1..-1"]),
    "fractional label": (lambda: (X, _with(Y, 1, 0.5)), ["y holds fractions"]),
    "one-hot wrong width": (lambda: (X, np.eye(5)[Y]), ["one-hot rows of 5 classes but the file has 3"]),
    "string x": (lambda: (X.astype(str), Y), ["x holds strings"]),
    "string y": (lambda: (X, np.array(["a"] * N)), ["y holds strings"]),
    "wrong shape": (lambda: (np.zeros((N, 5), "float32"), Y), ["inputs have shape (32, 5)", "expects (N, 4)"]),
    "length mismatch": (lambda: (X, Y[:3]), ["x has 32 samples but y has 3 labels"]),
    "empty": (lambda: (X[:0], Y[:0]), ["x is empty"]),
    "scalar x": (lambda: (5, Y), ["x must be an array with one row per sample"]),
}


@pytest.mark.parametrize("case", list(EVALUATE_CASES))
def test_evaluate_refuses_bad_inputs(tflite_file, case):
    make, fragments = EVALUATE_CASES[case]
    x, y = make()
    with pytest.raises(ExportError) as e:
        tflite_export.evaluate(tflite_file, x, y)
    _one_line(e, *fragments)


@pytest.mark.parametrize(
    "x, fragments",
    [
        (np.zeros((N, 7), "float32"), ["inputs have shape (32, 7) but the model", "expects (N, 4)"]),
        (np.zeros((N, 4, 1), "float32"), ["inputs have shape (32, 4, 1)"]),
        (_with(X, (9, 1), np.nan), ["NaN or Inf in x", "sample 9"]),
        (X.astype(str), ["x holds strings"]),
    ],
)
def test_agreement_refuses_bad_inputs(model, tflite_file, x, fragments):
    with pytest.raises(ExportError) as e:
        tflite_export.agreement(model, tflite_file, x)
    _one_line(e, *fragments)


def test_evaluate_and_agreement_still_work(model, tflite_file):
    acc = tflite_export.evaluate(tflite_file, X, Y)
    assert acc == tflite_export.evaluate(tflite_file, X, ONE_HOT) and 0 <= acc <= 1
    assert tflite_export.agreement(model, tflite_file, X) == 1.0
    assert tflite_export.agreement(model, tflite_file, X[0]) == 1.0  # one sample without its batch axis


# --- int8 calibration: outliers that make int8 meaningless ------------------------

@pytest.mark.parametrize("value", [1e30, -1e30, 1e6])
def test_calibration_outliers_are_refused(model, tmp_path, value):
    # One 1e30 used to be accepted silently: input scale 3.9e27, every normal input quantized to 0.
    x = _with(X, 3, value)
    path = tmp_path / "m.tflite"
    with pytest.raises(ExportError) as e:
        tflite_export.export(model, str(path), mode="int8", representative_data=x, num_samples=N)
    _one_line(e, "representative_data is dominated by outliers", "in sample 3", "central 90%",
              "clip or drop the outliers")
    assert not path.exists()


def test_calibration_without_outliers_still_converts(model, tmp_path):
    sparse = np.zeros((N, 4), "float32")
    sparse[::8, 0] = 1.0  # mostly zeros (central spread 0): not judged an outlier case
    for x in (X, sparse, np.random.default_rng(1).normal(size=(N, 4))):
        rep = tflite_export.export(model, str(tmp_path / "m.tflite"), mode="int8", representative_data=x,
                                   num_samples=N)
        assert rep.input_quantization[0] < 1


# --- channel-pruning fine-tuning takes the run's label form ----------

@pytest.mark.parametrize("distill", [True, False], ids=["distill", "plain"])
def test_channels_fine_tune_takes_one_hot_labels(model, distill):
    from tfcompress.channels import apply

    small, rep = apply(model, Channels(ratio=0.5, epochs=1, distill=distill), data=(X, ONE_HOT))
    assert small.count_params() < model.count_params()
    assert np.isfinite(small.predict(X, verbose=0)).all()


def test_train_baseline_goes_through_the_data_checks(no_training):
    from tfcompress import datasets
    from tfcompress.pipeline import train_baseline

    bad = datasets.from_arrays(_with(X, (slice(None), 1), np.nan), Y, name="nan")  # in every split
    with pytest.raises(DataError) as e:
        train_baseline(_tiny(), bad, 1, batch_size=8, verbose=0)
    _one_line(e, "NaN or Inf in train_data x")


def test_train_baseline_takes_one_hot_labels():
    from tfcompress import datasets
    from tfcompress.pipeline import train_baseline

    m = train_baseline(_tiny(), datasets.from_arrays(X, ONE_HOT, name="one-hot"), 1, batch_size=8, verbose=0)
    assert m.loss.__class__.__name__ == "CategoricalCrossentropy"


# --- the command line: every int option checked at parse time ------

CLI_PARSE_CASES = {
    "demo --threads 0": (["demo", "--threads", "0"],
                         "argument --threads: must be a whole number of threads in 1..1024, got '0'"),
    "demo --threads -1": (["demo", "--threads", "-1"], "argument --threads: must be a whole number of threads in"),
    "demo --threads x": (["demo", "--threads", "x"], "argument --threads: expected a whole number, got 'x'"),
    "demo --epochs 0": (["demo", "--epochs", "0"], "argument --epochs: must be a whole number >= 1"),
    "demo --threads 5000": (["demo", "--threads", "5000"], "argument --threads: must be a whole number of threads in"),
    "bench --threads 100000": (["bench", "m.tflite", "--threads", "100000"], "every value a whole number in 1..1024"),
    "optimize --train-epochs -3": (["optimize", "--model", "lenet5", "--dataset", "digits", "--train-epochs", "-3"],
                                   "argument --train-epochs: must be a whole number >= 0, got '-3'"),
    "optimize --threads 0": (["optimize", "--model", "lenet5", "--dataset", "digits", "--threads", "0"],
                             "argument --threads: must be a whole number of threads in 1..1024"),
    "tune --threads 0": (["tune", "--model", "lenet5", "--dataset", "digits", "--threads", "0"],
                         "argument --threads: must be a whole number of threads in 1..1024"),
    "tune --train-subset 0": (["tune", "--model", "lenet5", "--dataset", "digits", "--train-subset", "0"],
                              "argument --train-subset: must be a whole number >= 1"),
    "tune --max-trials 0": (["tune", "--model", "lenet5", "--dataset", "digits", "--max-trials", "0"],
                            "argument --max-trials: must be a whole number >= 1"),
    "tune --epochs 0": (["tune", "--model", "lenet5", "--dataset", "digits", "--epochs", "0"],
                        "argument --epochs: must be a whole number >= 1"),
    "tune --epoch-budget -1": (["tune", "--model", "lenet5", "--dataset", "digits", "--epoch-budget", "-1"],
                               "argument --epoch-budget: must be a whole number >= 1"),
    "tune --workers -1": (["tune", "--model", "lenet5", "--dataset", "digits", "--workers", "-1"],
                          "argument --workers: must be a whole number >= 0"),
    "tune --seed -1": (["tune", "--model", "lenet5", "--dataset", "digits", "--seed", "-1"],
                       "argument --seed: must be a whole number in 0..4294967295"),
    "tune --port 70000": (["tune", "--model", "lenet5", "--dataset", "digits", "--port", "70000"],
                          "argument --port: must be a TCP port in 0..65535"),
    "check --input-shape 0,32,3": (["check", "MobileNetV2", "--input-shape", "0,32,3"],
                                   "argument --input-shape: must look like 32,32,3"),
    "check --input-shape a,b": (["check", "MobileNetV2", "--input-shape", "a,b"], "must look like 32,32,3"),
    "export --num-samples 0": (["export", "m.keras", "--out", "m.tflite", "--num-samples", "0"],
                               "argument --num-samples: must be a whole number >= 1"),
    "bench --threads 0": (["bench", "m.tflite", "--threads", "0"], "argument --threads: every value a whole number in"),
    "bench --threads 1,x": (["bench", "m.tflite", "--threads", "1,x"], "argument --threads: every value"),
    "bench --min-runs 0": (["bench", "m.tflite", "--min-runs", "0"], "argument --min-runs: must be a whole number"),
    "bench --min-seconds -1": (["bench", "m.tflite", "--min-seconds", "-1"], "must be a finite number >= 0"),
    "bench --warmup-seconds nan": (["bench", "m.tflite", "--warmup-seconds", "nan"], "must be a finite number >= 0"),
    "bench --warmup-runs -1": (["bench", "m.tflite", "--warmup-runs", "-1"], "must be a whole number >= 0"),
    "bench --pin -1": (["bench", "m.tflite", "--pin", "-1"], "argument --pin: every value a whole number >= 0"),
}


@pytest.mark.parametrize("case", list(CLI_PARSE_CASES))
def test_cli_refuses_bad_option_values_at_parse_time(capsys, case):
    from tfcompress.cli import main

    argv, fragment = CLI_PARSE_CASES[case]
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err and time.perf_counter() - t0 < 5


def _cli_error(capsys, argv):
    from tfcompress.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("flag", ["--json", "--markdown", "--plot"])
def test_bench_checks_output_paths_before_timing(capsys, tmp_path, tflite_file, monkeypatch, flag):
    import sys

    benchmark = sys.modules["tflite_export.benchmark"]  # the module (the package exports a function of that name)
    monkeypatch.setattr(benchmark, "benchmark", lambda *a, **k: pytest.fail("timed before checking outputs"))
    (tmp_path / "afile").write_text("x")
    line = _cli_error(capsys, ["bench", tflite_file, flag, str(tmp_path / "afile" / "out.png")])
    assert f"{flag} " in line and "is a file, not a folder" in line
    line = _cli_error(capsys, ["bench", tflite_file, flag, str(tmp_path)])
    assert "is a folder" in line


def test_bench_refuses_a_plot_format_before_timing(capsys, tmp_path, tflite_file):
    assert "matplotlib cannot write .docx" in _cli_error(capsys, ["bench", tflite_file, "--plot",
                                                                  str(tmp_path / "b.docx")])


def test_bench_pin_to_a_cpu_we_may_not_use(capsys, tflite_file):
    line = _cli_error(capsys, ["bench", tflite_file, "--pin", "4096"])
    assert "--pin 4096: not a CPU this process may use" in line


def test_tune_workers_on_a_busy_port(capsys, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = _cli_error(capsys, ["tune", "--model", "lenet5", "--dataset", "digits", "--workers", "1",
                                   "--port", str(port), "--dir", str(tmp_path / "t")])
    assert f"cannot listen on 127.0.0.1:{port}" in line and "choose another --port" in line
    assert not (tmp_path / "t").exists()


def test_optimize_train_epochs_zero_is_accepted_by_the_parser():
    from tfcompress.cli import build_parser

    args = build_parser().parse_args(["optimize", "--model", "m.keras", "--dataset", "digits", "--train-epochs", "0"])
    assert args.train_epochs == 0


def test_export_refuses_string_calibration_npz(capsys, tmp_path, tflite_file):
    path = tmp_path / "str.npz"
    np.savez(path, x_train=np.array(["a"] * 8))
    from tflite_export.cli import _load_npz

    with pytest.raises(ExportError) as e:
        _load_npz(str(path))
    _one_line(e, "x_train holds <U1 values, not real numbers")


@pytest.mark.parametrize("kwargs, wanted", [
    ({"threads": 0}, "threads must be a whole number in 1..1024"),
    ({"threads": 100_000}, "threads must be a whole number in 1..1024"),
    ({"train_subset": 0}, "train_subset must be a positive integer or None"),
    ({"epoch_budget": -1}, "epoch_budget must be a positive integer or None"),
    ({"max_trials": 0}, "max_trials must be a positive integer"),
    ({"epochs": True}, "epochs must be a positive integer"),
    ({"timing_runs": 0}, "timing_runs must be a positive integer"),
])
def test_tune_api_counts_checked_before_any_work(tmp_path, kwargs, wanted):
    """tune(threads=0) used to run every trial, then say 'no trial completed'."""
    from tfcompress.errors import TuningError
    from tfcompress.tuning import tune

    with pytest.raises(TuningError) as e:
        tune("digits_cnn", "digits", directory=str(tmp_path / "t"), **kwargs)
    _one_line(e, wanted)
    assert not (tmp_path / "t").exists()
