"""A fake Telegram Bot API server for tests.

The real python-telegram-bot stack talks HTTP to this server on 127.0.0.1::

    async with FakeTelegram() as fake:
        bot = telegram.Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url)
        ...
        await fake.send_text(chat_id=42, user_id=42, text="/start")
        await fake.wait_for("sendMessage")
        assert fake.sent_texts(42) == ["Hello!"]

Everything the bot calls is recorded in ``fake.calls``.  Updates are injected with
``send_text`` / ``press_button`` / ``push_update``; they are queued for ``getUpdates``
(long polling honours ``offset``, ``limit``, ``timeout`` and ``allowed_updates``) or,
once ``setWebhook`` was called, POSTed to the webhook URL with the secret-token header.

Like Telegram, an update is delivered again until it is acknowledged: in polling mode every
``getUpdates`` answer holds it until a later call's ``offset`` passes its id; in webhook mode an update
not answered 2xx within ``webhook_timeout`` is POSTed again after each of ``webhook_retry_delays``
(the chat's later updates wait behind it; ``settle()`` waits for the retries), and given back to
``getUpdates`` if the webhook is deleted meanwhile. Unknown methods answer 404.

Failures are injected with ``fail_next`` (``RetryAfter``, ``Forbidden``, ``ChatNotFound``,
``ServerError`` or any ``ApiError``), and sending rates are checked against Telegram's
limits (``rate_violations``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import socket
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import aiohttp
from aiohttp import web

DEFAULT_TOKEN = "123456789:TEST-fake-token_AAAAAAAAAAAAAAAAAAAAAAAAAA"
ANONYMOUS_ADMIN_ID = 1087968824  # Telegram's GroupAnonymousBot

MAX_MESSAGE_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200

# Methods whose successful calls count against the sending rate limits.
RATE_LIMITED_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendAudio",
        "sendVideo",
        "sendVoice",
        "sendAnimation",
        "sendSticker",
        "sendMediaGroup",
        "sendLocation",
        "sendContact",
        "sendPoll",
        "sendDice",
        "copyMessage",
        "forwardMessage",
    }
)

# Update types Telegram does not deliver unless explicitly listed in allowed_updates.
_OPT_IN_UPDATE_TYPES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

# Form fields that are plain strings even when they look like JSON (e.g. "123", "true").
_STRING_FIELDS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "url",
        "secret_token",
        "callback_query_id",
        "inline_message_id",
        "action",
        "language_code",
        "description",
        "short_description",
        "name",
        "title",
        "ip_address",
        "query",
        "business_connection_id",
        "message_effect_id",
    }
)

_UPDATE_KINDS_WITH_CHAT = ("message", "edited_message", "channel_post", "edited_channel_post")


# --------------------------------------------------------------------------------------------
# Errors the fake can answer with
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A Bot API error reply: HTTP ``status`` with ``{"ok": false, ...}``."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = dict(self.parameters)
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.description!r})"


class RetryAfter(ApiError):
    """HTTP 429 flood-control error; PTB raises ``telegram.error.RetryAfter``."""

    def __init__(self, seconds: int = 5):
        super().__init__(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})
        self.seconds = seconds


class Forbidden(ApiError):
    """HTTP 403; PTB raises ``telegram.error.Forbidden``."""

    def __init__(self, description: str = "Forbidden: bot was blocked by the user"):
        super().__init__(403, description)


class BadRequest(ApiError):
    """HTTP 400; PTB raises ``telegram.error.BadRequest``."""

    def __init__(self, description: str):
        if not description.startswith("Bad Request"):
            description = f"Bad Request: {description}"
        super().__init__(400, description)


class ChatNotFound(BadRequest):
    def __init__(self) -> None:
        super().__init__("Bad Request: chat not found")


class ServerError(ApiError):
    """HTTP 502 by default; PTB raises ``telegram.error.NetworkError``."""

    def __init__(self, status: int = 502, description: str = "Bad Gateway"):
        super().__init__(status, description)


class Conflict(ApiError):
    def __init__(self, description: str):
        super().__init__(409, description)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class UploadedFile:
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class Call:
    """One Bot API request.  ``time`` is ``time.monotonic()`` at arrival."""

    method: str
    params: dict[str, Any]
    token: str
    time: float
    status: int | None = None  # HTTP status of the reply; None while still being handled
    response: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status is not None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")

    @property
    def result(self) -> Any:
        return (self.response or {}).get("result")


@dataclass
class FailureRule:
    """Answers matching calls with ``error`` instead of handling them.

    ``method``: a method name, an iterable of names, or None for any method.
    ``times``: how many matching calls fail; None means every matching call.
    """

    method: str | frozenset[str] | None
    error: ApiError
    chat_id: int | str | None = None
    times: int | None = 1
    predicate: Callable[[Call], bool] | None = None
    token: str | None = None
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, call: Call) -> bool:
        if self.exhausted:
            return False
        if self.method is not None:
            names = {self.method} if isinstance(self.method, str) else self.method
            if call.method.lower() not in {n.lower() for n in names}:
                return False
        if self.token is not None and call.token != self.token:
            return False
        if self.chat_id is not None and not _same_id(call.params.get("chat_id"), self.chat_id):
            return False
        return not (self.predicate is not None and not self.predicate(call))


@dataclass
class RateViolation:
    kind: str  # "chat" or "global"
    token: str
    method: str
    chat_id: Any
    time: float
    count: int  # messages within the window, including this one
    limit: int
    enforced: bool  # True if the request was refused with 429


@dataclass
class WebhookDelivery:
    update: dict[str, Any]
    url: str
    secret_token: str | None
    status: int | None  # None if the connection failed
    error: str | None
    body: bytes
    time: float


@dataclass
class _BotState:
    token: str
    user: dict[str, Any]
    pending: list[dict[str, Any]] = field(default_factory=list)
    allowed_updates: list[str] = field(default_factory=list)
    poll_generation: int = 0
    webhook: dict[str, Any] | None = None
    webhook_last_error: tuple[int, str] | None = None
    commands: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)
    # (chat_id, message_id) -> stored message (bot's and users')
    messages: dict[tuple[int | str, int], dict[str, Any]] = field(default_factory=dict)
    next_message_id: dict[int | str, int] = field(default_factory=dict)
    callback_queries: dict[str, dict[str, Any]] = field(default_factory=dict)
    send_times: list[float] = field(default_factory=list)
    chat_send_times: dict[Any, list[float]] = field(default_factory=dict)


def _same_id(a: Any, b: Any) -> bool:
    return a is not None and b is not None and str(a) == str(b)


def _norm_chat_id(value: Any) -> int | str:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
        return value
    raise BadRequest("Bad Request: chat_id is empty" if value is None else "Bad Request: chat not found")


def _bot_id_from_token(token: str) -> int:
    head = token.split(":", 1)[0]
    return int(head) if head.isdigit() else 100_000_000 + zlib.crc32(token.encode()) % 900_000_000


# --------------------------------------------------------------------------------------------
# Formatting (parse_mode) validation, like Telegram's "can't parse entities"
# --------------------------------------------------------------------------------------------

_HTML_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
    "span", "tg-spoiler", "tg-emoji", "blockquote", "br",
}  # fmt: skip


class _TelegramHTML(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.stack: list[str] = []
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.error:
            return
        if tag not in _HTML_TAGS:
            self.error = f'Unsupported start tag "{tag}" at byte offset {self._offset()}'
            return
        if tag == "br":
            self.error = f'Unsupported start tag "{tag}" at byte offset {self._offset()}'
            return
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.error:
            return
        if not self.stack or self.stack[-1] != tag:
            self.error = f"Unexpected end tag at byte offset {self._offset()}"
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.out.append(data)

    def _offset(self) -> int:
        return len("".join(self.out).encode())


def _render_html(text: str) -> str:
    parser = _TelegramHTML()
    parser.feed(text)
    parser.close()
    if parser.error is None and parser.stack:
        parser.error = f'Can\'t find end tag corresponding to start tag "{parser.stack[-1]}"'
    if parser.error:
        raise BadRequest(f"Bad Request: can't parse entities: {parser.error}")
    return "".join(parser.out)


_MDV2_RESERVED = set("_*[]()~`>#+-=|{}.!")


def _render_markdown_v2(text: str) -> str:
    """Validates MarkdownV2 the way Telegram does (reserved characters, unclosed entities)."""
    out: list[str] = []
    open_marks: list[tuple[str, int]] = []
    i, n = 0, len(text)

    def offset() -> int:
        return len(text[:i].encode())

    def err(msg: str) -> BadRequest:
        return BadRequest(f"Bad Request: can't parse entities: {msg}")

    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 < n and ord(text[i + 1]) <= 126:
                out.append(text[i + 1])
                i += 2
                continue
            out.append(ch)
            i += 1
            continue
        if ch == "`":
            fence = "```" if text.startswith("```", i) else "`"
            start = i
            j = i + len(fence)
            buf: list[str] = []
            while j < n and not text.startswith(fence, j):
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= n:
                i = start
                raise err(f"Can't find end of Pre entity at byte offset {offset()}")
            body = "".join(buf)
            if fence == "```" and "\n" in body:
                first, rest = body.split("\n", 1)
                body = rest if re.fullmatch(r"[\w+-]*", first) else body
            out.append(body)
            i = j + len(fence)
            continue
        if ch == "[":
            open_marks.append(("[", i))
            i += 1
            continue
        if ch == "]":
            if not open_marks or open_marks[-1][0] != "[":
                raise err("Character ']' is reserved and must be escaped with the preceding '\\'")
            open_marks.pop()
            if text.startswith("(", i + 1):
                close = text.find(")", i + 2)
                if close == -1:
                    raise err(f"Can't find end of a URL at byte offset {offset()}")
                i = close + 1
            else:
                i += 1
            continue
        if ch in "*_~|":
            mark = ch
            if ch == "_" and text.startswith("__", i):
                mark = "__"
            elif ch == "|":
                if not text.startswith("||", i):
                    raise err("Character '|' is reserved and must be escaped with the preceding '\\'")
                mark = "||"
            if open_marks and open_marks[-1][0] == mark:
                open_marks.pop()
            else:
                open_marks.append((mark, i))
            i += len(mark)
            continue
        if ch == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1
            continue
        if ch in _MDV2_RESERVED:
            raise err(f"Character '{ch}' is reserved and must be escaped with the preceding '\\'")
        out.append(ch)
        i += 1
    if open_marks:
        mark, pos = open_marks[-1]
        raise err(f"Can't find end of the entity starting at byte offset {len(text[:pos].encode())}")
    return "".join(out)


def _render_markdown(text: str) -> str:
    """Legacy Markdown: *bold* _italic_ `code` [text](url); unclosed entities are errors."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "*_`":
            close = text.find(ch, i + 1)
            if close == -1:
                raise BadRequest(
                    "Bad Request: can't parse entities: Can't find end of the entity starting at "
                    f"byte offset {len(text[:i].encode())}"
                )
            out.append(text[i + 1 : close])
            i = close + 1
            continue
        if ch == "[":
            m = re.match(r"\[([^\]]*)\]\(([^)]*)\)", text[i:])
            if m:
                out.append(m.group(1))
                i += m.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def render_text(text: str, parse_mode: str | None) -> str:
    """The plain text Telegram would show for ``text`` in ``parse_mode`` (raises BadRequest)."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        return _render_html(text)
    if mode == "markdownv2":
        return _render_markdown_v2(text)
    if mode == "markdown":
        return _render_markdown(text)
    if mode:
        raise BadRequest(f"Bad Request: unsupported parse_mode {parse_mode}")
    return text


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

MethodHandler = Callable[[_BotState, dict[str, Any]], Awaitable[Any]]


class FakeTelegram:
    """A fake Bot API server.  See the module docstring."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "yibao_test_bot",
        bot_first_name: str = "Yibao Test Bot",
        tokens: Iterable[str] | None = None,
        per_chat_rate: int = 1,
        global_rate: int = 30,
        rate_window: float = 1.0,
        rate_tolerance: float = 0.05,
        enforce_rate_limits: bool = False,
        webhook_timeout: float = 10.0,
        webhook_retry_delays: Iterable[float] = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0),
    ):
        self.token = token
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        # If given, only these tokens are accepted (others get 401 Unauthorized).
        self.tokens: set[str] | None = set(tokens) | {token} if tokens is not None else None
        self.per_chat_rate = per_chat_rate
        self.global_rate = global_rate
        self.rate_window = rate_window
        self.rate_tolerance = rate_tolerance
        self.enforce_rate_limits = enforce_rate_limits
        self.webhook_timeout = webhook_timeout
        self.webhook_retry_delays = tuple(webhook_retry_delays)
        self._redelivering: dict[tuple[str, Any], asyncio.Task] = {}  # (token, chat) → its retries

        self.calls: list[Call] = []
        self.injected: list[dict[str, Any]] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.rate_violations: list[RateViolation] = []
        self.failure_rules: list[FailureRule] = []
        self.files: dict[str, bytes] = {}
        self.users: dict[int, dict[str, Any]] = {}
        # group chat id → user id → status (creator, administrator, member, left, kicked); unlisted
        # users of a group are members
        self.chat_members: dict[int, dict[int, str]] = {}

        self._bots: dict[str, _BotState] = {}
        self._update_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._cond = asyncio.Condition()
        self._closing = False
        self._chat_locks: dict[tuple[str, Any], asyncio.Lock] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port: int | None = None
        self._methods: dict[str, MethodHandler] = {}
        self._method_names: dict[str, str] = {}
        for name, handler in {
            "getMe": self._get_me,
            "logOut": self._true,
            "close": self._true,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action,
            "deleteMessage": self._delete_message,
            "getChatMember": self._get_chat_member,
        }.items():
            self.register_method(name, handler)

        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self.app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> FakeTelegram:
        if self._runner is not None:
            return self
        self._closing = False
        self._runner = web.AppRunner(self.app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        self._session = aiohttp.ClientSession(trust_env=False)
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        self._closing = True
        for task in self._redelivering.values():
            task.cancel()
        self._redelivering.clear()
        async with self._cond:
            self._cond.notify_all()  # release long polls
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """For ``Bot(base_url=...)`` / ``ApplicationBuilder().base_url(...)`` (has ``{token}``)."""
        return f"{self.url}/bot{{token}}"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot{{token}}"

    def register_method(self, name: str, handler: MethodHandler) -> None:
        """Adds or replaces a Bot API method: ``async handler(state, params) -> result``.

        Raise ``ApiError`` subclasses from the handler to answer with an error.
        """
        self._methods[name.lower()] = handler
        self._method_names[name.lower()] = name

    # ---------------------------------------------------------------- per-bot state

    def _bot(self, token: str | None = None) -> _BotState:
        token = token or self.token
        st = self._bots.get(token)
        if st is None:
            bot_id = _bot_id_from_token(token)
            is_default = token == self.token
            st = _BotState(
                token=token,
                user={
                    "id": bot_id,
                    "is_bot": True,
                    "first_name": self.bot_first_name if is_default else f"Fake Bot {bot_id}",
                    "username": self.bot_username if is_default else f"fake_{bot_id}_bot",
                    "can_join_groups": True,
                    "can_read_all_group_messages": False,
                    "supports_inline_queries": False,
                    "can_connect_to_business": False,
                    "has_main_web_app": False,
                },
            )
            self._bots[token] = st
        return st

    def bot_user(self, token: str | None = None) -> dict[str, Any]:
        return dict(self._bot(token).user)

    def webhook(self, token: str | None = None) -> dict[str, Any] | None:
        """``{"url", "secret_token", "allowed_updates", ...}`` as set, or None."""
        return self._bot(token).webhook

    def pending_updates(self, token: str | None = None) -> list[dict[str, Any]]:
        return list(self._bot(token).pending)

    def commands(
        self, token: str | None = None, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, str]] | None:
        return self._bot(token).commands.get(self._commands_key(scope, language_code))

    def messages(self, chat_id: int | str, token: str | None = None) -> list[dict[str, Any]]:
        """Current (edited, not deleted) messages of a chat, bot's and users', by message_id."""
        st = self._bot(token)
        return [m for (c, _), m in sorted(st.messages.items(), key=lambda kv: kv[0][1]) if _same_id(c, chat_id)]

    def bot_messages(self, chat_id: int | str, token: str | None = None) -> list[dict[str, Any]]:
        bot_id = self._bot(token).user["id"]
        return [m for m in self.messages(chat_id, token) if m.get("from", {}).get("id") == bot_id]

    def last_bot_message(self, chat_id: int | str, token: str | None = None) -> dict[str, Any]:
        msgs = self.bot_messages(chat_id, token)
        if not msgs:
            raise LookupError(f"the bot has no messages in chat {chat_id}")
        return msgs[-1]

    def message(self, chat_id: int | str, message_id: int, token: str | None = None) -> dict[str, Any]:
        msg = self._bot(token).messages.get((_norm_chat_id(chat_id), message_id))
        if msg is None:
            raise LookupError(f"no message {message_id} in chat {chat_id}")
        return msg

    # ---------------------------------------------------------------- recorded calls

    def calls_of(self, method: str, token: str | None = None, chat_id: Any = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method.lower() == method.lower()
            and (token is None or c.token == token)
            and (chat_id is None or _same_id(c.params.get("chat_id"), chat_id))
        ]

    def sent_texts(self, chat_id: int | str, token: str | None = None) -> list[str]:
        """``text`` parameters (as sent, markup included) of successful sendMessage calls."""
        return [c.params.get("text", "") for c in self.calls_of("sendMessage", token, chat_id) if c.ok]

    async def wait_for(
        self,
        what: str | Callable[[Call], bool],
        count: int = 1,
        timeout: float = 5.0,
        *,
        chat_id: Any = None,
        token: str | None = None,
        since: int = 0,
    ) -> list[Call]:
        """Waits until ``count`` answered calls (from index ``since`` of ``calls``) match.

        ``what`` is a method name (case-insensitive) or a predicate on ``Call``.
        Returns the matching calls; raises ``TimeoutError`` after ``timeout`` seconds.
        """

        def matches(c: Call) -> bool:
            if not c.done:
                return False
            if isinstance(what, str):
                if c.method.lower() != what.lower():
                    return False
            elif not what(c):
                return False
            if token is not None and c.token != token:
                return False
            return chat_id is None or _same_id(c.params.get("chat_id"), chat_id)

        async def wait() -> list[Call]:
            async with self._cond:
                while True:
                    found = [c for c in self.calls[since:] if matches(c)]
                    if len(found) >= count:
                        return found
                    await self._cond.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            recent = ", ".join(f"{c.method}->{c.status}" for c in self.calls[-10:])
            raise TimeoutError(
                f"timed out after {timeout}s waiting for {count} x {what!r}; last calls: [{recent}]"
            ) from None

    def mark(self) -> int:
        """An index into ``calls`` for ``wait_for(..., since=fake.mark())``."""
        return len(self.calls)

    def reset(self) -> None:
        """Forgets recorded calls, violations, deliveries and failure rules (not bot state)."""
        self.calls.clear()
        self.rate_violations.clear()
        self.webhook_deliveries.clear()
        self.failure_rules.clear()
        self.injected.clear()

    # ---------------------------------------------------------------- failure injection

    def fail_next(
        self,
        method: str | Iterable[str] | None,
        chat_id: int | str | None = None,
        error: ApiError | None = None,
        *,
        times: int | None = 1,
        predicate: Callable[[Call], bool] | None = None,
        token: str | None = None,
    ) -> FailureRule:
        """The next ``times`` matching calls (None: all) are answered with ``error``.

        ``error`` defaults to ``ServerError()`` (502).  Rules are tried in order.
        """
        methods = method if method is None or isinstance(method, str) else frozenset(method)
        rule = FailureRule(
            method=methods,
            error=error if error is not None else ServerError(),
            chat_id=chat_id,
            times=times,
            predicate=predicate,
            token=token,
        )
        self.failure_rules.append(rule)
        return rule

    def block(self, chat_id: int | str, token: str | None = None) -> FailureRule:
        """Every later call aimed at ``chat_id`` fails with 403 (the user blocked the bot)."""
        return self.fail_next(None, chat_id, Forbidden(), times=None, token=token)

    def clear_failures(self) -> None:
        self.failure_rules.clear()

    # ---------------------------------------------------------------- update injection

    def _next_message_id(self, st: _BotState, chat_id: int | str) -> int:
        mid = st.next_message_id.get(chat_id, 1)
        st.next_message_id[chat_id] = mid + 1
        return mid

    def _chat(self, chat_id: int | str) -> dict[str, Any]:
        if isinstance(chat_id, int) and chat_id > 0:
            user = self.users.get(chat_id, {})
            chat: dict[str, Any] = {"id": chat_id, "type": "private", "first_name": user.get("first_name", "User")}
            if user.get("username"):
                chat["username"] = user["username"]
            return chat
        if isinstance(chat_id, str):
            return {"id": -1001000000000 - zlib.crc32(chat_id.encode()), "type": "channel", "title": chat_id}
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": f"Chat {chat_id}"}

    def _user(
        self, user_id: int, first_name: str | None = None, username: str | None = None,
        language_code: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        user = self.users.setdefault(user_id, {"id": user_id, "is_bot": False, "first_name": "Ann"})
        if first_name is not None:
            user["first_name"] = first_name
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        return dict(user)

    async def send_text(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        first_name: str = "Ann",
        *,
        username: str | None = None,
        language_code: str | None = "zh-hans",
        token: str | None = None,
        reply_to: int | None = None,
        anonymous_admin: bool = False,
    ) -> int | None:
        """A user writes ``text``.  Commands (``/start``, ``/help@bot args``) get a bot_command
        entity.  ``reply_to``: the id of a message in the chat this one replies to.  ``anonymous_admin``:
        a group administrator writing as the group (``from`` is GroupAnonymousBot, ``sender_chat`` the
        group), as Telegram sends it.  Returns the webhook's HTTP status, or None in polling mode."""
        st = self._bot(token)
        user = self._user(user_id, first_name, username, language_code)
        cid = _norm_chat_id(chat_id)
        msg: dict[str, Any] = {
            "message_id": self._next_message_id(st, cid),
            "from": user,
            "chat": self._chat(cid),
            "date": int(time.time()),
            "text": text,
        }
        if anonymous_admin:
            msg["from"] = {"id": ANONYMOUS_ADMIN_ID, "is_bot": True, "first_name": "Group",
                           "username": "GroupAnonymousBot"}
            msg["sender_chat"] = self._chat(cid)
        if reply_to is not None:
            original = st.messages.get((cid, reply_to))
            if original is None:
                raise LookupError(f"no message {reply_to} in chat {chat_id}")
            msg["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
        m = re.match(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{3,32})?", text)
        if m:
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(m.group(0))}]
        st.messages[(cid, msg["message_id"])] = msg
        return await self.push_update({"message": msg}, token=token)

    async def press_button(
        self,
        chat_id: int,
        user_id: int,
        message_id: int | None,
        data: str,
        *,
        first_name: str | None = None,
        check: bool = True,
        token: str | None = None,
    ) -> int | None:
        """A user presses the inline button with callback ``data`` under the bot's message
        ``message_id`` (None: the bot's latest message with an inline keyboard).  With
        ``check`` the button must exist.  The callback query id is in ``last_update``."""
        st = self._bot(token)
        cid = _norm_chat_id(chat_id)
        if message_id is None:
            with_kb = [m for m in self.bot_messages(cid, token) if "reply_markup" in m]
            if not with_kb:
                raise LookupError(f"no bot message with an inline keyboard in chat {chat_id}")
            msg = with_kb[-1]
        else:
            msg = self.message(cid, message_id, token)
        if check:
            datas = [
                b.get("callback_data") for row in msg.get("reply_markup", {}).get("inline_keyboard", []) for b in row
            ]
            if data not in datas:
                raise LookupError(f"message {msg['message_id']} has no button {data!r}; it has {datas}")
        query_id = str(4_000_000_000_000_000 + next(self._callback_ids))
        query = {
            "id": query_id,
            "from": self._user(user_id, first_name),
            "message": json.loads(json.dumps(msg)),
            "chat_instance": str(zlib.crc32(f"{st.token}/{cid}".encode())),
            "data": data,
        }
        st.callback_queries[query_id] = {"query": query, "answered": False, "answer": None}
        return await self.push_update({"callback_query": query}, token=token)

    async def click(self, chat_id: int, user_id: int, button_text: str, *, token: str | None = None) -> int | None:
        """Presses the button labelled ``button_text`` on the bot's latest message having it."""
        for msg in reversed(self.bot_messages(chat_id, token)):
            for row in msg.get("reply_markup", {}).get("inline_keyboard", []):
                for b in row:
                    if b.get("text") == button_text and "callback_data" in b:
                        return await self.press_button(
                            chat_id, user_id, msg["message_id"], b["callback_data"], token=token
                        )
        raise LookupError(f"no button {button_text!r} in chat {chat_id}")

    @property
    def last_update(self) -> dict[str, Any]:
        return self.injected[-1]

    async def push_update(self, update: dict[str, Any], *, token: str | None = None) -> int | None:
        """Injects a raw update (``update_id`` is assigned if missing).

        Polling mode: queued for getUpdates, returns None.  Webhook mode: POSTed to the
        webhook (sequentially per chat), returns the HTTP status (None on connection error).
        """
        st = self._bot(token)
        update = dict(update)
        if "update_id" not in update:
            update["update_id"] = next(self._update_ids)
        else:
            nxt = next(self._update_ids)
            if update["update_id"] >= nxt:
                self._update_ids = itertools.count(update["update_id"] + 1)
        self.injected.append(update)
        if st.webhook is None:
            async with self._cond:
                st.pending.append(update)
                self._cond.notify_all()
            return None
        chat = (st.token, self.update_chat_id(update))
        lock = self._chat_locks.setdefault(chat, asyncio.Lock())
        async with lock:
            earlier = self._redelivering.get(chat)
            if earlier is not None:  # Telegram holds a chat's later updates behind one it retries
                await asyncio.wait([earlier])
            status = await self._deliver(st, update)
            if not self._acknowledged(status) and self.webhook_retry_delays and not self._closing:
                self._redelivering[chat] = asyncio.create_task(self._redeliver(st, chat, update))
            return status

    @staticmethod
    def _acknowledged(status: int | None) -> bool:
        return status is not None and 200 <= status <= 299

    async def _redeliver(self, st: _BotState, chat: tuple[str, Any], update: dict[str, Any]) -> None:
        """POST the update again after each retry delay until acknowledged (Telegram's behaviour)."""
        try:
            for delay in self.webhook_retry_delays:
                await asyncio.sleep(delay)
                if st.webhook is None:  # the webhook was deleted: getUpdates gets the update instead
                    async with self._cond:
                        st.pending.append(update)
                        st.pending.sort(key=lambda u: u["update_id"])
                        self._cond.notify_all()
                    return
                if self._acknowledged(await self._deliver(st, update)):
                    return
        finally:
            if self._redelivering.get(chat) is asyncio.current_task():
                del self._redelivering[chat]

    async def settle(self, timeout: float = 60.0) -> None:
        """Wait until every webhook update was acknowledged or given up (its retries are over)."""
        pending = [t for t in self._redelivering.values() if not t.done()]
        if pending:
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout)

    def deliveries_of(self, update_id: int) -> list[WebhookDelivery]:
        """Every webhook POST of one update (first delivery and redeliveries)."""
        return [d for d in self.webhook_deliveries if d.update.get("update_id") == update_id]

    @staticmethod
    def update_chat_id(update: dict[str, Any]) -> Any:
        for kind in _UPDATE_KINDS_WITH_CHAT:
            if kind in update:
                return update[kind].get("chat", {}).get("id")
        if "callback_query" in update:
            q = update["callback_query"]
            return q.get("message", {}).get("chat", {}).get("id", q.get("from", {}).get("id"))
        for value in update.values():
            if isinstance(value, dict) and "from" in value:
                return value["from"].get("id")
        return None

    def _allowed(self, allowed: list[str] | None, update: dict[str, Any]) -> bool:
        kinds = [k for k in update if k != "update_id"]
        if not kinds:
            return True
        if allowed:
            return kinds[0] in allowed
        return kinds[0] not in _OPT_IN_UPDATE_TYPES

    async def _deliver(self, st: _BotState, update: dict[str, Any]) -> int | None:
        hook = st.webhook
        assert hook is not None
        if not self._allowed(hook.get("allowed_updates"), update):
            return None
        if self._session is None:
            raise RuntimeError("FakeTelegram is not started")
        headers = {"Content-Type": "application/json"}
        if hook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
        status: int | None = None
        error: str | None = None
        body = b""
        try:
            async with self._session.post(
                hook["url"],
                data=json.dumps(update).encode(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
            ) as resp:
                status = resp.status
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = repr(exc)
        if status is None or not 200 <= status <= 299:
            st.webhook_last_error = (int(time.time()), error or f"Wrong response from the webhook: {status}")
        self.webhook_deliveries.append(
            WebhookDelivery(update, hook["url"], hook.get("secret_token"), status, error, body, time.monotonic())
        )
        async with self._cond:
            self._cond.notify_all()
        return status

    # ---------------------------------------------------------------- HTTP plumbing

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {k: self._decode_form_value(k, v) for k, v in request.query.items()}
        ctype = request.content_type
        if not request.can_read_body:
            return params
        if ctype == "application/json":
            raw = await request.read()
            if raw:
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise BadRequest("Bad Request: JSON object expected")
                params.update(body)
        elif ctype == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None:
                    data = await part.read(decode=False)
                    params[part.name] = UploadedFile(part.filename, part.headers.get("Content-Type"), bytes(data))
                else:
                    params[part.name] = self._decode_form_value(part.name, await part.text())
        else:
            form = await request.post()
            for key, value in form.items():
                params[key] = self._decode_form_value(key, value if isinstance(value, str) else str(value))
        return params

    @staticmethod
    def _decode_form_value(key: str, value: str) -> Any:
        """PTB sends non-string values JSON-encoded (numbers, bools, reply_markup, lists)."""
        if key in _STRING_FIELDS:
            return value
        try:
            return json.loads(value)
        except ValueError:
            return value

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        data = self.files.get(request.match_info["path"])
        if data is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.Response(body=data)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        raw_method = request.match_info["method"]
        method = self._method_names.get(raw_method.lower(), raw_method)
        call = Call(method=method, params={}, token=token, time=time.monotonic())
        try:
            call.params = await self._read_params(request)
        except (ValueError, ApiError) as exc:
            call.params = {}
            err = exc if isinstance(exc, ApiError) else BadRequest(f"Bad Request: can't parse request: {exc}")
            self.calls.append(call)
            return await self._finish(call, err.status, err.payload())
        self.calls.append(call)
        async with self._cond:
            self._cond.notify_all()
        status, body = await self._dispatch(call)
        return await self._finish(call, status, body)

    async def _finish(self, call: Call, status: int, body: dict[str, Any]) -> web.StreamResponse:
        call.status = status
        call.response = body
        async with self._cond:
            self._cond.notify_all()
        return web.json_response(body, status=status)

    async def _dispatch(self, call: Call) -> tuple[int, dict[str, Any]]:
        if not call.token or (self.tokens is not None and call.token not in self.tokens):
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        handler = self._methods.get(call.method.lower())
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        for rule in self.failure_rules:
            if rule.matches(call):
                rule.hits += 1
                return rule.error.status, rule.error.payload()
        st = self._bot(call.token)
        limited = call.method in RATE_LIMITED_METHODS
        try:
            violations = self._rate_check(st, call) if limited else []
            if violations and self.enforce_rate_limits:
                for v in violations:
                    v.enforced = True
                self.rate_violations.extend(violations)
                raise RetryAfter(self._retry_after(st, call))
            result = await handler(st, call.params)
        except ApiError as exc:
            return exc.status, exc.payload()
        except Exception as exc:  # a bug in the fake or an unexpected input: make it visible
            return 500, {"ok": False, "error_code": 500, "description": f"Internal Server Error: {exc!r}"}
        if limited:
            now = call.time
            st.send_times.append(now)
            st.chat_send_times.setdefault(str(call.params.get("chat_id")), []).append(now)
            self.rate_violations.extend(violations)
        return 200, {"ok": True, "result": result}

    # ---------------------------------------------------------------- rate limits

    def _window_count(self, times: list[float], now: float) -> int:
        horizon = self.rate_window - self.rate_tolerance
        return sum(1 for t in times if now - t < horizon)

    def _rate_check(self, st: _BotState, call: Call) -> list[RateViolation]:
        now = call.time
        chat_key = str(call.params.get("chat_id"))
        out = []
        n_chat = self._window_count(st.chat_send_times.get(chat_key, []), now) + 1
        if n_chat > self.per_chat_rate:
            out.append(
                RateViolation("chat", st.token, call.method, call.params.get("chat_id"), now,
                              n_chat, self.per_chat_rate, False)
            )  # fmt: skip
        n_all = self._window_count(st.send_times, now) + 1
        if n_all > self.global_rate:
            out.append(
                RateViolation("global", st.token, call.method, call.params.get("chat_id"), now,
                              n_all, self.global_rate, False)
            )  # fmt: skip
        return out

    def _retry_after(self, st: _BotState, call: Call) -> int:
        times = st.chat_send_times.get(str(call.params.get("chat_id")), []) + st.send_times
        recent = [t for t in times if call.time - t < self.rate_window]
        wait = (min(recent) + self.rate_window - call.time) if recent else self.rate_window
        return max(1, math.ceil(wait))

    # ---------------------------------------------------------------- methods

    async def _true(self, st: _BotState, params: dict[str, Any]) -> bool:
        return True

    async def _get_me(self, st: _BotState, params: dict[str, Any]) -> dict[str, Any]:
        return dict(st.user)

    async def _get_updates(self, st: _BotState, params: dict[str, Any]) -> list[dict[str, Any]]:
        if st.webhook is not None:
            raise Conflict(
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first"
            )
        offset = params.get("offset")
        limit = int(params.get("limit") or 100)
        if not 1 <= limit <= 100:
            limit = 100
        timeout = max(0.0, float(params.get("timeout") or 0))
        if params.get("allowed_updates") is not None:
            st.allowed_updates = list(params["allowed_updates"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._cond:
            if offset is not None:
                offset = int(offset)
                if offset > 0:
                    st.pending = [u for u in st.pending if u["update_id"] >= offset]
                elif offset < 0:
                    st.pending = st.pending[offset:]
            st.poll_generation += 1
            generation = st.poll_generation
            self._cond.notify_all()  # an older long poll of this bot ends with 409 Conflict
            while True:
                st.pending = [u for u in st.pending if self._allowed(st.allowed_updates, u)]
                if st.pending or self._closing:
                    return st.pending[:limit]
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._cond.wait(), remaining)
                if st.poll_generation != generation:
                    raise Conflict(
                        "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running"
                    )
                if st.webhook is not None:
                    return []

    async def _set_webhook(self, st: _BotState, params: dict[str, Any]) -> bool:
        url = params.get("url") or ""
        if not url:
            return await self._delete_webhook(st, params)
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise BadRequest("Bad Request: secret token contains unallowed characters")
        if not re.match(r"https?://", url):
            raise BadRequest("Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        async with self._cond:
            if params.get("drop_pending_updates"):
                st.pending.clear()
            st.webhook = {
                "url": url,
                "secret_token": secret,
                "allowed_updates": params.get("allowed_updates"),
                "max_connections": params.get("max_connections", 40),
                "ip_address": params.get("ip_address"),
            }
            st.webhook_last_error = None
            self._cond.notify_all()  # long polls see the webhook and return
        return True

    async def _delete_webhook(self, st: _BotState, params: dict[str, Any]) -> bool:
        async with self._cond:
            st.webhook = None
            if params.get("drop_pending_updates"):
                st.pending.clear()
        return True

    async def _get_webhook_info(self, st: _BotState, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(st.pending),
        }
        if st.webhook is not None:
            info["url"] = st.webhook["url"]
            info["max_connections"] = st.webhook["max_connections"]
            if st.webhook.get("allowed_updates"):
                info["allowed_updates"] = st.webhook["allowed_updates"]
            if st.webhook.get("ip_address"):
                info["ip_address"] = st.webhook["ip_address"]
            if st.webhook_last_error:
                info["last_error_date"], info["last_error_message"] = st.webhook_last_error
        return info

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
        scope = scope or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(language_code or "")

    async def _set_my_commands(self, st: _BotState, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise BadRequest('Bad Request: parameter "commands" is required')
        if len(commands) > 100:
            raise BadRequest("Bad Request: BOT_COMMANDS_TOO_MUCH")
        clean = []
        for cmd in commands:
            name = str(cmd.get("command", "")) if isinstance(cmd, dict) else ""
            desc = str(cmd.get("description", "")) if isinstance(cmd, dict) else ""
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise BadRequest("Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(desc) <= 256:
                raise BadRequest("Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")  # sic, like Telegram
            clean.append({"command": name, "description": desc})
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        if clean:
            st.commands[key] = clean
        else:
            st.commands.pop(key, None)
        return True

    async def _get_my_commands(self, st: _BotState, params: dict[str, Any]) -> list[dict[str, str]]:
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        return list(st.commands.get(key, []))

    async def _delete_my_commands(self, st: _BotState, params: dict[str, Any]) -> bool:
        st.commands.pop(self._commands_key(params.get("scope"), params.get("language_code")), None)
        return True

    @staticmethod
    def _inline_keyboard(markup: Any) -> dict[str, Any] | None:
        """Validates reply_markup; returns the inline keyboard to store in the message."""
        if markup is None:
            return None
        if isinstance(markup, str):
            try:
                markup = json.loads(markup)
            except ValueError:
                raise BadRequest("Bad Request: can't parse reply keyboard markup JSON object") from None
        if not isinstance(markup, dict):
            raise BadRequest("Bad Request: can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
                raise BadRequest("Bad Request: can't parse reply keyboard markup JSON object")
            return None
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise BadRequest('Bad Request: field "inline_keyboard" must be an Array of Array')
        kinds = ("callback_data", "url", "web_app", "login_url", "switch_inline_query",
                 "switch_inline_query_current_chat", "switch_inline_query_chosen_chat",
                 "copy_text", "callback_game", "pay")  # fmt: skip
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise BadRequest("Bad Request: can't parse inline keyboard button: Text buttons are "
                                     "unallowed in the inline keyboard")  # fmt: skip
                if sum(k in button for k in kinds) != 1:
                    raise BadRequest("Bad Request: can't parse inline keyboard button: Text buttons are "
                                     "unallowed in the inline keyboard")  # fmt: skip
                if "callback_data" in button:
                    size = len(str(button["callback_data"]).encode())
                    if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
                        raise BadRequest("Bad Request: BUTTON_DATA_INVALID")
        rows = [r for r in rows if r]
        return {"inline_keyboard": rows} if rows else None

    @staticmethod
    def _message_text(params: dict[str, Any]) -> str:
        text = params.get("text")
        if text is None or not str(text).strip():
            raise BadRequest("Bad Request: message text is empty")
        rendered = render_text(str(text), params.get("parse_mode"))
        if not rendered.strip():
            raise BadRequest("Bad Request: text must be non-empty")
        if len(rendered.encode("utf-16-le")) // 2 > MAX_MESSAGE_LENGTH:
            raise BadRequest("Bad Request: message is too long")
        return rendered

    async def _send_message(self, st: _BotState, params: dict[str, Any]) -> dict[str, Any]:
        cid = _norm_chat_id(params.get("chat_id"))
        text = self._message_text(params)
        keyboard = self._inline_keyboard(params.get("reply_markup"))
        chat = self._chat(cid)
        msg: dict[str, Any] = {
            "message_id": self._next_message_id(st, cid),
            "from": dict(st.user),
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }
        reply_to = params.get("reply_to_message_id")
        quietly = bool(params.get("allow_sending_without_reply"))
        if reply_to is None and isinstance(params.get("reply_parameters"), dict):
            reply_to = params["reply_parameters"].get("message_id")
            quietly = bool(params["reply_parameters"].get("allow_sending_without_reply"))
        if reply_to is not None:
            original = st.messages.get((cid, int(reply_to)))
            if original is None and not quietly:
                raise BadRequest("Bad Request: message to be replied not found")
            if original is not None:
                msg["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
        if keyboard:
            msg["reply_markup"] = keyboard
        st.messages[(cid, msg["message_id"])] = msg
        return msg

    def _bot_message_for_edit(self, st: _BotState, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("inline_message_id"):
            return None
        if params.get("chat_id") is None or params.get("message_id") is None:
            raise BadRequest("Bad Request: message identifier is not specified")
        cid = _norm_chat_id(params["chat_id"])
        msg = st.messages.get((cid, int(params["message_id"])))
        if msg is None:
            raise BadRequest("Bad Request: message to edit not found")
        if msg.get("from", {}).get("id") != st.user["id"]:
            raise BadRequest("Bad Request: message can't be edited")
        return msg

    async def _edit_message_text(self, st: _BotState, params: dict[str, Any]) -> Any:
        text = self._message_text(params)
        keyboard = self._inline_keyboard(params.get("reply_markup"))
        msg = self._bot_message_for_edit(st, params)
        if msg is None:
            return True
        if msg.get("text") == text and msg.get("reply_markup") == keyboard:
            raise BadRequest(
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message"
            )
        msg["text"] = text
        if keyboard:
            msg["reply_markup"] = keyboard
        else:
            msg.pop("reply_markup", None)
        msg["edit_date"] = int(time.time())
        return msg

    async def _edit_message_reply_markup(self, st: _BotState, params: dict[str, Any]) -> Any:
        keyboard = self._inline_keyboard(params.get("reply_markup"))
        msg = self._bot_message_for_edit(st, params)
        if msg is None:
            return True
        if msg.get("reply_markup") == keyboard:
            raise BadRequest(
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message"
            )
        if keyboard:
            msg["reply_markup"] = keyboard
        else:
            msg.pop("reply_markup", None)
        msg["edit_date"] = int(time.time())
        return msg

    def callback_answer(self, query_id: str, token: str | None = None) -> dict[str, Any] | None:
        """The answerCallbackQuery params for ``query_id`` (None if not answered yet)."""
        return self._bot(token).callback_queries[str(query_id)]["answer"]

    async def _answer_callback_query(self, st: _BotState, params: dict[str, Any]) -> bool:
        entry = st.callback_queries.get(str(params.get("callback_query_id")))
        if entry is None or entry["answered"]:
            raise BadRequest("Bad Request: query is too old and response timeout expired or query ID is invalid")
        if len(str(params.get("text") or "")) > MAX_CALLBACK_ANSWER_LENGTH:
            raise BadRequest("Bad Request: MESSAGE_TOO_LONG")
        entry["answered"] = True
        entry["answer"] = dict(params)
        return True

    async def _get_chat_member(self, st: _BotState, params: dict[str, Any]) -> dict[str, Any]:
        """A member's status in a group, shaped as Telegram sends each ChatMember kind."""
        chat_id, user_id = _norm_chat_id(params.get("chat_id")), params.get("user_id")
        if not isinstance(chat_id, int) or (chat_id > 0 and chat_id != user_id):
            raise BadRequest("Bad Request: chat not found")
        if not isinstance(user_id, int):
            raise BadRequest("Bad Request: invalid user_id specified")
        user = self.users.get(user_id, {"id": user_id, "is_bot": False, "first_name": "User"})
        status = "creator" if chat_id == user_id else self.chat_members.get(chat_id, {}).get(user_id, "member")
        member: dict[str, Any] = {"status": status, "user": dict(user)}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(can_be_edited=False, is_anonymous=False, can_manage_chat=True, can_delete_messages=True,
                          can_manage_video_chats=True, can_restrict_members=True, can_promote_members=False,
                          can_change_info=True, can_invite_users=True, can_post_stories=False,
                          can_edit_stories=False, can_delete_stories=False)
        elif status == "kicked":
            member["until_date"] = 0
        return member

    async def _send_chat_action(self, st: _BotState, params: dict[str, Any]) -> bool:
        _norm_chat_id(params.get("chat_id"))
        actions = {
            "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
            "upload_document", "choose_sticker", "find_location", "record_video_note",
            "upload_video_note",
        }  # fmt: skip
        if params.get("action") not in actions:
            raise BadRequest("Bad Request: wrong parameter action in request")
        return True

    async def _delete_message(self, st: _BotState, params: dict[str, Any]) -> bool:
        cid = _norm_chat_id(params.get("chat_id"))
        key = (cid, int(params.get("message_id") or 0))
        if key not in st.messages:
            raise BadRequest("Bad Request: message to delete not found")
        del st.messages[key]
        return True
