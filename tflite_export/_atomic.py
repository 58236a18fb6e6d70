"""Atomic file writing: a file (or a saved figure) appears complete at its path or not at all."""

from __future__ import annotations

import os
import tempfile

from .errors import ExportError, first_line

__all__ = ["atomic_write_bytes", "save_figure"]


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
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix, dir=folder)
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
    path, folder = _destination(path, "model.tflite")
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
        raise ExportError(
            f"cannot write {path} ({e.strerror or e}); check the folder exists and is writable"
        ) from None
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
        fd, tmp = _temp_file(folder, path, ext or ".tmp")
        os.close(fd)
        fig.savefig(tmp, format=fmt or plt.rcParams["savefig.format"], **savefig_kwargs)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise ExportError(f"cannot write {path} ({e.strerror or e}); check the folder exists and is writable") from None
    except ValueError as e:
        raise ExportError(f"cannot save a figure as {path} ({first_line(e)}); use a .png, .pdf or .svg path") from None
    finally:
        plt.close(fig)
        _discard(tmp)
    return path
