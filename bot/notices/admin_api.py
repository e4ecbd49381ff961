"""The HTTP admin API for broadcasts, on the bot's aiohttp application.

Authorised by `Authorization: Bearer $ADMIN_TOKEN` (compared in constant time; missing or wrong → 401).
With no ADMIN_TOKEN the routes are not added at all.

    POST /admin/broadcasts              {"text": str, "regions": [str] | null, "lang": "zh" | "en" | null}
                                        → 202 {"id": ...}; a bad body → 400 {"error": reason}.
                                        `regions` is required: `null` spelled out sends to every
                                        subscriber, so that nobody does so by leaving it out.
    GET  /admin/broadcasts              → the 20 most recent, newest first
    GET  /admin/broadcasts/{id}         → {"state", "total", "sent", "blocked", "failed", "pending", ...}
    POST /admin/broadcasts/{id}/cancel  → {"state": "cancelled"}; 409 if it had already finished

Every error under /admin/ is JSON `{"error": reason}` with its status: 400, 401, 404, 405, 409, 413 (a
body over 1 MiB), 503 when Redis does not answer, 500 for anything else (logged, never shown).
"""

from __future__ import annotations

import logging
import re
import secrets

from aiohttp import web
from redis.exceptions import RedisError

from bot.http_input import BadInput, read_json
from bot.notices.service import BadBroadcast, NoticeService

NOTICES = web.AppKey("notices", NoticeService)
TOKEN = web.AppKey("admin_token", str)
BODY_FIELDS = {"text", "regions", "lang"}
REQUIRED_FIELDS = ("text", "regions")
MAX_BODY = 1024 * 1024
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

log = logging.getLogger(__name__)


def _authorised(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode("utf-8", "surrogatepass"),
                                                                  request.app[TOKEN].encode())


def _job_id(request: web.Request) -> str | None:
    """The {id} of the path if it can be a broadcast's id at all (anything else: no such broadcast)."""
    job = request.match_info["id"]
    return job if JOB_ID.fullmatch(job) else None


@web.middleware
async def _json_errors(request: web.Request, handler):
    """aiohttp's own errors (404, 405, 413 …) are plain text; the API answers every error in JSON."""
    if not request.path.startswith("/admin/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as http:
        if http.status < 400:
            raise
        reason = "body larger than 1 MiB" if http.status == 413 else http.reason.lower()
        headers = {k: v for k, v in http.headers.items() if k.lower() in ("allow", "www-authenticate")}
        return web.json_response({"error": reason}, status=http.status, headers=headers)
    except RedisError:
        log.warning("admin API: Redis unavailable", extra={"event": "broadcast"})
        return web.json_response({"error": "storage unavailable, try again shortly"}, status=503,
                                 headers={"Retry-After": "5"})
    except Exception:
        log.exception("admin API error", extra={"event": "error"})
        return web.json_response({"error": "internal error"}, status=500)


@web.middleware
async def _admin_auth(request: web.Request, handler):
    if request.path.startswith("/admin/") and not _authorised(request):
        return web.json_response({"error": "unauthorised"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="yibao-admin"'})
    return await handler(request)


def _bad(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=400)


async def create(request: web.Request) -> web.Response:
    try:  # size, nesting, UTF-8 and lone surrogates checked before anything reads it
        body = await read_json(request, max_bytes=MAX_BODY)
    except BadInput as bad:
        reasons = {400: f"the body must be JSON ({bad.reason})", 413: "body larger than 1 MiB"}
        reason = reasons.get(bad.status, bad.reason)
        return web.json_response({"error": reason}, status=bad.status)
    if not isinstance(body, dict):
        return _bad("the body must be a JSON object")
    unknown = set(body) - BODY_FIELDS
    if unknown:
        return _bad(f"unknown fields: {', '.join(sorted(unknown))}")
    missing = [f for f in REQUIRED_FIELDS if f not in body]
    if missing:
        return _bad(f"missing fields: {', '.join(missing)} ('regions': a list of region ids or names, "
                    "or null for every subscriber)")
    text, regions, lang = body.get("text"), body.get("regions"), body.get("lang")
    if not isinstance(text, str):
        return _bad("'text' must be a string")
    if regions is not None and (not isinstance(regions, list) or not regions
                                or not all(isinstance(r, str) for r in regions)):
        return _bad("'regions' must be a non-empty list of region ids or names, or null for all")
    try:
        status = await request.app[NOTICES].start(text, regions, lang)
    except BadBroadcast as bad:
        return _bad(str(bad))
    return web.json_response({"id": status.id, "total": status.total}, status=202)


async def show(request: web.Request) -> web.Response:
    job = _job_id(request)
    status = await request.app[NOTICES].broadcasts.status(job) if job else None
    if status is None:
        return web.json_response({"error": "no such broadcast"}, status=404)
    return web.json_response(status.as_json())


async def listing(request: web.Request) -> web.Response:
    jobs = await request.app[NOTICES].broadcasts.recent(20)
    return web.json_response({"broadcasts": [j.as_json() for j in jobs]})


async def cancel(request: web.Request) -> web.Response:
    job = _job_id(request)
    result = await request.app[NOTICES].broadcasts.cancel(job) if job else -1
    if result < 0:
        return web.json_response({"error": "no such broadcast"}, status=404)
    status = await request.app[NOTICES].broadcasts.status(job)
    return web.json_response({"state": status.state if status else "cancelled"}, status=200 if result else 409)


def add_admin_api(app: web.Application, notices: NoticeService, token: str) -> None:
    app[NOTICES] = notices
    app[TOKEN] = token
    app.middlewares.extend([_json_errors, _admin_auth])
    app.router.add_post("/admin/broadcasts", create)
    app.router.add_get("/admin/broadcasts", listing)
    app.router.add_get("/admin/broadcasts/{id}", show)
    app.router.add_post("/admin/broadcasts/{id}/cancel", cancel)
