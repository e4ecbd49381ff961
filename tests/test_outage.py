"""Redis trouble under every channel: a Redis that stops answering (SIGSTOP) and one that goes away and
comes back (shutdown, restart on the same port). Each channel answers the person politely ("服务暂时繁忙，
请稍后再试") instead of hanging until Redis returns, applies nothing, acknowledges nothing it did not
handle (Telegram delivers it again), and works again once Redis is back, without a restart.
/readyz says 503 meanwhile.

"Before Redis comes back" is the behaviour checked here (a hang would last the whole outage); how fast
the polite answer comes is measured in benchmarks/bench_outage.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import queue
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from redis_server import redis_server_binary
from test_telegram import Chat, base_env, serving, webhook_env

from bot.channels.terminal import run_chat
from bot.channels.web import add_web_chat
from bot.config import Settings
from bot.http_app import build_app
from bot.metrics import Metrics
from bot.runtime import open_runtime
from conversations.texts import t
from tests import fake_telegram as ft

BUSY = t("zh", "errors.busy")
OUTAGE = 6.0  # seconds Redis is stopped: every answer must come well before it is back


class StoppableRedis:
    """A redis-server of its own on a fixed port, that can be frozen (SIGSTOP) and restarted."""

    def __init__(self, directory: Path):
        self.directory = directory
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> StoppableRedis:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        import redis as syncredis

        while time.monotonic() < deadline:
            try:
                if syncredis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return self
            except (syncredis.RedisError, OSError):
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def shutdown(self) -> None:
        """As an operator stops it (SIGTERM: it saves and exits); `start` brings it back with the data."""
        self.proc.terminate()
        self.proc.wait(timeout=15)

    def cut(self, how: str) -> None:
        self.freeze() if how == "sigstop" else self.shutdown()

    def mend(self, how: str) -> None:
        self.thaw() if how == "sigstop" else self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.thaw()
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def stoppable(tmp_path: Path):
    server = StoppableRedis(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def web_client(redis_url: str):
    """The web chat's application on one redis-server (whatever mode other tests left behind)."""
    async with open_runtime(Settings(redis_url=redis_url)) as runtime:
        app = build_app(runtime, Metrics())
        add_web_chat(app)
        async with TestClient(TestServer(app), cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            yield client


async def session_of(url: str, platform: str, user: str, chat: str | None = None) -> dict:
    client = aioredis.Redis.from_url(url)
    try:
        raw = await client.hget(f"yibao:{{{platform}:{user}}}:session:{chat or user}", "d")
    finally:
        await client.aclose()
    return json.loads(raw) if raw else {}


# -- the web chat ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigstop", "restart"])
async def test_web_chat_during_an_outage(stoppable: StoppableRedis, how: str):
    async with web_client(stoppable.url) as client:
        await client.post("/api/chat", json={"command": "resume"})
        await client.post("/api/chat", json={"text": "上海"})
        assert (await client.get("/readyz")).status == 200
        stoppable.cut(how)
        began = time.monotonic()
        response = await client.post("/api/chat", json={"text": "退休"})
        data = await response.json()
        assert time.monotonic() - began < OUTAGE  # answered before Redis is back, not when it is
        assert response.status == 503 and data["error"] == "busy" and response.headers["Retry-After"]
        assert data["replies"][0]["text"] == BUSY
        ready = await client.get("/readyz")
        assert ready.status == 503 and (await ready.json())["redis"] is False
        stoppable.mend(how)
        for _ in range(50):  # recovery without a restart: the same client reconnects
            if (await client.get("/readyz")).status == 200:
                break
            await asyncio.sleep(0.1)
        response = await client.post("/api/chat", json={"text": "在职"})
        assert response.status == 200, await response.text()
        assert (await response.json())["replies"][-1]["text"] == t("zh", "prompts.visit")  # the session kept


# -- Telegram ----------------------------------------------------------------------------------------


@pytest.fixture
async def fake():
    async with ft.FakeTelegram(webhook_retry_delays=(0.5, 1, 2, 2, 2, 2, 2, 2, 2)) as server:
        yield server


@pytest.mark.parametrize("mode", ["webhook", "polling"])
@pytest.mark.parametrize("how", ["sigstop", "restart"])
async def test_telegram_during_an_outage(fake: ft.FakeTelegram, stoppable: StoppableRedis, mode: str, how: str):
    env = base_env(fake, stoppable.url)
    async with serving(fake, webhook_env(env) if mode == "webhook" else env):
        chat = Chat(fake, 7201, timeout=15)
        await chat.start()
        await chat.press("上海")
        stoppable.cut(how)
        mark = fake.mark()
        began = time.monotonic()
        status = await fake.send_text(chat.id, chat.id, "在职")
        update_id = fake.last_update["update_id"]
        [busy] = await fake.wait_for("sendMessage", 1, OUTAGE, chat_id=chat.id, since=mark)
        assert time.monotonic() - began < OUTAGE and busy.params["text"] == BUSY
        if mode == "webhook":
            assert status == 503  # not acknowledged: Telegram delivers it again
        await asyncio.sleep(1.5)  # more redeliveries (webhook) or retries (polling) meanwhile: one notice
        assert [c.params["text"] for c in fake.calls_of("sendMessage", chat_id=chat.id)[-1:]] == [BUSY]
        stoppable.mend(how)
        await fake.settle()
        [reply] = await fake.wait_for(lambda c: c.method == "sendMessage" and c.params["text"] ==
                                      t("zh", "prompts.visit"), 1, 15, chat_id=chat.id, since=mark)
        assert reply.ok
        found = await session_of(stoppable.url, "telegram", str(chat.id))
        assert found["a"]["member"] == "in_service" and found["c"] == "visit", found  # applied once, in the end
        if mode == "webhook":
            assert fake.deliveries_of(update_id)[-1].status == 200


# -- the terminal -------------------------------------------------------------------------------------


class Keyboard(io.TextIOBase):
    """A stdin the test types into, line by line."""

    def __init__(self):
        self.lines: queue.Queue[str] = queue.Queue()

    def type(self, line: str) -> None:
        self.lines.put(line + "\n")

    def readline(self, size: int = -1) -> str:
        return self.lines.get()


@pytest.mark.parametrize("how", ["sigstop", "restart"])
async def test_terminal_during_an_outage(stoppable: StoppableRedis, how: str):
    keyboard, screen = Keyboard(), io.StringIO()
    async with open_runtime(Settings(redis_url=stoppable.url)) as runtime:
        chat = asyncio.create_task(run_chat(runtime, user="outage", stdin=keyboard, out=screen))

        async def shown(text: str, timeout: float = OUTAGE) -> None:
            deadline = time.monotonic() + timeout
            while text not in screen.getvalue():
                assert time.monotonic() < deadline, screen.getvalue()[-500:]
                await asyncio.sleep(0.02)

        await shown(t("zh", "prompts.region"))
        stoppable.cut(how)
        keyboard.type("上海")
        await shown(BUSY)  # told at once; the chat goes on
        stoppable.mend(how)
        keyboard.type("上海")
        await shown(t("zh", "prompts.member"), 10)
        keyboard.type("/exit")
        assert await asyncio.wait_for(chat, 10) == 0
    assert screen.getvalue().count(t("zh", "prompts.member")) == 1
