"""Budget mode: scan, allocate, write the plan as a recipe, fine-tune, check the budget on the file, back off.

:func:`run` is what ``tfcompress.optimize(..., target=...)`` calls. It never
imports :mod:`tfcompress.optimize`: the caller passes ``run_recipe``, the
function that fine-tunes the model with one recipe.

1. Reference: the float32 and plain int8 (PTQ) files of the input model,
   their accuracy on the validation data, zipped size and latency.
2. Scan (:mod:`tfcompress.target.sensitivity`): per layer, prune to each
   level and cluster; per channel group (latency), thin.
3. Allocate (:mod:`tfcompress.target.allocate`) under the budget; a drop
   budget allows ``scale`` times its points of *scanned* drop, because the
   scan does not fine-tune and fine-tuning with distillation wins most of it
   back (:data:`DROP_SCALE`).
4. The plan: an ordinary :class:`~tfcompress.recipe.Recipe` with per-layer
   fields (``pruning.per_layer`` + ``include``, ``clustering.include``,
   ``channels.per_layer``), QAT, and distillation.
5. Fine-tune, export int8, measure the budget on the file, and retry, at most
   ``rounds`` rounds, each one reported, keeping the best file that meets the
   budget: a drop budget brackets ``scale`` (missed: halve it, or the geometric
   mean with the last met one; met with the file's drop under half the budget:
   raise it 3x); a size or latency budget, missed, shrinks its cost goal by
   the miss.

The margin: on LeNet-5 / Fashion-MNIST (``benchmarks/bench_budget.py``) a plan
allowed 4 points of scanned drop lost -0.7 points on the file after
fine-tuning with distillation, and the best hand recipe's per-layer settings
add up to about 24 scanned points for 0.75 points on the file: the scan is
5-30x pessimistic, so round 1 allows 8x and the bracket moves from there.

Example:
    >>> import tfcompress
    >>> res = tfcompress.optimize(model, (x, y), (xv, yv), target="drop<=1.0")  # doctest: +SKIP
    >>> print(res.report.budget["markdown"])  # doctest: +SKIP
"""

import os
import re
import shutil
import tempfile

import tflite_export
from tfcompress._keras import quiet_native_logs
from tfcompress.channels.sensitivity import accuracy, as_xy
from tfcompress.errors import RecipeError
from tfcompress.stages import Channels, Clustering, Distillation, Pruning, Quantization
from tfcompress.target.allocate import greedy
from tfcompress.target.budget import check_minimize, parse_target
from tfcompress.target.sensitivity import CLUSTERS, channel_options, weight_options

__all__ = ["run", "plan_recipe", "DROP_SCALE", "ROUNDS", "SCAN_SAMPLES"]

#: Points of scanned (not fine-tuned) drop allowed per point of budget in round 1 (see the module docstring).
DROP_SCALE = 8.0
#: A met round whose file drop is under SLACK x the budget raises the margin RAISE times for the next round.
SLACK, RAISE = 0.5, 3.0
ROUNDS = 3
SCAN_SAMPLES = 1000


def plan_recipe(base, settings, clusters=CLUSTERS):
    """The plan as a recipe: ``base``'s training settings with per-layer stages from ``settings``.

    Args:
        base: the :class:`Recipe` whose training settings (learning rate,
            batch size, optimizer, seed, each stage's epochs) the plan keeps.
        settings: ``{unit name: {"sparsity": s, "clustered": bool} | {"ratio": r}}``.
        clusters: the cluster count of the clustered layers. Defaults to :data:`CLUSTERS`.

    Returns:
        A :class:`Recipe`.

    Example:
        >>> from tfcompress.recipe import Recipe
        >>> plan_recipe(Recipe(), {"fc1": {"sparsity": 0.9, "clustered": True}}).pruning.per_layer
        {'fc1': 0.9}
    """
    pruned = {n: s["sparsity"] for n, s in settings.items() if s.get("sparsity")}
    clustered = [n for n, s in settings.items() if s.get("clustered")]
    thinned = {n: s["ratio"] for n, s in settings.items() if s.get("ratio")}
    p, c = base.pruning or Pruning(end=0.6), base.clustering or Clustering()
    pruning = clustering = channels = None
    if pruned:
        pruning = Pruning(final_sparsity=max(pruned.values()), end=p.end, epochs=p.epochs,
                          include=[re.escape(n) for n in pruned],
                          per_layer={re.escape(n): v for n, v in pruned.items()})
    if clustered:
        clustering = Clustering(number_of_clusters=clusters, epochs=c.epochs,
                                include=[re.escape(n) for n in clustered])
    if thinned:
        ch = base.channels or Channels()
        channels = Channels(ratio=0.0, per_layer=thinned, epochs=ch.epochs, criterion=ch.criterion)
    return base.replace(channels=channels, pruning=pruning, clustering=clustering,
                        quantization=base.quantization or Quantization(),
                        distillation=base.distillation or Distillation())


def _measure(model, path, rep_x, x, y, ref_acc, threads, mode="int8"):
    with quiet_native_logs():
        e = tflite_export.export(model, path, mode=mode, representative_data=rep_x if mode == "int8" else None)
        acc = tflite_export.evaluate(path, x, y)
        ms = tflite_export.benchmark(path, threads=threads, min_runs=20, min_seconds=0.3).median_ms
    return {"accuracy": acc, "drop": round(100.0 * (ref_acc - acc), 3), "zipped_bytes": e.zipped_bytes, "ms": ms}


def run(model, train_data, validation_data, target, minimize, base, run_recipe, threads=2, rounds=ROUNDS,
        scale=DROP_SCALE, samples=SCAN_SAMPLES, say=None):
    """Budget mode (see the module docstring).

    Args:
        model: the trained tf_keras model (left untouched).
        train_data: its fine-tuning data (any form ``optimize`` takes).
        validation_data: the data the budget is checked on (required).
        target: a budget string (:func:`~tfcompress.target.budget.parse_target`).
        minimize: ``"size"``, ``"latency"`` or None.
        base: the training settings (:class:`Recipe`).
        run_recipe: ``fn(recipe) -> OptimizeResult``.
        threads: XNNPACK threads of the timings. Defaults to `2`.
        rounds: at most this many fine-tuning rounds. Defaults to :data:`ROUNDS`.
        scale: round 1's scanned-drop allowance per budget point. Defaults to :data:`DROP_SCALE`.
        samples: validation samples of the scan. Defaults to :data:`SCAN_SAMPLES`.
        say: called with one line per step. Defaults to `None`.

    Returns:
        ``(result, plan)``: the kept round's OptimizeResult (its
        ``report.budget`` says the target, the reference files, the scan,
        each round and the notes) and its plan :class:`Recipe`.

    Raises:
        RecipeError: a bad target or minimize, or no validation data.
    """
    target = parse_target(target)
    minimize = check_minimize(target, minimize)
    if validation_data is None:
        raise RecipeError("target= needs validation_data: the budget is checked on it.")
    say = say or (lambda line: None)
    xv, yv = as_xy(validation_data)
    xs, ys = xv[:samples], yv[:samples]
    rep_x = as_xy(train_data, limit=200)[0]
    ref_acc = accuracy(model, xv, yv)
    tmp = tempfile.mkdtemp(prefix="tfcompress-budget-")
    try:
        ref = {m: _measure(model, os.path.join(tmp, f"{m}.tflite"), rep_x, xv, yv, ref_acc, threads, m)
               for m in ("float32", "int8")}
        say(f"budget {target.describe()}, minimize {minimize}: float32 {ref['float32']['zipped_bytes']} B "
            f"{ref['float32']['ms']:.3g} ms; plain int8 {ref['int8']['zipped_bytes']} B {ref['int8']['ms']:.3g} ms")
        latency = minimize == "latency" or target.metric == "latency"
        if latency:
            units, base_cost = channel_options(model, xs, ys)
            unit_of_cost = ref["int8"]["ms"] / base_cost  # modelled: int8 ms proportional to FLOPs
        else:
            units = weight_options(model, xs, ys)
            kernels = sum(u.options[0].cost for u in units)
            base_cost = float(ref["int8"]["zipped_bytes"])  # the rest of the file: biases, graph, ...
            unit_of_cost = 1.0
            if kernels > base_cost:
                base_cost = kernels
        say(f"scanned {len(units)} {'channel groups' if latency else 'layers'} on {len(xs)} samples")
        goal = None if target.metric == "drop" else target.limit / unit_of_cost
        history, kept, lo, hi = [], None, None, None
        for i in range(rounds):
            alloc = greedy(units, max_drop=target.limit * scale if target.metric == "drop" else None,
                           max_cost=goal, base_cost=base_cost)
            plan = plan_recipe(base, alloc.settings(units))
            result = run_recipe(plan)
            got = _measure(result.model, os.path.join(tmp, f"round{i + 1}.tflite"), rep_x, xv, yv, ref_acc, threads)
            met = target.met(got["drop"], got["zipped_bytes"], got["ms"])
            history.append({"round": i + 1, "scale": scale if target.metric == "drop" else None,
                            "estimated_cost": round((base_cost - alloc.saved) * unit_of_cost, 3),
                            "scanned_drop": round(alloc.drop, 3), "plan": alloc.settings(units), **got, "met": met})
            say(f"round {i + 1}: drop {got['drop']:.2f} pts, {got['zipped_bytes']} B zipped, {got['ms']:.3g} ms: "
                f"{'met' if met else 'missed'}")
            # keep the best met round (smallest, fastest, or most accurate), else the closest miss
            excess = {"drop": got["drop"], "size": got["zipped_bytes"], "latency": got["ms"]}[target.metric]
            rank = (0, got[{"size": "zipped_bytes", "latency": "ms", "drop": "drop"}[minimize]]) if met else (1, excess)
            if kept is None or rank < kept[4]:
                kept = (result, plan, met, got, rank, i + 1)
            if target.metric == "drop":  # bracket the margin: up while the file has slack, down after a miss
                if met:
                    lo = scale
                    if got["drop"] > SLACK * target.limit:
                        break
                else:
                    hi = scale
                scale = scale * RAISE if hi is None else (scale / 2 if lo is None else (lo * hi) ** 0.5)
            elif met:
                break
            else:
                measured = got["zipped_bytes"] if target.metric == "size" else got["ms"]
                goal = (base_cost - alloc.saved) * target.limit / measured * 0.95
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result, plan, met, got, _, kept_round = kept
    notes = []
    if got["ms"] > ref["float32"]["ms"]:
        notes.append(f"the int8 file is slower than float32 here ({got['ms']:.3g} ms vs {ref['float32']['ms']:.3g} ms, "
                     f"{threads} thread(s)); per-op precision choice is not available yet (tfcompress/precision), "
                     "so the plan cannot avoid it: ship float32 for speed")
    if not met:
        notes.append(f"budget {target.describe()} not met in {rounds} round(s): the closest round is kept")
    result.report.budget = {
        "target": target.text, "minimize": minimize, "met": met, "reference_accuracy": ref_acc,
        "reference": ref, "threads": threads, "scan_samples": len(xs),
        "sensitivity": [u.to_dict() for u in units], "rounds": history, "notes": notes,
        "kept_round": kept_round,
    }
    result.report.budget["markdown"] = markdown(result.report.budget)
    return result, plan


def markdown(b):
    """The budget section of the report: the target, each round, the per-layer plan and why."""
    f32 = b["reference"]["float32"]
    lines = [f"### Budget `{b['target']}` (minimize {b['minimize']}): {'met' if b['met'] else 'NOT met'}", "",
             "| round | scanned drop (pts) | drop on the file (pts) | zipped B | × vs float32 | ms | met |",
             "|---|---|---|---|---|---|---|"]
    for r in b["rounds"]:
        lines.append(f"| {r['round']} | {r['scanned_drop']:.2f} | {r['drop']:.2f} | {r['zipped_bytes']} | "
                     f"{f32['zipped_bytes'] / r['zipped_bytes']:.1f} | {r['ms']:.3g} | {'yes' if r['met'] else 'no'} |")
    kept = next(r for r in b["rounds"] if r["round"] == b["kept_round"])
    by_name = {u["name"]: u for u in b["sensitivity"]}
    lines += ["", f"Plan of round {kept['round']} (scan: one layer at a time, no fine-tuning, "
              f"{b['scan_samples']} validation samples; the kept round):", "",
              "| layer | setting | scanned drop (pts) |", "|---|---|---|"]
    for name, setting in kept["plan"].items():
        opt = next(o for o in by_name[name]["options"] if o["setting"] == setting)
        lines.append(f"| {name} | {setting} | {opt['drop_points']:.2f} |")
    lines += [f"- note: {n}" for n in b["notes"]]
    return "\n".join(lines) + "\n"
