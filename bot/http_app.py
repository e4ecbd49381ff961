"""The one aiohttp application of a running bot: health, readiness and metrics, plus the routes each
transport adds (the Telegram webhook, the web chat, the admin API).

`/healthz` answers while the process is alive; `/readyz` only when Redis answers and policies are
loaded; `/metrics` in the Prometheus text format. None of them shows personal data. With METRICS_PORT
the last two are served on METRICS_HOST:METRICS_PORT only (keep them off a public port).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from redis.exceptions import RedisError

from bot.metrics import Metrics
from bot.runtime import Runtime

READY_TIMEOUT = 0.8
RUNTIME = web.AppKey("runtime", Runtime)
METRICS = web.AppKey("metrics", Metrics)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when policies are loaded and Redis answers PING within READY_TIMEOUT (a stalled Redis makes
    it 503 within a second, never a hang)."""
    runtime = request.app[RUNTIME]
    checks = {"policies": bool(runtime.policies.regions)}
    try:
        checks["redis"] = bool(await asyncio.wait_for(runtime.redis.ping(), READY_TIMEOUT))
    except (TimeoutError, RedisError, OSError):
        checks["redis"] = False
    ready = all(checks.values())
    return web.json_response({"status": "ready" if ready else "not ready", **checks}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].render(), content_type="text/plain", charset="utf-8")


def build_app(runtime: Runtime, metrics_: Metrics) -> web.Application:
    """The main application. With METRICS_PORT set, /readyz and /metrics are not on it (they are on
    `probe_app`, served apart); /healthz always is (a container's health check asks the main port)."""
    app = web.Application(client_max_size=1024 * 1024)
    app[RUNTIME] = runtime
    app[METRICS] = metrics_
    app.router.add_get("/healthz", healthz)
    if runtime.settings.metrics_port is None:
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
    return app


def probe_app(runtime: Runtime, metrics_: Metrics) -> web.Application | None:
    """/healthz, /readyz and /metrics alone, for METRICS_HOST:METRICS_PORT (None when that is unset)."""
    if runtime.settings.metrics_port is None:
        return None
    app = web.Application(client_max_size=1024)
    app[RUNTIME] = runtime
    app[METRICS] = metrics_
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
