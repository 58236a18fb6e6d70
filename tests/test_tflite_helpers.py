"""tflite_export's shared helpers: first_line, save_figure, memory readings, roofline after timing."""

import argparse
import importlib
import json
import os

import pytest

import tflite_export as tfl
from tflite_export import ExportError, _atomic, _process, cli
from tflite_export.errors import first_line

FAST = dict(warmup_seconds=0.0, min_seconds=0.0, min_runs=5)


# ---------------------------------------------------------------------------- first_line


def test_first_line_is_shared_with_tfcompress():
    import tfcompress.errors

    assert tfcompress.errors.first_line is first_line
    assert first_line(ValueError("\n  bad shape\nTraceback ...")) == "bad shape"
    assert first_line(RuntimeError()) == "RuntimeError"
    assert first_line(ValueError("x" * 300)) == "x" * 200
    assert first_line(ValueError("abc"), limit=2) == "ab"


def test_empty_runtime_message_is_quoted_by_type(monkeypatch, int8_path):
    """An empty LiteRT error message used to raise IndexError (``str(e).splitlines()[0]``)."""
    import ai_edge_litert.interpreter as litert

    class Broken:
        def __init__(self, *a, **k):
            raise ValueError()

    monkeypatch.setattr(litert, "Interpreter", Broken)
    from tflite_export._runtime import open_interpreter

    with pytest.raises(ExportError, match=r"cannot load .*\(ValueError\)"):
        open_interpreter(int8_path, check=False)


# --------------------------------------------------------------------------- save_figure


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return plt, fig


def test_save_figure_writes_a_whole_file_and_closes_the_figure(tmp_path):
    plt, fig = _figure()
    dest = tmp_path / "sub" / "curve.png"
    assert _atomic.save_figure(fig, dest, dpi=50) == str(dest)
    assert dest.read_bytes()[:4] == b"\x89PNG"
    assert not plt.fignum_exists(fig.number)
    assert os.listdir(dest.parent) == ["curve.png"]  # no temporary file left
    plt2, fig2 = _figure()
    _atomic.save_figure(fig2, tmp_path / "curve.svg")
    assert b"<svg" in (tmp_path / "curve.svg").read_bytes()[:400]


def test_save_figure_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    plt, fig = _figure()
    dest = tmp_path / "curve.png"
    dest.write_bytes(b"old")

    def half_written(self, fname, **kw):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(fig), "savefig", half_written)
    with pytest.raises(ExportError, match="No space left"):
        _atomic.save_figure(fig, dest)
    assert dest.read_bytes() == b"old"  # the existing file is untouched
    assert os.listdir(tmp_path) == ["curve.png"]
    assert not plt.fignum_exists(fig.number)


def test_save_figure_unknown_format(tmp_path):
    plt, fig = _figure()
    with pytest.raises(ExportError, match="use a .png"):
        _atomic.save_figure(fig, tmp_path / "curve.notaformat")
    assert os.listdir(tmp_path) == []
    assert not plt.fignum_exists(fig.number)


# ---------------------------------------------------------------------- memory readings


def test_unreadable_rss_after_the_run_gives_unknown_memory(int8_path, monkeypatch):
    """benchmark() subtracted a None RSS reading (TypeError) when /proc became unreadable mid-run."""
    bm = importlib.import_module("tflite_export.benchmark")  # the module; tflite_export.benchmark is the function
    monkeypatch.setattr(bm, "current_rss_mb", lambda: 100.0)  # the reading before the run
    monkeypatch.setattr(_process, "current_rss_mb", lambda: None)  # the reading after it
    t = tfl.benchmark(int8_path, **FAST)
    assert t.ok and t.memory_delta_mb is None
    json.dumps(t.to_dict())


def test_unknown_rss_before_and_no_resource_module(int8_path, monkeypatch):
    monkeypatch.setattr(_process, "current_rss_mb", lambda: None)
    monkeypatch.setattr(_process, "resource", None)
    bm = importlib.import_module("tflite_export.benchmark")  # the module; tflite_export.benchmark is the function
    monkeypatch.setattr(bm, "current_rss_mb", lambda: None)
    t = tfl.benchmark(int8_path, **FAST)
    assert t.ok and t.memory_delta_mb is None and t.peak_memory_mb is None


def test_memory_delta_with_readings(monkeypatch):
    monkeypatch.setattr(_process, "current_rss_mb", lambda: 150.0)
    assert _process.memory_delta_mb(100.0) == 50.0
    assert _process.memory_delta_mb(None) is None


# ------------------------------------------------------------------- roofline after timing


def test_benchmark_knows_nothing_of_rooflines(int8_path):
    with pytest.raises(TypeError):
        tfl.benchmark(int8_path, roofline=True, **FAST)


def test_cli_adds_the_roofline_after_timing(int8_path, tmp_path, monkeypatch):
    from tflite_export import roofline

    monkeypatch.setattr(roofline, "PEAK_BATCH", 16)  # small and quick for the test
    monkeypatch.setattr(roofline, "_PEAK", {})
    p = argparse.ArgumentParser()
    cli.add_subcommands(p.add_subparsers(dest="command"))
    out = tmp_path / "b.json"
    args = p.parse_args(
        ["bench", int8_path, "--roofline", "--min-runs", "5", "--min-seconds", "0", "--warmup-seconds", "0",
         "--json", str(out)]
    )
    assert args.func(args) == 0
    (row,) = json.loads(out.read_text())["timings"]
    assert row["status"] == "ok" and row["macs"] == 6 * 6 * 8 * 9 + 72 * 10
    assert row["gops"] > 0 and row["peak_fraction"] > 0


# ------------------------------------------------------------------------------- android


def test_failed_adb_push_quotes_the_last_error_line(int8_path, tmp_path, monkeypatch):
    """The message quoted a Python list (``['adb: error: ...']``) instead of the line."""
    import stat

    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    adb = tmp_path / "adb"
    adb.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "devices" ]; then printf "List of devices attached\\nemu-1\\tdevice\\n\\n"; exit 0; fi\n'
        'case "$*" in *push*) echo "adb: error: failed to copy: No space left on device" >&2; exit 1;; esac\n'
        "exit 0\n"
    )
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("ADB", str(adb))
    with pytest.raises(ExportError) as e:
        tfl.benchmark_on_device(int8_path, binary)
    assert str(e.value) == (
        "adb push failed: adb: error: failed to copy: No space left on device; "
        "check the device has space and is unlocked"
    )


# ------------------------------------------------------------------ --data without tfcompress


def test_dataset_names_come_from_the_caller_not_an_import_of_tfcompress():
    with pytest.raises(ExportError, match=r"--data digits is not a \.npz file.*tfcompress export"):
        cli.load_data("digits")

    class Fake:
        train = ("xtr", "ytr")
        test = ("xte", "yte")

    assert cli.load_data("digits", lambda name: Fake) == ("xtr", "ytr", "xte", "yte")


def test_tfcompress_cli_hands_its_datasets_to_export():
    from tfcompress import cli as tfc_cli
    from tfcompress import datasets

    args = tfc_cli.build_parser().parse_args(["export", "m.keras", "--out", "m.tflite", "--data", "digits"])
    assert args.load_dataset is datasets.load


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_honour_the_umask(tmp_path, umask, mode):
    # mkstemp makes 0600 files whatever the umask, and os.replace keeps the mode:
    # a shared tuning folder needs what a plain open() would give.
    from tfcompress.report import atomic_write_text
    from tflite_export._atomic import atomic_write_bytes

    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_text(str(tmp_path / "b.txt"), "y")
    finally:
        os.umask(old)
    for name in ("a.bin", "b.txt"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == mode, name
