"""What channel thinning saves in milliseconds on this machine, predicted from measured op costs, not FLOPs.

Budget mode's latency plans thin channel groups. FLOPs rank those moves
badly on XNNPACK: a depthwise convolution costs far more per FLOP than a
convolution, poolings and ADDs cost time and no FLOPs, and a channel count
off the SIMD width saves little. So each thinned model the sensitivity scan
builds (one group at one ratio) is converted to int8 in memory and its
latency predicted by :mod:`tflite_export.latency_model`: the sum of its ops'
costs, each timed once on this machine (one-op files, LiteRT/XNNPACK) and
cached, so a second plan of the same model measures nothing.

Example:
    >>> rep = sensitivity_scan(model, (x, y))  # doctest: +SKIP
    >>> base, ms = thinned_ms(model, rep, x[:32], threads=1)  # doctest: +SKIP
    >>> base, ms["conv"]  # doctest: +SKIP
    (0.061, {0.25: 0.052, 0.5: 0.041, 0.75: 0.033})
"""

from tfcompress._keras import quiet_native_logs
from tfcompress.depth.surgery import rebuild_without
from tfcompress.scoring import count, take
from tflite_export import convert_bytes
from tflite_export.latency_model import LatencyModel

__all__ = ["thinned_ms", "removed_ms", "price_gap", "CALIBRATION", "GAP"]

#: Calibration inputs of the in-memory int8 conversions (the scales hardly change an op's cost).
CALIBRATION = 32
#: A kept latency round whose file runs this many times its predicted ms is said so (timing spread alone: up to ~1.5x).
GAP = 2.0


def price_gap(rounds, kept, threads, gap=GAP):
    """A note when the kept round's file ran ``gap`` times (or more) the latency its plan predicted, else None.

    The plan prices each candidate on a post-training int8 conversion; the
    file that ships comes from QAT, which can keep ops those conversions fuse
    (ResNet-8: a ReLU after a removed block's ADD, 0.055 ms on the file against
    0.016 predicted, before the depth surgery left it out). Nothing else
    catches such a gap: the rounds are ranked on their measured files.

    Args:
        rounds: ``report.budget["rounds"]`` (``estimated_cost`` in ms, ``ms``, ``ms_side_by_side``, ``weights``).
        kept: the kept round's number (or ``"default"``).
        threads: the timings' XNNPACK threads.
        gap: the ratio said. Defaults to :data:`GAP`.

    Example:
        >>> price_gap([{"round": 2, "estimated_cost": 0.016, "ms": 0.055}], 2, 1)[:42]
        "round 2's file ran 0.055 ms at 1 thread(s)"
    """
    r = next((r for r in rounds if r.get("round") == kept and r.get("estimated_cost")), None)
    ms = r and r.get("ms_side_by_side", r.get("ms"))
    if not ms or ms < gap * r["estimated_cost"]:
        return None
    w = r.get("weights", "int8")
    how = "a float32" if w == "float32" else "a post-training int8"
    return (f"round {kept}'s file ran {ms:.3g} ms at {threads} thread(s), {ms / r['estimated_cost']:.1f}x the "
            f"{r['estimated_cost']:.3g} ms its plan predicted: the plan prices each change on {how} "
            "conversion, the file comes from fine-tuning (and QAT), which kept something those conversions fuse; "
            f"compare the ops (tflite_export opreport) of this file and of a plain {w} export of the model")


def thinned_ms(model, rep, x, threads=1, mode="int8", folder=None):
    """The predicted latency of ``model`` and of each thinned model of a sensitivity scan.

    Args:
        model: the tf_keras model the scan thinned.
        rep: its :class:`~tfcompress.channels.sensitivity.SensitivityReport`.
        x: calibration inputs (the first :data:`CALIBRATION` are used).
        threads: XNNPACK threads of the costs. Defaults to `1`.
        mode: the export mode priced. Defaults to `"int8"`.
        folder: the cache folder. Defaults to `None` (``$TFCOMPRESS_CACHE`` or ``~/.cache/tfcompress``).

    Returns:
        ``(ms of the model, {group name: {ratio: ms with only that group thinned}})``.

    Raises:
        tflite_export.ExportError: a thinned model that does not convert or run.

    Example:
        >>> base, ms = thinned_ms(model, rep, x[:32])  # doctest: +SKIP
    """
    ms = _pricer(x, threads, mode, folder)
    plan = rep.plan
    base = ms(model)
    out = {}
    for r, g in plan.groups.items():
        out[g.name] = {}
        for ratio in rep.ratios:
            keep = plan.keep({r: ratio})
            out[g.name][ratio] = ms(plan.build(keep)) if keep else base
    return base, out


def removed_ms(candidates, blocks, x, threads=1, mode="int8", folder=None):
    """The predicted latency of the model with each block alone removed (:func:`tfcompress.depth.rebuild_without`).

    Args:
        candidates: the model's ``tfcompress.depth.Candidates``.
        blocks: the blocks to price.
        x, threads, mode, folder: as :func:`thinned_ms`.

    Returns:
        ``{block name: ms}``.

    Example:
        >>> ms = removed_ms(find_blocks(model), find_blocks(model).blocks, x[:32])  # doctest: +SKIP
    """
    ms = _pricer(x, threads, mode, folder)
    return {b.name: ms(rebuild_without(candidates, [b])) for b in blocks}


def _pricer(x, threads, mode, folder):
    """``ms(model)``: a model's predicted latency, converted in memory (calibrated on ``x``) and priced per op."""
    cal = take(x, CALIBRATION)
    n = count(cal)
    lm = LatencyModel(threads, folder)

    def ms(m):
        with quiet_native_logs():
            data, _ = convert_bytes(m, mode, cal if mode != "float32" else None, num_samples=n)
        return lm.predict(data).predicted_ms
    return ms
