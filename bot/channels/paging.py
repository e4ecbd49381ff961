"""Text cut into messages at line ends, shared by the channels whose messages have a size limit
(Telegram counts characters of HTML, WeChat UTF-8 bytes): one place that keeps the order of the
lines and never cuts a line that fits."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def pack_lines(lines: Iterable[str], limit: int, size: Callable[[str], int],
               cut: Callable[[str], int]) -> list[str]:
    """The lines joined by newlines into pieces of at most `limit` (as `size` measures them), a new
    piece wherever the next line would not fit. A line longer than `limit` ends the piece before it
    and is cut at `cut(line)` (the index where the rest begins; the channel knows what must stay
    whole). A last piece of only whitespace is dropped."""
    pieces: list[str] = []
    current = ""
    for line in lines:
        while size(line) > limit:
            if current:
                pieces.append(current)
                current = ""
            at = cut(line)
            pieces.append(line[:at])
            line = line[at:]
        candidate = f"{current}\n{line}" if current else line
        if size(candidate) > limit:
            pieces.append(current)
            current = line
        else:
            current = candidate
    if current.strip():
        pieces.append(current)
    return pieces
