"""Reading a JSON request body safely, for every HTTP endpoint (web chat, Telegram webhook, admin API,
and any channel added later).

Malformed input must never reach a handler as an exception: it is refused with 400 (or 413 for a body
too large, 415 for a wrong Content-Type) and a short reason, before anything else sees it. Limits are
checked before parsing (size, then nesting depth, so a body nested 100,000 deep costs a scan, not a
recursion), and after it the values (no lone surrogates, which JSON's \\ud800 escapes can smuggle in and
which no UTF-8 encoder, Redis client or log line accepts).
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from aiohttp import web

__all__ = ["MAX_DEPTH", "BadInput", "check_text", "parse_json", "read_json"]

MAX_DEPTH = 32
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_STEP = str.maketrans({"[": "1", "{": "1", "]": "2", "}": "2"})


class BadInput(Exception):
    """The request cannot be used: `status` (400, 413, 415) and a short `reason` to answer with."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_json(request: web.Request, *, max_bytes: int, max_depth: int = MAX_DEPTH,
                    content_type: str | None = None) -> Any:
    """The body as JSON, within `max_bytes` and `max_depth`; `content_type` if given must match."""
    if content_type is not None and request.content_type != content_type:
        raise BadInput(415, f"Content-Type must be {content_type}")
    if request.content_length is not None and request.content_length > max_bytes:
        raise BadInput(413, f"body larger than {max_bytes} bytes")
    try:
        body = await request.content.read(max_bytes + 1)
    except Exception:  # the client went away or sent a broken chunked body
        raise BadInput(400, "could not read the body") from None
    if len(body) > max_bytes:
        raise BadInput(413, f"body larger than {max_bytes} bytes")
    return parse_json(body, max_depth=max_depth)


def parse_json(body: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """`body` (UTF-8 JSON) parsed, or `BadInput(400)` saying why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(400, "body is not UTF-8") from None
    if _depth(text) > max_depth:
        raise BadInput(400, f"JSON nested deeper than {max_depth}")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # RecursionError: cannot happen within max_depth; kept as a guard
        raise BadInput(400, "body is not JSON") from None
    _check_values(data)
    return data


def check_text(value: str, what: str = "text") -> str:
    """`value` if it can be stored and shown (no lone surrogates), else `BadInput(400)`."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(400, f"{what} is not valid Unicode") from None
    return value


def _depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings (a cheap scan, done before parsing)."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text)).translate(_STEP)
    if not brackets:
        return 0
    return max(itertools.accumulate(1 if c == "1" else -1 for c in brackets))


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _check_values(data: Any) -> None:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            check_text(item, "a string in the body")
        elif isinstance(item, dict):
            for key, value in item.items():
                check_text(key, "a key in the body")
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
