"""tflite_export CLI handlers (export / inspect / bench) through a standalone parser."""

import argparse
import json

import numpy as np
import pytest

from tflite_export import ExportError, cli
from tflite_export._testing import digits, tiny_cnn


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    model_file = d / "m.keras"
    tiny_cnn().save(model_file)
    xtr, ytr, xte, yte = digits()
    npz = d / "data.npz"
    np.savez(npz, x_train=xtr[:300], y_train=ytr[:300], x_test=xte, y_test=yte)
    return d, model_file, npz


def _run(argv):
    p = argparse.ArgumentParser()
    cli.add_subcommands(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    return args.func(args)


def test_export_inspect_bench(saved, capsys):
    d, model_file, npz = saved
    out = d / "m_int8.tflite"
    assert _run(
        ["export", str(model_file), "--mode", "int8", "--data", str(npz), "--out", str(out),
         "--json", str(d / "e.json"), "--metadata", '{"recipe": "cli"}']
    ) == 0
    rep = json.loads((d / "e.json").read_text())
    assert rep["input_dtype"] == "int8" and rep["test_accuracy"] > 0.85 and rep["metadata"]["recipe"] == "cli"
    assert _run(["export", str(model_file), "--mode", "float32", "--out", str(d / "m_f32.tflite")]) == 0
    assert _run(["export", str(model_file), "--mode", "int8", "--data", str(npz), "--out", str(d / "s.tflite"),
                 "--strip-names", "--json", str(d / "s.json")]) == 0
    small = json.loads((d / "s.json").read_text())
    assert small["metadata"]["names"] == "stripped" and small["zipped_bytes"] < rep["zipped_bytes"]
    assert small["test_accuracy"] == rep["test_accuracy"]
    capsys.readouterr()
    assert _run(["inspect", str(out), "--json", "-"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["metadata"]["recipe"] == "cli" and info["ops"]["CONV_2D"] == 1
    assert _run(["inspect", str(out), "--tensors"]) == 0
    assert "CONV_2D" in capsys.readouterr().out
    rc = _run(
        ["bench", str(d / "m_f32.tflite"), str(out), "--threads", "1,2", "--accelerator", "cpu,gpu",
         "--min-seconds", "0", "--warmup-seconds", "0", "--json", str(d / "b.json"), "--markdown", str(d / "b.md"),
         "--plot", str(d / "b.png")]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed.count("| m_int8.tflite |") == 4
    rows = json.loads((d / "b.json").read_text())["timings"]
    assert len(rows) == 8
    assert {r["status"] for r in rows if r["accelerator"] == "cpu"} == {"ok"}
    assert all(r["status"] == "ok" or r["status"].startswith("unavailable:") for r in rows)
    assert (d / "b.md").read_text().startswith("| file |")
    assert (d / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_errors(saved, tmp_path):
    d, model_file, npz = saved
    with pytest.raises(ExportError, match="needs --data"):
        _run(["export", str(model_file), "--mode", "int8", "--out", str(tmp_path / "x.tflite")])
    with pytest.raises(ExportError, match="metadata"):
        _run(
            ["export", str(model_file), "--mode", "float32", "--metadata", "{bad", "--out", str(tmp_path / "x.tflite")]
        )
    with pytest.raises(ExportError, match="does not exist"):
        _run(["export", str(model_file), "--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "x.tflite")])
    with pytest.raises(ExportError, match="unknown accelerator"):
        _run(["bench", str(npz), "--accelerator", "tpu"])
    with pytest.raises(ExportError, match="not a TFLite file"):
        _run(["bench", str(npz)])
    assert not (tmp_path / "x.tflite").exists()
    assert cli.main(["inspect", str(tmp_path / "missing.tflite")]) == 2


def test_cli_warnings_are_one_plain_line(saved, tmp_path, capsys):
    # a warning reaches the user as "warning: <message>", not "…/convert.py:371: UserWarning: …"
    # followed by the source line that raised it
    import warnings

    d, model_file, npz = saved
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = warnings.showwarning
        assert cli.main(["export", str(model_file), "--data", str(npz), "--num-samples", "500",
                         "--out", str(tmp_path / "m.tflite")]) == 0
        assert warnings.showwarning is before  # Python's own display is back after the command
    err = capsys.readouterr().err
    assert "warning: representative_data has 300 samples, fewer than num_samples=500" in err
    assert "UserWarning" not in err and ".py:" not in err
