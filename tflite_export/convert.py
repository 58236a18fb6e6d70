"""Keras / SavedModel / model-file to TFLite conversion in every flavour."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import os
import re
import sys
import tempfile
import time
import warnings
import zipfile
from typing import Any

import numpy as np

from . import _flatbuffer as fb
from . import loader
from ._atomic import atomic_write_bytes
from ._record import Record
from ._rnn import unrolled
from ._userfiles import check_model_file
from .calibration import many_samples as _many_samples
from .calibration import samples as _samples
from .errors import ExportError, first_line

__all__ = ["export", "convert_bytes", "ExportReport", "MODES", "IO_TYPES", "zipped_size"]

__version__ = "0.2.1"

#: Conversion flavours understood by :func:`export`.
MODES = ("float32", "float16", "dynamic", "int8", "int16x8", "int4")
#: Input/output types for ``mode="int8"``.
IO_TYPES = ("int8", "uint8", "float")


@dataclasses.dataclass(frozen=True)
class ExportReport(Record):
    """What :func:`export` wrote.

    Attributes:
        path: Absolute path of the .tflite file.
        mode: Conversion flavour ("float32", "float16", "dynamic", "int8", "int16x8").
        bytes: File size in bytes.
        zipped_bytes: Size of the file compressed with zip deflate level 9 (in memory);
            shows the gain of pruning/clustering, which shrink the *compressed* size.
        input_dtype: dtype name of the first model input in the file, e.g. "int8".
        output_dtype: dtype name of the first model output in the file.
        input_quantization: ``(scale, zero_point)`` of the input, or None if float.
        output_quantization: ``(scale, zero_point)`` of the output, or None if float.
        status: "ok".
        io: Requested input/output type for int8 ("int8", "uint8", "float"), else "float".
        sparse_tensors: Number of tensors actually stored sparse in the file.
        num_samples: Representative samples used for calibration (0 if none).
        convert_seconds: Wall time of the conversion.
        metadata: The JSON metadata stored in the file under "tfcompress".
    """

    path: str
    mode: str
    bytes: int
    zipped_bytes: int
    input_dtype: str
    output_dtype: str
    input_quantization: tuple[float, int] | None
    output_quantization: tuple[float, int] | None
    status: str = "ok"
    io: str = "float"
    sparse_tensors: int = 0
    num_samples: int = 0
    convert_seconds: float = 0.0
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)



def zipped_size(data: bytes) -> int:
    """Size of ``data`` zipped with deflate level 9, computed in memory.

    Args:
        data: File contents.

    Returns:
        Compressed size in bytes (what a pruned/clustered model gains on disk or download).

    Example:
        >>> zipped_size(open("m.tflite", "rb").read())   # doctest: +SKIP
        2286
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("model.tflite", data)
    return len(buf.getvalue())


# ----------------------------------------------------------------------------- sources


def _strip_pruning(model):
    """Removes tfmot PruneLowMagnitude and ClusterWeights wrappers (they do not convert
    cleanly, and a clustering wrapper would ship the unclustered weights too)."""
    kinds = {type(l).__name__ for l in getattr(model, "layers", [])}
    if not kinds & {"PruneLowMagnitude", "ClusterWeights"}:
        return model
    try:
        import tensorflow_model_optimization as tfmot

        if "PruneLowMagnitude" in kinds:
            model = tfmot.sparsity.keras.strip_pruning(model)
        if "ClusterWeights" in kinds:
            model = tfmot.clustering.keras.strip_clustering(model)
        return model
    except Exception as e:  # noqa: BLE001
        raise ExportError(
            f"model has pruning or clustering wrappers that could not be stripped ({e}); "
            "call tfmot.sparsity.keras.strip_pruning(model) / tfmot.clustering.keras.strip_clustering(model) first"
        ) from None


def _check_finite_weights(model):
    """NaN or Inf in a weight segfaults TensorFlow's MLIR quantizer (EfficientNetB0 after a
    diverged QAT: ``QuantizationDriver::ShouldCheckBiasScale`` on a NaN scale); refuse first.

    Raises:
        ExportError: naming the first non-finite weight and how many there are.
    """
    bad = []
    for w in model.weights:
        try:
            values = w.numpy()
        except Exception:  # noqa: BLE001 - a weight without a value (unbuilt) is the converter's to judge
            continue
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            bad.append(w.name)
    if bad:
        raise ExportError(
            f"the model has NaN or Inf weights ({len(bad)} of {len(model.weights)}, first: {bad[0]}), "
            "so training diverged; retrain or fine-tune with a lower learning rate (and check the inputs' "
            "scale) before exporting"
        )


def _load_source(model, safe_mode=True):
    """Returns (kind, obj, input_shape) where kind is "keras" or "saved_model".

    Paths go through :mod:`tflite_export.loader` (the one loader, with its
    Lambda safety check); Keras 3 models are translated when tfcompress
    registered its translator there.
    """
    import tf_keras as keras

    if isinstance(model, (str, os.PathLike)):
        check_model_file(os.fspath(model))
        kind, model = loader.open_source(model, safe_mode)
        if kind == "saved_model":
            return kind, model, _saved_model_input_shape(model)
    if loader.is_keras3_model(model):
        model = loader.translate_keras3(model)
    if isinstance(model, keras.Model):
        model = _strip_pruning(model)
        _check_finite_weights(model)
        shape = None
        try:
            shape = tuple(model.inputs[0].shape)
        except Exception:  # noqa: BLE001 - subclassed models without inputs
            pass
        return "keras", model, shape
    raise ExportError(
        f"cannot export a {type(model).__name__}; pass a tf_keras model, a SavedModel folder or a .keras/.h5 file"
    )


def _saved_model_input_shape(path):
    try:
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        sig = loaded.signatures.get("serving_default") or next(iter(loaded.signatures.values()))
        specs = list(sig.structured_input_signature[1].values())
        return tuple(specs[0].shape)
    except Exception:  # noqa: BLE001
        return None


# ----------------------------------------------------------------------------- convert


def _one_line(e: BaseException) -> str:
    """The converter's own ``error: ...`` line of ``e`` if it has one, else its first line.

    Whitespace runs are collapsed; at most 200 characters.
    """
    m = re.search(r"error: ([^\n]+)", str(e))
    line = m.group(1) if m else first_line(e, limit=None)
    return re.sub(r"\s+", " ", line).strip()[:200]


def _inference_converter(tf, model, saved_model_dir=None):
    """A converter over ``model(inputs, training=False)`` alone, or None.

    ``TFLiteConverter.from_keras_model`` first saves the whole model as a
    SavedModel, tracing every layer's call with and without training: 2 s for
    a quantization-aware LeNet-5, where tracing the one inference call that
    TFLite needs takes 0.2 s and gives the same ops, weights, input and output
    names (Keras's own ``trace_model_call``). Returns None when the model
    cannot be traced that way (e.g. a subclassed model never called); the
    caller then uses ``from_keras_model``.

    With ``saved_model_dir`` (large models) that one call is saved there as a
    SavedModel and converted from the folder: the concrete-function converter
    keeps Python copies of the graph and its weights while it converts. VGG19
    after QAT, int8: peak +1.95 GiB above the model so, +1.34 GiB from the
    folder, no slower (``benchmarks/bench_memory.py``); the file differs in one byte only (the source
    type in CONVERSION_METADATA).
    """
    try:
        from tf_keras.src.saving.legacy import saving_utils

        concrete = saving_utils.trace_model_call(model)
        if not isinstance(concrete, tf.types.experimental.ConcreteFunction):
            concrete = concrete.get_concrete_function()
        holder = tf.Module()
        holder.serve = concrete
        holder.weights = list(model.variables)
        if saved_model_dir is None:
            return tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
        tf.saved_model.save(holder, saved_model_dir, signatures={"serving_default": concrete})
        return tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    except Exception:  # noqa: BLE001
        return None


def _configure(tf, conv, mode: str, io: str, sparse: bool, samples: list[np.ndarray]) -> bytes:
    """Sets the optimizations, types and calibration data of ``mode`` on a converter and converts."""
    opts = []
    if mode != "float32":
        opts.append(tf.lite.Optimize.DEFAULT)
    if sparse:
        opts.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    conv.optimizations = opts
    if mode == "float16":
        conv.target_spec.supported_types = [tf.float16]
    if mode in ("int8", "int16x8"):

        def gen():
            for s in samples:
                yield s if isinstance(s, dict) else [s]

        conv.representative_dataset = gen
    if mode == "int8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io != "float":
            t = tf.int8 if io == "int8" else tf.uint8
            conv.inference_input_type = t
            conv.inference_output_type = t
    elif mode == "int16x8":
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    with warnings.catch_warnings():
        # TF's own notice for int8 io; the io types are set on purpose.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return conv.convert()


def _convert(tf, kind: str, src, mode: str, configure):
    """TFLite bytes of ``src``: traced from its inference call first, else the full Keras / SavedModel path."""
    if kind == "keras":
        large = _weight_bytes(src) >= LARGE_MODEL_BYTES
        data = None
        with tempfile.TemporaryDirectory(prefix="tflite_export_") if large else contextlib.nullcontext() as tmp:
            fast = _inference_converter(tf, src, saved_model_dir=tmp)
            if fast is not None:
                try:
                    data = configure(fast)
                except Exception:  # noqa: BLE001 - the full Keras path below decides, with its own error
                    data = None
        if data is not None:
            return data
    try:
        if kind == "keras":
            conv = tf.lite.TFLiteConverter.from_keras_model(src)
        else:
            conv = tf.lite.TFLiteConverter.from_saved_model(src)
    except Exception as e:  # noqa: BLE001
        raise ExportError(
            f"cannot trace the model for conversion ({type(e).__name__}: {_one_line(e)}); "
            "make sure it runs on a float32 batch"
        ) from None
    try:
        return configure(conv)
    except Exception as e:  # noqa: BLE001
        hint = "check every layer has a TFLite builtin op" + (" with an int8 kernel" if mode == "int8" else "")
        raise ExportError(f"TFLite conversion ({mode}) failed: {_one_line(e)}; {hint}") from None


#: Weights (bytes) from which a Keras model converts from a SavedModel of its inference call
#: (see :func:`_inference_converter`) and the conversion ends with a garbage collection (~0.3 s).
LARGE_MODEL_BYTES = 64 << 20


def _weight_bytes(model):
    try:
        return 4 * model.count_params()
    except Exception:  # noqa: BLE001 - an unbuilt subclassed model
        return 0


def convert_bytes(
    model,
    mode: str = "int8",
    representative_data=None,
    num_samples: int = 200,
    *,
    io: str = "int8",
    sparse: bool = False,
    safe_mode: bool = True,
) -> tuple[bytes, int]:
    """Converts ``model`` to TFLite bytes without writing anything (no metadata added).

    Args:
        model: tf_keras model, SavedModel folder or .keras/.h5 path (see :func:`export`).
        mode: One of :data:`MODES`.
        representative_data: Calibration inputs (see :func:`export`).
        num_samples: Representative samples to use.
        io: int8 input/output type, one of :data:`IO_TYPES`.
        sparse: Add ``EXPERIMENTAL_SPARSITY``.
        safe_mode: Refuse model files with ``Lambda`` layers (see :func:`export`).

    Returns:
        ``(tflite_bytes, representative_samples_used)``.

    Raises:
        ExportError: As :func:`export`.

    Example:
        >>> data, n = convert_bytes(model, "dynamic")   # doctest: +SKIP
    """
    import tensorflow as tf

    if mode not in MODES:
        raise ExportError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if io not in IO_TYPES:
        raise ExportError(f"unknown io {io!r}; use one of {', '.join(IO_TYPES)}")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ExportError(f"num_samples must be a positive integer, got {num_samples!r}")
    if mode == "int4":  # 4-bit QAT models: int8 conversion; others: ai-edge-quantizer (int4.py)
        from .int4 import convert_int4

        return convert_int4(model, lambda m: convert_bytes(model, m, representative_data, num_samples, io=io,
                                                           sparse=sparse, safe_mode=safe_mode),
                            has_data=representative_data is not None)
    needs_data = mode in ("int8", "int16x8")
    if needs_data and representative_data is None:
        raise ExportError(
            f"mode={mode!r} needs representative_data (a few hundred training inputs) for calibration; "
            "pass representative_data=x_train"
        )

    kind, src, input_shape = _load_source(model, safe_mode)
    many = kind == "keras" and len(getattr(src, "inputs", None) or []) > 1  # one dict of inputs per sample
    samples = (_many_samples(representative_data, src, num_samples) if many else
               _samples(representative_data, input_shape, num_samples)) if needs_data else []
    if needs_data:
        if not samples:
            raise ExportError("representative_data is empty; pass at least one input sample (a few hundred is better)")
        if len(samples) < num_samples:
            warnings.warn(f"representative_data has {len(samples)} samples, fewer than num_samples={num_samples}; "
                          "calibration may be less accurate", UserWarning, stacklevel=3)

    with unrolled(src) if kind == "keras" else contextlib.nullcontext():  # LSTM/GRU: see tflite_export._rnn
        data = _convert(tf, kind, src, mode, lambda conv: _configure(tf, conv, mode, io, sparse, samples))
    if kind == "keras" and _weight_bytes(src) >= LARGE_MODEL_BYTES:
        # The traced graphs, the frozen weights and a stripped copy are reference cycles; for a
        # large model they are several copies of its weights until the cycle collector runs.
        del src
        gc.collect()
    if not data or not fb.has_identifier(data):
        raise ExportError(f"TFLite conversion ({mode}) produced no valid model; check the model runs in TensorFlow")
    if mode == "int8":
        data, widened = fb.widen_aborting_scales(data)
        if widened:
            warnings.warn(
                f"calibration saw {len(widened)} tensor(s) constant, and on their scales LiteRT's int8 kernels would "
                f"have aborted the process or XNNPACK refused the file; widened them ({widened[0]}"
                f"{' …' if len(widened) > 1 else ''}). Values outside what calibration saw are coarse there: "
                "calibrate with more varied data",
                UserWarning,
                stacklevel=3,
            )
    return bytes(data), len(samples)


def export(
    model,
    path,
    mode: str = "int8",
    representative_data=None,
    num_samples: int = 200,
    metadata: dict[str, Any] | None = None,
    *,
    io: str = "int8",
    sparse: bool = False,
    safe_mode: bool = True,
    strip_names: bool = False,
) -> ExportReport:
    """Converts a model to a .tflite file, atomically.

    Args:
        model: A tf_keras model (TF-MOT pruning wrappers are stripped; QAT-annotated
            models convert to int8), a SavedModel folder, or a ``.keras``/``.h5`` file.
        path: Output file. Written via a temp file + ``os.replace``: a failure leaves
            nothing at ``path`` (an existing file there is left untouched).
        mode: "float32"; "float16" (float16 weights); "dynamic" (int8 weights, float
            activations); "int8" (full-integer, ``TFLITE_BUILTINS_INT8``); "int16x8"
            (int16 activations, int8 weights); "int4" (int4 weights stored two a byte: a
            4-bit-QAT model converts full-integer, any other model gets ai-edge-quantizer's
            post-training int4, see :mod:`tflite_export.int4`).
        representative_data: Calibration inputs, required for "int8" and "int16x8": a
            numpy array ``x`` (axis 0 = samples), an ``(x, y)`` tuple or a
            ``tf.data.Dataset`` yielding ``x`` or ``(x, y)``, batched or not.
        num_samples: How many representative samples to use; a warning is issued when
            the data has fewer.
        metadata: JSON-serialisable dict stored in the file's flatbuffer ``metadata``
            list under "tfcompress" (with the tflite_export version, mode and io added,
            and tfcompress's version when tfcompress is loaded); read it back with
            :func:`tflite_export.inspect`.
        io: For ``mode="int8"``: input/output type "int8" (default), "uint8" or "float"
            (float in/out with quantize/dequantize ops inside).
        sparse: Also apply ``tf.lite.Optimize.EXPERIMENTAL_SPARSITY`` (for pruned models);
            ``ExportReport.sparse_tensors`` says whether any tensor was stored sparse.
        safe_mode: For a model file or SavedModel folder: refuse ``Lambda`` layers, whose
            Python code would run while loading (:mod:`tflite_export.loader`). Set it to False
            only for files you trust.
        strip_names: Empty the inner tensors' names (I/O and signatures keep theirs), leave out
            what no runtime reads (converter notes; recipe, versions: ``_flatbuffer.lean_metadata``).

    Returns:
        An :class:`ExportReport`.

    Raises:
        ExportError: Unknown mode, missing representative data, conversion failure or
            unwritable destination (one-line message).

    Example:
        >>> rep = export(model, "model_int8.tflite", mode="int8",
        ...              representative_data=x_train[:200])       # doctest: +SKIP
        >>> rep.input_dtype, rep.bytes                             # doctest: +SKIP
        ('int8', 5200)
    """
    t0 = time.perf_counter()
    if path is None or not isinstance(path, (str, os.PathLike)):
        raise ExportError(f"path must be a file path, got {type(path).__name__}")
    data, used = convert_bytes(model, mode, representative_data, num_samples, io=io, sparse=sparse,
                               safe_mode=safe_mode)
    md = {
        "producer": "tflite_export",
        "tflite_export_version": __version__,
        "mode": mode,
        "io": io if mode == "int8" else "float",
        "sparse": bool(sparse),
        "representative_samples": used,
    }
    tfc = sys.modules.get("tfcompress")  # recorded when the caller uses tfcompress; never imported here
    if tfc is not None and getattr(tfc, "__version__", None):
        md["tfcompress_version"] = str(tfc.__version__)
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ExportError(f"metadata must be a dict, got {type(metadata).__name__}")
        md.update(metadata)
    if strip_names:
        data, md = fb.strip_names(data), fb.lean_metadata(md)
    data = fb.add_metadata(data, md)
    model_obj = fb.parse_model(data)
    info = fb.io_info(model_obj)
    if mode == "int8" and io != "float" and info["input_dtype"] != io:
        raise ExportError(
            f"int8 conversion produced {info['input_dtype']} inputs instead of {io}; "
            "the model may contain ops without integer kernels"
        )
    written = atomic_write_bytes(os.fspath(path), data)
    from .safety import mark_trusted

    mark_trusted(written)  # converter output: no need for the child-process load check
    return ExportReport(
        path=written,
        mode=mode,
        bytes=len(data),
        zipped_bytes=zipped_size(data),
        status="ok",
        io=io if mode == "int8" else "float",
        sparse_tensors=fb.sparse_tensor_count(model_obj),
        num_samples=used,
        convert_seconds=round(time.perf_counter() - t0, 3),
        metadata=fb.summarize_value(md),
        **info,
    )
