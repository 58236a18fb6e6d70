"""The files of an image folder, listed and checked before Keras reads them.

Keras's ``image_dataset_from_directory`` walks the folder following symbolic
links (a link back to a folder above walks for ever), opens whatever has an
image extension (a FIFO waits for ever) and fails deep inside ``tf.data`` on a
file that is not an image. :func:`image_files` walks the folder the same way
first, refusing a link loop, more than :data:`MAX_ENTRIES` entries and special
files; :func:`check_images` refuses files that are not images by their first
bytes; :func:`undecodable` finds the files TensorFlow cannot decode, after a
read failed. Each message is one line naming the first bad file and how many
are bad.

Example:
    >>> image_files("flowers/daisy", "flowers")  # doctest: +SKIP
    ['flowers/daisy/1.png', 'flowers/daisy/2.png']
"""

import os

from tfcompress.errors import DataError
from tflite_export._userfiles import special_kind

__all__ = ["IMAGE_EXTENSIONS", "MAX_ENTRIES", "image_files", "check_images", "undecodable", "bad_images_error"]

#: What Keras reads as images (its allowlist).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
#: Entries (files and folders) an image folder may hold in all, links followed: far past any data set that fits
#: in memory, and a stop for links that multiply a tree without a loop.
MAX_ENTRIES = 1_000_000
# The first bytes of each format Keras decodes (it decides by content, not by extension).
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def _folder_id(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _prefixes(relative):
    parts = [] if relative == os.curdir else relative.split(os.sep)
    return [parts[: i + 1] for i in range(len(parts))]


def image_files(folder, top):
    """The image files under ``folder`` (links followed, as Keras follows them), sorted.

    Args:
        folder: a class folder.
        top: the folder the user gave, for messages.

    Returns:
        The paths of the files with an image extension.

    Raises:
        DataError: a symbolic link to a folder that contains it (a loop), more
            than :data:`MAX_ENTRIES` entries, a FIFO, socket or device with an
            image extension, or a folder that cannot be read.
    """
    images, entries = [], 0
    chain = [top] + [os.path.join(top, *parts) for parts in _prefixes(os.path.relpath(folder, top))]
    stack = [(folder, tuple(_folder_id(f) for f in chain))]
    while stack:
        here, above = stack.pop()
        try:
            listing = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as e:
            raise DataError(f"{top}: cannot read {here}: {e.strerror}.") from None
        for entry in listing:
            entries += 1
            if entries > MAX_ENTRIES:
                raise DataError(f"{top} holds more than {MAX_ENTRIES} files and folders (symbolic links "
                                "followed): give a folder of the images to use.")
            try:
                is_dir = entry.is_dir()  # follows links, as Keras does
            except OSError:  # a link to itself: it leads nowhere, as for Keras
                continue
            if is_dir:
                ident = _folder_id(entry.path)
                if ident in above:
                    raise DataError(f"{top}: {entry.path} is a symbolic link to {os.path.realpath(entry.path)}, a "
                                    "folder that contains it: reading would loop for ever; remove the link.")
                stack.append((entry.path, above + (ident,)))
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                try:
                    kind = special_kind(entry.stat().st_mode)
                except OSError:  # a dangling link: Keras skips it too
                    continue
                if kind is not None:
                    raise DataError(f"{top}: {entry.path} is {kind}, not an image file: reading it could wait "
                                    "for ever; remove it.")
                images.append(entry.path)
    return sorted(images)


def bad_images_error(top, bad, total, why):
    """The one-line DataError for ``bad`` images (the first named) out of ``total``."""
    more = f" (and {len(bad) - 1} more: {len(bad)} of {total} files are bad)" if len(bad) > 1 else \
        f" (1 of {total} files)"
    return DataError(f"{top}: {bad[0]} {why}{more}: remove or replace the bad files.")


def _kind_of(head):
    if not head:
        return "is empty (0 bytes)"
    if any(head.startswith(s) for s in _SIGNATURES):
        return None
    return "is not a PNG, JPEG, GIF or BMP image (its first bytes say otherwise)"


def check_images(top, files):
    """Refuses files whose first bytes are not those of an image Keras decodes (empty, text, other formats).

    Raises:
        DataError: naming the first bad file and how many there are.
    """
    bad, first_why = [], None
    for path in files:
        try:
            with open(path, "rb") as f:
                why = _kind_of(f.read(8))
        except OSError as e:
            why = f"cannot be read ({e.strerror})"
        if why is not None:
            bad.append(path)
            first_why = first_why or why
    if bad:
        raise bad_images_error(top, bad, len(files), first_why)


def undecodable(files):
    """The files TensorFlow cannot decode as images (after a read failed: slow, it decodes each)."""
    from tfcompress._keras import tf

    bad = []
    for path in files:
        try:
            tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
        except (tf.errors.OpError, ValueError):
            bad.append(path)
    return bad
