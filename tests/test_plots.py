"""Pictures a person reads at a glance: pareto.png and bench --plot.

Assertions are on the matplotlib figure objects (scales, limits, labels,
lines), not on pixels.
"""

import types

import matplotlib.pyplot as plt
import pytest

from tfcompress.tuning.plots import pareto_figure, save_pareto
from tflite_export.bench_report import timings_figure


def _row(tid, acc, kb, ms, feasible=True):
    return {"trial_id": tid, "feasible": feasible, "metrics": {"accuracy": acc, "size_kb": kb, "latency_ms": ms}}


def _result(rows, pareto=(), best=None, constraints=()):
    done = [r for r in rows if r.get("metrics")]
    return types.SimpleNamespace(completed=done, pareto=list(pareto), constraints=list(constraints),
                                 best=next((r for r in done if r["trial_id"] == best), None))


@pytest.fixture
def close():
    yield
    plt.close("all")


def test_pareto_latency_axis_is_readable_when_trials_differ_by_nanoseconds(close):
    rows = [_row("00", 0.91, 10.2, 0.0123451), _row("01", 0.93, 12.0, 0.0123456), _row("02", 0.88, 9.1, 0.0123449)]
    fig = pareto_figure(_result(rows, pareto=["01", "02"], best="01"))
    size, latency = fig.axes
    assert latency.get_xlabel() == "median latency (µs)"
    lo, hi = latency.get_xlim()
    assert hi - lo >= 0.1 * 12.3  # at least 10 % of the value: nanosecond noise does not fill the axis
    fig.canvas.draw()
    assert latency.xaxis.get_offset_text().get_text() == ""
    labels = [t.get_text() for t in latency.get_xticklabels() if t.get_text()]
    assert labels and all("e" not in t and len(t) <= 6 for t in labels), labels


def test_pareto_draws_the_chosen_trial_and_the_constraints(close):
    rows = [_row("00", 0.91, 10.0, 2.0), _row("01", 0.95, 30.0, 3.0, feasible=False), _row("02", 0.90, 8.0, 1.5)]
    fig = pareto_figure(_result(rows, pareto=["00", "02"], best="00",
                                constraints=["size_kb<=20", "latency_ms<=2.5", "accuracy>=0.9"]))
    size, latency = fig.axes
    assert latency.get_xlabel() == "median latency (ms)"  # over 1 ms: stays in ms
    for ax, own in ((size, "size_kb<=20"), (latency, "latency_ms<=2.5")):
        lines = {ln.get_label() for ln in ax.get_lines()}
        assert {"accuracy>=0.9", own} <= lines, lines
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "chosen (trial 00)" in legend and "Pareto" in legend
    assert size.get_xlim()[1] > 30 and size.get_xlim()[0] >= 0


def test_no_completed_trial_gets_no_picture(tmp_path, close):
    result = _result([{"trial_id": "00", "feasible": False, "metrics": {}}])
    assert pareto_figure(result) is None
    assert save_pareto(result, tmp_path / "pareto.png") is None
    assert not (tmp_path / "pareto.png").exists()


def _t(file, ms, status="ok", accel="cpu", threads=1):
    return {"file": file, "accelerator": accel, "threads": threads, "status": status, "median_ms": ms}


def test_bench_plot_goes_log_past_a_tenfold_spread_with_labels_inside(close):
    fig = timings_figure([_t("big.tflite", 40.0), _t("small.tflite", 0.5), _t("gpu", None, "unavailable: no GPU",
                                                                           accel="gpu")])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lo, hi = ax.get_ylim()
    assert lo < 0.5 and hi > 40
    x0, x1 = ax.get_xlim()
    for t in ax.texts:  # bar values and "n/a" inside the axes
        x, y = t.get_position()
        assert x0 <= x <= x1
    assert ax.get_legend() is not None


def test_bench_plot_stays_linear_within_tenfold(close):
    ax = timings_figure([_t("a", 2.0), _t("b", 1.0)]).axes[0]
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > 2.0
