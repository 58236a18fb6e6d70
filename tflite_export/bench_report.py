"""Bench results side by side: a Markdown comparison table and a latency bar chart."""

from __future__ import annotations

import os
from typing import Any

from ._atomic import save_figure
from .errors import ExportError
from .tables import markdown_table

__all__ = ["bench_table", "plot_timings", "timings_figure", "check_figure_path", "SPREAD"]

# Latencies further apart than this (slowest / fastest) get a logarithmic axis.
SPREAD = 10.0

_COLUMNS = ("file", "accelerator", "backend", "threads", "median ms", "p90 ms", "min ms", "init ms", "runs",
            "speed-up", "GOPS", "% peak", "status")


def _fmt(v, d=3) -> str:
    """"-" for None; 4 significant digits (``d=3``) or ``d`` decimals."""
    return "-" if v is None else (f"{v:.4g}" if d == 3 else f"{v:.{d}f}")


def _ok_row(r: dict, base_latency: float | None) -> list[Any]:
    lat = r.get("median_ms") or r.get("mean_ms")
    pct = "-" if r.get("peak_fraction") is None else f"{100 * r['peak_fraction']:.1f}"
    med = _fmt(r.get("median_ms")) if r.get("median_ms") is not None else f"{_fmt(r.get('mean_ms'))} (avg)"
    speedup = _fmt(base_latency / lat if base_latency and lat else None, 2)
    return [r["file"], r["accelerator"], r["backend"], r["threads"], med, _fmt(r.get("p90_ms")), _fmt(r.get("min_ms")),
            _fmt(r.get("init_ms"), 1), r["runs"], f"{speedup}x", _fmt(r.get("gops"), 2), pct, "ok"]


def bench_table(rows: list[dict]) -> str:
    """Markdown comparison table from bench rows (dicts with "file" and Timing fields).

    Speed-up is relative to the first file measured with the same accelerator and
    threads (``median_ms``, or ``mean_ms`` when a runner prints no median).

    Args:
        rows: ``[dict(file=name, **timing.to_dict()), ...]``.

    Returns:
        The Markdown table as one string.

    Example:
        >>> print(bench_table([dict(file="m.tflite", **benchmark("m.tflite").to_dict())]))   # doctest: +SKIP
    """
    base: dict[tuple, float] = {}
    for r in rows:
        key = (r["accelerator"], r["threads"])
        lat = r.get("median_ms") or r.get("mean_ms")
        if r["status"] == "ok" and lat and key not in base:
            base[key] = lat
    out = [_ok_row(r, base.get((r["accelerator"], r["threads"]))) if r["status"] == "ok" else
           [r["file"], r["accelerator"], r.get("backend") or "", r["threads"], *["-"] * 8, r["status"]]
           for r in rows]
    return markdown_table(_COLUMNS, out, align="lll" + "r" * 9 + "l")


def _unique(values) -> list:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def check_figure_path(path: str, flag: str = "--plot") -> None:
    """Refuses an image path matplotlib cannot write, before any work.

    Args:
        path: The image path; its extension picks the format (none: PNG).
        flag: The option that named it, for the message. Defaults to `"--plot"`.

    Raises:
        ExportError: The extension is not a format matplotlib saves.

    Example:
        >>> check_figure_path("bench.png")
    """
    from matplotlib.figure import Figure

    ext = os.path.splitext(path)[1][1:].lower()
    formats = Figure().canvas.get_supported_filetypes()
    if ext and ext not in formats:
        raise ExportError(f"{flag} {path}: matplotlib cannot write .{ext} images; use .png, .pdf or .svg")


def _latency(r: dict) -> float | None:
    return (r.get("median_ms") or r.get("mean_ms")) if r["status"] == "ok" else None


def timings_figure(rows: list[dict]):
    """The latency bar chart as a matplotlib figure (``plot_timings`` saves it).

    One panel with all files; when the slowest and fastest latencies differ by
    more than ``SPREAD`` times, the latency axis is logarithmic so the fast
    files' bars stay readable. Bar values are written inside the axes, the
    legend sits inside the plot area and file names are the x tick labels.

    Args:
        rows: ``[dict(file=name, **timing.to_dict()), ...]``; unavailable timings show "n/a".

    Returns:
        A ``matplotlib.figure.Figure`` (not yet saved or closed).

    Example:
        >>> fig = timings_figure([dict(file="m.tflite", **benchmark("m.tflite").to_dict())])   # doctest: +SKIP
        >>> fig.axes[0].get_yscale()   # doctest: +SKIP
        'linear'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def config(r):
        return f"{r['accelerator']} x{r['threads']}"

    configs = _unique(config(r) for r in rows)
    files = _unique(r["file"] for r in rows)
    lats = [v for v in (_latency(r) for r in rows) if v]
    log = bool(lats) and max(lats) > SPREAD * min(lats)
    width = 0.8 / max(1, len(configs))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(files) * max(1, len(configs)) / 2 + 3), 4.5))
    if log:
        ax.set_yscale("log")
    floor = min(lats) / 3 if (log and lats) else 0
    for j, c in enumerate(configs):
        xs, hs = [], []
        for i, f in enumerate(files):
            r = next((r for r in rows if r["file"] == f and config(r) == c), None)
            if r is None:
                continue
            lat = _latency(r)
            x = i + (j - (len(configs) - 1) / 2) * width
            if lat is None:
                ax.text(x, floor or 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
                continue
            xs.append(x)
            hs.append(lat)
        if xs:
            bars = ax.bar(xs, hs, width=width * 0.95, label=c)
            ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
    if lats:  # headroom so the value labels stay inside the axes
        ax.set_ylim((floor, max(lats) * 3) if log else (0, max(lats) * 1.18))
    ax.set_xlim(-0.5, len(files) - 0.5)  # every bar and "n/a" inside the axes
    ax.set_xticks(range(len(files)))
    ax.set_xticklabels(files, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("median latency per invoke (ms" + (", log scale)" if log else ")"))
    ax.set_title("TFLite latency (LiteRT)")
    if configs and lats:
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_timings(rows: list[dict], dest: str) -> str:
    """Bar chart of the median latency of each file under each configuration, saved atomically.

    See :func:`timings_figure` for what it shows (log scale past a 10x spread).

    Args:
        rows: ``[dict(file=name, **timing.to_dict()), ...]``; unavailable timings show "n/a".
        dest: Image path (PNG unless the extension says otherwise).

    Returns:
        The absolute path written.

    Raises:
        ExportError: The image cannot be written.

    Example:
        >>> plot_timings([dict(file="m.tflite", **benchmark("m.tflite").to_dict())], "b.png")   # doctest: +SKIP
    """
    return save_figure(timings_figure(rows), dest, dpi=120)
