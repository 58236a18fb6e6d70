"""tfcompress's own overhead: ``optimize`` against the same TF-MOT calls written by hand.

For LeNet-5 and ResNet-8 on Fashion-MNIST (28x28) and MobileNetV2 (alpha 0.35) at 96x96x3
(Fashion-MNIST upsampled, grey copied to 3 channels), one briefly trained float model
(the same ``.h5`` file for both sides) goes through each stage alone, both ways:

* **by hand**, TF-MOT as its guides write it: ``evaluate`` the float model on the validation
  data; wrap the Conv2D/DepthwiseConv2D/Dense layers (``prune_low_magnitude`` with
  ``PolynomialDecay``, ``cluster_weights``) or ``quantize_model`` the whole model;
  ``compile``; ``fit(x, y, validation_data=...)`` (``UpdatePruningStep`` for pruning);
  ``strip_pruning`` / ``strip_clustering``; ``evaluate`` the result. After QAT, the int8
  ``TFLiteConverter.from_keras_model`` conversion (200 calibration images, int8 in/out);
* **through tfcompress**: ``tfcompress.optimize(model, train, val, recipe=<that one stage>)``
  with the same epochs, batch size, optimizer (Adam), learning rate (times the stage's
  ``learning_rate_scale``, which the hand side applies too), schedule steps and validation
  each epoch; it also evaluates before and after, as the hand side does. After QAT,
  ``tflite_export.export(mode="int8")`` with the same calibration images.

Every measurement is a fresh child process (graph caches do not leak between sides); the
sides alternate and each (model, stage) pair runs :data:`ROUNDS` times. The ratio is
tfcompress / hand of the whole stage's wall time, paired within a round. The split: epochs
(the epochs x the steady epoch, the median of epochs 2..n, validation included), the rest
(wrapping, cloning, the first epoch's tracing, stripping, the two evaluations) and the
conversion. oneDNN is left at TensorFlow's default (on).

    nice -n 5 .venv/bin/python -m benchmarks.bench_overhead             # ~35-40 min on 2 cores
    nice -n 5 .venv/bin/python -m benchmarks.bench_overhead --quick     # LeNet-5 only, 1 round

Writes ``benchmarks/results/overhead.{json,md}``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import _results
from benchmarks._timing import epoch_timer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COMMAND = "nice -n 5 .venv/bin/python -m benchmarks.bench_overhead"
MODELS = ("lenet5", "resnet8", "mobilenet_v2")
STAGES = ("pruning", "clustering", "quantization")
SIDES = ("hand", "tfcompress")
#: Training / validation images, batch, epochs per stage; the same for both sides.
SIZES = {"lenet5": (4000, 1000), "resnet8": (2000, 500), "mobilenet_v2": (600, 200)}
BATCH, EPOCHS, LR = 64, 3, 1e-3
#: Rounds per model (each a hand and a tfcompress run of every stage): more where a run is short and noisier.
ROUNDS = {"lenet5": 5, "resnet8": 4, "mobilenet_v2": 3}
#: The stages' settings (tfcompress's defaults, written out for the hand side).
SPARSITY, CLUSTERS, CLUSTER_LR_SCALE, QAT_LR_SCALE = 0.8, 16, 0.5, 0.1
CALIBRATION = 200


# ----------------------------------------------------------------------------- the data and the float models

def prepare(work, names=MODELS):
    """Write ``<model>.npz`` (train, val) and ``<model>.h5`` (the briefly trained float model) into ``work``."""
    import numpy as np

    from tfcompress import datasets, models
    from tfcompress._keras import keras, tf
    from tfcompress._model import onednn_safe_training

    d = datasets.load("fashion-mnist")
    rng = np.random.default_rng(0)
    for name in names:
        n, nv = SIZES[name]
        idx, vidx = rng.permutation(len(d.train[0]))[:n], rng.permutation(len(d.validation[0]))[:nv]
        x, y, xv, yv = d.train[0][idx], d.train[1][idx], d.validation[0][vidx], d.validation[1][vidx]
        keras.utils.set_random_seed(0)
        if name == "mobilenet_v2":
            up = (lambda a: np.repeat(tf.image.resize(a, (96, 96)).numpy(), 3, axis=-1).astype("float32"))
            x, xv = up(x), up(xv)
            model = keras.applications.MobileNetV2(alpha=0.35, weights=None, input_shape=(96, 96, 3), classes=10)
        else:
            model = models.get(name).build()
        model.compile(keras.optimizers.Adam(LR), "sparse_categorical_crossentropy", ["accuracy"])
        with onednn_safe_training(model):
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
        model.save(os.path.join(work, f"{name}.h5"), include_optimizer=False)
        np.savez(os.path.join(work, f"{name}.npz"), x=x, y=y, xv=xv, yv=yv)
    print("RESULT {}", flush=True)


def _load(work, name, keras):
    import numpy as np

    d = np.load(os.path.join(work, f"{name}.npz"))
    model = keras.models.load_model(os.path.join(work, f"{name}.h5"), compile=False)
    model.compile(keras.optimizers.Adam(LR), "sparse_categorical_crossentropy", ["accuracy"])
    return model, d["x"], d["y"], d["xv"], d["yv"]


def _sparsity(model):
    """Zero share of each Conv/Dense kernel, by layer name."""
    import numpy as np

    out = {}
    for layer in model.layers:
        kernel = getattr(layer, "depthwise_kernel", None)
        kernel = getattr(layer, "kernel", None) if kernel is None else kernel
        if kernel is not None:
            out[layer.name] = round(float(np.mean(kernel.numpy() == 0)), 4)
    return out


def _pruning_steps(n):
    from tfcompress.pruning.config import Pruning

    return Pruning(final_sparsity=SPARSITY, epochs=EPOCHS).steps(n, BATCH, EPOCHS)


# ----------------------------------------------------------------------------- the two sides

def hand(work, name, stage, tflite_path=None):
    """The stage by hand with TF-MOT (this process imports no tfcompress)."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    model, x, y, xv, yv = _load(work, name, keras)
    steps = json.loads(os.environ["BENCH_OVERHEAD_STEPS"])  # from the parent (the same maths as optimize)
    timer = epoch_timer(keras)
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    t0 = time.perf_counter()
    before = model.evaluate(xv, yv, batch_size=BATCH, verbose=0, return_dict=True)
    callbacks, lr = [timer], LR
    if stage == "pruning":
        sched = tfmot.sparsity.keras.PolynomialDecay(0.0, SPARSITY, steps["begin_step"], steps["end_step"],
                                                     frequency=steps["frequency"])
        work_model = keras.models.clone_model(model, clone_function=lambda layer: (
            tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=sched)
            if isinstance(layer, kinds) else layer))
        callbacks.append(tfmot.sparsity.keras.UpdatePruningStep())
    elif stage == "clustering":
        init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS
        work_model = keras.models.clone_model(model, clone_function=lambda layer: (
            tfmot.clustering.keras.cluster_weights(layer, number_of_clusters=CLUSTERS, cluster_centroids_init=init)
            if isinstance(layer, kinds) else layer))
        lr *= CLUSTER_LR_SCALE
    else:
        work_model = tfmot.quantization.keras.quantize_model(model)
        lr *= QAT_LR_SCALE
    params = {layer.name: layer.count_params() for layer in model.layers}  # QAT moves kernels out of the layer
    wrapped = sorted(l.layer.name for l in work_model.layers if hasattr(l, "layer") and params.get(l.layer.name))
    work_model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    work_model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, validation_data=(xv, yv), callbacks=callbacks, verbose=0)
    final = (tfmot.sparsity.keras.strip_pruning(work_model) if stage == "pruning" else
             tfmot.clustering.keras.strip_clustering(work_model) if stage == "clustering" else work_model)
    final.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    after = final.evaluate(xv, yv, batch_size=BATCH, verbose=0, return_dict=True)
    out = {"total_s": time.perf_counter() - t0, "epoch_s": timer.seconds, "wrapped": wrapped,
           "accuracy": [before["accuracy"], after["accuracy"]], "sparsity": _sparsity(final)}
    if stage == "quantization":
        t1 = time.perf_counter()
        conv = tf.lite.TFLiteConverter.from_keras_model(final)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(CALIBRATION))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
        data = conv.convert()
        with open(tflite_path or os.path.join(work, f"{name}_hand.tflite"), "wb") as f:
            f.write(data)
        out.update(convert_s=time.perf_counter() - t1, tflite_bytes=len(data))
    return out


def through_tfcompress(work, name, stage, tflite_path=None):
    """The stage through ``tfcompress.optimize`` (and ``tflite_export.export`` after QAT)."""
    import tfcompress
    import tflite_export
    from tfcompress import Clustering, Pruning, Quantization, Recipe
    from tfcompress._keras import keras

    model, x, y, xv, yv = _load(work, name, keras)
    stages = {"pruning": Pruning(final_sparsity=SPARSITY, epochs=EPOCHS) if stage == "pruning" else None,
              "clustering": (Clustering(number_of_clusters=CLUSTERS, epochs=EPOCHS,
                                        learning_rate_scale=CLUSTER_LR_SCALE) if stage == "clustering" else None),
              "quantization": (Quantization(epochs=EPOCHS, learning_rate_scale=QAT_LR_SCALE)
                               if stage == "quantization" else None)}
    recipe = Recipe(**stages, batch_size=BATCH, learning_rate=LR, optimizer="adam")
    timer = epoch_timer(keras)
    t0 = time.perf_counter()
    res = tfcompress.optimize(model, (x, y), (xv, yv), recipe=recipe, verbose=0, callbacks=[timer])
    out = {"total_s": time.perf_counter() - t0, "epoch_s": timer.seconds,
           "wrapped": sorted(r.name for r in res.report.layers if r.params and str(r.stages.get(stage, "")).startswith(
               ("wrapped", "quantized", "clustered"))),
           "accuracy": [res.report.baseline["accuracy"], res.report.optimized["accuracy"]],
           "sparsity": _sparsity(res.model), "stage_s": res.report.stages[0]["seconds"]}
    if stage == "quantization":
        t1 = time.perf_counter()
        e = tflite_export.export(res.model, tflite_path or os.path.join(work, f"{name}_tfc.tflite"), mode="int8",
                                 representative_data=x[:CALIBRATION], num_samples=CALIBRATION)
        out.update(convert_s=time.perf_counter() - t1, tflite_bytes=e.bytes)
    return out


def why(work, rounds=2):
    """Seconds per epoch of plain ``fit`` on each float model, fed as the hand side feeds it (numpy ``x, y``)
    or as ``optimize`` does (the ``tf.data`` pipeline of ``tfcompress._data.prepare``), and for ResNet-8
    with its 1x1 stride-2 convolutions trained as ``optimize`` trains them (``onednn_safe_training``)."""
    import contextlib

    from tfcompress._data import prepare as pipeline
    from tfcompress._keras import keras
    from tfcompress._model import onednn_safe_training

    out = {}
    for name in ("lenet5", "resnet8"):
        variants = ("numpy", "pipeline") + (("numpy, sliced 1x1 stride-2",) if name == "resnet8" else ())
        times = {v: [] for v in variants}
        for i in range(rounds):
            for v in (variants if i % 2 == 0 else variants[::-1]):
                model, x, y, _, _ = _load(work, name, keras)
                data = pipeline((x, y), model, BATCH, shuffle=True).dataset if v == "pipeline" else None
                with onednn_safe_training(model) if "sliced" in v else contextlib.nullcontext():
                    feed = {"x": data} if data is not None else {"x": x, "y": y, "batch_size": BATCH}
                    model.fit(**feed, epochs=1, verbose=0)  # traces
                    t0 = time.perf_counter()
                    model.fit(**feed, epochs=2, verbose=0)
                    times[v].append((time.perf_counter() - t0) / 2)
        out[name] = {v: statistics.median(t) for v, t in times.items()}
    return out


def child(work, name, side, stage, profile=None):
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        out = prof.runcall(SIDE_FUNCTIONS[side], work, name, stage)
        pstats.Stats(prof).sort_stats("cumulative").dump_stats(profile)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
    else:
        out = SIDE_FUNCTIONS[side](work, name, stage)
    print("RESULT " + json.dumps(out), flush=True)


SIDE_FUNCTIONS = {"hand": hand, "tfcompress": through_tfcompress}


def run_child(args, env=None, timeout=1200):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_overhead", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"child {args} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


# ----------------------------------------------------------------------------- the table

def split(r):
    """``(epochs, rest)`` seconds of one run: the epochs at the steady rate, and everything else."""
    steady = statistics.median(r["epoch_s"][1:]) if len(r["epoch_s"]) > 1 else r["epoch_s"][0]
    epochs = steady * len(r["epoch_s"])
    return epochs, r["total_s"] - epochs


def summarise(runs):
    """Per (model, stage): the median ratio and its spread, and each side's median split."""
    rows = []
    for name in MODELS:
        for stage in STAGES:
            pairs = [p for p in runs if p["model"] == name and p["stage"] == stage]
            if not pairs:
                continue
            for what, key in ((stage, "total_s"), ("int8 conversion", "convert_s")):
                if key == "convert_s" and stage != "quantization":
                    continue
                ratios = [p["tfcompress"][key] / p["hand"][key] for p in pairs]
                row = {"model": name, "stage": what, "ratio": statistics.median(ratios),
                       "min": min(ratios), "max": max(ratios), "rounds": len(pairs)}
                for side in SIDES:
                    row[side] = statistics.median(p[side][key] for p in pairs)
                    if key == "total_s":
                        parts = [split(p[side]) for p in pairs]
                        row[f"{side}_epochs"] = statistics.median(e for e, _ in parts)
                        row[f"{side}_rest"] = statistics.median(r for _, r in parts)
                rows.append(row)
    return rows


def markdown(res):
    lines = [
        "## Overhead: `optimize` against the same TF-MOT calls by hand", "",
        f"Command: `{res['command']}`. Each stage alone on a briefly trained float model (one `.h5` file for "
        f"both sides): {EPOCHS} epochs, batch {BATCH}, Adam {LR:g} (x {CLUSTER_LR_SCALE} for clustering, "
        f"x {QAT_LR_SCALE} for QAT), validation every epoch and an evaluation before and after on both sides; "
        f"pruning to {SPARSITY:.0%} (PolynomialDecay, the same steps), {CLUSTERS} clusters (k-means++), "
        "8-bit QAT, then int8 conversion with 200 calibration images. By hand: TF-MOT's own calls "
        "(`prune_low_magnitude`/`cluster_weights` on the Conv/Dense layers, `quantize_model`, `fit(x, y)`, "
        "`strip_*`, `TFLiteConverter.from_keras_model`); tfcompress: `optimize(model, train, val, "
        "recipe=<the stage>)`, `tflite_export.export(mode=\"int8\")`. Every run is its own child process, the "
        "sides alternate; rounds: " + ", ".join(f"{m} {n}" for m, n in res["rounds"].items())
        + "; ratio = tfcompress / hand of the stage's wall time, paired "
        "per round: median (min-max). Epochs = the epochs at the steady rate (median of epochs 2-3, validation "
        "included); rest = everything else (wrapping, cloning, the first epoch's tracing, stripping, the two "
        "evaluations). Data: " + ", ".join(f"{m} {n} train / {v} val images" for m, (n, v) in SIZES.items())
        + f" (MobileNetV2 alpha 0.35 at 96x96x3). oneDNN: TensorFlow's default (on). {res['machine']}; CPU "
        f"{res['cpu']}; {res['minutes']:.0f} min.", "",
        "| model | stage | hand s | tfcompress s | ratio | hand epochs / rest s | tfcompress epochs / rest s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        split_cols = (f"{r['hand_epochs']:.1f} / {r['hand_rest']:.1f} | {r['tfcompress_epochs']:.1f} / "
                      f"{r['tfcompress_rest']:.1f}" if "hand_epochs" in r else "— | —")
        lines.append(f"| {r['model']} | {r['stage']} | {r['hand']:.1f} | {r['tfcompress']:.1f} | "
                     f"{r['ratio']:.2f}x ({r['min']:.2f}-{r['max']:.2f}) | {split_cols} |")
    lines += ["", res.get("reading", ""), ""]
    return "\n".join(lines)


def reading(rows, measured=None):
    """The "reading this run" paragraph: which rows meet 1.05x, and where the time went in those that do not."""
    over = [r for r in rows if r["ratio"] > TARGET]
    lines = [f"Reading this run: {len(rows) - len(over)} of {len(rows)} rows are within {TARGET}x of the "
             "hand-written TF-MOT calls (median ratio).", ""]
    for r in over:
        if "hand_epochs" in r:
            d_ep, d_rest = r["tfcompress_epochs"] - r["hand_epochs"], r["tfcompress_rest"] - r["hand_rest"]
            where = (f"epochs {d_ep:+.1f} s, the rest {d_rest:+.1f} s"
                     + ("; the spread straddles 1.05x, so run-to-run noise on the shared cores is as large as "
                        "the difference" if r["min"] <= TARGET else ""))
        else:
            where = "conversion"
        lines.append(f"- Over: {r['model']} {r['stage']} {r['ratio']:.2f}x ({r['min']:.2f}-{r['max']:.2f}): "
                     f"tfcompress - hand = {where}.")
    lines += [""] if over else []
    if measured:
        ep = {m: measured[m] for m in ("lenet5", "resnet8") if m in measured}
        lines += [
            "Measured where the epochs differ (`--why`: plain `fit` of each float model, seconds per steady "
            f"epoch, median of alternated runs; load {measured.get('load_avg', 0):.1f}): "
            + "; ".join(f"{m}: " + ", ".join(f"{v} {s:.2f}" for v, s in d.items()) for m, d in ep.items())
            + ". The numpy column is how the hand side is fed, pipeline is `optimize`'s `tf.data` pipeline "
            "(per-example shuffle and batch), sliced is ResNet-8's two 1x1 stride-2 projections trained with "
            "their kernel gradient taken on the strided slice of their input, the guard against oneDNN's crash "
            "(`_model.onednn_safe_training`).", ""]
    lines.append(
        "Where tfcompress is faster it is the non-epoch part: `optimize` creates the loss, metric and optimizer "
        "variables before `fit` (`build_training_state`), so Keras traces the train step once where a plain "
        "`fit` traces it twice, and `tflite_export` converts from a trace of the inference call alone where "
        "`TFLiteConverter.from_keras_model` first saves a whole SavedModel. What tfcompress does on top of the "
        "hand-written calls: one copy of the input model (the input stays untouched; TF-MOT's `clone_model` "
        "trains the caller's own layers) and the data checks of `prepare`.")
    return "\n".join(lines)


TARGET = 1.05


def render(stem):
    """Rebuild ``<stem>.md`` and the summary in ``<stem>.json`` from the runs the JSON holds."""
    with open(stem + ".json", encoding="utf-8") as f:
        res = json.load(f)
    res["rows"] = summarise(res["runs"])
    res["reading"] = reading(res["rows"], res.get("why"))
    md = markdown(res)
    for path, text in ((stem + ".json", json.dumps(res, indent=2, default=str)), (stem + ".md", md + "\n")):
        with open(path + ".part", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".part", path)
    print(md)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=4, metavar=("WORK", "MODEL", "SIDE", "STAGE"), help=argparse.SUPPRESS)
    p.add_argument("--prepare", nargs="+", metavar="WORK", help=argparse.SUPPRESS)
    p.add_argument("--profile", metavar="FILE", help="with --child: run it under cProfile, stats to FILE")
    p.add_argument("--rounds", type=int, default=None, help=f"rounds for every model (default {ROUNDS})")
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    p.add_argument("--quick", action="store_true", help="LeNet-5 only, 1 round (results/overhead_quick.*)")
    p.add_argument("--out", default=None)
    p.add_argument("--why", metavar="WORK", help="time the epoch differences found (data pipeline, 1x1 "
                   "stride-2 convolutions) on WORK's models; adds them to results/overhead.json")
    p.add_argument("--render", action="store_true",
                   help="only rebuild the table and reading from results/overhead.json (its provenance kept)")
    args = p.parse_args(argv)
    if args.why:
        stem = os.path.join(args.out or _results.RESULTS, "overhead")
        with open(stem + ".json", encoding="utf-8") as f:
            res = json.load(f)
        res["why"] = {**why(args.why), "load_avg": os.getloadavg()[0]}
        with open(stem + ".json.part", "w", encoding="utf-8") as f:
            f.write(json.dumps(res, indent=2, default=str))
        os.replace(stem + ".json.part", stem + ".json")
        return render(stem)
    if args.render:
        return render(os.path.join(args.out or _results.RESULTS, "overhead"))
    if args.prepare:
        return prepare(args.prepare[0], args.prepare[1:])
    if args.child:
        return child(*args.child, profile=args.profile)
    if args.quick:
        args.rounds, args.models = 1, ["lenet5"]
    rounds = {m: args.rounds or ROUNDS[m] for m in args.models}
    t0 = time.time()
    work = tempfile.mkdtemp(prefix="bench-overhead-")
    run_child(["--prepare", work, *args.models])
    runs = []
    for i in range(max(rounds.values())):
        for j, name in enumerate(m for m in args.models if i < rounds[m]):
            env = {"BENCH_OVERHEAD_STEPS": json.dumps(vars(_pruning_steps(SIZES[name][0])))}
            for k, stage in enumerate(STAGES):
                pair = {"model": name, "stage": stage, "round": i}
                for side in (SIDES if (i + j + k) % 2 == 0 else SIDES[::-1]):
                    pair[side] = run_child(["--child", work, name, side, stage], env=env)
                    print(f"round {i + 1} {name} {stage} {side}: {pair[side]['total_s']:.1f} s"
                          + (f", convert {pair[side]['convert_s']:.1f} s" if "convert_s" in pair[side] else ""),
                          file=sys.stderr, flush=True)
                runs.append(pair)
    rows = summarise(runs)
    res = {"command": _results.command(COMMAND, argv), "rounds": rounds, "rows": rows, "runs": runs,
           "machine": _results.machine(load=True), "cpu": _results.cpu_flags(),
           "minutes": (time.time() - t0) / 60}
    res["reading"] = reading(rows)
    md = markdown(res)
    _results.write("overhead_quick" if args.quick else "overhead", res, md + "\n", folder=args.out)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
