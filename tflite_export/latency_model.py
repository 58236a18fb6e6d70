"""A per-op latency model of this machine's CPU: measured once, cached, summed to predict a whole file.

FLOPs say little about what a file costs on XNNPACK: a depthwise convolution
costs far more per FLOP than a convolution, a pooling or an ADD costs time and
no FLOPs, and every op pays a fixed price. So each op is **timed**: it is cut
out of its file into a one-op .tflite file (:mod:`tflite_export._opslice`: its
weights, quantization and fused activation kept) and timed with LiteRT/XNNPACK
at the given thread count; its cost is that time less the cost of an invoke of
a file that does (nearly) nothing. A file's predicted latency is that invoke
cost plus the sum of its ops' costs.

Costs are keyed by op, input/output shapes, dtypes and options (so the same
op in float32, int8 or with int4/dynamic weights is measured apart) and cached
in one JSON file per machine: its name hashes the CPU model, its instruction
set flags, the thread count and the LiteRT version, in ``$TFCOMPRESS_CACHE``
or ``~/.cache/tfcompress/``. The file is written atomically, merged with what
another process added meanwhile; a second prediction of a file measures nothing.

A file the model cannot cut (several subgraphs, an op that does not run alone)
is timed whole instead, and that time is cached under the file's hash.

Example:
    >>> p = predict("model_int8.tflite", threads=1)  # doctest: +SKIP
    >>> round(p.predicted_ms, 3), p.measured_now  # doctest: +SKIP
    (0.061, 9)
    >>> predict("model_int8.tflite", threads=1).measured_now  # doctest: +SKIP
    0
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import warnings
from typing import Any

import numpy as np

from . import _flatbuffer as fb
from ._atomic import atomic_write_bytes
from ._opslice import op_slices, overhead_file
from ._record import Record
from .argtypes import MAX_THREADS
from .benchmark import benchmark, stats_ms, timed_loop
from .errors import ExportError, first_line
from .mixed import _layer_of
from .safety import check_file

__all__ = ["LatencyModel", "LatencyPrediction", "predict", "predict_model", "machine_key", "cache_dir", "FORMAT"]

#: Version of the cache file's layout; a file of another version is ignored (measured again).
FORMAT = 1
#: Timing of one one-op file: warm-up invokes, then at least this many runs and this many seconds.
WARMUP_RUNS, MIN_RUNS, MIN_SECONDS, MAX_SECONDS = 3, 20, 0.03, 2.0


def _cpu() -> tuple[str, str]:
    """(CPU model name, its instruction set flags), from /proc/cpuinfo where there is one."""
    name, flags = "", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k in ("model name", "Model", "Hardware") and not name:
                    name = v.strip()
                elif k in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(v.split()))
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), flags


def _litert_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def machine_key(threads: int = 1) -> dict[str, Any]:
    """What a cached cost depends on besides the op: this CPU, its flags, the threads, the LiteRT version.

    Example:
        >>> sorted(machine_key(2))
        ['cpu', 'flags', 'litert', 'machine', 'threads']
        >>> machine_key(2)["threads"]
        2
    """
    name, flags = _cpu()
    return {"cpu": name, "machine": platform.machine(), "flags": hashlib.sha256(flags.encode()).hexdigest()[:16],
            "threads": int(threads), "litert": _litert_version()}


def cache_dir(folder=None) -> str:
    """The folder of the cache: ``folder``, else ``$TFCOMPRESS_CACHE``, else ``~/.cache/tfcompress``.

    Example:
        >>> cache_dir("/tmp/c")
        '/tmp/c'
    """
    if folder is not None:
        return os.fspath(folder)
    return os.environ.get("TFCOMPRESS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tfcompress")


@dataclasses.dataclass
class LatencyPrediction(Record):
    """A file's latency predicted from its ops' measured costs.

    Attributes:
        path: the file ("<bytes>" for bytes).
        threads: XNNPACK threads of the costs.
        predicted_ms: invoke cost plus the sum of the ops' costs (or the whole
            file's measured median, with ``method="measured whole file"``).
        overhead_ms: the cost of an invoke doing (nearly) nothing.
        method: "sum of ops" or "measured whole file".
        ops: ``{"index", "op", "layer", "ms"}`` per op (ms: its cost, 0 for a folded op).
        measured_now: one-op (or whole) files timed by this call; 0 when all came from the cache.
        unmodelled: why the file was timed whole, if it was.
        cache: the cache file.
    """

    ROUND = 5

    path: str = "<bytes>"
    threads: int = 1
    predicted_ms: float = 0.0
    overhead_ms: float = 0.0
    method: str = "sum of ops"
    ops: list = dataclasses.field(default_factory=list)
    measured_now: int = 0
    unmodelled: str = ""
    cache: str = ""

    def by_op(self) -> dict[str, float]:
        """Predicted ms per op name, largest first."""
        out: dict[str, float] = {}
        for o in self.ops:
            out[o["op"]] = out.get(o["op"], 0.0) + o["ms"]
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def by_layer(self) -> dict[str, float]:
        """Predicted ms per Keras layer (read from the ops' tensor names)."""
        out: dict[str, float] = {}
        for o in self.ops:
            out[o["layer"]] = out.get(o["layer"], 0.0) + o["ms"]
        return out


def _time_bytes(data: bytes, threads: int) -> float:
    """Median ms of an invoke of a file given as bytes (LiteRT Interpreter, default XNNPACK delegate)."""
    from ai_edge_litert.interpreter import Interpreter

    from ._runtime import random_input

    it = Interpreter(model_content=data, num_threads=threads)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        it.set_tensor(d["index"], random_input(d, rng))
    _, _, timed = timed_loop(it.invoke, WARMUP_RUNS, 0.0, MIN_RUNS, MIN_SECONDS, MAX_SECONDS)
    return stats_ms(timed)["median_ms"]


class LatencyModel:
    """The cached op costs of this machine at one thread count (see the module docstring).

    Args:
        threads: XNNPACK threads. Defaults to `1`.
        folder: the cache folder. Defaults to `None` (:func:`cache_dir`).

    Attributes:
        key: :func:`machine_key` of the costs.
        path: the cache file.
        ops: op key -> cost in ms (an invoke's own cost taken off).
        overhead_ms: what an invoke costs with no work, or None until measured.
        measured: files timed by this object (one-op, overhead or whole).

    Example:
        >>> lm = LatencyModel(threads=1, folder="/tmp/cache")  # doctest: +SKIP
        >>> lm.predict("m_int8.tflite").predicted_ms  # doctest: +SKIP
        0.061
    """

    def __init__(self, threads: int = 1, folder=None):
        if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS:
            raise ExportError(f"threads must be a whole number in 1..{MAX_THREADS}, got {threads!r}")
        self.threads = threads
        self.key = machine_key(threads)
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        self.path = os.path.join(os.path.abspath(cache_dir(folder)), f"latency-model-{digest}.json")
        self.ops: dict[str, float] = {}
        self.files: dict[str, float] = {}
        self.overhead_ms: float | None = None
        self.measured = 0
        self._new = False
        self._merge(self._read())

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                got = json.load(f)
        except (OSError, ValueError):
            return {}
        return got if isinstance(got, dict) and got.get("format") == FORMAT and got.get("key") == self.key else {}

    def _merge(self, got: dict) -> None:
        for k, v in (got.get("ops") or {}).items():
            self.ops.setdefault(k, float(v))
        for k, v in (got.get("files") or {}).items():
            self.files.setdefault(k, float(v))
        if self.overhead_ms is None and got.get("overhead_ms") is not None:
            self.overhead_ms = float(got["overhead_ms"])

    def save(self) -> str | None:
        """Writes the costs (merged with the cache file's current ones) atomically; returns its path,
        or None when nothing new was measured."""
        if not self._new:
            return None
        self._merge(self._read())  # another process may have added costs since we read
        doc = {"format": FORMAT, "key": self.key, "overhead_ms": self.overhead_ms,
               "ops": dict(sorted(self.ops.items())), "files": dict(sorted(self.files.items()))}
        atomic_write_bytes(self.path, (json.dumps(doc, indent=1) + "\n").encode())
        self._new = False
        return self.path

    def overhead(self) -> float:
        """The cost of an invoke of a file doing (nearly) nothing, measured once."""
        if self.overhead_ms is None:
            self.overhead_ms = _time_bytes(overhead_file(), self.threads)
            self.measured += 1
            self._new = True
        return self.overhead_ms

    def cost(self, key: str, data: bytes) -> float:
        """The cost of the op of ``key`` (ms), timing its one-op file ``data`` when it is not cached."""
        if key not in self.ops:
            self.ops[key] = max(0.0, _time_bytes(data, self.threads) - self.overhead())
            self.measured += 1
            self._new = True
        return self.ops[key]

    def _whole(self, data: bytes, path: str) -> float:
        digest = hashlib.sha256(data).hexdigest()[:24]
        if digest not in self.files:
            if path == "<bytes>":
                try:
                    self.files[digest] = _time_bytes(data, self.threads)
                except (ValueError, RuntimeError) as e:
                    raise ExportError(f"LiteRT cannot run this model ({first_line(e, 160)})") from None
            else:
                self.files[digest] = float(benchmark(path, threads=self.threads, min_runs=20,
                                                     min_seconds=0.2).median_ms or 0.0)
            self.measured += 1
            self._new = True
        return self.files[digest]

    def predict(self, model) -> LatencyPrediction:
        """The predicted latency of a .tflite file (a path or its bytes), from its ops' costs.

        Example:
            >>> LatencyModel().predict("m.tflite").method  # doctest: +SKIP
            'sum of ops'
        """
        if isinstance(model, (bytes, bytearray)):
            data, path = bytes(model), "<bytes>"
        else:
            path = os.path.abspath(os.fspath(model))
            check_file(path)
            data = fb.read_bytes(path)
        before = self.measured
        parsed = fb.parse_model(data, path)
        why = "" if len(parsed.subgraphs) == 1 else f"{len(parsed.subgraphs)} subgraphs (control flow)"
        ops: list[dict[str, Any]] = []
        if not why:
            for s in op_slices(data):
                layer = _layer_of(*s.names) if s.names else "?"
                try:
                    ms = 0.0 if s.data is None else self.cost(s.key, s.data)
                except (ValueError, RuntimeError) as e:
                    why = f"op {s.index} ({s.op}) does not run alone: {first_line(e, 100)}"
                    break
                ops.append({"index": s.index, "op": s.op, "layer": layer, "ms": ms})
        if why:
            total, method, ops = self._whole(data, path), "measured whole file", []
        else:
            total, method = self.overhead() + sum(o["ms"] for o in ops), "sum of ops"
        try:
            self.save()
        except ExportError as e:  # a read-only or full cache folder: this prediction stands, uncached
            warnings.warn(f"the latency model's costs were not cached: {first_line(e)}", stacklevel=2)
        return LatencyPrediction(path=path, threads=self.threads, predicted_ms=total,
                                 overhead_ms=self.overhead_ms or 0.0, method=method, ops=ops,
                                 measured_now=self.measured - before, unmodelled=why, cache=self.path)

    def table(self) -> list[dict[str, Any]]:
        """The cached op costs, ``{"op", "shapes", "options", "ms"}`` each, costliest first.

        Example:
            >>> LatencyModel(folder="/nonexistent-cache").table()
            []
        """
        rows = []
        for key, ms in self.ops.items():
            op, shapes, options = (key.split("|") + ["", ""])[:3]
            rows.append({"op": op, "shapes": shapes, "options": options, "ms": ms})
        return sorted(rows, key=lambda r: -r["ms"])


def predict(path, threads: int = 1, folder=None) -> LatencyPrediction:
    """The latency of a .tflite file predicted from this machine's cached per-op costs.

    Args:
        path: the .tflite file, or its bytes.
        threads: XNNPACK threads. Defaults to `1`.
        folder: the cache folder. Defaults to `None` (:func:`cache_dir`).

    Returns:
        A :class:`LatencyPrediction`.

    Raises:
        ExportError: a missing or damaged file, or bad threads.

    Example:
        >>> predict("model_int8.tflite", threads=2).predicted_ms  # doctest: +SKIP
        0.043
    """
    return LatencyModel(threads, folder).predict(path)


def predict_model(model, mode: str = "float32", representative_data=None, threads: int = 1,
                  folder=None) -> LatencyPrediction:
    """The predicted latency of a tf_keras model exported in ``mode`` (converted in memory, nothing written
    but the cache).

    Args:
        model: a tf_keras model.
        mode: an export mode (``tflite_export.convert.MODES``: "float32", "int8", ...). Defaults to `"float32"`.
        representative_data: calibration inputs, for the quantized modes. Defaults to `None`.
        threads: XNNPACK threads. Defaults to `1`.
        folder: the cache folder. Defaults to `None` (:func:`cache_dir`).

    Returns:
        A :class:`LatencyPrediction`.

    Example:
        >>> predict_model(model, "int8", x_train[:100]).by_layer()  # doctest: +SKIP
        {'conv1': 0.004, ...}
    """
    from .convert import convert_bytes

    data, _ = convert_bytes(model, mode, representative_data)
    return LatencyModel(threads, folder).predict(data)
