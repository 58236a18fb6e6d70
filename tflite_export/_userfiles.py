"""Opening files a user names, without trusting them.

A path on the command line may be a FIFO (``open`` would wait for a writer
for ever), a device, or a regular file far bigger than what it claims to be.
:func:`refuse_special` says so in one line before anything opens it;
:func:`read_limited` opens without blocking, checks the file is regular and
reads at most a cap; :func:`check_model_file` refuses a ``.keras`` zip bomb
from its directory (member count, unpacked size) before Keras opens it;
:func:`read_npz` reads a ``.npz`` checking each array's header against the
bytes it has and the memory free before numpy allocates. tfcompress's YAML,
model and data readers use these too (tflite_export never imports
tfcompress), so the rule is the same everywhere.

Example:
    >>> refuse_special("missing.yaml", "recipe")  # a missing path is the caller's to report
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib

import numpy as np

from .errors import ExportError, first_line

__all__ = ["refuse_special", "read_limited", "special_kind", "available_memory", "check_model_file", "read_npz"]

#: Members a .keras or .npz file may hold: a model has a handful, a data file a few arrays.
MAX_ZIP_MEMBERS = 10_000
#: Unpacked / packed size beyond which members must overlap (deflate cannot pass ~1032:1): a zip bomb.
MAX_ZIP_RATIO = 1100
#: Below this unpacked size a zip is not judged by its ratio (small files of zeros compress well).
ZIP_RATIO_FLOOR = 64 << 20


def special_kind(mode: int) -> str | None:
    """What a file of this ``st_mode`` is, when it is neither a regular file nor a folder (else None)."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _refusal(path, what: str, kind: str, error):
    return error(f"{what} {path} is {kind}, not a file: reading it could wait for ever; pass a regular file.")


def refuse_special(path, what: str, error=ExportError) -> None:
    """Refuses a FIFO, socket or device at ``path`` without opening it (a missing path passes).

    Args:
        path: the path given.
        what: what the path is for, for the message (``"--model"``, ``"recipe"``).
        error: the exception class raised. Defaults to `ExportError`.

    Raises:
        error: ``path`` exists and is neither a regular file nor a folder.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    kind = special_kind(mode)
    if kind is not None:
        raise _refusal(path, what, kind, error)


def read_limited(path, what: str, limit: int, error=ExportError) -> bytes:
    """The bytes of a regular file, at most ``limit + 1`` of them (the caller tells "too big").

    The file is opened with ``O_NONBLOCK``, so a FIFO is refused at once rather
    than waited on.

    Args:
        path: the file.
        what: what the file is, for messages (``"recipe"``).
        limit: the most bytes the caller accepts.
        error: the exception class raised. Defaults to `ExportError`.

    Raises:
        error: the file cannot be opened, or is not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}.") from None
    with os.fdopen(fd, "rb") as f:
        kind = special_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise _refusal(path, what, kind, error)
        try:
            return f.read(limit + 1)
        except OSError as e:
            raise error(f"cannot read {what} {path}: {e.strerror}.") from None


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _size(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def _zip_bounds(path, what: str, infos, packed: int, error) -> None:
    """Refuses a zip whose directory promises more than can be unpacked safely."""
    if len(infos) > MAX_ZIP_MEMBERS:
        raise error(f"{what} {path} holds {len(infos)} zip members, more than {MAX_ZIP_MEMBERS}: "
                    "it is not what it claims to be.")
    total = sum(i.file_size for i in infos)
    if total > ZIP_RATIO_FLOOR and total > MAX_ZIP_RATIO * max(packed, 1):
        raise error(f"{what} {path} unpacks to {_size(total)} from {_size(packed)} (more than {MAX_ZIP_RATIO}:1, "
                    "beyond what compression can do): a zip bomb; do not use it.")
    free = available_memory()
    if free is not None and total > free:
        raise error(f"{what} {path} unpacks to {_size(total)}, more than the {_size(free)} of memory available: "
                    "use a smaller file or a machine with more memory.")


def check_model_file(path, error=ExportError) -> None:
    """Refuses a model path that is a FIFO or device, or a ``.keras`` zip bomb, before Keras opens it.

    A missing path, a folder (SavedModel) and a file that is not a zip pass:
    the loader reports those.

    Raises:
        error: as :func:`refuse_special`; more than :data:`MAX_ZIP_MEMBERS`
            members; an unpacked size beyond :data:`MAX_ZIP_RATIO` times the
            file, or beyond the memory available.
    """
    refuse_special(path, "model file", error)
    if not os.path.isfile(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return
    _zip_bounds(path, "model file", infos, os.path.getsize(path), error)


def _npy_header(fp):
    """``(shape, dtype)`` from an .npy member's header (numpy's own reader; nothing allocated)."""
    version = np.lib.format.read_magic(fp)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"unsupported .npy version {version}")
    shape, _, dtype = read(fp)
    return shape, dtype


def _check_member(path, info, fp, error, free):
    shape, dtype = _npy_header(fp)
    if dtype.hasobject:
        raise error(f"{path}: {info.filename} holds Python objects, which are never unpickled; "
                    "save numeric arrays.")
    need = math.prod(shape) * dtype.itemsize
    if need > info.file_size:
        raise error(f"{path}: the header of {info.filename} claims a {'x'.join(map(str, shape))} {dtype} array "
                    f"({_size(need)}) but the member holds {_size(info.file_size)}: the file is damaged; "
                    "save it again.")
    if free is not None and need > free:
        raise error(f"{path}: {info.filename} is a {_size(need)} array, more than the {_size(free)} of memory "
                    "available: use a smaller file or a machine with more memory.")


def read_npz(path, error=ExportError, hint: str = "save it with numpy.savez(path, x_train=..., y_train=...)") -> dict:
    """The arrays of a ``.npz`` file by name, never unpickling, each header checked before numpy allocates.

    Args:
        path: the file.
        error: the exception class raised. Defaults to `ExportError`.
        hint: what to do, added to messages about a file that is not a .npz.

    Returns:
        A dict from array name (``x_train``) to numpy array.

    Raises:
        error: a FIFO or other special file; a missing, truncated or
            corrupt file (a bad zip, a member that does not inflate); a
            header claiming more bytes than its member holds or than memory
            has; object arrays; a zip bomb (see :func:`check_model_file`).
    """
    path = os.fsdecode(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"data file {path} does not exist: check the path.") from None
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror}.") from None
    with os.fdopen(fd, "rb") as f:
        kind = special_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise _refusal(path, "data file", kind, error)
        try:
            with zipfile.ZipFile(f) as z:
                infos = z.infolist()
                _zip_bounds(path, "data file", infos, os.fstat(fd).st_size, error)
                free = available_memory()
                arrays = {}
                for info in infos:
                    if not info.filename.endswith(".npy"):  # numpy.savez writes only .npy members
                        continue
                    with z.open(info) as fp:
                        _check_member(path, info, fp, error, free)
                    with z.open(info) as fp:
                        arrays[info.filename[:-4]] = np.lib.format.read_array(fp, allow_pickle=False)
        except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError, NotImplementedError) as e:
            raise error(f"cannot read {path} as .npz ({first_line(e) or type(e).__name__}): {hint}.") from None
    return arrays
