"""Entry point of a trial process: ``python -m tfcompress.tuning._child FD``.

The tuner talks to it over a private socket pair (file descriptor ``FD``);
see :class:`tfcompress.tuning.tuner._ChildRunner`. A separate module, so
starting it never re-runs the user's script (as ``multiprocessing``'s spawn
would without an ``if __name__ == "__main__"`` guard).
"""

import sys


def main(fd):
    from multiprocessing.connection import Connection

    from tfcompress.tuning.tuner import _child_main

    _child_main(Connection(fd))


if __name__ == "__main__":
    main(int(sys.argv[1]))
