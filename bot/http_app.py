"""The one aiohttp application of a running bot: health, readiness and metrics, plus the routes each
transport adds (the Telegram webhook, the web chat, the admin API).

`/healthz` answers while the process is alive; `/readyz` only when Redis answers and policies are
loaded; `/metrics` in the Prometheus text format. None of them shows personal data.
"""

from __future__ import annotations

from aiohttp import web
from redis.exceptions import RedisError

from bot.metrics import Metrics
from bot.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
METRICS = web.AppKey("metrics", Metrics)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    checks = {"policies": bool(runtime.policies.regions)}
    try:
        checks["redis"] = bool(await runtime.redis.ping())
    except (RedisError, OSError):
        checks["redis"] = False
    ready = all(checks.values())
    return web.json_response({"status": "ready" if ready else "not ready", **checks}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].render(), content_type="text/plain", charset="utf-8")


def build_app(runtime: Runtime, metrics_: Metrics) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[RUNTIME] = runtime
    app[METRICS] = metrics_
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
