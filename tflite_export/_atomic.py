"""Atomic file writing: a file appears complete at its path or not at all."""

from __future__ import annotations

import os
import tempfile

from .errors import ExportError

__all__ = ["atomic_write_bytes"]


def atomic_write_bytes(path: str, data: bytes) -> str:
    """Writes ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed to disk and
    then moved over ``path`` with :func:`os.replace`, so a reader never sees a
    half-written file and a failure leaves nothing new at ``path``.

    Args:
      path: Destination file path. Missing parent folders are created.
      data: The bytes to write.

    Returns:
      The absolute path written.

    Raises:
      ExportError: If the folder cannot be created or written to.

    Example:
      >>> atomic_write_bytes("/tmp/model.tflite", b"...")  # doctest: +SKIP
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise ExportError(f"output path {path} is a folder; pass a file path such as {path}/model.tflite")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create output folder {folder} ({e.strerror}); choose a writable location") from None
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise ExportError(
            f"cannot write {path} ({e.strerror or e}); check the folder exists and is writable"
        ) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path
