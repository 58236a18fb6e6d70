"""The tuner's picture, ``pareto.png``: the quality metric against size and latency.

The quality axis is the search's metric (``result.metric``): validation
accuracy for a classifier, else the task's own metric (``mae``, ``iou``),
labelled with the way it improves.

Readable at a glance: latency in µs when every trial is under a millisecond,
plain tick labels (no offset or exponent), axis limits never narrower than
10 % of the values (so sub-microsecond timing noise does not fill an axis),
the Pareto set and the chosen trial marked, each constraint drawn as a dashed
line. A search where no trial completed gets no picture at all.

Example:
    >>> from tfcompress.tuning.search import load_results
    >>> fig = pareto_figure(load_results("tune-out"))  # doctest: +SKIP
    >>> fig.axes[1].get_xlabel()  # doctest: +SKIP
    'median latency (µs)'
"""

from tfcompress.tuning.objectives import better, parse_constraint
from tflite_export._atomic import save_figure

__all__ = ["pareto_figure", "save_pareto"]

# An axis spans at least this share of its largest value (timing noise of a
# few nanoseconds must not look like a trade-off).
MIN_SPAN = 0.10


def _limits(values, floor=None):
    lo, hi = min(values), max(values)
    half = max((hi - lo) * 0.08, MIN_SPAN / 2 * max(abs(hi), abs(lo), 1e-12))
    lo, hi = lo - half, hi + half
    if floor is not None:
        lo = max(lo, floor)
    return lo, hi


def _plain(ax):
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    for axis in (ax.xaxis, ax.yaxis):
        fmt = ScalarFormatter(useOffset=False)
        fmt.set_scientific(False)
        axis.set_major_formatter(fmt)
        axis.set_major_locator(MaxNLocator(6))


def pareto_figure(result):
    """The quality metric vs int8 zipped size and vs latency, as a matplotlib figure.

    Args:
        result: a :class:`~tfcompress.tuning.TuneResult` (``completed``,
            ``pareto``, ``best``, ``constraints``, ``metric``).

    Returns:
        A ``matplotlib.figure.Figure``, or None when no trial completed.

    Example:
        >>> pareto_figure(result).axes[0].get_xlabel()  # doctest: +SKIP
        'int8 zipped size (KB)'
    """
    rows = result.completed
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = [r["metrics"]["latency_ms"] for r in rows]
    lat_scale, lat_unit = (1000.0, "µs") if max(lat) < 1.0 else (1.0, "ms")
    panels = (("size_kb", 1.0, "int8 zipped size (KB)"), ("latency_ms", lat_scale, f"median latency ({lat_unit})"))
    metric = getattr(result, "metric", "accuracy")
    constraints = [parse_constraint(c, metric) for c in result.constraints]
    best = result.best["trial_id"] if result.best else None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    acc = [r["metrics"][metric] for r in rows]
    floor = 0 if min(acc) >= 0 else None
    for ax, (key, scale, label) in zip(axes, panels):
        def xy(sel, key=key, scale=scale):
            return [r["metrics"][key] * scale for r in sel], [r["metrics"][metric] for r in sel]

        for kind, sel, style in (
            ("infeasible", [r for r in rows if not r["feasible"]], dict(c="#bbbbbb", marker="x")),
            ("feasible", [r for r in rows if r["feasible"] and r["trial_id"] not in result.pareto],
             dict(c="#2a7ab0", marker="o", alpha=0.6)),
            ("Pareto", [r for r in rows if r["trial_id"] in result.pareto],
             dict(c="#d62728", marker="*", s=140, edgecolors="k")),
            (f"chosen (trial {best})", [r for r in rows if r["trial_id"] == best],
             dict(facecolors="none", edgecolors="#2ca02c", marker="o", s=360, linewidths=2)),
        ):
            if sel:
                ax.scatter(*xy(sel), label=kind, **style)
        for r in rows:
            if r["trial_id"] in result.pareto:
                ax.annotate(r["trial_id"], (r["metrics"][key] * scale, r["metrics"][metric]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        xs = [r["metrics"][key] * scale for r in rows]
        for c in constraints:
            if c.metric == metric:
                ax.axhline(c.bound, color="#9467bd", ls="--", lw=1, label=str(c))
                acc.append(c.bound)
            elif c.metric == key:
                ax.axvline(c.bound * scale, color="#ff7f0e", ls="--", lw=1, label=str(c))
                xs.append(c.bound * scale)
        ax.set_xlim(*_limits(xs, floor=0))
        ax.set_xlabel(label)
        ax.set_ylabel(f"validation {metric}" + ("" if metric == "accuracy" else f" ({better(metric)} is better)"))
        ax.grid(alpha=0.3)
        _plain(ax)
    for ax in axes:
        ax.set_ylim(*_limits(acc, floor=floor))
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{len(rows)} completed trials; constraints: {', '.join(map(str, constraints)) or 'none'}",
                 fontsize=11)
    fig.tight_layout()
    return fig


def save_pareto(result, path):
    """Write ``pareto.png`` atomically; nothing (returns None) when no trial completed.

    Args:
        result: a :class:`~tfcompress.tuning.TuneResult`.
        path: the image path.

    Returns:
        The path written, or None.

    Example:
        >>> save_pareto(result, "tune-out/pareto.png")  # doctest: +SKIP
    """
    fig = pareto_figure(result)
    if fig is None:
        return None
    return save_figure(fig, path, dpi=100)
