"""Memory of a large model through optimize and int8 export, with the large-model switch on and off.

``tfcompress`` and ``tflite_export`` treat a model with at least
``tflite_export.convert.LARGE_MODEL_BYTES`` (64 MiB) of weights as large:
``optimize`` collects a finished stage's reference cycles before the next
(``tfcompress._model.release_memory``), and the exporter converts from a
SavedModel folder of the inference call instead of the in-memory concrete
function, then collects. This measures both on VGG19 (``weights=None``, 32x32,
4 classes: 38.9 M parameters, 148 MiB of float weights), with the switch at
its default and with it off (the threshold raised past any model), each in a
fresh child process:

* optimize: the default recipe (pruning + PQAT), 1 epoch per stage, 16 seeded
  samples, batch 8; peak and held resident memory above the built model;
* export: after the same optimize (switch on), int8 export with the switch on
  or off; its peak above the resident memory it started from.

Peaks are the kernel's high-water mark (``VmHWM``), reset before the step
(``/proc/self/clear_refs``). Writes ``benchmarks/results/memory.{json,md}``.

    .venv/bin/python -m benchmarks.bench_memory            # ~4 min on 2 cores
    .venv/bin/python -m benchmarks.bench_memory --render   # memory.md from memory.json
"""

import argparse
import json
import os
import sys
import time

from benchmarks import _results  # noqa: E402

COMMAND = ".venv/bin/python -m benchmarks.bench_memory"
MODEL = "VGG19"
STEPS = ("optimize", "export")
SWITCH = ("on", "off")


def _status(field):
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in GiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak():
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # resets VmHWM to the current resident set (Linux >= 4.0)


def _switch(on):
    import tflite_export.convert
    from tfcompress import _model

    value = tflite_export.convert.LARGE_MODEL_BYTES if on else 1 << 62
    _model.LARGE_MODEL_BYTES = tflite_export.convert.LARGE_MODEL_BYTES = value


def _child(step, switch):
    import gc
    import tempfile

    import numpy as np

    import tfcompress  # first: its oneDNN default applies before TensorFlow loads
    import tflite_export
    from benchmarks import _applications as apps
    from tfcompress._keras import keras

    keras.utils.set_random_seed(0)
    model, size = apps.build(MODEL)
    rng = np.random.RandomState(0)
    x = rng.rand(apps.SAMPLES, size, size, 3).astype("float32")
    y = rng.randint(0, apps.CLASSES, apps.SAMPLES)
    out = {"params": int(model.count_params())}
    gc.collect()
    _switch(step == "export" or switch == "on")
    base = _status("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    result = tfcompress.optimize(model, (x, y), epochs=1, batch_size=apps.BATCH, verbose=0)
    if step == "optimize":
        out.update(seconds=time.perf_counter() - t0, peak_above=_status("VmHWM") - base,
                   held_above=_status("VmRSS") - base)
        return out
    del model
    gc.collect()
    _switch(switch == "on")
    base = _status("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        rep = tflite_export.export(result.model, os.path.join(d, "int8.tflite"), mode="int8",
                                   representative_data=x, num_samples=apps.SAMPLES)
        out["int8_bytes"] = int(rep.bytes)
    out.update(seconds=time.perf_counter() - t0, peak_above=_status("VmHWM") - base)
    return out


def _run(step, switch, timeout):
    return _results.child(__spec__.name, [step, switch], timeout)


def _markdown(rows, command):
    lines = [
        "## Memory of a large model: the large-model switch on and off", "",
        f"`{command}` — {MODEL} (`weights=None`, 32x32, 4 classes, {rows[0].get('params', 0) / 1e6:.1f} M "
        "parameters), each line a fresh child process. \"optimize\": the default recipe (pruning + PQAT), 1 epoch "
        "per stage, 16 seeded samples; with the switch on, `optimize` collects a finished stage's reference cycles "
        "before the next (`tfcompress._model.release_memory`). \"export\": int8 export of the same optimized model; "
        "with the switch on, the exporter converts from a SavedModel folder of the inference call and collects "
        "after. \"off\" raises `LARGE_MODEL_BYTES` past any model. Peak: the kernel's high-water mark (`VmHWM`, "
        "reset before the step) above the resident memory the step started from; held: resident memory after "
        "`optimize` returned, above the same start.", "",
        "| step | switch | peak GiB above start | held GiB after | seconds | status |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        held = f"{r['held_above']:.2f}" if "held_above" in r else ""
        peak = f"{r['peak_above']:.2f}" if "peak_above" in r else ""
        secs = f"{r['seconds']:.0f}" if "seconds" in r else ""
        lines.append(f"| {r['step']} | {r['switch']} | {peak} | {held} | {secs} | {r['status']} |")
    by = {(r["step"], r["switch"]): r for r in rows if r["status"] == "ok"}
    ratios = [f"{step} {what} x{by[step, 'on'][key] / by[step, 'off'][key]:.2f}"
              for step, what, key in (("optimize", "peak", "peak_above"), ("optimize", "held", "held_above"),
                                      ("export", "peak", "peak_above"))
              if (step, "on") in by and (step, "off") in by]
    if ratios:
        lines += ["", "Switch on against off: " + ", ".join(ratios) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, metavar=("STEP", "SWITCH"), help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=int, default=1200, help="seconds per child (default 1200)")
    p.add_argument("--render", action="store_true", help="rewrite memory.md from memory.json, running nothing")
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(_child(*args.child)), flush=True)
        return 0
    if args.render:
        with open(os.path.join(_results.RESULTS, "memory.json"), encoding="utf-8") as f:
            result = json.load(f)
        print(_results.write("memory", result, _markdown(result["rows"], result["command"])))
        return 0
    # as bench_applications runs them: glibc returns large freed blocks at once
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 20))
    rows = []
    for step in STEPS:
        for switch in SWITCH:
            row = {"step": step, "switch": switch, **_run(step, switch, args.timeout)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    command = _results.command(COMMAND, argv)
    result = {"command": command, "machine": _results.machine(load=True), "model": MODEL, "rows": rows}
    print(_results.write("memory", result, _markdown(rows, command)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
