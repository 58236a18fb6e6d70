"""The one table writer of tflite_export and tfcompress: Markdown and aligned plain text.

tfcompress's reports use it too (``tfcompress.report.markdown_table`` is this
function), so every table either package writes has the same cells: ``None``
as an em dash, floats to 4 significant digits, anything else as ``str``.

Example:
    >>> print(markdown_table(["file", "ms"], [["m.tflite", 0.12345], ["n.tflite", None]], align="lr"))
    | file | ms |
    |---|---:|
    | m.tflite | 0.1235 |
    | n.tflite | — |
    >>> print(text_table(["model", "acc"], [["float32", "97.2%"]]))
    model    acc
    -------  -----
    float32  97.2%
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["markdown_table", "text_table", "cell"]


def cell(value: Any) -> str:
    """How a table writes one value: ``None`` as "—", a float to 4 significant digits, else ``str``.

    Example:
        >>> cell(2 / 3), cell(None), cell(12)
        ('0.6667', '—', '12')
    """
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table (no trailing newline).

    Args:
        headers: the column titles.
        rows: one sequence of cells a row (see :func:`cell`).
        align: one letter a column, ``"l"`` (left) or ``"r"`` (right, for numbers).
            Defaults to `None` (all left).

    Returns:
        The table's lines joined by newlines.

    Raises:
        ValueError: ``align`` names another letter or has another length than ``headers``.
    """
    align = align or "l" * len(headers)
    if len(align) != len(headers) or set(align) - {"l", "r"}:
        raise ValueError(f"align needs one 'l' or 'r' per column ({len(headers)}), got {align!r}")
    out = ["| " + " | ".join(map(str, headers)) + " |", "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def text_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table with columns aligned by spaces and a dashed rule under the titles."""
    cells = [[str(h) for h in headers]] + [[cell(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells[1:]]
    return "\n".join(lines)
