"""The browser chat: a page at `/chat` (plain HTML, CSS and one small script from `bot/channels/static/`) and
the JSON API it talks to at `POST /api/chat`.

`add_web_chat(app)` adds both to the one aiohttp application (the caller decides whether WEB_CHAT is
on); `run_web(settings)` is `yibao web`: that application with only the chat, no Telegram token.

A browser is one conversation: a random session id in an HttpOnly, SameSite=Strict cookie, the
dialogue state in Redis under platform ``web`` with chat = user = the session id, like every other
platform. The API speaks JSON both ways::

    POST /api/chat  {"text": "30000"} | {"choice": "7|shanghai"} | {"command": "language", "argument": "en"}
    → 200 {"replies": [{"title": str|null, "text": str, "buttons": [[{"id", "label"}]],
                         "details": str, "details_label": str (an estimate's steps and sources: folded)}],
           "lang": "zh"|"en", "answered": str|null, "forgot": bool, "kind": "turn"|"estimate"}

`{"command": "resume"}` (sent by the page on load) shows the question the conversation is at without
changing it, or starts a new estimate when there is none; its optional argument is the language for
a new conversation. Failures answer with a status and `{"error": reason}` (400, 403, 413, 415), with
`replies` too where the person should read something (429 throttled, 500 apology).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import signal
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from redis.exceptions import RedisError

from bot import logs
from bot.http_app import METRICS, RUNTIME, build_app, probe_app
from bot.http_input import BadInput, read_json
from bot.lifecycle import run_site, stop_event_on_signals
from bot.metrics import Metrics
from bot.runtime import Runtime, open_runtime, reload_policies
from bot.throttle import Throttle, Verdict
from conversations.dialogue import COMMANDS, MAX_TEXT
from conversations.replies import Incoming, Reply
from conversations.store import Loaded, SessionKey
from conversations.texts import DEFAULT_LANGUAGE, LANGUAGES, speaking_on, t

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
PLATFORM = "web"
RESUME = "resume"  # the web's own command: the current message again (see `_resume`)
COOKIE = "yibao_session"
COOKIE_PATH = "/api/chat"
LANG_COOKIE = "yibao_lang"  # the opening language of a conversation nothing of which is stored yet
MAX_BODY = 4096
MAX_CHOICE = 200
MAX_COMMAND = 32
IP_FACTOR = 4  # an address may be shared (NAT, an office): it gets this many times one session's allowance
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
# Pictographs (✅ 🆕 ✏️ 🔔 ⬅ ⚠️) draw as empty boxes on a system without an emoji font, and the page
# ships none: the web shows the words alone. Text symbols the fonts have (• █ ░ · ⋮) are kept.
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0E\uFE0F\u200D]+ ?")

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'self'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "SAMEORIGIN",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

WEB_THROTTLES = web.AppKey("web_throttles", Throttle)  # the per-address limit (the session's is the store's)


class BadRequest(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


# -- the page --------------------------------------------------------------------------------------


async def chat_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "chat.html",
                            headers={"Cache-Control": "no-cache", "Content-Type": "text/html; charset=utf-8"})


async def chat_redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/chat")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/chat" or request.path.startswith(("/chat/", "/api/chat")):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/chat/static/"):
            response.headers.setdefault("Cache-Control", "no-cache")


# -- the API ---------------------------------------------------------------------------------------


def _trust_proxy(request: web.Request) -> bool:
    """Forwarded headers are believed only with TRUST_PROXY (otherwise anybody can write them)."""
    return request.app[RUNTIME].settings.trust_proxy


def _is_https(request: web.Request) -> bool:
    if request.secure:
        return True
    if not _trust_proxy(request):
        return False
    return request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https"


def _check_same_origin(request: web.Request) -> None:
    """Browsers say where a request comes from; anything but this very site is refused."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise BadRequest(403, "cross-site request")
    origin = request.headers.get("Origin")
    if origin is not None:
        hosts = {request.host.lower()}
        forwarded_host = request.headers.get("X-Forwarded-Host") if _trust_proxy(request) else None
        if forwarded_host:
            hosts.add(forwarded_host.split(",")[0].strip().lower())
        parsed = urlsplit(origin)
        scheme = "https" if _is_https(request) else "http"
        if origin == "null" or parsed.scheme != scheme or parsed.netloc.lower() not in hosts:
            raise BadRequest(403, "cross-site request")


async def _read_incoming(request: web.Request) -> Incoming:
    """The body as an `Incoming` (command "resume" included); a `BadRequest` says what is wrong with it."""
    try:
        data = await read_json(request, max_bytes=MAX_BODY, content_type="application/json")
    except BadInput as bad:
        raise BadRequest(bad.status, bad.reason) from None
    if not isinstance(data, dict):
        raise BadRequest(400, "body must be a JSON object")
    unknown = set(data) - {"text", "choice", "command", "argument"}
    if unknown:
        raise BadRequest(400, f"unknown field: {sorted(unknown)[0][:32]}")
    given = [name for name in ("text", "choice", "command") if name in data]
    if len(given) != 1:
        raise BadRequest(400, "give exactly one of text, choice, command")
    name = given[0]
    value = data[name]
    if not isinstance(value, str):
        raise BadRequest(400, f"{name} must be a string")
    if "argument" in data and (name != "command" or not isinstance(data["argument"], str)):
        raise BadRequest(400, "argument must be a string, and only with a command")
    argument = data.get("argument", "")
    if name == "text":
        if len(value) > MAX_TEXT:
            raise BadRequest(400, f"text longer than {MAX_TEXT} characters")
        return Incoming(text=value)
    if name == "choice":
        if not value or len(value) > MAX_CHOICE:
            raise BadRequest(400, f"choice must be 1 to {MAX_CHOICE} characters")
        return Incoming(choice=value)
    if len(argument) > MAX_TEXT:
        raise BadRequest(400, f"argument longer than {MAX_TEXT} characters")
    command = value.strip().lower()
    if command != RESUME and command not in COMMANDS:
        raise BadRequest(400, "unknown command")
    return Incoming(command=command, argument=argument)


def _session_id(request: web.Request) -> tuple[str, bool]:
    """The browser's session id, and whether it is new."""
    sid = request.cookies.get(COOKIE, "")
    if _SESSION_ID.match(sid):
        return sid, False
    return secrets.token_urlsafe(32), True


def _plain(text: str) -> str:
    """`text` without pictographs (see `_EMOJI`)."""
    return _EMOJI.sub("", text).strip() if _EMOJI.search(text) else text


def _lines(text: str) -> str:
    return "\n".join(_plain(line) for line in text.split("\n"))


def _reply_json(reply: Reply) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": reply.title and _plain(reply.title),
        "text": _lines(reply.text),
        "buttons": [[{"id": b.id, "label": _plain(b.label)} for b in row] for row in reply.buttons],
    }
    if reply.details:  # the page folds it into a <details> element, labelled like the unfold button
        data["details"] = _lines(reply.details)
        data["details_label"] = _plain(reply.unfold.label) if reply.unfold else ""
    return data


def _preferred_language(request: web.Request) -> str:
    for part in request.headers.get("Accept-Language", "").split(","):
        lang = part.split(";")[0].strip().lower()[:2]
        if lang in LANGUAGES:
            return lang
    return DEFAULT_LANGUAGE


def _language_of(loaded: Loaded | None, request: web.Request) -> str:
    """The conversation's language for a message of our own (throttled, busy, apology)."""
    stored = loaded.session if loaded is not None else None
    lang = stored.get("l") if isinstance(stored, dict) else request.cookies.get(LANG_COOKIE)
    return lang if lang in LANGUAGES else _preferred_language(request)


def _opening_language(request: web.Request, incoming: Incoming) -> str:
    """The language a conversation not stored yet opens in: the page's choice (resume's argument, kept
    in a cookie until something is stored), else the browser's."""
    if incoming.command == RESUME and incoming.argument.strip().lower() in LANGUAGES:
        return incoming.argument.strip().lower()
    kept = request.cookies.get(LANG_COOKIE, "")
    return kept if kept in LANGUAGES else _preferred_language(request)


async def _begin(request: web.Request, key: SessionKey, sid: str) -> tuple[Loaded, bool]:
    """The session, with the session's flood limit charged (one script), and the address's flood limit
    (another hash tag, so another call), sent together: one round trip of waiting. True: over a limit."""
    runtime: Runtime = request.app[RUNTIME]
    flood = (runtime.settings.throttle_rate, runtime.settings.throttle_burst)
    loaded, by_address = await asyncio.gather(
        runtime.store.begin(key, runtime.dialogue.guard(flood=flood)),
        request.app[WEB_THROTTLES].check("web-ip", _client_address(request)))
    return loaded, loaded.verdict != Verdict.ALLOW.value or by_address is not Verdict.ALLOW


def _client_address(request: web.Request) -> str:
    """The connecting address, or with TRUST_PROXY the one our proxy saw (the last X-Forwarded-For hop:
    earlier hops are whatever the client wrote)."""
    if _trust_proxy(request):
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        if hops:
            return hops[-1]
    return request.remote or "unknown"


def _set_cookie(request: web.Request, response: web.StreamResponse, sid: str, max_age: int) -> None:
    response.set_cookie(COOKIE, sid, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="Strict",
                        secure=_is_https(request))


def _forget_cookie(request: web.Request, response: web.StreamResponse) -> None:
    for name in (COOKIE, LANG_COOKIE):
        response.set_cookie(name, "", max_age=0, expires="Thu, 01 Jan 1970 00:00:00 GMT", path=COOKIE_PATH,
                            httponly=True, samesite="Strict", secure=_is_https(request))


def _t(lang: str, key: str) -> str:
    """A text of our own (not the dialogue's) in the web's words."""
    with speaking_on(PLATFORM):
        return t(lang, key)


def _json(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store", **(headers or {})},
                             dumps=lambda obj: json.dumps(obj, ensure_ascii=False))


async def chat_api(request: web.Request) -> web.StreamResponse:
    runtime: Runtime = request.app[RUNTIME]
    metrics: Metrics = request.app[METRICS]
    started = time.perf_counter()
    try:
        _check_same_origin(request)
        incoming = await _read_incoming(request)
    except BadRequest as bad:
        return _json({"error": bad.reason}, status=bad.status)
    sid, new = _session_id(request)
    key = SessionKey(PLATFORM, sid, sid)
    metrics.inc("yibao_updates_total")
    loaded: Loaded | None = None
    try:
        loaded, throttled = await _begin(request, key, sid)
        if throttled:
            metrics.inc("yibao_throttled_total")
            lang = _language_of(loaded, request)
            response = _json({"error": "too many requests", "lang": lang,
                              "replies": [_reply_json(Reply(_t(lang, "errors.throttled")))]}, status=429)
            response.headers["Retry-After"] = str(max(1, round(1 / runtime.settings.throttle_rate)))
            return response
        turn = await runtime.dialogue.handle(key, incoming, loaded=loaded,
                                             opening_lang=_opening_language(request, incoming))
    except (RedisError, OSError) as exc:  # Redis does not answer: nothing was applied; say so at once
        metrics.inc("yibao_unavailable_total")
        log.warning("web turn not handled, Redis unavailable: %s", type(exc).__name__,
                    extra={"platform": PLATFORM, "chat": logs.hash_id(sid), "event": "unavailable"})
        lang = _language_of(loaded, request)
        return _json({"error": "busy", "lang": lang, "replies": [_reply_json(Reply(_t(lang, "errors.busy")))]},
                     status=503, headers={"Retry-After": "5"})
    except Exception as exc:  # the person gets an apology, the log the failure
        metrics.inc("yibao_errors_total")
        frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
        log.error("web turn failed: %s (no message logged)\n%s", type(exc).__name__, frames.rstrip(),
                  extra={"platform": PLATFORM, "chat": logs.hash_id(sid), "event": "error"})
        lang = _language_of(loaded, request)
        return _json({"error": "internal error", "lang": lang,
                      "replies": [_reply_json(Reply(_t(lang, "errors.apology")))]}, status=500)
    finally:
        metrics.observe(time.perf_counter() - started)
    if turn.kind == "estimate":
        metrics.inc("yibao_estimates_total")
    response = _json({
        "replies": [_reply_json(r) for r in turn.replies],
        "lang": turn.lang,
        "answered": turn.answered,
        "forgot": turn.forgot,
        "kind": turn.kind,
    })
    if turn.forgot:  # the store deleted the session and its flood bucket with it
        _forget_cookie(request, response)
        log.info("web session forgotten", extra={"platform": PLATFORM, "chat": logs.hash_id(sid), "event": "forget"})
    else:
        # a person who keeps a year is recognised as long as it may be kept (a year plus YEAR_KEEP_DAYS)
        keep = (366 + runtime.settings.year_keep_days) * 86400 if turn.remembered else 0
        _set_cookie(request, response, sid, max(runtime.settings.session_ttl, keep))
        response.set_cookie(LANG_COOKIE, turn.lang, max_age=runtime.settings.session_ttl, path=COOKIE_PATH,
                            httponly=True, samesite="Strict", secure=_is_https(request))
        if new:
            log.info("web session opened",
                     extra={"platform": PLATFORM, "chat": logs.hash_id(sid), "event": "session"})
    return response


async def method_not_allowed(request: web.Request) -> web.StreamResponse:
    return _json({"error": "use POST"}, status=405)


# -- wiring ----------------------------------------------------------------------------------------


def add_web_chat(app: web.Application) -> None:
    """Serve the chat page at /chat and its API at /api/chat (uses app[RUNTIME] and app[METRICS])."""
    app.router.add_get("/chat", chat_page)
    app.router.add_get("/chat/", chat_redirect)
    app.router.add_static("/chat/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
    app.router.add_post("/api/chat", chat_api)
    app.router.add_get("/api/chat", method_not_allowed)
    app.on_response_prepare.append(_security_headers)
    runtime = app[RUNTIME]
    rate, burst = runtime.settings.throttle_rate, runtime.settings.throttle_burst
    app[WEB_THROTTLES] = Throttle(runtime.redis, rate * IP_FACTOR, burst * IP_FACTOR)


def build_web_app(runtime: Runtime, metrics: Metrics) -> web.Application:
    """The application of `yibao web`: health, readiness, metrics and the chat, with / leading to it."""
    app = build_app(runtime, metrics)
    add_web_chat(app)
    app.router.add_get("/", chat_redirect)
    return app


async def run_web(settings) -> int:
    """`yibao web`: serve only the chat page on HOST:PORT until SIGTERM or SIGINT."""
    logs.setup(settings.log_format, settings.log_level)
    logs.set_salt(settings.salt())
    async with open_runtime(settings) as runtime:
        metrics = Metrics()
        app = build_web_app(runtime, metrics)
        probes = probe_app(runtime, metrics)
        stop = stop_event_on_signals({signal.SIGHUP: lambda: reload_policies(runtime)})
        shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        shown = f"[{shown}]" if ":" in shown else shown
        print(f"yibao web chat: open http://{shown}:{settings.port}/chat  (Ctrl-C to stop)", flush=True)
        await run_site(app, settings.host, settings.port, stop,
                       probes=None if probes is None else (probes, settings.metrics_host, settings.metrics_port))
    return 0
