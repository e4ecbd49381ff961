"""Redis round trips per web request and per Telegram update, counted by Redis itself (MONITOR).

    python benchmarks/bench_roundtrips.py [--steps 10] [--chats 5]

`yibao serve` runs in this process (webhook mode, web chat on) against a throw-away redis-server and the
fake Bot API; whole estimates are typed through the web API and through the webhook. MONITOR lists every
command a client sends (commands a Lua script runs inside Redis are marked "lua" and are not round
trips); the figures are commands sent per web request and per Telegram update, by name, and the round
trips a request waits for one after another (the web's flood limits of the session and of the address
are two commands sent together: one wait). Aim: ≤ 2 a web request, ≤ 3 a Telegram update.
Always exits 0 (it reports, it does not gate).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import aiohttp  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from redis_server import RedisTestServer  # noqa: E402
from test_telegram import base_env, serving, webhook_env  # noqa: E402

from tests import fake_telegram as ft  # noqa: E402

SCRIPT = ["上海", "退休", "住院", "三级", "2005", "30000", "跳过", "跳过", "计算"]
LINE = re.compile(r'^[\d.]+ \[\d+ ([^\]]+)\] "(\w+)"')


class Monitor:
    """Commands clients send to Redis, by name (PINGs of health checks apart)."""

    def __init__(self, url: str):
        self.client = aioredis.Redis.from_url(url)
        self.commands: Counter = Counter()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        ready = asyncio.Event()

        async def watch() -> None:
            async with self.client.monitor() as monitor:
                ready.set()
                async for info in monitor.listen():
                    if info.get("client_type") == "lua" or "lua" in str(info.get("client_address", "")):
                        continue
                    command = str(info.get("command", ""))
                    if "{bc" in command:  # the broadcast runner's own polling, not a request's
                        continue
                    self.commands[command.split(" ")[0].upper()] += 1

        self.task = asyncio.create_task(watch())
        await ready.wait()
        await asyncio.sleep(0.2)

    def take(self) -> Counter:
        taken, self.commands = self.commands, Counter()
        return taken

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.aclose()


async def web_requests(url: str, chats: int) -> int:
    sent = 0
    for _ in range(chats):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # 127.0.0.1
            for body in [{"command": "resume"}] + [{"text": text} for text in SCRIPT]:
                async with http.post(f"{url}/api/chat", json=body) as resp:
                    assert resp.status == 200, await resp.text()
                sent += 1
    return sent


async def telegram_updates(fake: ft.FakeTelegram, chats: int) -> int:
    sent = 0
    for chat in range(chats):
        for text in ["/start"] + SCRIPT:
            assert await fake.send_text(880_000 + chat, 880_000 + chat, text) == 200
            sent += 1
    return sent


def report(name: str, requests: int, commands: Counter, waits: float) -> None:
    total = sum(n for c, n in commands.items() if c != "PING")
    shown = ", ".join(f"{c} {n / requests:.2f}" for c, n in commands.most_common() if c != "PING")
    print(f"{name}: {requests} requests, {total / requests:.2f} commands each ({shown}); "
          f"round trips waited for one after another: {waits:.2f}")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisTestServer(Path(tmp)).start()
        try:
            async with ft.FakeTelegram() as fake:
                env = webhook_env(base_env(fake, server.url, WEB_CHAT="true", LOG_LEVEL="warning"))
                async with serving(fake, env) as served:
                    monitor = Monitor(server.url)
                    await monitor.start()
                    await web_requests(served.url, 1)  # warm up: scripts loaded
                    await telegram_updates(fake, 1)
                    await asyncio.sleep(0.3)
                    monitor.take()
                    web = await web_requests(served.url, args.chats)
                    await asyncio.sleep(0.3)
                    web_commands = monitor.take()
                    tg = await telegram_updates(fake, args.chats)
                    await asyncio.sleep(0.3)
                    tg_commands = monitor.take()
                    await monitor.stop()
                # the web's two flood limits go out together: count the address's bucket as no extra wait
                web_waits = (sum(n for c, n in web_commands.items() if c != "PING") - web) / web
                report("web chat (POST /api/chat)", web, web_commands, web_waits)
                tg_waits = sum(n for c, n in tg_commands.items() if c != "PING") / tg
                report("Telegram (webhook update)", tg, tg_commands, tg_waits)
                print("before this change (issue 13's measurement): 4 a web request, 5 a Telegram update")
        finally:
            server.stop()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.pop("YIBAO_BENCH", None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
