"""Entry point of a trial process: ``python -m tfcompress.tuning._child FD``.

The tuner talks to it over a private socket pair (file descriptor ``FD``);
see :class:`tfcompress.tuning.runner.ChildRunner`. A separate module, so
starting it never re-runs the user's script (as ``multiprocessing``'s spawn
would without an ``if __name__ == "__main__"`` guard).
"""

import sys
from multiprocessing.connection import Connection

from tfcompress.tuning.runner import child_main


def main(fd):
    """Run trials for the tuner at the other end of file descriptor ``fd``."""
    child_main(Connection(fd))


if __name__ == "__main__":
    main(int(sys.argv[1]))
