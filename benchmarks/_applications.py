"""Every ``tf_keras.applications`` architecture through check → optimize → int8 → LiteRT.

Shared by ``benchmarks/bench_applications.py`` (the table) and
``tests/test_applications.py`` (the slow test over the whole list). Each
model runs in a child process with a time limit (:func:`run_isolated`), so a
native crash or a hang becomes a row (``crash: signal N`` / ``not run: time``)
instead of stopping the table.

Example:
    >>> from benchmarks._applications import MODELS, run_isolated
    >>> row = run_isolated("MobileNetV2", timeout=600)  # doctest: +SKIP
    >>> row["status"]  # doctest: +SKIP
    'ok'
"""

import contextlib
import gc
import json
import multiprocessing
import os
import re
import resource
import shutil
import tempfile
import threading
import time
import traceback

import numpy as np

__all__ = ["MODELS", "model_names", "build", "run_one", "run_isolated", "skipped_by_check", "expects_pixels"]

CLASSES = 4
SAMPLES = 16
BATCH = 8


def model_names():
    """Every model function of ``tf_keras.applications`` (ResNet50, Xception, ...), sorted."""
    import tf_keras

    apps = tf_keras.applications
    return sorted(n for n in dir(apps) if n[:1].isupper() and callable(getattr(apps, n)))


# Computed lazily by bench/test (importing tf_keras here would slow --help).
MODELS = None


def build(name, size=32, classes=CLASSES):
    """``tf_keras.applications.<name>(weights=None)`` at the smallest input it allows.

    Tries ``size`` first; when the application refuses it ("should not be
    smaller than 71", "at least 75x75"), rebuilds at the size it names.

    Returns:
        ``(model, input_size)``.
    """
    import tf_keras

    fn = getattr(tf_keras.applications, name)
    try:
        return fn(weights=None, input_shape=(size, size, 3), classes=classes), size
    except ValueError as e:
        m = re.search(r"(?:smaller than|at least) (\d+)", str(e))
        if not m or int(m.group(1)) <= size:
            raise
        need = int(m.group(1))
        return fn(weights=None, input_shape=(need, need, 3), classes=classes), need


def expects_pixels(model):
    """True when the model scales its own inputs (a ``Rescaling``/``Normalization`` among its
    first layers: EfficientNet, EfficientNetV2, ConvNeXt, RegNet, ResNetRS, MobileNetV3), so its
    data must be pixel values in [0, 255]. Fed [0, 1), EfficientNetB0's QAT saw activations 255x
    too small, all equal after fake-quantization, and diverged (gradients of 1e34, NaN weights).
    """
    first = [type(l).__name__ for l in model.layers[:5]]
    return "Rescaling" in first or "Normalization" in first


def skipped_by_check(report):
    """``{layer: reason}`` of the layers ``check`` says QAT leaves in float."""
    return {r.name: r.quantizable[4:] for r in report.layers
            if r.quantizable is not None and str(r.quantizable).startswith("no:")}


def run_one(name, size=32, workdir=None, seed=0, keep=None, step_file=None, eager=True):
    """check → optimize (default recipe, 1 epoch per stage) → int8 → LiteRT invoke, in-process.

    With ``eager`` (the default) the training steps inside ``optimize`` run
    eagerly (``tf.config.run_functions_eagerly``): each stage trains 2 steps,
    and tracing those steps into graphs cost 60-90 % of a model's minutes
    (EfficientNetV2B0: optimize 191 s of 278). The layers, TF-MOT wrappers and
    ops are the same; conversion still traces the inference graph. Graph-mode
    training of these layers is what the fast tests run. Models with grouped
    convolutions (RegNet) run their train steps in Python with the grouped
    convolutions still compiled by XLA (row ``training``: "eager steps"; see
    :func:`_eager_training`): RegNetX004 138 s against 673 s in graph mode.

    Returns:
        A JSON-able dict: ``name``, ``input``, ``params``, ``status``
        (``"ok"``, ``"ok-with-skipped-layers"``, ``"fail: <step>: <reason>"``),
        ``skipped`` (check's list), ``skipped_in_qat`` (optimize's),
        ``seconds`` per step and in total, ``int8_bytes``, ``peak_gib``: the
        process's peak resident memory (GiB) once each step was done.
    """
    import tfcompress  # first: its oneDNN default applies before TensorFlow loads
    import tflite_export
    from tfcompress._keras import keras
    from tfcompress.errors import first_line

    def at(step):
        if prev[0]:  # the process's peak resident memory so far, once each step is done
            row["peak_gib"][prev[0]] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        prev[0] = step
        if step_file:  # read back by run_isolated when the child dies of a signal
            with open(step_file, "w", encoding="utf-8") as f:
                f.write(step)
        return step

    t_all = time.perf_counter()
    row = {"name": name, "input": None, "params": None, "status": None, "skipped": {},
           "skipped_in_qat": {}, "seconds": {}, "int8_bytes": None, "peak_gib": {}}
    prev = [None]
    step = at("build")
    try:
        keras.utils.set_random_seed(seed)
        t0 = time.perf_counter()
        model, size = build(name, size)
        row["input"], row["params"] = size, int(model.count_params())
        grouped = any(getattr(l, "groups", 1) > 1 for l in model.layers)
        row["training"] = ("eager steps" if grouped else "eager") if eager else "graph"
        rng = np.random.RandomState(seed)
        x = rng.rand(SAMPLES, size, size, 3).astype("float32")
        if expects_pixels(model):
            x *= 255.0
        row["inputs"] = "pixels 0-255" if expects_pixels(model) else "0-1"
        y = rng.randint(0, CLASSES, SAMPLES)
        row["seconds"]["build"] = time.perf_counter() - t0

        step = at("check")
        t0 = time.perf_counter()
        report = tfcompress.check(model, samples=4)
        row["skipped"] = skipped_by_check(report)
        row["check_conversion"] = report.conversion.get("status")
        row["notes"] = list(report.notes)
        row["seconds"]["check"] = time.perf_counter() - t0

        step = at("optimize")
        t0 = time.perf_counter()
        from tfcompress._keras import tf

        with _eager_training(keras, tf, eager, grouped):
            result = tfcompress.optimize(model, (x, y), epochs=1, batch_size=BATCH, verbose=0)
        row["skipped_in_qat"] = {l.name: l.stages["quantization"][len("skipped: "):] for l in result.report.layers
                                 if str(l.stages.get("quantization", "")).startswith("skipped")}
        row["seconds"]["optimize"] = time.perf_counter() - t0

        del model, report  # the input model is done with: the export's peak is the table's largest
        gc.collect()
        step = at("export")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=workdir) as d:
            path = os.path.join(d, "int8.tflite")
            rep = tflite_export.export(result.model, path, mode="int8", representative_data=x,
                                       num_samples=SAMPLES)
            row["int8_bytes"] = int(rep.bytes)
            if keep:  # a copy to inspect (debugging)
                shutil.copyfile(path, keep)
            row["seconds"]["export"] = time.perf_counter() - t0
            step = at("litert")
            t0 = time.perf_counter()
            out = tflite_export.predict(path, x[:2])
            if out.shape != (2, CLASSES) or not np.all(np.isfinite(out)):
                raise RuntimeError(f"LiteRT output has shape {out.shape} or non-finite values")
            row["seconds"]["litert"] = time.perf_counter() - t0
        at("done")
        row["status"] = "ok-with-skipped-layers" if row["skipped"] or row["skipped_in_qat"] else "ok"
    except Exception as e:  # noqa: BLE001 - a failure is a row of the table
        row["status"] = f"fail: {step}: {type(e).__name__}: {first_line(e, 300)}"
        row["traceback"] = traceback.format_exc()[-3000:]
    row["seconds"]["total"] = time.perf_counter() - t_all
    return row


@contextlib.contextmanager
def _eager_training(keras, tf, eager, grouped):
    """Train steps run in Python instead of traced graphs, while inside the block.

    ``tf.config.run_functions_eagerly`` is the simple switch, but it also runs
    Keras's ``jit_compile`` function for grouped convolutions (RegNet) eagerly,
    and TensorFlow has no eager CPU gradient for those ("Gradients for grouped
    convolutions are not supported on CPU"). For such models every
    ``Model.run_eagerly`` reads True instead: Keras then runs the train step in
    Python and the grouped convolutions still go through XLA.
    """
    if not eager:
        yield
        return
    if not grouped:
        tf.config.run_functions_eagerly(True)
        try:
            yield
        finally:
            tf.config.run_functions_eagerly(False)
        return
    cls = keras.Model
    saved = cls.__dict__["run_eagerly"]  # tf_keras's own property, put back after
    cls.run_eagerly = property(lambda self: True, lambda self, value: setattr(self, "_run_eagerly", value))
    try:
        yield
    finally:
        cls.run_eagerly = saved


def _child(name, size, out_path, eager):
    import faulthandler

    faulthandler.enable()  # a native crash prints the Python stack to stderr
    row = run_one(name, size, step_file=out_path + ".step", eager=eager)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(row, f)


_ENV_LOCK = threading.Lock()


def run_isolated(name, size=32, timeout=900, eager=True):
    """:func:`run_one` in a child process: a crash or a hang is a row, not the end of the table.

    Returns:
        The child's row; ``status`` is ``"crash: signal N"`` when it died of a
        signal and ``"not run: time (over N s)"`` when it was killed at ``timeout``.
    """
    ctx = multiprocessing.get_context("spawn")
    fd, out_path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    t0 = time.perf_counter()
    p = ctx.Process(target=_child, args=(name, size, out_path, eager))
    # glibc keeps freed blocks of up to 32 MiB in its heap once one has been freed, so each
    # step's weight copies stack up: with large blocks mapped and unmapped at once, VGG19's
    # peak is 2.6 GiB instead of 3.2 (about 45 instead of 60 bytes a parameter; ResNetRS420
    # still peaked at 16.4 GiB, 86 bytes). The child inherits the setting; the lock keeps
    # --jobs threads from undoing each other's.
    with _ENV_LOCK:
        saved = os.environ.get("MALLOC_MMAP_THRESHOLD_")
        os.environ["MALLOC_MMAP_THRESHOLD_"] = saved or str(1 << 20)
        try:
            p.start()
        finally:
            if saved is None:
                del os.environ["MALLOC_MMAP_THRESHOLD_"]
    p.join(timeout)
    try:
        if p.is_alive():
            p.kill()
            p.join()
            return {"name": name, "status": f"not run: time (over {timeout} s)", "skipped": {},
                    "seconds": {"total": time.perf_counter() - t0}, "int8_bytes": None}
        if p.exitcode and p.exitcode < 0:
            step = ""
            if os.path.exists(out_path + ".step"):
                with open(out_path + ".step", encoding="utf-8") as f:
                    step = f" in {f.read()}"
            return {"name": name, "status": f"crash: signal {-p.exitcode}{step}", "skipped": {},
                    "seconds": {"total": time.perf_counter() - t0}, "int8_bytes": None}
        with open(out_path, encoding="utf-8") as f:
            text = f.read()
        if not text:
            return {"name": name, "status": f"crash: exit code {p.exitcode}", "skipped": {},
                    "seconds": {"total": time.perf_counter() - t0}, "int8_bytes": None}
        return json.loads(text)
    finally:
        for path in (out_path, out_path + ".step"):
            if os.path.exists(path):
                os.unlink(path)
