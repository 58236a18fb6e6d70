#!/usr/bin/env python
"""Models that are not single-output classifiers, each scored in its own metric.

One row per model kind of ``tfcompress.models.task_zoo`` (a regression CNN, a
one-unit sigmoid classifier, a classifier + box regressor with loss weights, a
U-Net-style segmenter, a two-input classifier) and a Keras 3 model that starts
with ``Rescaling`` fed an image folder: each trained model goes through
``check`` (which names the task) -> ``optimize`` with three recipes (QAT
only; 50% pruning over 8 epochs then PQAT; the default recipe, 80% pruning
over 4 epochs then PQAT, made for larger models) -> float32 and int8 ``.tflite`` files -> the
task's own loss and metrics on the test split, computed by Keras from each
file's outputs (heads matched by name). Columns: the headline metric of the
float32 file and of the int8 file, the change in the metric's own unit (a
loss or error going up and a score going down are both a loss), zipped bytes
of each file, and median latency on XNNPACK (1 thread) of each, measured one
after the other in the same process.

Run from the repository root (about 4 minutes on 2 shared cores)::

    flock /tmp/tfc-bench.lock nice -n 10 .venv/bin/python -m benchmarks.bench_tasks

Writes ``benchmarks/results/tasks.json`` and ``benchmarks/results/tasks.md``.
"""

import argparse
import json
import os
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import tfcompress  # noqa: E402
import tflite_export  # noqa: E402
from benchmarks import _results  # noqa: E402
from tfcompress.io import resolve_inputs  # noqa: E402
from tfcompress.models import task_zoo  # noqa: E402
from tfcompress.report import lower_is_better  # noqa: E402
from tfcompress.task import task_for  # noqa: E402


def _calibration(x, n=200):
    return {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else x[:n]


def _score(task, path, test, metric):
    x, y = test
    pred = tflite_export.predict(path, x, as_dict=isinstance(y, dict))
    return task.score(y, pred)[metric]


#: recipe name -> recipe (every stage trains with the model's own loss and metrics).
RECIPES = {
    "QAT": {"pruning": None, "quantization": {"epochs": 2}},
    "50% pruning + PQAT": {"pruning": {"final_sparsity": 0.5, "epochs": 8}, "quantization": {"epochs": 2}},
    "default (80% pruning + PQAT)": None,
}


def _row(name, description, model, train, val, test, folder, recipe_name):
    t0 = time.perf_counter()
    notes = tfcompress.check(model, convert=False).notes
    task = task_for(model)
    result = tfcompress.optimize(model, train, val, recipe=RECIPES[recipe_name], verbose=0, check_baseline=True)
    metric = result.report.metric
    f32 = tflite_export.export(model, os.path.join(folder, f"{name}_f32.tflite"), mode="float32")
    i8 = tflite_export.export(result.model, os.path.join(folder, f"{name}_i8.tflite"), mode="int8",
                              representative_data=_calibration(train[0]))
    before, after = _score(task, f32.path, test, metric), _score(task, i8.path, test, metric)
    lat = {k: tflite_export.benchmark(p, threads=1, min_runs=200, min_seconds=1.0).median_ms
           for k, p in (("float32", f32.path), ("int8", i8.path))}
    change = (after - before) if lower_is_better(metric) else (before - after)
    return {"model": name, "recipe": recipe_name, "description": description,
            "task": next(n for n in notes if n.startswith("task:")),
            "metric": metric, "lower_is_better": lower_is_better(metric), "float32": before, "int8": after,
            "loss_in_metric": change, "float32_zipped": f32.zipped_bytes, "int8_zipped": i8.zipped_bytes,
            "float32_ms": lat["float32"], "int8_ms": lat["int8"], "seconds": time.perf_counter() - t0,
            "keras_baseline": result.report.baseline.get(metric),
            "keras_optimized": result.report.optimized.get(metric)}


def _broken(r):
    """The main job's rule (pipeline.worse_than_float): 5 points of accuracy, or a tenth of another metric."""
    return r["loss_in_metric"] > (0.05 if r["metric"] == "accuracy" else 0.1 * abs(r["float32"]))


def render(result):
    rows, cmd = result["rows"], result["command"]
    lines = [
        "## Any model: each task in its own metric", "",
        f"`{cmd}` ({result['machine']}, {result.get('cpu', '')}, {result.get('date', '')}). Each model of "
        "`tfcompress.models.task_zoo` is trained first, then `optimize` runs each recipe with the model's own "
        "compiled loss and metrics; both files are scored on the test split by Keras from the files' outputs. "
        "*loss in metric* is the int8 file's change in the metric's own unit (positive: worse). Latency: median "
        "on XNNPACK, 1 thread, same process.", "",
        "| model | task | recipe | metric | float32 | int8 | loss in metric | zipped B float32 → int8 "
        "| ms float32 → int8 |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} ({r['description']}) | {r['task'][len('task: '):]} | {r['recipe']} | "
                     f"{r['metric']} | {r['float32']:.4g} | {r['int8']:.4g} | {r['loss_in_metric']:+.4g} | "
                     f"{r['float32_zipped']:,} → {r['int8_zipped']:,} | {r['float32_ms']:.3g} → {r['int8_ms']:.3g} |")
    lines += ["", "Reading this run (generated from the rows): files that lose more than 5 points of accuracy or "
              "a tenth of another metric, per recipe (the main job names them in a note):", ""]
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        bad = [r["model"] for r in rows if r["recipe"] == recipe and _broken(r)]
        total = sum(r["recipe"] == recipe for r in rows)
        lines.append(f"- {recipe}: {len(bad)} of {total}" + (f" ({', '.join(bad)})" if bad else ""))
    lines += ["", "These models have 1-20 k parameters: the default recipe's 80% pruning in 4 epochs is made for "
              "larger ones, and the table shows what it does to small ones. tests/test_any_model.py runs the same "
              "models with shorter recipes and asserts their drops.", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true", help="rebuild tasks.md from tasks.json")
    args = parser.parse_args()
    if args.render:
        with open(os.path.join(_results.RESULTS, "tasks.json"), encoding="utf-8") as f:
            result = json.load(f)
        _results.write("tasks", result, render(result))
        return
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, build in task_zoo.KINDS.items():
            zoo = build()
            for recipe in RECIPES:
                rows.append(_row(name, zoo.description, zoo.model, zoo.train, zoo.validation, zoo.test, folder,
                                 recipe))
                print(rows[-1], flush=True)
        model, images = task_zoo.keras3_rescaling_folder(os.path.join(folder, "imgs"))
        _, data = resolve_inputs(model, images)  # --scale auto: raw pixels, the model's Rescaling scales them
        model.fit(*data.train, epochs=40, verbose=0)
        for recipe in RECIPES:
            rows.append(_row("keras3_rescaling", f"Keras 3 CNN with Rescaling(1/255), image folder "
                             f"({data.scaling()})", model, data.train, data.validation, data.test, folder, recipe))
            print(rows[-1], flush=True)
    cmd = _results.command("flock /tmp/tfc-bench.lock nice -n 10 .venv/bin/python -m benchmarks.bench_tasks")
    result = {"command": cmd, "machine": _results.machine(load=True), "cpu": _results.cpu_flags(),
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    _results.write("tasks", result, render(result))


if __name__ == "__main__":
    main()
