"""Untrusted model files: a Lambda layer's code never runs unless the caller opts in.

A tiny model whose Lambda layer writes a marker file is saved as ``.h5``,
``.keras`` and a SavedModel folder, then handed to every entry point that
takes a model file: each must refuse it with one clear line naming the layer
and the opt-in, and the marker must not appear. ``safe_mode=False`` /
``--unsafe`` loads it (and so runs the code).
"""

import os

import numpy as np
import pytest

import tfcompress
import tflite_export
from tfcompress._keras import keras
from tfcompress.cli import build_parser, main
from tfcompress.tuning import tune
from tflite_export import ExportError
from tflite_export import cli as export_cli

FORMATS = ("h5", "keras", "savedmodel")


def _marker_model(marker):
    # The function body holds the marker path as a literal, so its marshalled
    # bytecode runs anywhere Keras rebuilds the layer.
    src = f"def evil(t):\n    open({str(marker)!r}, 'w').write('ran')\n    return t * 2.0\n"
    ns = {}
    exec(src, ns)  # noqa: S102 - builds the "untrusted" function under test
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    x = keras.layers.Lambda(ns["evil"], name="evil")(inp)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("untrusted")
    marker = root / "marker"
    model = _marker_model(marker)
    paths = {"h5": root / "m.h5", "keras": root / "m.keras", "savedmodel": root / "m_savedmodel"}
    for p in paths.values():
        model.save(str(p))
    return {k: str(v) for k, v in paths.items()}, marker


@pytest.fixture
def untrusted(files):
    paths, marker = files
    if marker.exists():
        marker.unlink()  # building or an earlier opt-in test ran it
    yield paths, marker
    assert not marker.exists(), "the Lambda layer's code ran"


def _assert_cli_refusal(rc, capsys):
    err = capsys.readouterr().err
    assert rc == 2, err[-2000:]
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, err[-2000:]
    assert "Lambda layer(s) evil" in lines[0] and "--unsafe" in lines[0]


def _assert_api_refusal(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg and "Lambda layer(s) evil" in msg and "safe_mode=False" in msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_export_refuses(untrusted, fmt, tmp_path, capsys):
    paths, _ = untrusted
    out = tmp_path / "m.tflite"
    _assert_cli_refusal(main(["export", paths[fmt], "--mode", "float32", "--out", str(out)]), capsys)
    assert not out.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_tflite_export_cli_refuses(untrusted, fmt, tmp_path, capsys):
    paths, _ = untrusted  # python -m tflite_export runs this main()
    _assert_cli_refusal(export_cli.main(["export", paths[fmt], "--mode", "float32",
                                         "--out", str(tmp_path / "m.tflite")]), capsys)


@pytest.mark.parametrize("fmt", FORMATS)
def test_tflite_export_api_refuses(untrusted, fmt, tmp_path):
    paths, _ = untrusted
    with pytest.raises(ExportError) as ei:
        tflite_export.export(paths[fmt], str(tmp_path / "m.tflite"), mode="float32")
    _assert_api_refusal(ei)


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_check_refuses(untrusted, fmt, capsys):
    paths, _ = untrusted
    _assert_cli_refusal(main(["check", paths[fmt], "--no-convert"]), capsys)


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_optimize_refuses(untrusted, fmt, tmp_path, capsys):
    paths, _ = untrusted
    out = tmp_path / "out"
    _assert_cli_refusal(main(["optimize", "--model", paths[fmt], "--dataset", "digits", "--out", str(out),
                              "--quiet"]), capsys)
    assert not out.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_tune_refuses_before_any_trial(untrusted, fmt, tmp_path, capsys):
    paths, _ = untrusted
    folder = tmp_path / "tune"
    _assert_cli_refusal(main(["tune", "--model", paths[fmt], "--dataset", "digits", "--max-trials", "1",
                              "--dir", str(folder), "--quiet"]), capsys)
    assert not folder.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_api_entry_points_refuse(untrusted, fmt, tmp_path):
    paths, _ = untrusted
    x = np.zeros((8, 4), "float32")
    y = np.zeros(8, "int64")
    calls = [
        lambda: tfcompress.load_model(paths[fmt]),
        lambda: tfcompress.check(paths[fmt], convert=False),
        lambda: tune(paths[fmt], "digits", max_trials=1, directory=str(tmp_path / "tune")),
    ]
    for call in calls:
        with pytest.raises(tfcompress.UnsupportedModelError) as ei:
            call()
        _assert_api_refusal(ei)
    assert not (tmp_path / "tune").exists()
    # optimize() takes model objects only (tests/test_optimize.py pins it): a path is never loaded.
    with pytest.raises(tfcompress.UnsupportedModelError, match="expected a tf_keras Model"):
        tfcompress.optimize(paths[fmt], (x, y))


@pytest.mark.parametrize("fmt", FORMATS)
def test_explicit_opt_in_loads(files, fmt):
    paths, marker = files
    if marker.exists():
        marker.unlink()
    model = tfcompress.load_model(paths[fmt], safe_mode=False)
    assert model.get_layer("evil") is not None
    assert marker.exists()  # the opt-in really does run the file's code
    marker.unlink()


def test_cli_export_opt_in_converts(files, tmp_path, capsys):
    paths, marker = files
    out = tmp_path / "m.tflite"
    assert main(["export", paths["h5"], "--mode", "float32", "--out", str(out), "--unsafe"]) == 0
    assert out.stat().st_size > 0
    if marker.exists():
        marker.unlink()


def test_savedmodel_without_keras_metadata_converts_from_its_graph(files, tmp_path):
    # A plain tf.Module SavedModel has no Keras metadata: the exporter converts its graph (no Python runs).
    import tensorflow as tf

    class Double(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def __call__(self, x):
            return {"y": x * 2.0}

    folder = str(tmp_path / "graph_only")
    tf.saved_model.save(Double(), folder)
    assert not os.path.exists(os.path.join(folder, "keras_metadata.pb"))
    rep = tflite_export.export(folder, str(tmp_path / "g.tflite"), mode="float32")
    assert rep.bytes > 0


def test_tune_opt_in_is_carried_to_trials_and_workers(files, tmp_path):
    from tfcompress.tuning import cli as tune_cli
    from tfcompress.tuning.inputs import search_inputs

    paths, marker = files
    args = build_parser().parse_args(["tune", "--model", paths["h5"], "--dataset", "digits", "--unsafe"])
    assert tune_cli._kwargs(args)["safe_mode"] is False  # --unsafe is tune(safe_mode=False): one switch
    assert "--unsafe" in tune_cli._child_argv(args, "worker")
    x = np.random.default_rng(0).random((64, 4), dtype="float32")
    inputs = search_inputs(paths["h5"], (x, np.arange(64) % 3), safe_mode=False, isolation="session")
    assert inputs.build.target.safe_mode is False
    inputs.build()  # what each trial does: loads the trusted file
    assert marker.exists()
    marker.unlink()


def test_check_takes_the_same_switch(files):
    paths, marker = files
    report = tfcompress.check(paths["keras"], convert=False, safe_mode=False)
    assert report.layer("evil") is not None
    if marker.exists():
        marker.unlink()
