"""The command line: the demo end to end, and one-line errors with exit code 2."""

import json
import os
import stat
import subprocess
import sys

import pytest

from tfcompress.cli import main
from tfcompress.pipeline import COLUMNS


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    return out


def test_demo_writes_files_and_report_has_every_table_field(demo_out):
    for f in ("float32.tflite", "int8.tflite", "report.json", "report.md", "report.png"):
        assert (demo_out / f).stat().st_size > 0, f
    rep = json.loads((demo_out / "report.json").read_text())
    assert [f["name"] for f in rep["files"]] == ["float32", "int8"]
    for row in rep["files"]:
        for key in COLUMNS.values():
            assert row.get(key) is not None, key
    f32, i8 = rep["files"]
    assert i8["input_dtype"] == "int8" and i8["output_dtype"] == "int8"
    assert f32["accuracy"] > 0.9 and i8["accuracy"] >= f32["accuracy"] - 0.03
    assert i8["compression_ratio"] > 4  # 80% sparse int8 vs float32, zipped
    assert rep["timings"]["int8"]["runs"] >= 50
    md = (demo_out / "report.md").read_text()
    assert "| file | accuracy |" in md and "conv1" in md
    assert not [p for p in os.listdir(demo_out) if p.startswith(".tmp")]


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tfcompress.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


def _one_line_error(proc, fragment):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], proc.stderr[-2000:]


def test_bad_recipe_exits_2(tmp_path):
    r = tmp_path / "r.yaml"
    r.write_text("pruning:\n  final_sparsity: 1.5\n")
    _one_line_error(_cli("optimize", "--model", "digits_cnn", "--dataset", "digits", "--recipe", str(r),
                         "--out", str(tmp_path / "o")), "pruning.final_sparsity must be in [0, 1)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_exits_2(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    _one_line_error(_cli("demo", "--out", str(ro / "x")), "cannot create output folder")


def test_out_is_a_file_exits_2(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    _one_line_error(_cli("demo", "--out", str(f / "sub")), "cannot create output folder")


def test_missing_fashion_mnist_exits_2(tmp_path):
    proc = _cli("demo", "--dataset", "fashion-mnist", "--out", str(tmp_path),
                env={"TFCOMPRESS_FASHION_MNIST": str(tmp_path)})  # an empty folder
    _one_line_error(proc, "apt-get install dataset-fashion-mnist")


def test_unknown_model_and_not_a_model_file(tmp_path):
    _one_line_error(_cli("optimize", "--model", "resnet9000", "--dataset", "digits"), "unknown reference model")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    _one_line_error(_cli("optimize", "--model", str(junk), "--dataset", "digits", "--out", str(tmp_path)),
                    "cannot load")


def test_a_reference_model_too_big_for_the_dataset_s_inputs_is_one_line(tmp_path):
    # LeNet-5's second 5x5 convolution gets 4x4 maps from 8x8 digits: a Keras traceback before
    _one_line_error(_cli("optimize", "--model", "lenet5", "--dataset", "digits", "--out", str(tmp_path)),
                    "the reference model lenet5 cannot take 8x8x1 inputs")


def test_help_explains():
    proc = _cli("demo", "--help")
    assert proc.returncode == 0 and "XNNPACK" in proc.stdout
    proc = _cli()
    assert proc.returncode == 2 and "demo" in proc.stdout


def test_tfcompress_cli_warnings_are_one_plain_line(tmp_path, capsys):
    import warnings

    import numpy as np

    from tflite_export._testing import digits, tiny_cnn

    tiny_cnn().save(tmp_path / "m.keras")
    xtr, ytr, _, _ = digits()
    np.savez(tmp_path / "d.npz", x_train=xtr[:100], y_train=ytr[:100])
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["export", str(tmp_path / "m.keras"), "--data", str(tmp_path / "d.npz"), "--num-samples", "500",
                     "--out", str(tmp_path / "m.tflite")]) == 0
    err = capsys.readouterr().err
    assert "warning: representative_data has 72 samples, fewer than num_samples=500" in err  # 72: the train split
    assert "UserWarning" not in err


def test_timing_runs_is_one_name_on_the_command_line_and_in_python():
    from tfcompress._defaults import TIMING_RUNS, TUNING_TIMING_RUNS
    from tfcompress.cli import build_parser
    from tfcompress.tuning import cli as tune_cli

    parser = build_parser()
    assert parser.parse_args(["demo"]).timing_runs == TIMING_RUNS
    assert parser.parse_args(["optimize", "--model", "lenet5", "--timing-runs", "7"]).timing_runs == 7
    args = parser.parse_args(["tune", "--model", "digits_cnn", "--dataset", "digits", "--timing-runs", "7"])
    assert tune_cli._kwargs(args)["timing_runs"] == 7  # tune(timing_runs=7)
    argv = tune_cli._child_argv(args, "worker")
    assert argv[argv.index("--timing-runs") + 1] == "7"  # workers time like the chief asked
    assert parser.parse_args(["tune", "--model", "digits_cnn"]).timing_runs == TUNING_TIMING_RUNS
    with pytest.raises(SystemExit):
        parser.parse_args(["optimize", "--model", "lenet5", "--timing-runs", "0"])


def test_tf_mot_s_per_layer_cqat_chatter_is_not_logged(caplog):
    import logging

    import tfcompress._keras  # noqa: F401 - its filter on the root logger

    # what TF-MOT's sparsity-preserving QAT logs (root logger) for each layer without zeros
    logging.warning("Input layer does not contain zero weights, so apply CQAT instead.")
    logging.warning("a warning of the user's own")
    assert [r.getMessage() for r in caplog.records] == ["a warning of the user's own"]
