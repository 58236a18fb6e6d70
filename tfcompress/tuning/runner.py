"""Run trials in a child process, replaced every few trials, so memory cannot creep.

TensorFlow keeps a few MB per built model that ``clear_session`` does not give
back. :class:`ChildRunner` starts ``python -m tfcompress.tuning._child`` (not
``multiprocessing``'s spawn, which would re-run the user's script without an
``if __name__ == "__main__"`` guard), sends it the trial settings once over a
private socket pair, then one job per trial, and replaces the process every
``trials_per_process`` trials or once its memory grew. :func:`child_main` is
the other end.

Example:
    >>> runner = ChildRunner(ctx.to_payload(), trials_per_process=8)  # doctest: +SKIP
    >>> runner.run({"trial_id": "0", "values": {"learning_rate": 3e-3}, "folder": "t0"})  # doctest: +SKIP
    >>> runner.close()  # doctest: +SKIP
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection

from tfcompress.errors import TuningError, first_line
from tfcompress.tuning._keras_tuner import FailedTrialError, SearchStopped
from tfcompress.tuning.trial import TrialContext, stopped
from tflite_export._atomic import free_bytes

__all__ = ["ChildRunner", "child_main", "FULL_BYTES"]

# Below this much free space, a trial process that died is taken to have died writing (HDF5 and
# TensorFlow's writers can crash on a full disk): the search stops rather than fail the trial.
FULL_BYTES = 1 << 20


def _die_with_parent():
    """Have the kernel kill this process when its parent dies (Linux only)."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # pragma: no cover - not Linux
        pass


def child_main(conn):
    """Trial process: receive the settings, build a :class:`TrialContext` once,
    then run trials on request until told to stop or the tuner goes away.

    Args:
        conn: the ``multiprocessing`` connection to the tuner.
    """
    # Die with the tuner (SIGKILL included) instead of finishing a trial nobody waits for.
    _die_with_parent()
    try:
        payload = conn.recv()
        ctx = TrialContext.from_payload(payload)
    except EOFError:
        return
    except Exception as e:  # noqa: BLE001 - e.g. a builder this process cannot import: tell the tuner why
        conn.send(("error", f"{type(e).__name__}: {first_line(e)}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        # The trial's stage and epoch lines go to the tuner as they come (progress, not a wait).
        emit = (lambda line: conn.send(("progress", line))) if job.get("progress") else None
        try:
            conn.send(("ok", ctx.run(job, progress=emit)))
        except FailedTrialError as e:
            conn.send(("failed", str(e)))
        except SearchStopped as e:  # a failed write: the tuner stops the search
            conn.send(("stopped", str(e)))


def _child_env():
    """This process's environment, with the folders it imports from (the
    script's folder included) on the child's PYTHONPATH, so a model builder
    importable here is importable there."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    ours = [os.path.abspath(p or os.curdir) for p in sys.path
            if not any(os.path.realpath(p or os.curdir).startswith(pre + os.sep) for pre in prefixes)]
    env = dict(os.environ)
    old = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(ours + old))
    return env


class ChildRunner:
    """Runs trials in a child process, replaced every ``trials_per_process``
    trials or once its RSS grew ``max_growth`` over its first trial's.

    Args:
        payload: :meth:`TrialContext.to_payload` of the search's context.
        trials_per_process: trials before the process is replaced. Defaults to `8`.
        max_growth: relative RSS growth that replaces it sooner. Defaults to `0.05`.

    Example:
        >>> runner = ChildRunner(ctx.to_payload())  # doctest: +SKIP
        >>> metrics = runner.run(job)  # doctest: +SKIP
    """

    def __init__(self, payload, trials_per_process=8, max_growth=0.05):
        self.payload, self.per_process, self.max_growth = payload, trials_per_process, max_growth
        self.proc = self.conn = None
        self.count, self.first_rss = 0, None

    def start(self):
        """Start the trial process now, so a search whose trials could never run fails once, up front.

        Raises:
            TuningError: the process died or could not rebuild the trial
                settings (a model builder it cannot import), with the cause.
        """
        try:
            self._start()
        except FailedTrialError as e:
            raise TuningError(f"{e}: trial processes must import the model builder and everything the "
                              "trials use; put your modules on PYTHONPATH, or use isolation='session'.") from None

    def _start(self):
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "tfcompress.tuning._child", str(theirs.fileno())],
                                         pass_fds=[theirs.fileno()], env=_child_env())
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.count, self.first_rss = 0, None
        self.conn.send(self.payload)
        status, value = self._recv("starting the trial process")
        if status != "ready":
            self.close()
            raise FailedTrialError(f"the trial process could not start: {value}")

    def _recv(self, what, progress=None):
        while True:
            while not self.conn.poll(0.5):
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    self.close()
                    raise FailedTrialError(f"the trial process died while {what} (exit code {code})")
            try:
                message = self.conn.recv()
            except EOFError:
                self.close()
                raise FailedTrialError(f"the trial process died while {what}") from None
            if message[0] != "progress":
                return message
            if progress is not None:
                progress(message[1])

    def run(self, job, progress=None):
        """Run one trial in the child (started or replaced as needed).

        Args:
            job: the trial (see :meth:`TrialContext.run`).
            progress: called with the trial's stage and epoch lines as the
                child sends them. Defaults to `None`.

        Returns:
            The trial's metrics.

        Raises:
            FailedTrialError: the trial failed, or the process died.
        """
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()
        self.conn.send(dict(job, progress=progress is not None))
        try:
            status, value = self._recv(f"running trial {job['trial_id']}", progress)
        except FailedTrialError as e:  # the process died: a native writer on a full disk stops the search
            free = free_bytes(job["folder"])
            if free is not None and free < FULL_BYTES:
                raise stopped(job["trial_id"], OSError(28, f"No space left on device ({e}; {free // 1024} KiB "
                                                           f"free in {job['folder']})")) from None
            raise
        self.count += 1
        if status == "stopped":
            raise SearchStopped(value)
        if status != "ok":
            raise FailedTrialError(value)
        rss = value.get("rss_mb", 0)
        if self.first_rss is None:
            self.first_rss = rss
        if self.count >= self.per_process or rss > self.first_rss * (1 + self.max_growth):
            self.close()
        return value

    def close(self):
        """Tell the child to stop and wait for it (kill it after 10 s)."""
        if self.conn is not None:
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None
