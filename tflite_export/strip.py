"""Strip a written file's inner tensor names: :func:`strip_export`.

:func:`tflite_export.export` takes ``strip_names=True`` for a file it writes;
this rewrites one already written (any mode, a per-op mix included), atomically,
and says so in its metadata. See :func:`tflite_export._flatbuffer.strip_names`
for what is kept, and :func:`tflite_export._flatbuffer.lean_metadata` for what of
the "tfcompress" metadata stays (not the recipe nor the versions: the report has them).

Example:
    >>> small = strip_export(export(model, "m.tflite", mode="int8", representative_data=x))  # doctest: +SKIP
    >>> small.metadata["names"]  # doctest: +SKIP
    'stripped'
"""

from __future__ import annotations

import dataclasses

from . import _flatbuffer as fb
from ._atomic import atomic_write_bytes
from .convert import ExportReport, zipped_size

__all__ = ["strip_export"]


def strip_export(report: ExportReport) -> ExportReport:
    """Rewrite ``report.path`` with its inner tensor names emptied; the report of the new file.

    Args:
        report: What :func:`tflite_export.export` (or ``export_mixed``) returned.

    Returns:
        A copy of ``report`` with the new ``bytes``, ``zipped_bytes`` and ``metadata``.
    """
    data = fb.read_bytes(report.path)
    md = fb.lean_metadata(fb.read_metadata(fb.parse_model(data)).get(fb.METADATA_NAME, {}))
    data = fb.add_metadata(fb.strip_names(data), md)
    atomic_write_bytes(report.path, data)
    from .safety import mark_trusted

    mark_trusted(report.path)  # our own rewrite of a file we wrote
    return dataclasses.replace(report, bytes=len(data), zipped_bytes=zipped_size(data),
                               metadata=fb.summarize_value(md))
