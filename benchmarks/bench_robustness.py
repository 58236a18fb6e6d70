"""The bad-input matrix: what each bad input gets, API and command line (issue 12).

Every case of tests/test_bad_inputs.py (data, datasets, optimize() arguments,
every stage field, recipe files, evaluate/agreement, calibration outliers),
collected from the test module itself, plus command-line cases: bad option
values of every subcommand, missing/garbage/fuzzed files, bad calibration data,
unwritable outputs, a busy port. Each outcome is classified:

* **clear**: one line of ours (a ``TfcompressError``; on the command line exit 2
  and one ``error:`` line, argparse's usage line aside), no traceback;
* **unclear**: ours, but several lines;
* **traceback**: any other exception (command line: a Python traceback or exit 1);
* **crash**: the process died from a signal;
* **silent**: the bad input was accepted (no error, or still running after the
  per-case limit);
* **valid**: a fuzzed file whose flipped bytes left a valid model (only weight
  bytes changed): accepting it is right, so it is counted apart.

Cases run in child processes (one for the API cases, one for the CLI cases),
each writing a line per case; a child killed by a signal records that case as a
crash and the rest resume in a fresh child. Writes
benchmarks/results/robustness.{json,md}.

    .venv/bin/python benchmarks/bench_robustness.py          # ~3 min on 2 cores
"""

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
COMMAND = ".venv/bin/python benchmarks/bench_robustness.py"
LIMIT_S = 60  # a case still running after this accepted its bad input
FUZZED = 24


class _Late(Exception):
    pass


def _alarm(*_):
    raise _Late()


# ----------------------------------------------------------------------------- API cases


def _api_cases(tmp):
    """(name, zero-argument callable) for every case of tests/test_bad_inputs.py, and a few more."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import numpy as np
    import test_bad_inputs as t

    import tfcompress
    import tflite_export
    from tfcompress import Recipe

    model, binary = t._tiny(), t._tiny(1, "sigmoid")
    tfl = os.path.join(tmp, "tiny.tflite")
    tflite_export.export(model, tfl, mode="float32")

    def params(fn):
        return [m.args[1] for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"][0]

    def opt(train, val=None, m=model):
        return lambda: tfcompress.optimize(m, train, val, recipe=t.QUICK, verbose=0)

    out = []
    out += [(f"data: {k}", opt(v[0], v[1])) for k, v in t.DATA_CASES.items()]
    out += [(f"binary labels: {y.shape}", opt((t.X, y), m=binary))
            for y, _ in params(t.test_binary_labels_are_checked)]
    out += [(f"tf.data: {k}", (lambda make=make: tfcompress.optimize(model, make(), recipe=t.QUICK, verbose=0)))
            for k, (make, _) in t.DATASET_CASES.items()]
    for kwargs, _, frag in params(t.test_bad_optimize_arguments):
        args = {"model": model, "train_data": (t.X, t.Y), "recipe": t.QUICK, "verbose": 0, **kwargs}
        out.append((f"optimize({', '.join(f'{k}=' for k in kwargs)}...): {frag}",
                    lambda args=args: tfcompress.optimize(**args)))
    for p in t.FIELD_CASES:
        cls, name, value = p.values
        out.append((f"field {p.id}", lambda cls=cls, name=name, value=value: cls(**{name: value})))
    out += [(f"issue example: {frag}", make) for make, frag in params(t.test_issue_examples_raise_recipe_errors)]
    for k, (raw, _) in t.RECIPE_FILES.items():
        path = os.path.join(tmp, f"recipe-{len(out)}.yaml")
        with open(path, "wb") as f:
            f.write(raw)
        out.append((f"recipe file: {k}", lambda path=path: Recipe.from_yaml(path)))
    for k, (make, _) in t.EVALUATE_CASES.items():
        out.append((f"evaluate: {k}", lambda make=make: tflite_export.evaluate(tfl, *make())))
    for x, frag in params(t.test_agreement_refuses_bad_inputs):
        out.append((f"agreement: {frag[0]}", lambda x=x: tflite_export.agreement(model, tfl, x)))
    for bad in (np.inf, np.nan, 1e39, 1e30, 1e6):
        x = t._with(t.X, 3, bad)
        out.append((f"int8 calibration: {bad:g} in sample 3", lambda x=x: tflite_export.export(
            model, os.path.join(tmp, "c.tflite"), mode="int8", representative_data=x, num_samples=t.N)))
    out += [
        ("load_model(None)", lambda: tfcompress.load_model(None)),
        ("load_model(missing)", lambda: tfcompress.load_model(os.path.join(tmp, "missing.keras"))),
        ("check(None)", lambda: tfcompress.check(None)),
        ("run_job(threads=0)", lambda: __import__("tfcompress.pipeline").pipeline.run_job(
            model, tfcompress.datasets.from_arrays(t.X, t.Y), t.QUICK, out=os.path.join(tmp, "job"), threads=0)),
    ]
    return out


def _classify_exception(e):
    from tfcompress.errors import TfcompressError

    if isinstance(e, _Late):
        return "silent", f"still running after {LIMIT_S} s"
    if isinstance(e, TfcompressError):
        msg = str(e)
        return ("clear" if "\n" not in msg.strip() else "unclear"), msg.splitlines()[0][:160]
    return "traceback", f"{type(e).__name__}: {str(e).splitlines()[0][:140] if str(e) else ''}"


def _run_api(tmp, start, sink):
    import tfcompress._keras  # noqa: F401  (quiet TensorFlow first)

    cases = _api_cases(tmp)
    for i, (name, fn) in enumerate(cases):
        if i < start:
            continue
        _mark(sink, i, name)
        signal.alarm(LIMIT_S)
        try:
            fn()
            outcome, detail = "silent", "accepted"
        except BaseException as e:  # noqa: BLE001  (classifying everything is the point)
            outcome, detail = _classify_exception(e)
        finally:
            signal.alarm(0)
        _record(sink, i, name, outcome, detail)
    return len(cases)


# ----------------------------------------------------------------------------- CLI cases


def _files(tmp):
    """A tiny model, its .tflite, fuzzed copies, bad .npz files and bad recipes."""
    import numpy as np

    import tflite_export
    from tfcompress._keras import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")])
    f = {"keras": os.path.join(tmp, "m.keras"), "tflite": os.path.join(tmp, "m.tflite")}
    m.save(f["keras"])
    tflite_export.export(m, f["tflite"], mode="float32")
    base = open(f["tflite"], "rb").read()
    rng = random.Random(0)
    for i in range(FUZZED):
        raw = bytearray(base)
        for _ in range(rng.choice([1, 2, 4, 8, 16])):
            raw[rng.randrange(16, len(raw))] = rng.randrange(256)
        f[f"fuzz{i}"] = os.path.join(tmp, f"fuzz{i}.tflite")
        with open(f[f"fuzz{i}"], "wb") as fh:
            fh.write(bytes(raw))
    f["truncated"] = os.path.join(tmp, "trunc.tflite")
    with open(f["truncated"], "wb") as fh:
        fh.write(base[: len(base) // 2])
    f["garbage"] = os.path.join(tmp, "garbage.keras")
    with open(f["garbage"], "wb") as fh:
        fh.write(os.urandom(2048))
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")
    for name, value in (("inf", np.inf), ("nan", np.nan), ("big", 1e30)):
        bad = x.copy()
        bad[3, 0, 0, 0] = value
        f[f"npz_{name}"] = os.path.join(tmp, f"{name}.npz")
        np.savez(f[f"npz_{name}"], x_train=bad)
    f["npz_str"] = os.path.join(tmp, "str.npz")
    np.savez(f["npz_str"], x_train=np.array(["a"] * 8))
    for name, raw in (("empty", b""), ("binary", b"\x00\x01\xff"), ("badfield", b"pruning: {final_sparsity: 2}\n")):
        f[f"recipe_{name}"] = os.path.join(tmp, f"{name}.yaml")
        with open(f[f"recipe_{name}"], "wb") as fh:
            fh.write(raw)
    f["afile"] = os.path.join(tmp, "afile")
    with open(f["afile"], "w") as fh:
        fh.write("x")
    return f


def _cli_cases(tmp, f):
    out = os.path.join(tmp, "out")
    under_file = os.path.join(f["afile"], "sub")
    dm = ["--model", "digits_cnn", "--dataset", "digits"]
    tune = ["tune", *dm, "--dir", os.path.join(tmp, "tune"), "--max-trials", "1", "--epochs", "1",
            "--train-subset", "64", "--isolation", "session"]  # bounded, in case a bad value were accepted
    cases = [
        ["demo", "--threads", "0"], ["demo", "--threads", "-1"], ["demo", "--threads", "two"],
        ["demo", "--epochs", "0"], ["demo", "--dataset", "nope"], ["demo", "--out", under_file],
        ["optimize", *dm, "--train-epochs", "-3"], ["optimize", *dm, "--threads", "0"],
        ["optimize", *dm, "--epochs", "-1"], ["optimize", "--model", "missing.keras", "--dataset", "digits"],
        ["optimize", "--model", f["garbage"], "--dataset", "digits"], ["optimize", "--model", "resnet9000",
                                                                        "--dataset", "digits"],
        ["optimize", *dm, "--recipe", f["recipe_empty"]], ["optimize", *dm, "--recipe", f["recipe_binary"]],
        ["optimize", *dm, "--recipe", f["recipe_badfield"]], ["optimize", "--model", "digits_cnn", "--dataset",
                                                              "nope"],
        ["optimize", *dm, "--out", under_file],
        ["check", "missing.keras"], ["check", f["garbage"]], ["check", "MobileNetV2", "--input-shape", "0,32,3"],
        ["check", "MobileNetV2", "--input-shape", "a,b"], ["check", f["keras"], "--recipe", f["recipe_badfield"]],
        ["check", f["keras"], "--markdown", under_file],
        [*tune, "--threads", "0"], [*tune, "--train-subset", "0"], [*tune, "--max-trials", "0"],
        [*tune, "--epochs", "0"], [*tune, "--epoch-budget", "0"], [*tune, "--workers", "-1"],
        [*tune, "--seed", "-1"], [*tune, "--port", "70000"], [*tune, "--workers", "1", "--port", "{busy}"],
        [*tune, "--algorithm", "nope"], [*tune, "--constraint", "speed<1"], [*tune, "--objective", "nope"],
        [*tune, "--space", "missing.yaml"], [*tune, "--chief", "nohostport"],
        ["export", "missing.keras", "--mode", "float32", "--out", os.path.join(tmp, "e.tflite")],
        ["export", f["garbage"], "--mode", "float32", "--out", os.path.join(tmp, "e.tflite")],
        ["export", f["keras"], "--out", os.path.join(tmp, "e.tflite")],  # int8 without --data
        *[["export", f["keras"], "--data", f[k], "--out", os.path.join(tmp, "e.tflite")]
          for k in ("npz_inf", "npz_nan", "npz_big", "npz_str")],
        ["export", f["keras"], "--data", "missing.npz", "--out", os.path.join(tmp, "e.tflite")],
        ["export", f["keras"], "--mode", "float32", "--num-samples", "0", "--out", os.path.join(tmp, "e.tflite")],
        ["export", f["keras"], "--mode", "float32", "--metadata", "{not json", "--out", os.path.join(tmp, "e.tflite")],
        ["export", f["keras"], "--mode", "float32", "--out", under_file],
        ["export", f["keras"], "--mode", "float32", "--out", os.path.join(tmp, "e.tflite"), "--json", tmp],
        ["inspect", "missing.tflite"], ["inspect", f["garbage"]], ["inspect", f["truncated"]],
        ["inspect", f["tflite"], "--json", tmp],
        ["bench", "missing.tflite"], ["bench", f["truncated"]], ["bench", f["tflite"], "--threads", "0"],
        ["bench", f["tflite"], "--threads", "1,x"], ["bench", f["tflite"], "--min-runs", "0"],
        ["bench", f["tflite"], "--min-seconds", "-1"], ["bench", f["tflite"], "--accelerator", "tpu9"],
        ["bench", f["tflite"], "--pin", "4096"], ["bench", f["tflite"], "--json", tmp],
        ["bench", f["tflite"], "--markdown", under_file], ["bench", f["tflite"], "--plot", os.path.join(tmp, "b.docx")],
        ["bench", f["tflite"], "--accelerator", "android"],
    ]
    fast = ["--min-runs", "1", "--min-seconds", "0", "--warmup-seconds", "0"]
    for i in range(FUZZED):
        cases.append(["inspect", f[f"fuzz{i}"]])
        cases.append(["bench", f[f"fuzz{i}"], *fast])
    return [(" ".join(os.path.basename(a) if os.path.isabs(a) else a for a in c), c) for c in cases], out


def _run_cli(tmp, start, sink):
    import socket

    import tfcompress._keras  # noqa: F401
    from tfcompress.cli import main

    f = _files(tmp)
    cases, _ = _cli_cases(tmp, f)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = str(busy.getsockname()[1])
    for i, (name, argv) in enumerate(cases):
        if i < start:
            continue
        argv = [port if a == "{busy}" else a for a in argv]
        _mark(sink, i, name)
        err = io.StringIO()
        signal.alarm(LIMIT_S)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = main(argv)
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 2
        except _Late:
            code = "late"
        except BaseException:  # noqa: BLE001
            code = 1
            err.write(traceback.format_exc())
        finally:
            signal.alarm(0)
        outcome, detail = _classify_cli(code, err.getvalue())
        if outcome == "silent" and "fuzz" in name:  # the flipped bytes were weights: still a valid model
            outcome, detail = "valid", "the mutation left a valid model (it loads, allocates and runs)"
        _record(sink, i, name, outcome, detail)
    busy.close()
    return len(cases)


def _classify_cli(code, err):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    if code == "late":
        return "silent", f"still running after {LIMIT_S} s"
    if "Traceback" in err or code == 1:
        return "traceback", (lines[-1] if lines else "")[:160]
    if code == 0:
        return "silent", "exit 0"
    if code == 2 and len(errors) == 1:
        return "clear", errors[0][errors[0].index("error:"):][:160]
    return "unclear", f"exit {code}: " + " / ".join(lines[-2:])[:160]


# ----------------------------------------------------------------------------- driver


def _mark(sink, i, name):
    sink.write(json.dumps({"start": i, "name": name}) + "\n")
    sink.flush()


def _record(sink, i, name, outcome, detail):
    sink.write(json.dumps({"case": i, "name": name, "outcome": outcome, "detail": detail}) + "\n")
    sink.flush()


def _drive(kind, tmp):
    """Run one kind's cases in children, resuming after a crash; returns the case records."""
    log = os.path.join(tmp, f"{kind}.jsonl")
    open(log, "w").close()
    start, env = 0, dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    while True:
        proc = subprocess.run([sys.executable, __file__, "--child", kind, "--start", str(start), "--tmp", tmp,
                               "--log", log], cwd=ROOT, env=env, capture_output=True, text=True)
        rows = [json.loads(ln) for ln in open(log, encoding="utf-8") if ln.strip()]
        if proc.returncode == 0:
            return [r for r in rows if "case" in r]
        started = [r for r in rows if "start" in r]
        done = {r["case"] for r in rows if "case" in r}
        last = started[-1] if started else None
        if last is None or last["start"] in done:
            raise SystemExit(f"the {kind} child failed outside a case (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        with open(log, "a", encoding="utf-8") as sink:
            _record(sink, last["start"], last["name"], "crash", f"the process died ({why})")
        start = last["start"] + 1


OUTCOMES = ("clear", "unclear", "traceback", "crash", "silent", "valid")


def _summary(rows):
    return {o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}


def _markdown(result):
    lines = [
        "## Robustness: the bad-input matrix", "",
        f"`{COMMAND}` ({result['seconds']:.0f} s). Every case of `tests/test_bad_inputs.py` (collected from "
        "the test module) through the API, and command-line cases: bad option values of every subcommand, "
        f"missing, garbage, truncated and {FUZZED} fuzzed files (inspect and bench each), NaN/Inf/1e30 "
        "calibration data, unwritable outputs, a busy port. **clear**: one line of ours (CLI: exit 2, one "
        "`error:` line); **unclear**: ours, several lines; **traceback**: any other exception; **crash**: "
        "the process died from a signal; **silent**: the bad input was accepted; **valid**: a fuzzed file "
        "whose flipped bytes left a valid model (weights only), rightly accepted and not counted as bad input.", "",
        "| | cases | " + " | ".join(OUTCOMES) + " |", "|---|" + "---:|" * (len(OUTCOMES) + 1),
    ]
    for kind in ("api", "cli"):
        s = result["summary"][kind]
        lines.append(f"| {kind.upper()} | {sum(s.values())} | " + " | ".join(str(s[o]) for o in OUTCOMES) + " |")
    s = result["summary"]["all"]
    lines.append(f"| all | {sum(s.values())} | " + " | ".join(str(s[o]) for o in OUTCOMES) + " |")
    bad = [r for k in ("api", "cli") for r in result[k] if r["outcome"] not in ("clear", "valid")]
    lines += ["", f"Clear: {100 * s['clear'] / max(1, sum(s.values()) - s['valid']):.1f} % of the bad inputs. "
              + ("Every case got one clear line." if not bad else "Cases that did not:"), ""]
    if bad:
        lines += ["| case | outcome | what it said |", "|---|---|---|"]
        lines += [f"| `{r['name'][:70]}` | {r['outcome']} | {r['detail'][:120].replace('|', '/')} |" for r in bad]
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", choices=["api", "cli"], help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    p.add_argument("--log", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        sys.path.insert(0, ROOT)
        signal.signal(signal.SIGALRM, _alarm)
        with open(args.log, "a", encoding="utf-8") as sink:
            (_run_api if args.child == "api" else _run_cli)(args.tmp, args.start, sink)
        return 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tfc-robust-") as tmp:
        result = {kind: _drive(kind, tmp) for kind in ("api", "cli")}
    result["seconds"] = time.perf_counter() - t0
    result["summary"] = {k: _summary(result[k]) for k in ("api", "cli")}
    result["summary"]["all"] = _summary(result["api"] + result["cli"])
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "robustness.json"), "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    md = _markdown(result)
    with open(os.path.join(RESULTS, "robustness.md"), "w", encoding="utf-8") as fh:
        fh.write(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
