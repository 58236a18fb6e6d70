#!/usr/bin/env python
"""Peers side by side, in one run: tfcompress against the other model-compression tools, at <= 1 point.

On each trained model (LeNet-5 and ResNet-8 on Fashion-MNIST, MobileNetV2 alpha 0.35 at 32x32x3
trained here on Fashion-MNIST), every tool writes one ``.tflite`` from the same trained model:
the TFLite converter's post-training int8, TF-MOT's documented prune + PQAT workflow written by
hand, ai-edge-quantizer's int8 and int4 weight-only recipes, Keras 3's ``model.quantize`` (exported
with ``format="litert"``), and tfcompress's default recipe and budget mode (``drop<=1.0``,
minimize size and minimize latency). Each file's accuracy on the same test split, zipped bytes,
the tool's wall time, then XNNPACK latency at 1 and 2 threads, all files timed at the end in one
process, alternating files over repeated rounds (median of the round medians and the spread).
A tool that cannot write a file for a model gets its one-line reason in the table.

    nice -n 5 .venv/bin/python -m benchmarks.bench_peers                      # all three models
    nice -n 5 .venv/bin/python -m benchmarks.bench_peers --models lenet5 --quick   # smoke run
    nice -n 5 .venv/bin/python -m benchmarks.bench_peers --models resnet8 --rows converter budget-latency

Writes ``benchmarks/results/peers.{json,md}`` (``--quick``: ``peers_quick.*``).
"""

import argparse
import json
import os
import statistics
import tempfile
import time
import traceback

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfcompress  # noqa: E402
import tflite_export  # noqa: E402
from benchmarks import _results  # noqa: E402
from benchmarks._baseline import bench_lock, lenet5_fashion  # noqa: E402
from benchmarks._peers import PEERS, mobilenetv2_fashion  # noqa: E402
from benchmarks._realistic import resnet8_fashion  # noqa: E402
from tfcompress._keras import keras  # noqa: E402
from tfcompress.target import export_file  # noqa: E402

MODELS = {"lenet5": ("LeNet-5 / Fashion-MNIST", lenet5_fashion),
          "resnet8": ("ResNet-8 / Fashion-MNIST", resnet8_fashion),
          "mobilenetv2": ("MobileNetV2 alpha 0.35, 32x32x3 / Fashion-MNIST", mobilenetv2_fashion)}
BUDGET = 1.0  # points of test accuracy against the float32 file
#: Why a model has no table in the last results (said under the tables).
NOT_RUN: dict = {}
TFC = "tfcompress"


def _tfc_default(b, path, s):
    res = tfcompress.optimize(b.base, (b.x_ft, b.y_ft), b.val, epochs=s["epochs"], seed=0, verbose=0)
    return tflite_export.export(res.model, path, mode="int8", representative_data=b.rep_x).path


def _tfc_budget(minimize):
    def run(b, path, s):
        res = tfcompress.optimize(b.base, (b.x_ft, b.y_ft), b.val, epochs=s["epochs"], seed=0, verbose=0,
                                  target=f"drop<={BUDGET}", minimize=minimize,
                                  progress=lambda line: print("    " + line, flush=True))
        budget = res.report.budget
        s.setdefault("budget_notes", {})[minimize] = {k: budget.get(k) for k in ("met", "file", "weights",
                                                                                 "strip_names")}
        return export_file(res, path, b.rep_x).path
    return run


TOOLS = [*PEERS,
         (f"{TFC}: default recipe (int8 file)", _tfc_default),
         (f"{TFC}: budget mode drop<=1, minimize size", _tfc_budget("size")),
         (f"{TFC}: budget mode drop<=1, minimize latency", _tfc_budget("latency"))]
#: ``--rows`` names of TOOLS, in order: a sitting of some rows only is written beside the full tables (``partial``).
ROWS = ["converter", "tfmot", "aeq-int8", "aeq-int4", "keras3", "default", "budget-size", "budget-latency"]
assert len(ROWS) == len(TOOLS)


def _one_line(exc):
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def run_model(key, quick, s, tmp, tools=TOOLS):
    title, loader = MODELS[key]
    t0 = time.perf_counter()
    keras.utils.set_random_seed(0)
    b = loader(quick=quick)
    print(f"== {title}: float32 .tflite {b.f32_acc:.4f}, {b.f32.zipped_bytes} B zipped "
          f"({time.perf_counter() - t0:.0f} s to load/train)", flush=True)
    rows = [{"row": "float32 (the trained model)", "path": b.f32.path, "seconds": 0.0}]
    weights = b.base.get_weights()  # every tool starts from these: one that changes them in place is said and undone
    for name, fn in tools:
        path = os.path.join(tmp, f"{key}_{len(rows)}.tflite")
        t1 = time.perf_counter()
        keras.utils.set_random_seed(0)
        row = {"row": name}
        try:
            row["path"] = fn(b, path, s)
        except Exception as exc:  # noqa: BLE001 - a tool that cannot write a file gets its reason
            traceback.print_exc()
            row["reason"] = _one_line(exc)
        row["seconds"] = round(time.perf_counter() - t1, 1)
        if any(not np.array_equal(a, w) for a, w in zip(b.base.get_weights(), weights)):
            row["changed_the_input_model"] = True
            print(f"  {name} changed the trained model's weights in place: restored", flush=True)
            b.base.set_weights(weights)
        rows.append(row)
        print(f"  {name}: {row.get('reason') or 'ok'} ({row['seconds']:.0f} s)", flush=True)
    for r in rows:
        if "path" not in r:
            continue
        try:
            with open(r["path"], "rb") as f:
                r["zipped_bytes"] = tflite_export.zipped_size(f.read())
            r["accuracy"] = tflite_export.evaluate(r["path"], b.x_test, b.y_test)
            r["drop_points"] = round(100 * (b.f32_acc - r["accuracy"]), 2)
            r["ratio"] = round(b.f32.zipped_bytes / r["zipped_bytes"], 2)
            r["meets"] = r["drop_points"] <= BUDGET
        except Exception as exc:  # noqa: BLE001
            r["reason"] = "file does not run: " + _one_line(exc)
            r.pop("path")
    return {"model": key, "title": title, "baseline": b.settings, "float32_accuracy": b.f32_acc,
            "test_samples": int(len(b.y_test)), "fine_tuning_samples": int(len(b.y_ft)), "rows": rows,
            "load_seconds": round(time.perf_counter() - t0 - sum(r["seconds"] for r in rows), 1)}


def time_all(models, rounds, seconds):
    """Every file, both thread counts: alternating files, ``rounds`` rounds; median and spread of the round medians."""
    files = [(m["model"], r) for m in models for r in m["rows"] if "path" in r]
    for threads in (1, 2):
        samples = {id(r): [] for _, r in files}
        for _ in range(rounds):
            for _, r in files:
                t = tflite_export.benchmark(r["path"], threads=threads, min_runs=30, min_seconds=seconds)
                if t.status == "ok":
                    samples[id(r)].append(t.median_ms)
                else:
                    r[f"timing_{threads}t"] = t.status
        for _, r in files:
            ms = samples[id(r)]
            if ms:
                med = statistics.median(ms)
                r[f"ms_{threads}t"] = round(med, 4)
                r[f"spread_{threads}t"] = round((max(ms) - min(ms)) / med, 3)
    for m in models:
        f32 = m["rows"][0]
        for r in m["rows"]:
            for t in (1, 2):
                if f32.get(f"ms_{t}t") and r.get(f"ms_{t}t"):
                    r[f"vs_f32_{t}t"] = round(f32[f"ms_{t}t"] / r[f"ms_{t}t"], 2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--quick", action="store_true", help="small training subsets, 1 epoch per stage (smoke run)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs of every fine-tuning stage, tfcompress and TF-MOT alike (default: each recipe's own; "
                         "TF-MOT 2 + 1)")
    ap.add_argument("--rounds", type=int, default=None, help="timing rounds (default 5, --quick 2)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json (no runs)")
    ap.add_argument("--rows", nargs="+", choices=ROWS, default=None,
                    help="only these tools beside the float32 row (a shorter sitting, e.g. 'converter "
                         "budget-latency'): written under the full tables, which it leaves as they are")
    args = ap.parse_args(argv)
    if args.report_only:
        name = "peers_quick" if args.quick else "peers"
        with open(os.path.join(_results.RESULTS, f"{name}.json"), encoding="utf-8") as f:
            result = {k: v for k, v in json.load(f).items() if k != "provenance"}
        with bench_lock():
            _results.write(name, result, markdown(result))
        return
    t_all = time.perf_counter()
    epochs = 1 if args.quick and args.epochs is None else args.epochs
    s = {"epochs": epochs, "epochs_prune": epochs or 2, "epochs_qat": epochs or 1}
    rounds = args.rounds or (2 if args.quick else 5)
    seconds = 0.1 if args.quick else 0.5
    tmp = tempfile.mkdtemp(prefix="bench-peers-")
    tools = TOOLS if not args.rows else [t for k, t in zip(ROWS, TOOLS) if k in args.rows]
    models = [run_model(k, args.quick, s, tmp, tools) for k in args.models]
    with bench_lock():
        time_all(models, rounds, seconds)
    name = "peers_quick" if args.quick else "peers"
    sitting = {"command": _results.command("nice -n 5 .venv/bin/python -m benchmarks.bench_peers", argv),
               "machine": _results.machine(), "cpu": _results.cpu_flags(),
               "load_average": [round(x, 2) for x in os.getloadavg()], "settings": s,
               "timing": {"rounds": rounds, "min_seconds": seconds, "min_runs": 30, "runtime": "XNNPACK"},
               "seconds": round(time.perf_counter() - t_all)}
    for m in models:
        m["sitting"] = sitting
    with bench_lock():  # sittings of other models may write at the same time: merge one at a time
        if args.rows and len(tools) < len(TOOLS):
            result = {"budget_points": BUDGET, "models": merged(name, []), "partial": partial(name, models)}
        else:
            result = {"budget_points": BUDGET, "models": merged(name, models), "partial": partial(name, [])}
        text = markdown(result)
        _results.write(name, result, text)
    print(text)


def merged(name, models):
    """This sitting's models, plus those an earlier sitting measured and this one did not (in MODELS order)."""
    try:
        with open(os.path.join(_results.RESULTS, f"{name}.json"), encoding="utf-8") as f:
            earlier = {m["model"]: m for m in json.load(f)["models"] if "sitting" in m}
    except (OSError, ValueError, KeyError):
        earlier = {}
    earlier.update({m["model"]: m for m in models})
    return [earlier[k] for k in MODELS if k in earlier]


def partial(name, models):
    """The sittings of some rows only (``--rows``), per model: this sitting's, plus the earlier ones it did not redo."""
    try:
        with open(os.path.join(_results.RESULTS, f"{name}.json"), encoding="utf-8") as f:
            earlier = dict(json.load(f).get("partial") or {})
    except (OSError, ValueError):
        earlier = {}
    earlier.update({m["model"]: m for m in models})
    return {k: earlier[k] for k in MODELS if k in earlier}


def _ms(r, t):
    return f"{r[f'ms_{t}t']:.3g} ±{100 * r[f'spread_{t}t']:.0f}%" if f"ms_{t}t" in r else r.get(f"timing_{t}t", "-")


def verdict(m):
    """Lines saying whether tfcompress's best file at <= 1 point beats each peer's on size and latency."""
    rows = [r for r in m["rows"][1:] if "zipped_bytes" in r]
    mine = [r for r in rows if r["row"].startswith(TFC) and r["meets"]]
    peers = [r for r in rows if not r["row"].startswith(TFC)]
    if not mine:
        return ["- no tfcompress file met the 1-point budget on the test set: "
                + ", ".join(f"{r['row']} {r['drop_points']:+.2f} pts" for r in rows if r["row"].startswith(TFC))]
    out, ahead = [], "ahead of every peer in this sitting that meets the budget"
    # a sitting that ran a tfcompress row other than the latency plan has a size line (a latency-only one has none),
    # whichever tfcompress file is the smallest at <= 1 point
    sized = [r for r in m["rows"][1:] if r["row"].startswith(TFC) and "minimize latency" not in r["row"]]
    small = min(mine, key=lambda r: r["zipped_bytes"])
    beat = [r["row"] for r in peers if r["meets"] and r["zipped_bytes"] <= small["zipped_bytes"]]
    if sized:
        out.append(f"- size: smallest tfcompress file at <= 1 point is {small['row']} ({small['zipped_bytes']:,} B, "
                   f"{small['ratio']:.1f}x, {small['drop_points']:+.2f} pts): "
                   + (ahead if not beat else "NOT ahead of " + ", ".join(beat))
                   + (f"; it runs at {small['vs_f32_1t']:.2f}x float32's speed at 1 thread (slower)"
                      if small.get("vs_f32_1t", 1) < 0.95 else ""))
    for t in (1, 2):
        timed = [r for r in mine if f"ms_{t}t" in r]
        if not timed:
            continue
        fast = min(timed, key=lambda r: r[f"ms_{t}t"])
        worse = [f"{r['row']} ({r[f'ms_{t}t']:.3g} ms)" for r in peers
                 if r["meets"] and f"ms_{t}t" in r and r[f"ms_{t}t"] <= fast[f"ms_{t}t"]]
        close = [r["row"] for r in peers if r["meets"] and f"ms_{t}t" in r
                 and fast[f"ms_{t}t"] < r[f"ms_{t}t"] < 1.05 * fast[f"ms_{t}t"]]
        out.append(f"- latency, {t} thread{'s' if t > 1 else ''}: fastest tfcompress file at <= 1 point is "
                   f"{fast['row']} ({fast[f'ms_{t}t']:.3g} ms, {fast.get(f'vs_f32_{t}t', 0):.2f}x float32): "
                   + (ahead if not worse else "NOT ahead of " + ", ".join(worse))
                   + (f" (within 5 %, timing noise: {', '.join(close)})" if close else ""))
    missed = [f"{r['row']} ({r['drop_points']:+.2f} pts)" for r in peers if not r["meets"]]
    if missed:
        out.append("- peers over the 1-point budget (no comparison needed): " + ", ".join(missed))
    over = [f"{r['row']} ({r['drop_points']:+.2f} pts)" for r in rows if r["row"].startswith(TFC) and not r["meets"]]
    if over:
        out.append("- tfcompress files over the 1-point budget on the test set: " + ", ".join(over))
    changed = [r["row"] for r in m["rows"] if r.get("changed_the_input_model")]
    if changed:
        out.append("- changed the trained model's weights in place (restored before the next tool): "
                   + ", ".join(changed))
    failed = [r["row"] for r in m["rows"] if "reason" in r]
    if failed:
        out.append("- no file: " + ", ".join(failed))
    return out


def _section(m, title):
    """One sitting's table of one model, and what it says."""
    st = m["sitting"]
    lines = [f"### {title}", "",
             f"Command: `{st['command']}`", "",
             f"Machine: {st['machine'].split(', load avg')[0]}; CPU: {st['cpu']}; "
             f"load average {st['load_average']} at the end; "
             f"sitting {st['seconds'] / 60:.0f} min; {st['timing']['rounds']} timing rounds. Fine-tuning epochs "
             f"per stage: {st['settings']['epochs'] or 'each recipe default'} (tfcompress), "
             f"{st['settings']['epochs_prune']} prune + {st['settings']['epochs_qat']} PQAT (TF-MOT). "
             f"float32 .tflite {m['float32_accuracy']:.2%} on {m['test_samples']:,} test images; "
             f"{m['fine_tuning_samples']:,} fine-tuning images; baseline {m['baseline']}.", "",
             "| tool | zipped B | × smaller | test acc | drop (pts) | ≤1 pt | ms 1 thread | ms 2 threads "
             "| × float32 (1t / 2t) | tool s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in m["rows"]:
        if "zipped_bytes" not in r:
            lines.append(f"| {r['row']} | no file: {r.get('reason', '?').replace('|', '/')} | | | | | | | | "
                         f"{r['seconds']:.0f} |")
            continue
        lines.append(f"| {r['row']} | {r['zipped_bytes']:,} | {r['ratio']:.1f}× | {r['accuracy']:.2%} | "
                     f"{r['drop_points']:+.2f} | {'yes' if r['meets'] else 'NO'} | {_ms(r, 1)} | {_ms(r, 2)} | "
                     f"{r.get('vs_f32_1t', 0):.2f} / {r.get('vs_f32_2t', 0):.2f} | {r['seconds']:.0f} |")
    if any(n.get("strip_names") for n in st["settings"].get("budget_notes", {}).values()):
        lines += ["", "Budget mode's minimize-size file has its inner tensor names emptied, as its size plans "
                  "ship it (`strip_names`: a few hundred bytes); every other file keeps its names."]
    lines += ["", "Reading this run:", "", *verdict(m), ""]
    if m.get("remark"):  # what a person read in the sitting's log, kept in the .json (e.g. the scan's time)
        lines += [m["remark"], ""]
    return lines


def markdown(res):
    lines = ["## Peers side by side (<= 1 point budget)", "",
             "Every tool starts from the same trained model and writes one .tflite file. Accuracy is each file's on "
             "the same test split, the drop is against the float32 file, \"≤1 pt\" says whether it is within "
             f"{res['budget_points']:g} point. Latency is XNNPACK, all files of a sitting timed at its end in one "
             "process, files alternating over repeated rounds (median of the round medians, ± the spread max-min "
             "over the median). \"tool s\" is the tool's wall time from the trained model to its file.", ""]
    for m in res["models"]:
        lines += _section(m, m["title"])
    for m in (res.get("partial") or {}).values():
        lines += _section(m, f"{m['title']}: {', '.join(r['row'] for r in m['rows'][1:])}, in a sitting of their own "
                             "(a later stop's code; the table above stays its own sitting's)")
    done = {m["model"] for m in res["models"]}
    for k in MODELS:
        if k not in done:
            lines.append(f"{MODELS[k][0]}: {NOT_RUN.get(k, 'not run in this session (time).')}")
    return "\n".join(lines).rstrip() + "\n"

if __name__ == "__main__":
    main()
