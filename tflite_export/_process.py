"""Processes: this one's resources during a timing run (resident memory, CPU pinning), and
whether the process that made a leftover file is gone (:func:`owner_gone`).

The memory readings return None where the OS does not provide them; they never raise.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types

from .errors import ExportError

resource: types.ModuleType | None
try:
    import resource
except ImportError:  # Windows: no ru_maxrss
    resource = None

__all__ = ["peak_rss_mb", "current_rss_mb", "memory_delta_mb", "pinned", "owner_gone", "left_by_gone", "owner_tag",
           "parse_owner"]


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process in MiB (``ru_maxrss``), or None where unknown.

    Returns:
        MiB, or None on systems without :mod:`resource` (Windows).

    Example:
        >>> peak_rss_mb() > 0
        True
    """
    if resource is None:
        return None
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def current_rss_mb() -> float | None:
    """Current resident set size of this process in MiB (Linux ``/proc``), else None.

    Returns:
        MiB, or None where ``/proc/self/statm`` cannot be read.

    Example:
        >>> current_rss_mb()   # doctest: +SKIP
        412.5
    """
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except (OSError, ValueError, IndexError):
        return None


def memory_delta_mb(rss_before: float | None) -> float | None:
    """Current RSS minus ``rss_before`` in MiB; None when either reading is unknown.

    Args:
        rss_before: :func:`current_rss_mb` taken before, or None.

    Returns:
        The resident memory added since, in MiB, or None when it cannot be known.

    Example:
        >>> before = current_rss_mb(); data = bytearray(50 << 20)   # doctest: +SKIP
        >>> memory_delta_mb(before)                                 # doctest: +SKIP
        50.1
    """
    rss_after = current_rss_mb()
    if rss_before is None or rss_after is None:
        return None
    return rss_after - rss_before


@contextlib.contextmanager
def pinned(cpus):
    """Pins this process (and threads created inside) to ``cpus``; restores on exit.

    Args:
        cpus: CPU ids, or None to leave the affinity alone.

    Yields:
        The sorted CPU ids pinned to, or None.

    Raises:
        ExportError: Pinning is unsupported on this OS or ``cpus`` are not usable CPUs.

    Example:
        >>> with pinned([0]) as cpus:   # doctest: +SKIP
        ...     benchmark("m.tflite")
    """
    if cpus is None:
        yield None
        return
    if not hasattr(os, "sched_setaffinity"):
        raise ExportError("cpu_affinity needs os.sched_setaffinity (Linux); leave cpu_affinity=None on this OS")
    cpus = sorted({int(c) for c in cpus})
    allowed = os.sched_getaffinity(0)
    if not cpus or not set(cpus) <= allowed:
        raise ExportError(f"cpu_affinity {cpus} is not a non-empty subset of the usable CPUs {sorted(allowed)}")
    os.sched_setaffinity(0, cpus)
    try:
        yield cpus
    finally:
        os.sched_setaffinity(0, allowed)


def _start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from Linux ``/proc``; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, after the "(comm)" that may hold spaces
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def left_by_gone(path: str, pid: int) -> bool:
    """Whether ``path`` (named for process ``pid``) is left over: it still exists and its maker is gone
    (:func:`owner_gone`, judged against the file's mtime).

    Example:
        >>> left_by_gone(__file__, os.getpid())
        False
    """
    try:
        made_at = os.lstat(path).st_mtime
    except OSError:  # already removed
        return False
    return owner_gone(pid, made_at)


def owner_gone(pid: int, made_at: float | None = None) -> bool:
    """Whether the process ``pid`` that made a file (at ``made_at``, its mtime) has ended.

    A process that no longer exists is gone; so is one whose pid was reused: where
    Linux tells when a process started, one that started after the file was last
    written did not make it. This process is never gone. A live process of another
    user (``EPERM``) is not gone.

    Args:
        pid: The process id recorded in the file's name.
        made_at: The file's modification time, or None to check only that ``pid`` exists.

    Returns:
        True when no live process can still be writing the file.

    Example:
        >>> owner_gone(os.getpid())
        False
    """
    if pid == os.getpid():
        return False
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # EPERM: it exists, under another user
    if made_at is None:
        return False
    started = _start_time(pid)
    return started is not None and started > made_at + 2.0  # /proc's boot time has one-second steps


def _host_tag() -> str:
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


def owner_tag() -> str:
    """``"<pid>-<host>"``: what a leftover's name records of the process that made it (the host as 6 hex
    digits of its name's hash, so a folder shared between machines or containers is judged per host).

    Example:
        >>> owner_tag().startswith(f"{os.getpid()}-")
        True
    """
    return f"{os.getpid()}-{_host_tag()}"


def parse_owner(text: str) -> tuple[int, bool] | None:
    """``(pid, made here)`` of an :func:`owner_tag` (or a bare pid, taken as made here); None if it is neither.

    Example:
        >>> parse_owner(owner_tag())[1], parse_owner("42"), parse_owner("x")
        (True, (42, True), None)
    """
    pid, _, host = text.partition("-")
    if not pid.isdigit() or (host and (len(host) != 6 or any(c not in "0123456789abcdef" for c in host))):
        return None
    return int(pid), not host or host == _host_tag()
