"""tflite_export: modes, metadata/inspect, sparsity, per-layer errors, damaged files."""

import json

import numpy as np
import pytest

import tflite_export as tfl
from tflite_export import ExportError
from tflite_export._testing import digits, tiny_cnn


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    xtr, _, _, _ = digits()
    d = tmp_path_factory.mktemp("modes")
    out = {}
    for mode in ("float32", "float16", "dynamic", "int8", "int16x8"):
        meta = {"recipe": "digits-test", "normalisation": {"scale": 1 / 16}}
        out[mode] = tfl.export(
            model, d / f"{mode}.tflite", mode=mode, representative_data=xtr, num_samples=100, metadata=meta
        )
    return out


def test_every_mode_converts_and_is_accurate(model, files):
    _, _, xte, yte = digits()
    k = float(np.mean(np.argmax(model.predict(xte, verbose=0), -1) == yte))
    expected_io = {
        "float32": "float32", "float16": "float32", "dynamic": "float32", "int8": "int8", "int16x8": "float32"
    }
    for mode, rep in files.items():
        assert rep.mode == mode and rep.input_dtype == expected_io[mode], mode
        assert abs(tfl.evaluate(rep.path, xte, yte) - k) <= 0.02, mode
    info = {m: tfl.inspect(r.path) for m, r in files.items()}

    def weights(i):  # dtypes of the conv kernel
        return {t["dtype"] for t in i.tensors if t["constant"] and len(t["shape"]) == 4}

    assert weights(info["float32"]) == {"float32"}
    assert weights(info["float16"]) == {"float16"}
    assert weights(info["int8"]) == {"int8"} and weights(info["int16x8"]) == {"int8"}
    assert "int16" in info["int16x8"].dtype_counts
    assert files["float16"].bytes < files["float32"].bytes


@pytest.mark.parametrize("io,dtype", [("uint8", "uint8"), ("float", "float32")])
def test_int8_io_types(model, tmp_path, io, dtype):
    xtr, _, xte, yte = digits()
    rep = tfl.export(model, tmp_path / "m.tflite", mode="int8", io=io, representative_data=xtr, num_samples=100)
    assert rep.input_dtype == dtype and rep.output_dtype == dtype
    assert tfl.agreement(model, rep.path, xte) >= 0.97


def test_metadata_round_trip_and_inspect(files):
    rep = files["int8"]
    info = tfl.inspect(rep.path)
    assert info.metadata["recipe"] == "digits-test"
    assert info.metadata["normalisation"] == {"scale": 1 / 16}
    assert info.metadata["mode"] == "int8" and info.metadata["tflite_export_version"] == tfl.__version__
    assert rep.metadata == info.metadata
    assert "tfcompress" in info.metadata_names
    assert tfl.read_metadata(rep.path)["recipe"] == "digits-test"
    assert info.ops == {"CONV_2D": 1, "MAX_POOL_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 1}
    assert info.inputs[0]["dtype"] == "int8" and info.inputs[0]["quantization"]["scale"] > 0
    conv_w = [t for t in info.tensors if t["constant"] and len(t["shape"]) == 4][0]
    assert conv_w["quantization"]["per_channel"] and conv_w["quantization"]["num_scales"] == 8
    # 6x6x8 conv outputs * 3x3x1 kernel + 72x10 dense
    assert info.macs == 6 * 6 * 8 * 9 + 72 * 10 == tfl.count_macs(rep.path)
    assert info.bytes == rep.bytes and info.zipped_bytes == rep.zipped_bytes
    json.dumps(info.to_dict())
    assert "CONV_2D" in info.summary()
    # the file with metadata still runs
    _, _, xte, yte = digits()
    assert tfl.evaluate(rep.path, xte, yte) > 0.85


def test_bad_metadata(model, tmp_path):
    target = tmp_path / "m.tflite"
    with pytest.raises(ExportError, match="JSON"):
        tfl.export(model, target, mode="float32", metadata={"bad": object()})
    assert not target.exists()


def test_fewer_samples_warns(model, tmp_path):
    xtr, _, _, _ = digits()
    with pytest.warns(UserWarning, match="fewer than num_samples"):
        rep = tfl.export(model, tmp_path / "m.tflite", representative_data=xtr[:20], num_samples=100)
    assert rep.num_samples == 20


def test_sources_keras_file_and_saved_model(model, tmp_path):
    _, _, xte, _ = digits()
    h5 = tmp_path / "m.h5"
    model.save(h5)
    rep = tfl.export(str(h5), tmp_path / "from_h5.tflite", mode="float32")
    np.testing.assert_allclose(tfl.predict(rep.path, xte[:20]), model.predict(xte[:20], verbose=0), atol=1e-4)
    sm = tmp_path / "sm"
    model.save(sm, save_format="tf")
    rep = tfl.export(sm, tmp_path / "from_sm.tflite", mode="int8", representative_data=xte, num_samples=50)
    assert rep.input_dtype == "int8"
    assert tfl.agreement(model, rep.path, xte) >= 0.95
    with pytest.raises(ExportError, match="does not exist"):
        tfl.export(str(tmp_path / "missing.keras"), tmp_path / "x.tflite", mode="float32")


def test_sparse_flag_on_pruned_model(tmp_path):
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    base = keras.Sequential(
        [keras.layers.Input((32,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)]
    )
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.9, 0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
    pruned.compile("adam", "mse")
    x = np.random.default_rng(0).random((64, 32), dtype=np.float32)
    pruned.fit(
        x, np.zeros((64, 10), np.float32), epochs=1, batch_size=32, verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    # wrappers are stripped automatically
    dense = tfl.export(pruned, tmp_path / "dense.tflite", mode="float32")
    sparse = tfl.export(pruned, tmp_path / "sparse.tflite", mode="float32", sparse=True)
    assert dense.sparse_tensors == 0
    assert sparse.sparse_tensors > 0 and tfl.inspect(sparse.path).sparse_tensors == sparse.sparse_tensors
    assert sparse.bytes < dense.bytes
    assert dense.zipped_bytes < 0.5 * dense.bytes  # 90% zeros compress well
    np.testing.assert_allclose(tfl.predict(sparse.path, x), tfl.predict(dense.path, x), atol=1e-4)


def test_layer_errors_report(model, files):
    _, _, xte, _ = digits()
    rep = tfl.layer_errors(model, files["int8"].path, xte, max_samples=32)
    assert rep.samples == 32
    assert [r.layer for r in rep.rows] == ["conv", "pool", "flat", "logits"]
    assert all(r.matched_by for r in rep.rows)
    for r in rep.rows:
        assert r.snr_db > 15 and 0.95 < r.cosine <= 1.0 + 1e-9 and r.dtype == "int8"
    assert len(rep.worst(2)) == 2 and rep.worst(1)[0].snr_db == min(r.snr_db for r in rep.rows)
    json.dumps(rep.to_dict())
    assert rep.table().count("\n") == len(rep.rows) + 1
    f32 = tfl.layer_errors(model, files["float32"].path, xte, max_samples=8)
    assert all(r.snr_db > 80 for r in f32.rows) and not f32.flagged


def test_layer_errors_flags_bad_layer(model, files, tmp_path):
    """A file whose logits were computed with different weights is flagged."""
    import tf_keras as keras

    _, _, xte, _ = digits()
    other = keras.models.clone_model(model)

    def noise(w):
        return np.random.default_rng(1).standard_normal(w.shape).astype(w.dtype)

    other.set_weights([w if i < 2 else noise(w) for i, w in enumerate(model.get_weights())])
    rep = tfl.export(other, tmp_path / "other.tflite", mode="float32")
    errs = tfl.layer_errors(model, rep.path, xte, max_samples=16)
    assert [r.layer for r in errs.flagged] == ["logits"]
    assert errs.rows[0].snr_db > 80


def _damaged_variants(data, rng):
    yield "truncated-half", data[: len(data) // 2]
    yield "truncated-header", data[:12]
    yield "empty", b""
    b = bytearray(data)
    b[4:8] = b"XXXX"
    yield "bad-identifier", bytes(b)
    for k in range(6):
        b = bytearray(data)
        for _ in range(40):
            j = int(rng.integers(0, len(b)))
            b[j] ^= 1 << int(rng.integers(0, 8))
        yield f"bitflip-{k}", bytes(b)
    b = bytearray(data)
    b[16:48] = b"\xff" * 32  # smash the root table / vtable offsets
    yield "smashed-root", bytes(b)


def test_damaged_files_raise_export_error_not_crash(files, tmp_path):
    data = open(files["int8"].path, "rb").read()
    rng = np.random.default_rng(0)
    x = digits()[2][:4]
    for name, blob in _damaged_variants(data, rng):
        p = tmp_path / f"{name}.tflite"
        p.write_bytes(blob)
        for fn in (
            tfl.check_file,
            tfl.inspect,
            lambda q: tfl.predict(q, x),
            lambda q: tfl.benchmark(q, min_runs=1, min_seconds=0, warmup_seconds=0),
        ):
            try:
                fn(p)
            except ExportError as e:
                msg = str(e)
                assert "\n" not in msg and len(msg) < 400, name
        # bit flips may land in weights and leave a loadable file; the structural ones must fail
        if not name.startswith("bitflip"):
            with pytest.raises(ExportError):
                tfl.check_file(p)
    txt = tmp_path / "notes.tflite"
    txt.write_text("this is not a model, just some text notes")
    with pytest.raises(ExportError, match="not a TFLite file"):
        tfl.predict(txt, x)
    with pytest.raises(ExportError, match="does not exist"):
        tfl.inspect(tmp_path / "missing.tflite")


def test_child_process_guards_native_crash(monkeypatch, files, tmp_path):
    """If the native loader dies, check_file reports it instead of dying."""
    from tflite_export import safety

    p = tmp_path / "m.tflite"
    p.write_bytes(open(files["int8"].path, "rb").read())
    monkeypatch.setattr(safety, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(ExportError, match="crashed with signal"):
        safety.check_file(p)


def test_qat_model_exports_int8(model, tmp_path):
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    xtr, ytr, xte, yte = digits()
    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    qat.fit(xtr[:512], ytr[:512], epochs=1, batch_size=64, verbose=0)
    rep = tfl.export(qat, tmp_path / "qat.tflite", mode="int8", representative_data=xtr, num_samples=64)
    assert rep.input_dtype == "int8" and rep.output_dtype == "int8"
    assert tfl.agreement(qat, rep.path, xte) >= 0.97
    errs = tfl.layer_errors(qat, rep.path, xte, max_samples=16)
    assert all(r.matched_by for r in errs.rows)
    assert errs.rows[0].matched_by == "input"  # the QuantizeLayer


def test_layer_errors_with_folded_batchnorm(tmp_path):
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inp = keras.layers.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, use_bias=False, name="c1")(inp)
    h = keras.layers.BatchNormalization(name="c1_bn")(h)
    h = keras.layers.ReLU(6.0, name="c1_relu")(h)
    h = keras.layers.Conv2D(8, 3, name="c2")(h)
    h = keras.layers.BatchNormalization(name="c2_bn")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(10, name="fc")(h)
    m = keras.Model(inp, out)
    xtr, _, xte, _ = digits()
    m.predict(xtr[:2], verbose=0)
    rep = tfl.export(m, tmp_path / "bn.tflite", representative_data=xtr, num_samples=64)
    errs = tfl.layer_errors(m, rep.path, xte, max_samples=16)
    by = {r.layer: r for r in errs.rows}
    assert by["c1"].tensor == "(fused into c1_relu)" and by["c1_bn"].tensor == "(fused into c1_relu)"
    assert by["c1_relu"].matched_by == "name" and by["c1_relu"].snr_db > 20
    assert by["c2"].tensor == "(fused into c2_bn)" and by["c2_bn"].snr_db > 20
    assert by["fc"].matched_by in ("name", "output") and by["gap"].matched_by
