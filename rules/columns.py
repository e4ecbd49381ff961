"""Plain-text tables that line up in a terminal with Chinese in them: a CJK character takes two
columns, a combining mark none (wcwidth knows the Unicode tables; `len` counts characters)."""

from __future__ import annotations

from collections.abc import Sequence

from wcwidth import wcswidth


def width(text: str) -> int:
    """The columns `text` takes in a terminal (control characters counted as one each)."""
    columns = wcswidth(text)
    return columns if columns >= 0 else sum(max(wcswidth(ch), 1) for ch in text)


def pad(text: str, columns: int) -> str:
    """`text` filled with spaces to `columns` terminal columns (left-aligned)."""
    return text + " " * max(0, columns - width(text))


def rpad(text: str, columns: int) -> str:
    """`text` right-aligned in `columns` terminal columns."""
    return " " * max(0, columns - width(text)) + text


def table(rows: Sequence[Sequence[str]], gap: str = "  ") -> str:
    """Rows of cells as aligned columns (the last column is not padded)."""
    if not rows:
        return ""
    count = max(len(r) for r in rows)
    widths = [max((width(r[i]) for r in rows if i < len(r)), default=0) for i in range(count)]
    return "\n".join(gap.join(pad(cell, widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)
