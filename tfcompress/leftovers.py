"""What killed runs leave behind, found and removed: staging folders and temporary files.

A run of the main job builds its files in a staging folder ``.tfcompress-run-<pid>-<host>``
inside ``--out`` and moves them out when they are complete (:mod:`tfcompress.pipeline`);
every atomic write goes through a temporary file ``.<name>.<random>.p<pid>-<host><ext>``
beside its destination (:mod:`tflite_export._atomic`). A process killed at the wrong
moment leaves one of them behind. Each names the process that made it, so a leftover
is removed only once that process is gone (no such pid, or a pid reused by a process
that started after the file was last written): a run still writing keeps its files. The
host in the name (:func:`tflite_export._process.owner_tag`) keeps a folder shared between
machines or containers safe: another host's leftovers are never touched.

The next run into the same folder removes them (:func:`clean`), and so does
``tfcompress clean FOLDER`` (``--dry-run`` lists them).

Example:
    >>> from tfcompress.leftovers import clean, find
    >>> find("out")  # doctest: +SKIP
    [Leftover(path='out/.tfcompress-run-4242-3f9a0c', pid=4242, kind='staging folder')]
    >>> clean("out")  # doctest: +SKIP
"""

import os
import shutil
from dataclasses import dataclass

from tflite_export._atomic import TEMP_NAME
from tflite_export._process import left_by_gone, owner_tag, parse_owner

__all__ = ["STAGING", "Leftover", "find", "clean", "remove", "staging_name"]

# The staging folder of a run of the main job: STAGING + "<pid>-<host>" (a bare pid from earlier versions).
STAGING = ".tfcompress-run-"


def staging_name():
    """This process's staging folder name.

    Example:
        >>> staging_name().startswith(STAGING + str(os.getpid()))
        True
    """
    return STAGING + owner_tag()


@dataclass(frozen=True)
class Leftover:
    """A staging folder or temporary file whose process is gone."""

    path: str
    pid: int
    kind: str  # "staging folder" or "temporary file"


def _pid_of(name):
    """``(pid, kind)`` of a leftover made on this host, or None for any other name (another host's too)."""
    if name.startswith(STAGING):
        owner, kind = parse_owner(name[len(STAGING):]), "staging folder"
    else:
        m = TEMP_NAME.match(name)
        owner, kind = (parse_owner(m.group("owner")) if m else None), "temporary file"
    return (owner[0], kind) if owner is not None and owner[1] else None


def find(folder, depth=3):
    """The leftovers of dead runs in ``folder`` and its subfolders down to ``depth`` levels below
    it (a search folder's ``search/trial_<id>/`` is two below); symbolic links are not followed.

    Example:
        >>> find("/nonexistent")
        []
    """
    found = []
    for root, dirs, files in os.walk(os.fspath(folder)):
        level = os.path.relpath(root, folder).count(os.sep) + (root != os.fspath(folder))
        for name in list(dirs) + files:
            owner = _pid_of(name)
            if owner is None:
                continue
            path = os.path.join(root, name)
            if left_by_gone(path, owner[0]):
                found.append(Leftover(path, *owner))
        dirs[:] = [] if level >= depth else [d for d in dirs if not d.startswith(STAGING) and not
                                              os.path.islink(os.path.join(root, d))]
    return sorted(found, key=lambda x: x.path)


def remove(leftovers):
    """Remove ``leftovers`` (see :func:`find`); returns those removed.

    Example:
        >>> remove([])
        []
    """
    done = []
    for item in leftovers:
        try:
            if item.kind == "staging folder":
                shutil.rmtree(item.path)
            else:
                os.unlink(item.path)
            done.append(item)
        except FileNotFoundError:  # another run cleaned it first
            pass
        except OSError:
            continue
    return done


def clean(folder, depth=0):
    """Remove the leftovers of dead runs in ``folder`` (by default only there, not below).

    Example:
        >>> clean("/nonexistent")
        []
    """
    return remove(find(folder, depth))


def add_subcommands(sub):
    """Adds ``tfcompress clean`` to the command line's subparsers."""
    p = sub.add_parser(
        "clean", help="remove what killed runs left in a folder (staging folders, temporary files)",
        description="List and remove the staging folders (.tfcompress-run-<pid>-<host>) and temporary files "
        "(.<name>.<random>.p<pid>-<host>.tmp) that killed runs of optimize, export or tune left in FOLDER and the "
        "folders below it (a search folder's trial folders included). Only those whose process is gone are "
        "touched: a run still writing keeps its files, another machine's (a shared folder) are left alone. "
        "The next run into the same folder removes them too.",
    )
    p.add_argument("folder", metavar="FOLDER", help="an --out, --dir or export folder")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.set_defaults(func=_cmd_clean)


def _cmd_clean(args):
    from tflite_export.errors import ExportError

    if not os.path.isdir(args.folder):
        raise ExportError(f"{args.folder} is not a folder; give the --out, --dir or export folder to clean")
    found = find(args.folder)
    done = found if args.dry_run else remove(found)
    verb = "would remove" if args.dry_run else "removed"
    for item in done:
        print(f"{verb} {item.path}{os.sep if item.kind == 'staging folder' else ''} "
              f"({item.kind} of process {item.pid}, which is gone)")
    summary = f"{len(done)} leftover(s) {'to remove' if args.dry_run else 'removed'} in {args.folder}"
    print(summary if done else f"nothing to clean in {args.folder}")
    return 0
