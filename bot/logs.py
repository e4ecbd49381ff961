"""Logging: one line per event, plain or JSON (LOG_FORMAT), never amounts, names or message texts.

Chat and user ids are logged only as `hash_id(...)`, a salted hash that lets an operator follow one
conversation through the logs without learning who it was. Every record may carry `update` (an id of
the update being handled), set by `update_context`. Exceptions are logged as their types and stack
only: an exception's message may quote what a person sent, a name or a chat id, so it is left out.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import sys
import time
import traceback

_update_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("update_id", default=None)
_salt = b"yibao"


def set_salt(secret: str | None) -> None:
    """Salt the id hashes with a deployment secret, so hashes cannot be reversed by trying ids."""
    global _salt
    _salt = hashlib.sha256(b"yibao-log:" + (secret or "").encode()).digest()


def hash_id(value: object) -> str:
    return hashlib.blake2s(str(value).encode(), key=_salt[:32], digest_size=6).hexdigest()


def update_context(update_id: str) -> contextvars.Token:
    """Tag the log lines of the update being handled (until `reset_update_context`)."""
    return _update_id.set(update_id)


def reset_update_context(token: contextvars.Token) -> None:
    _update_id.reset(token)


def format_exception(exc_info) -> str:
    """The stack and the types of an exception and its causes, without their messages."""
    chain = []
    exc = exc_info[1]
    while exc is not None and all(exc is not seen for seen in chain):
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    parts = [
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_tb(exc.__traceback__))
        + f"{type(exc).__module__}.{type(exc).__qualname__} (message not logged)"
        for exc in reversed(chain)
    ]
    return "\n\nwhich led to\n\n".join(parts)


class _UpdateFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.update = _update_id.get()
        return True


class JsonFormatter(logging.Formatter):
    FIELDS = ("chat", "user", "platform", "event", "ms", "job", "count")

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if getattr(record, "update", None):
            data["update"] = record.update
        for name in self.FIELDS:
            if hasattr(record, name):
                data[name] = getattr(record, name)
        if record.exc_info:
            data["error"] = format_exception(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def formatException(self, ei) -> str:
        return format_exception(ei)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        update = getattr(record, "update", None)
        return f"{line} [update {update}]" if update else line


def setup(log_format: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_UpdateFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log request URLs, which contain the bot token: keep them quiet.
    for noisy in ("httpx", "httpcore", "telegram", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
