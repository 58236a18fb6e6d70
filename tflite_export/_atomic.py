"""Atomic file writing: a file (or a saved figure) appears complete at its path or not at all.

The bytes go to a temporary file beside the destination, named
``.<name>.<random>.p<pid>-<host><ext>`` so that the process that made it is known:
a writer killed mid-write leaves one behind, and the next write into that folder
removes those whose process is gone (:func:`sweep_temps`); another machine's (a
shared folder) are left alone.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile

from ._process import left_by_gone, owner_tag, parse_owner
from .errors import ExportError, first_line

__all__ = ["atomic_write_bytes", "save_figure", "sweep_temps", "dead_temps", "free_bytes", "TEMP_NAME"]

# A temporary file of this module: "." + destination name + "." + mkstemp's 8 characters + ".p<pid>-<host>" +
# extension (see _process.owner_tag).
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.p(?P<owner>\d+(?:-[0-9a-f]{6})?)(?P<ext>\.[^.]*)?$")


def _destination(path, example: str):
    """``(absolute path, its folder)``; the folder is created, a folder at ``path`` refused."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise ExportError(f"output path {path} is a folder; pass a file path such as {path}/{example}")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create output folder {folder} ({e.strerror}); choose a writable location") from None
    return path, folder


def _umask() -> int:
    """This process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def _temp_file(folder: str, path: str, suffix: str):
    """``(fd, name)`` of a new temporary file beside ``path``, with the mode a plain
    ``open()`` would give (``mkstemp`` makes it 0600 whatever the umask, and
    ``os.replace`` keeps that mode: shared folders need 0644 under umask 022)."""
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=f".p{owner_tag()}{suffix}",
                               dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:
        pass  # a file system without modes: keep mkstemp's
    return fd, tmp


def _discard(tmp) -> None:
    """Removes a leftover temporary file, if any."""
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def dead_temps(folder) -> list:
    """Temporary files of this module in ``folder`` whose writer is gone (killed mid-write).

    Example:
        >>> dead_temps("/tmp/out")  # doctest: +SKIP
        ['/tmp/out/.m.tflite.k2j4x9ab.p4242-3f9a0c.tmp']
    """
    found: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return found
    for name in names:
        m = TEMP_NAME.match(name)
        owner = parse_owner(m.group("owner")) if m else None
        if owner is None or not owner[1]:  # not ours, or another machine's
            continue
        path = os.path.join(folder, name)
        if left_by_gone(path, owner[0]):
            found.append(path)
    return sorted(found)


def sweep_temps(folder) -> list:
    """Removes the temporary files that killed writers left in ``folder``; returns their paths.

    Example:
        >>> sweep_temps("/tmp/out")  # doctest: +SKIP
        ['/tmp/out/.m.tflite.k2j4x9ab.p4242-3f9a0c.tmp']
    """
    removed = []
    for path in dead_temps(folder):
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def free_bytes(folder) -> int | None:
    """Bytes this process may still write in ``folder``'s file system (its nearest existing
    parent's), or None where unknown.

    Example:
        >>> free_bytes("/tmp") > 0
        True
    """
    folder = os.path.abspath(os.fspath(folder))
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    blocks = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


def _write_error(path, e) -> ExportError:
    """The one-line error of a failed write, carrying its ``errno`` (see :func:`errors.write_failure`)."""
    err = ExportError(f"cannot write {path} ({e.strerror or e}); "
                      + ("free some space or write elsewhere" if e.errno in (errno.ENOSPC, errno.EDQUOT)
                         else "check the folder exists and is writable"))
    err.errno = e.errno
    return err


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

    Before writing it checks that the file system has room for the bytes, and it
    removes the temporary files of killed writers in the folder (:func:`sweep_temps`).

    Raises:
        ExportError: If the folder cannot be created or written to, or has no room
            (the error's ``errno`` says which).

    Example:
        >>> atomic_write_bytes("/tmp/model.tflite", b"...")  # doctest: +SKIP
    """
    path, folder = _destination(path, "model.tflite")
    sweep_temps(folder)
    free = free_bytes(folder)
    if free is not None and free < len(data):
        raise _write_error(path, OSError(errno.ENOSPC, f"No space left on device: {len(data)} bytes to write, "
                                                       f"{free} free"))
    tmp = None
    try:
        fd, tmp = _temp_file(folder, path, ".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise _write_error(path, e) from None
    finally:
        _discard(tmp)
    return path


def save_figure(fig, path, **savefig_kwargs) -> str:
    """Saves a matplotlib figure to ``path`` atomically and closes it.

    The figure is rendered to a temporary file in the same folder and moved over
    ``path`` with :func:`os.replace`: ``path`` holds a whole image or is left as it
    was. The image format follows the extension of ``path`` (matplotlib's default,
    PNG, when it has none). The figure is closed whether or not the save works.

    Args:
        fig: A ``matplotlib.figure.Figure``.
        path: Destination image file. Missing parent folders are created.
        **savefig_kwargs: Passed to ``Figure.savefig`` (e.g. ``dpi=100``).

    Returns:
        The absolute path written.

    Raises:
        ExportError: If the folder cannot be written to or matplotlib cannot save in
            that format.

    Example:
        >>> import matplotlib.pyplot as plt                      # doctest: +SKIP
        >>> fig, ax = plt.subplots(); ax.plot([1, 2])            # doctest: +SKIP
        >>> save_figure(fig, "plots/curve.png", dpi=100)         # doctest: +SKIP
        '/abs/plots/curve.png'
    """
    import matplotlib.pyplot as plt  # lazy: matplotlib is optional

    tmp = None
    try:
        path, folder = _destination(path, "figure.png")
        ext = os.path.splitext(path)[1]
        fmt = ext[1:].lower() or None
        sweep_temps(folder)
        fd, tmp = _temp_file(folder, path, ext or ".tmp")
        os.close(fd)
        fig.savefig(tmp, format=fmt or plt.rcParams["savefig.format"], **savefig_kwargs)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise _write_error(path, e) from None
    except ValueError as e:
        raise ExportError(f"cannot save a figure as {path} ({first_line(e)}); use a .png, .pdf or .svg path") from None
    finally:
        plt.close(fig)
        _discard(tmp)
    return path
