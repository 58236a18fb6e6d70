"""Checking untrusted .tflite files without risking the caller's process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from . import _flatbuffer as fb
from .errors import ExportError

__all__ = ["check_file", "mark_trusted"]

_OK: dict[tuple[str, int, int], bool] = {}
_LOCK = threading.Lock()

_CHILD = r"""
import sys
from ai_edge_litert.interpreter import Interpreter, OpResolverType
it = Interpreter(model_path=sys.argv[1], experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
it.allocate_tensors()
import numpy as np
for d in it.get_input_details():  # one invoke on zeros: allocation alone misses missing tensor data
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
it.invoke()
print("OK")
"""


def check_file(path, timeout: float = 120.0) -> None:
    """Makes sure ``path`` is a TFLite file LiteRT can load, without crashing.

    Checks the "TFL3" identifier, parses the flatbuffer in Python, then loads,
    allocates and invokes it once on zeros in a child process, so a file that would make the native runtime
    segfault only kills the child. Results are cached per (path, mtime, size).

    Args:
        path: The .tflite file.
        timeout: Seconds allowed for the child process.

    Raises:
        ExportError: Missing, non-TFLite, truncated or corrupted file (one line).

    Example:
        >>> check_file("model.tflite")  # doctest: +SKIP
    """
    path = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ExportError(f"{path} does not exist; pass the path of a .tflite file") from None
    key = (path, st.st_mtime_ns, st.st_size)
    with _LOCK:
        if _OK.get(key):
            return
    data = fb.read_bytes(path)
    if len(data) < 16:
        raise ExportError(f"{path} is too short to be a TFLite model ({len(data)} bytes); re-export it")
    model = fb.parse_model(data, path)  # raises ExportError for a non-TFLite file
    if not model.subgraphs:
        raise ExportError(f"{path} has no subgraphs; it is damaged or empty, re-export it")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, path],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise ExportError(
            f"loading {path} did not finish in {timeout:.0f}s; the file is probably damaged, re-export it"
        ) from None
    if proc.returncode != 0 or "OK" not in proc.stdout:
        if proc.returncode < 0:
            why = f"the runtime crashed with signal {-proc.returncode}"
        else:
            lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
            why = lines[-1].strip()[:160] if lines else f"exit code {proc.returncode}"
        raise ExportError(f"{path} is a damaged or unsupported TFLite file ({why}); re-export it")
    with _LOCK:
        _OK[key] = True


def mark_trusted(path) -> None:
    """Records ``path`` (as it is now) as loadable, skipping the child-process check.

    Used by :func:`tflite_export.export` for files it just wrote from converter
    output; any later change to the file (mtime or size) makes it untrusted again.

    Args:
        path: A .tflite file that exists.

    Example:
        >>> mark_trusted("m.tflite")  # doctest: +SKIP
    """
    path = os.path.abspath(os.fspath(path))
    st = os.stat(path)
    with _LOCK:
        _OK[(path, st.st_mtime_ns, st.st_size)] = True
