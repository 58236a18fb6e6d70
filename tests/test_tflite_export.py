"""Phase-1 behaviour of tflite_export: export, predict/evaluate, benchmark."""

import json
import os
import stat

import numpy as np
import pytest

import tflite_export as tfl
from tflite_export import ExportError
from tflite_export._testing import digits, keras_accuracy, tiny_cnn


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


@pytest.fixture(scope="module")
def int8_file(model, tmp_path_factory):
    xtr, _, _, _ = digits()
    path = tmp_path_factory.mktemp("int8") / "m_int8.tflite"
    rep = tfl.export(model, path, mode="int8", representative_data=xtr, num_samples=200)
    return path, rep


def test_int8_has_int8_io_and_runs(model, int8_file):
    path, rep = int8_file
    assert os.path.exists(path)
    assert rep.mode == "int8" and rep.status == "ok"
    assert rep.input_dtype == "int8" and rep.output_dtype == "int8"
    assert rep.input_quantization is not None and rep.output_quantization is not None
    assert rep.bytes == os.path.getsize(path)
    assert 0 < rep.zipped_bytes
    json.dumps(rep.to_dict())
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    assert it.get_input_details()[0]["dtype"] == np.int8
    assert it.get_output_details()[0]["dtype"] == np.int8


def test_int8_accuracy_and_agreement(model, int8_file):
    path, _ = int8_file
    _, _, xte, yte = digits()
    k_acc = keras_accuracy(model, xte, yte)
    assert k_acc > 0.85, "fixture model should learn digits"
    t_acc = tfl.evaluate(path, xte, yte)
    assert abs(t_acc - k_acc) <= 0.02
    assert tfl.agreement(model, path, xte) >= 0.97
    # one-hot labels give the same accuracy
    assert tfl.evaluate(path, xte, np.eye(10)[yte]) == pytest.approx(t_acc)


def test_predict_batch_and_single_sample_agree(int8_file):
    path, _ = int8_file
    _, _, xte, _ = digits()
    a = tfl.predict(path, xte[:37], batch_size=16)
    b = tfl.predict(path, xte[:37], batch_size=1)
    assert a.shape == (37, 10) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert tfl.predict(path, xte[0]).shape == (1, 10)


def test_float32_parity(model, tmp_path):
    _, _, xte, _ = digits()
    rep = tfl.export(model, tmp_path / "f32.tflite", mode="float32")
    assert rep.input_dtype == "float32" and rep.output_dtype == "float32"
    assert rep.input_quantization is None
    ref = model.predict(xte, verbose=0)
    out = tfl.predict(rep.path, xte)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
    assert tfl.agreement(model, rep.path, xte) == 1.0


def test_inference_trace_and_full_keras_path_give_the_same_model(model, tmp_path, monkeypatch):
    """Keras models convert from their inference call alone (fast); the full
    from_keras_model path is the fallback and gives the same ops and numbers."""
    import tensorflow as tf

    import tflite_export.convert as conv

    xtr, _, xte, _ = digits()

    def refuse(*a, **k):
        raise AssertionError("from_keras_model must not run when the inference trace works")

    with monkeypatch.context() as m:
        m.setattr(tf.lite.TFLiteConverter, "from_keras_model", refuse)
        fast = tfl.export(model, tmp_path / "fast.tflite", representative_data=xtr, num_samples=64)
    with monkeypatch.context() as m:
        m.setattr(conv, "_inference_converter", lambda tf, model, saved_model_dir=None: None)
        full = tfl.export(model, tmp_path / "full.tflite", representative_data=xtr, num_samples=64)
    a, b = tfl.inspect(fast.path), tfl.inspect(full.path)
    assert [t["name"] for t in a.inputs] == [t["name"] for t in b.inputs]
    assert a.ops == b.ops
    np.testing.assert_array_equal(tfl.predict(fast.path, xte), tfl.predict(full.path, xte))


def test_representative_data_forms(model, tmp_path):
    import tensorflow as tf

    xtr, ytr, _, _ = digits()
    for i, data in enumerate(
        [
            (xtr, ytr),
            tf.data.Dataset.from_tensor_slices((xtr, ytr)).batch(32),
            tf.data.Dataset.from_tensor_slices(xtr),
        ]
    ):
        rep = tfl.export(model, tmp_path / f"r{i}.tflite", representative_data=data, num_samples=64)
        assert rep.input_dtype == "int8" and rep.num_samples == 64


def test_int8_without_data_leaves_no_file(model, tmp_path):
    target = tmp_path / "none.tflite"
    with pytest.raises(ExportError, match="representative_data"):
        tfl.export(model, target, mode="int8")
    assert not target.exists()
    assert os.listdir(tmp_path) == []


def test_unconvertible_model_leaves_no_file(tmp_path):
    import tensorflow as tf
    import tf_keras as keras

    inp = keras.layers.Input((4,))
    out = keras.layers.Lambda(lambda t: tf.numpy_function(lambda a: a * 2, [t], tf.float32))(inp)
    bad = keras.Model(inp, out)
    target = tmp_path / "bad.tflite"
    with pytest.raises(ExportError) as ei:
        tfl.export(bad, target, mode="float32")
    assert "\n" not in str(ei.value)
    assert not target.exists() and os.listdir(tmp_path) == []
    with pytest.raises(ExportError):
        tfl.export(object(), target, mode="float32")
    assert not target.exists()


def test_failed_export_keeps_existing_file(model, tmp_path):
    target = tmp_path / "keep.tflite"
    target.write_bytes(b"old")
    with pytest.raises(ExportError):
        tfl.export(model, target, mode="int8")
    assert target.read_bytes() == b"old"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_dir(model, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(ExportError, match="cannot write"):
            tfl.export(model, ro / "m.tflite", mode="float32")
        assert os.listdir(ro) == []
    finally:
        ro.chmod(stat.S_IRWXU)


def test_unwritable_target_is_a_folder(model, tmp_path):
    with pytest.raises(ExportError, match="folder"):
        tfl.export(model, tmp_path, mode="float32")


def test_bad_mode(model, tmp_path):
    with pytest.raises(ExportError, match="unknown mode"):
        tfl.export(model, tmp_path / "x.tflite", mode="int3")


def test_benchmark_sane(int8_file):
    path, _ = int8_file
    t = tfl.benchmark(path, threads=1, warmup_seconds=0.05, min_seconds=0.05)
    assert t.status == "ok" and t.accelerator == "cpu"
    assert t.backend in ("xnnpack", "builtin")
    assert t.runs >= 50 and t.warmup_runs >= 1
    assert 0 < t.min_ms <= t.median_ms <= t.p99_ms <= t.max_ms
    assert t.init_ms > 0 and t.peak_memory_mb > 0 and t.std_ms >= 0
    d = t.to_dict()
    json.dumps(d)
    assert d["threads"] == 1
    b = tfl.benchmark(path, use_xnnpack=False, warmup_seconds=0.0, min_seconds=0.0)
    assert b.backend == "builtin" and b.runs >= 50


def test_benchmark_defaults_follow_benchmark_model_rigour(int8_file):
    path, _ = int8_file
    t = tfl.benchmark(path)
    # defaults: warm-up >= 0.5 s and timed >= 1 s
    assert t.runs >= 50
    assert t.mean_ms * t.runs >= 1000 * 0.9 or t.runs > 1000


def test_parent_is_a_file(model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot create output folder"):
        tfl.export(model, blocker / "m.tflite", mode="float32")


def test_write_failure_leaves_nothing(model, tmp_path, monkeypatch):
    """Simulated EACCES / disk-full while writing (works even as root)."""
    from tflite_export import _atomic

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_atomic.tempfile, "mkstemp", denied)
    with pytest.raises(ExportError, match="cannot write .*Permission denied"):
        tfl.export(model, tmp_path / "m.tflite", mode="float32")
    monkeypatch.undo()

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_atomic.os, "fsync", full)
    with pytest.raises(ExportError, match="No space left"):
        tfl.export(model, tmp_path / "m.tflite", mode="float32")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan, 1e39])
def test_non_finite_calibration_data_is_refused_not_a_segfault(tmp_path, bad):
    # One Inf in int8 calibration data used to kill the process inside the converter.
    model = tiny_cnn()
    x = np.random.default_rng(0).random((8, *model.input_shape[1:]), dtype=np.float32).astype(np.float64)
    x[3, 0, 0, 0] = bad
    path = tmp_path / "m.tflite"
    with pytest.raises(ExportError, match="sample 3 has NaN or Inf"):
        tfl.export(model, path, mode="int8", representative_data=x, num_samples=8)
    assert not path.exists()


def test_a_large_model_converts_from_a_saved_model_of_its_inference_call(model, monkeypatch, tmp_path):
    # The concrete-function converter keeps Python copies of the graph and its weights while it
    # converts; large models go through a SavedModel folder of the inference call instead (VGG19
    # after QAT, int8: peak +1.34 GiB above the model instead of +1.95, benchmarks/bench_memory.py).
    # The file is the same but for one metadata byte.
    import tensorflow as tf

    from tflite_export import convert

    xtr = digits()[0][:32]
    direct, _ = tfl.convert_bytes(model, "int8", representative_data=xtr, num_samples=32)
    folders = []
    real = tf.lite.TFLiteConverter.from_saved_model

    def from_saved_model(cls, path, *args, **kwargs):
        folders.append(sorted(os.listdir(path)))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", classmethod(from_saved_model))
    monkeypatch.setattr(convert, "LARGE_MODEL_BYTES", 0)
    via_folder, _ = tfl.convert_bytes(model, "int8", representative_data=xtr, num_samples=32)
    assert len(folders) == 1 and "saved_model.pb" in folders[0]
    # the same file but for one byte: CONVERSION_METADATA's source type (SavedModel, not functions)
    assert len(via_folder) == len(direct) and sum(a != b for a, b in zip(via_folder, direct)) == 1
    paths = [tmp_path / "direct.tflite", tmp_path / "via_folder.tflite"]
    for path, data in zip(paths, (direct, via_folder)):
        path.write_bytes(data)
    np.testing.assert_array_equal(tfl.predict(paths[0], xtr), tfl.predict(paths[1], xtr))


def test_constant_calibrated_layer_norm_no_longer_aborts_the_runtime(tmp_path, monkeypatch):
    # ConvNeXtLarge after pruning + QAT: a LayerNorm over channels that were all equal
    # calibrated its SquaredDifference output as all zeros, scale 7.8e-9; LiteRT's int8 kernel then
    # aborted the whole process (QuantizeMultiplierSmallerThanOneExp, tensorflow#60815).
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tflite_export import _flatbuffer as fb

    keras = pytest.importorskip("tf_keras")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(4, kernel_initializer="zeros",
                                                 bias_initializer=keras.initializers.Constant(5.0)),
                              keras.layers.LayerNormalization(), keras.layers.Dense(2)])
    x = np.random.RandomState(0).rand(32, 8).astype("float32")
    with pytest.warns(UserWarning, match=r"calibration saw 2 tensor\(s\) constant.*SQUARED_DIFFERENCE"):
        rep = tfl.export(model, tmp_path / "fixed.tflite", representative_data=x, num_samples=32)
    assert not fb.aborting_ops((tmp_path / "fixed.tflite").read_bytes())
    it = Interpreter(model_path=str(rep.path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()  # the builtin kernels' Prepare is where the converter's file aborted
    it.set_tensor(it.get_input_details()[0]["index"], np.zeros((1, 8), np.int8))
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).shape == (1, 2)
    # and on XNNPACK, which refuses a TRANSPOSE/RESHAPE whose input and output scales differ: the
    # widened scale is carried through them, and the numbers are Keras's (LayerNorm of equal values: beta)
    np.testing.assert_allclose(tfl.predict(rep.path, x[:4]), model.predict(x[:4], verbose=0), atol=1e-6)

    monkeypatch.setattr(fb, "widen_aborting_scales", lambda data: (data, []))  # the converter's own file
    tfl.export(model, tmp_path / "raw.tflite", representative_data=x, num_samples=32)
    untrusted = tmp_path / "received.tflite"  # exported files are trusted: a copy gets checked
    untrusted.write_bytes((tmp_path / "raw.tflite").read_bytes())
    assert fb.aborting_ops(untrusted.read_bytes())
    with pytest.raises(ExportError, match="crashed with signal 6"):
        tfl.check_file(untrusted)  # in a child process: it is this process it would have killed



@pytest.mark.parametrize("layer", ["Dense", "Conv2D", "dead ReLU"])
def test_a_layer_calibrated_as_all_zeros_gets_a_scale_xnnpack_accepts(tmp_path, monkeypatch, layer):
    # ConvNeXtLarge's stage-3 MLP: a Dense whose outputs calibration saw as all zeros got
    # scale 7.8e-9, and XNNPACK refused to build its runtime: input x filter / output scale was 1,350,
    # XNNPACK's limit is 256. The builtin kernels ran the file. A "dead" ReLU layer (all its
    # pre-activations negative, as heavy pruning leaves some) is the same case.
    from tflite_export import _flatbuffer as fb

    keras = pytest.importorskip("tf_keras")
    k = np.array([[1, -1, 0.5, 2], [-1, 1, -0.5, -2]], "float32")  # every column is orthogonal to (a, a)
    init = keras.initializers.Constant
    first, shape = {
        "Dense": (keras.layers.Dense(4, use_bias=False, kernel_initializer=init(k)), (2,)),
        "Conv2D": (keras.layers.Conv2D(4, 1, use_bias=False, kernel_initializer=init(k.reshape(1, 1, 2, 4))),
                   (1, 1, 2)),
        "dead ReLU": (keras.layers.Conv2D(4, 1, activation="relu", bias_initializer=init(-100.0)), (1, 1, 2)),
    }[layer]
    model = keras.Sequential([keras.Input(shape), first, keras.layers.Flatten(),
                              keras.layers.Dense(3, bias_initializer=init([0.5, -0.25, 1.0]))])
    a = np.random.RandomState(0).rand(32, 1).astype("float32")
    x = np.concatenate([a, a], 1).reshape((32, *shape))
    with pytest.warns(UserWarning, match=r"calibration saw 1 tensor\(s\) constant.*(FULLY_CONNECTED|CONV_2D).*"
                                         r"XNNPACK multiplier"):
        rep = tfl.export(model, tmp_path / "fixed.tflite", representative_data=x, num_samples=32)
    assert not fb.aborting_ops((tmp_path / "fixed.tflite").read_bytes())
    # XNNPACK builds its runtime now, and the numbers are Keras's
    np.testing.assert_allclose(tfl.predict(rep.path, x[:4]), model.predict(x[:4], verbose=0), atol=0.01)

    monkeypatch.setattr(fb, "widen_aborting_scales", lambda data: (data, []))  # the converter's own file
    raw = tmp_path / "raw.tflite"
    tfl.export(model, raw, representative_data=x, num_samples=32)
    assert fb.aborting_ops(raw.read_bytes())
    with pytest.raises(ExportError, match=r"XNNPACK cannot run .*raw.tflite \(failed to create XNNPACK runtime"):
        tfl.predict(raw, x[:4])
    builtin = tfl.predict(raw, x[:4], use_xnnpack=False)  # the way out the error names
    np.testing.assert_allclose(builtin, model.predict(x[:4], verbose=0), atol=0.01)


def test_a_file_xnnpack_cannot_run_is_a_one_line_error_not_a_runtime_error():
    # ConvNeXtLarge's int8 file (199 MB, 30 min to make): a LayerNorm over equal channels
    # left requantization scales XNNPACK refuses when it builds its runtime; the builtin kernels run it.
    from tflite_export._runtime import invoke

    class Interpreter:
        def __init__(self, message):
            self.message = message

        def invoke(self):
            raise RuntimeError(self.message)

    refused = "failed to create XNNPACK runtimefailed to create XNNPACK runtimeNode number 1570 " \
              "(TfLiteXNNPackDelegate) failed to prepare."
    with pytest.raises(ExportError, match=r"XNNPACK cannot run m.tflite \(failed to create XNNPACK runtime.*"
                                          r"predict\(path, x, use_xnnpack=False\)$"):
        invoke(Interpreter(refused), "m.tflite")
    with pytest.raises(RuntimeError, match="^other$"):  # anything else is not relabelled
        invoke(Interpreter("other"), "m.tflite")


def test_strip_names_empties_the_inner_names_and_keeps_the_model(model, int8_file, tmp_path):
    path, rep = int8_file
    xtr, _, xte, _ = digits()
    small = tfl.export(model, tmp_path / "s.tflite", mode="int8", representative_data=xtr, num_samples=200,
                       strip_names=True)
    assert small.zipped_bytes < rep.zipped_bytes and small.bytes < rep.bytes
    assert small.metadata["names"] == "stripped" and "names" not in rep.metadata
    from tflite_export import _flatbuffer as fb

    notes = [set(fb.read_metadata(fb.parse_model(fb.read_bytes(p)), None)) for p in (path, small.path)]
    assert set(fb.CONVERTER_NOTES) <= notes[0] and not set(fb.CONVERTER_NOTES) & notes[1]  # no runtime reads them
    assert fb.parse_model(fb.read_bytes(small.path)).description is None
    assert "tflite_export_version" in rep.metadata and "tflite_export_version" not in small.metadata
    np.testing.assert_array_equal(tfl.predict(small.path, xte[:50]), tfl.predict(path, xte[:50]))
    from ai_edge_litert.interpreter import Interpreter

    full, stripped = Interpreter(model_path=str(path)), Interpreter(model_path=small.path)
    for a, b in ((full.get_input_details(), stripped.get_input_details()),
                 (full.get_output_details(), stripped.get_output_details())):
        assert [d["name"] for d in a] == [d["name"] for d in b] and all(d["name"] for d in b)
    assert stripped.get_signature_list() == full.get_signature_list()
    named = lambda it: [d["name"] for d in it.get_tensor_details() if d["name"]]  # noqa: E731
    assert len(named(stripped)) == 2 < len(named(full))  # the input and the output only
    run = stripped.get_signature_runner()
    key = next(iter(stripped.get_signature_list()["serving_default"]["inputs"]))
    q = stripped.get_input_details()[0]["quantization"]
    out = run(**{key: np.clip(np.round(xte[:1] / q[0] + q[1]), -128, 127).astype(np.int8)})
    assert next(iter(out.values())).shape == (1, 10)


def test_strip_export_rewrites_a_written_file_as_export_strips_it(model, tmp_path):
    xtr, _, xte, _ = digits()
    full = tfl.export(model, tmp_path / "a.tflite", mode="int8", representative_data=xtr,
                      metadata={"who": "me", "recipe": {"seed": 0, "pruning": None}})
    direct = tfl.export(model, tmp_path / "b.tflite", mode="int8", representative_data=xtr, strip_names=True)
    small = tfl.strip_export(full)
    assert small.path == full.path and small.bytes == os.path.getsize(small.path) < full.bytes
    assert small.zipped_bytes < full.zipped_bytes and abs(small.zipped_bytes - direct.zipped_bytes) < 40
    kept = tfl.read_metadata(small.path)
    assert kept["who"] == "me" and small.metadata["names"] == "stripped" == kept["names"]
    assert "recipe" not in kept and kept["mode"] == "int8"  # the job's report keeps the recipe, not the file
    np.testing.assert_array_equal(tfl.predict(small.path, xte[:20]), tfl.predict(direct.path, xte[:20]))


def test_a_stripped_file_still_says_how_each_weight_op_stores_its_weights(model, tmp_path):
    from tflite_export.int4 import int4_weights

    xtr, _, _, _ = digits()
    full = tfl.export(model, tmp_path / "a.tflite", mode="int8", representative_data=xtr)
    small = tfl.export(model, tmp_path / "b.tflite", mode="int8", representative_data=xtr, strip_names=True)
    kinds = [sorted(int4_weights(open(e.path, "rb").read()).values()) for e in (full, small)]
    assert kinds[0] == kinds[1] and len(kinds[1]) >= 2  # one entry per weight op, not one per (empty) name
