"""Every tf_keras.applications architecture: check → optimize (default recipe) → int8 → LiteRT.

Each model is built with ``weights=None`` at the smallest input it allows
(32×32, else the minimum it names: 71 for Xception, 75 for the Inceptions),
4 classes, 16 seeded random samples, 1 epoch per stage (batch 8), then
``tfcompress.check``, ``tfcompress.optimize`` (pruning + PQAT), int8 export
with ``tflite_export.export`` and one LiteRT invoke. Every model runs in a
child process with a time limit: a crash is recorded with its signal, a model
over the limit as "not run: time".

    .venv/bin/python -m benchmarks.bench_applications                        # all 71
    .venv/bin/python -m benchmarks.bench_applications --models Xception NASNetMobile
    .venv/bin/python -m benchmarks.bench_applications --timeout 600
    .venv/bin/python -m benchmarks.bench_applications --jobs 2          # two models at a time

Rows already in ``benchmarks/results/applications.json`` are kept unless the
model is run again (``--models`` re-runs just those), so the table can be
filled in several sittings; models never run are listed as "not run: time".
Writes ``benchmarks/results/applications.{json,md}``.
"""

import argparse
import concurrent.futures
import json
import os
import sys
import time

from benchmarks import _applications as apps
from benchmarks import _results

NAME = "applications"  # results/applications.{json,md}


def _load(folder=None):
    """Rows and commands of earlier sittings."""
    path = os.path.join(folder or _results.RESULTS, f"{NAME}.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        commands = old.get("commands") or ([old["command"]] if old.get("command") else [])
        return {r["name"]: r for r in old["rows"]}, commands
    return {}, []


def _brief(command):
    """A sitting's command with a long ``--models`` list cut to its first 3 names and the count."""
    head, sep, models = command.partition("--models ")
    names = models.split()
    if len(names) <= 6:
        return command
    return f"{head}{sep}{' '.join(names[:3])} … ({len(names)} models)"


def _short(status):
    return status.replace("|", "/")[:160]


def _markdown(rows, names, commands):
    ran = [rows[n] for n in names if n in rows]
    counts = {}
    for r in ran:
        key = r["status"].split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    lines = [
        "## keras.applications: every architecture in and out", "",
        "; ".join(f"`{_brief(c)}`" for c in commands) + f" (the model lists in full: `commands` in "
        f"applications.json) — each of the {len(names)} model functions of "
        "`tf_keras.applications`, "
        "`weights=None`, smallest allowed input, 4 classes, 16 seeded random samples, 1 epoch per stage "
        "(batch 8): `tfcompress.check` → `tfcompress.optimize` (default recipe: pruning + PQAT) → int8 "
        "export → one LiteRT invoke, each in a child process with a time limit. \"skipped\" counts the "
        "layers `check` says QAT leaves in float (they stay float through QAT; the int8 converter "
        "quantizes them from the calibration data), by type. Tally: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + f", not run {len(names) - len(ran)}. Column \"peak GiB\": the child's peak resident memory "
        "(`getrusage` max RSS once its last step was done), recorded from ConvNeXtBase's second sitting on (blank: "
        "run before). The largest models must run one at a time on this 23 GiB machine. Sampled every 2 s before "
        "three changes, ResNetRS420 peaked at 16.4 GiB (86 bytes a parameter); since, `optimize`, `check` and "
        "`tflite_export` collect a large model's reference cycles after each stage and conversion "
        "(`tfcompress._model.release_memory`), a large model converts from a SavedModel folder of its inference call "
        "(`tflite_export.convert._inference_converter`: VGG19 after QAT, int8 export +1.34 GiB above the model "
        "instead of +1.95: `bench_memory.py`), and this script frees the input model before the export. "
        "ConvNeXtLarge's first sitting crashed with signal 6 in its LiteRT invoke: with 1x1 feature maps in stage 3, "
        "a LayerNorm's input was equal over its channels, calibration saw its SquaredDifference output as zeros "
        "(scale 7.8e-9), and the int8 kernel's requantization check (multiplier 68.7, must be < 1; tensorflow#60815) "
        "aborted the process. The exporter now widens such scales (with a warning). The second sitting's file then "
        "ran on the builtin kernels but XNNPACK refused it (\"failed to create XNNPACK runtime\"). Cut into one-op "
        "models, the file had two FULLY_CONNECTED ops (stage 3's `pointwise_conv_2`, outputs all zeros in "
        "calibration, scale 7.8e-9) whose input × filter / output scale was 1,350: XNNPACK's delegate takes such an "
        "op, but XNNPACK builds no fully-connected or convolution operator at 256 or more. The exporter widens those "
        "too, keeping the biases of the ops they feed at their values, and the third sitting's file runs on XNNPACK. "
        "ConvNeXtXLarge failed the same way in its first sitting; it was out of reach before the memory changes "
        "above (ConvNeXtBase peaked at 6.4 GiB for 88 M parameters without the last two, about 23 GiB at 350 M).", "",
        "The three architectures that used to fail pass here: ConvNeXtTiny (TF-MOT's QAT rebuild raised "
        "`AttributeError: 'str' object has no attribute 'name'` on the application-private `LayerScale`; "
        "the model's own layer classes are now in scope and `LayerScale` stays float), Xception and "
        "NASNetMobile (their int8 files failed \"failed to create XNNPACK runtime\": `SeparableConv2D` was "
        "left float through QAT, and the converter calibrated the tensor between its depthwise and 1×1 "
        "halves from data alone, all-zero after pruning, scale 7.8e-9, giving requantization scales "
        "outside XNNPACK's [2^-32, 256); it is now annotated so TF-MOT splits it with a fake-quant "
        "in between). EfficientNetB0's `crash: signal 11 in export` of an earlier sitting is fixed too: fed "
        "inputs in [0, 1) where its built-in `Rescaling(1/255)` expects pixels, its QAT saw activations "
        "that fake-quantization made all equal, BatchNorm divided by sqrt(epsilon), gradients reached 1e34 "
        "and the weights NaN after one step; TensorFlow's MLIR quantizer then segfaulted on the NaN scales "
        "(gdb: `QuantizationDriver::ShouldCheckBiasScale`). Now models that scale their own inputs get "
        "pixel values (column \"inputs\"), a stage that diverges raises a RecipeError naming it, and "
        "`tflite_export` refuses NaN/Inf weights instead of crashing. Rows with training \"eager\" ran "
        "`optimize`'s 2 training steps per stage eagerly (`tf.config.run_functions_eagerly`): tracing them "
        "was 60-90 % of a model's minutes; the layers, wrappers and converted graph are the same. \"eager steps\" "
        "(RegNet): the train step runs in Python (every `Model.run_eagerly` reads True) while Keras's XLA-compiled "
        "grouped convolutions stay compiled: TensorFlow has no eager CPU gradient for grouped convolutions; "
        "RegNetX004 took 673 s in graph mode, 138 s so.", "",
        "| model | input | inputs | training | params | status | skipped by QAT (check) | seconds | peak GiB | "
        "int8 bytes |",
        "|---|---:|---|---|---:|---|---|---:|---:|---:|",
    ]
    for n in names:
        r = rows.get(n)
        if r is None:
            lines.append(f"| {n} | | | | | not run | | | | |")
            continue
        by_type = {}
        for reason in r.get("skipped", {}).values():
            t = _skip_type(reason)
            by_type[t] = by_type.get(t, 0) + 1
        skipped = ", ".join(f"{t} {c}" for t, c in sorted(by_type.items())) or "none"
        secs = r.get("seconds", {}).get("total") or 0
        peak = max(r.get("peak_gib", {}).values(), default=None)
        peak = "" if peak is None else f"{peak:.1f}"
        lines.append(f"| {n} | {r.get('input') or ''} | {r.get('inputs', '0-1')} | {r.get('training', 'graph')} | "
                     f"{_num(r.get('params'))} | {_short(r['status'])} | "
                     f"{skipped} | {secs:.0f} | {peak} | {_num(r.get('int8_bytes'))} |")
    return "\n".join(lines) + "\n"


def _num(v):
    return f"{v:,}" if isinstance(v, int) else ""


def _skip_type(reason):
    if reason.startswith("TFOpLambda"):
        return "TFOpLambda " + reason.split()[1].split(":")[0]
    for marker in ("config for ", "BatchNormalization", "nested model"):
        if marker in reason:
            return reason.split(marker)[1].split()[0] if marker == "config for " else marker
    return reason.split(":")[0][:40]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", help="model names (default: all)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per model (default 900)")
    p.add_argument("--jobs", type=int, default=1,
                   help="models run at once (default 1): a model's run is mostly one busy core (Python graph "
                        "building), so 2 on 2 cores roughly halve the wall time; each needs up to a few GiB")
    p.add_argument("--render", action="store_true", help="only rewrite the table from the JSON")
    p.add_argument("--graph", action="store_true",
                   help="trace the training steps into graphs as usual (default: run them eagerly; see _applications)")
    args = p.parse_args(argv)
    names = apps.model_names()
    todo = args.models or names
    unknown = sorted(set(todo) - set(names))
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.render:
        _write(*_load(), names)
        return 0
    command = _results.command("python -m benchmarks.bench_applications", argv)

    def one(name):
        t0 = time.perf_counter()
        return name, apps.run_isolated(name, timeout=args.timeout, eager=not args.graph), time.perf_counter() - t0

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:  # threads wait; each model is a child process
        for done in concurrent.futures.as_completed([pool.submit(one, n) for n in todo]):
            name, row, secs = done.result()
            row.pop("traceback", None)
            print(f"{name}: {row['status']} ({secs:.0f} s)", flush=True)
            _save(name, row, command, names)
    return 0


def _write(rows, commands, names, folder=None):
    """Both files through the one results writer (which adds the provenance of this sitting)."""
    result = {"commands": commands, "rows": [rows[n] for n in names if n in rows]}
    return _results.write(NAME, result, _markdown(rows, names, commands), indent=1, folder=folder)


def _save(name, row, command, names, folder=None):
    """Merge one row into applications.json/md after each model, atomically and under a lock:
    a crash of this script loses nothing, and two sittings may run at once (different models)."""
    import fcntl

    folder = folder or _results.RESULTS
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{NAME}.json.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows, commands = _load(folder)  # what other sittings wrote meanwhile
        rows[name] = row
        if command not in commands:
            commands.append(command)
        return _write(rows, commands, names, folder)


if __name__ == "__main__":
    sys.exit(main())
