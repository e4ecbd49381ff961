"""Run an aiohttp application until SIGTERM or SIGINT, then stop it gracefully.

Shared by `yibao serve` and `yibao web`: stop taking new requests, let the ones in hand finish
(`shutdown_timeout`), then return so the caller can close Redis.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)


def stop_event_on_signals(extra: dict[int, Callable[[], None]] | None = None) -> asyncio.Event:
    """An event set by SIGTERM or SIGINT; `extra` maps other signals (SIGHUP) to callbacks."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for sig, callback in (extra or {}).items():
        loop.add_signal_handler(sig, callback)
    return stop


async def run_site(app: web.Application, host: str, port: int, stop: asyncio.Event,
                   before_stop: Callable[[], Awaitable[None]] | None = None,
                   shutdown_timeout: float = 20.0,
                   probes: tuple[web.Application, str, int] | None = None) -> None:
    """Serve `app` on host:port (and `probes`, an app on its own host and port) until `stop` is set."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout, access_log=None)
    await runner.setup()
    runners = [runner]
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("listening on %s:%s", host, port)
        if probes is not None:
            probe_app, probe_host, probe_port = probes
            probe_runner = web.AppRunner(probe_app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
            await probe_runner.setup()
            runners.append(probe_runner)
            await web.TCPSite(probe_runner, probe_host, probe_port).start()
            log.info("readiness and metrics on %s:%s", probe_host, probe_port)
        await stop.wait()
        log.info("stopping: no new requests, finishing the ones in hand")
        if before_stop:
            await before_stop()
    finally:
        for each in reversed(runners):
            await each.cleanup()
