"""`yibao serve` as a real process: graceful shutdown on SIGTERM/SIGINT, restart, and what it logs.

Each test runs `python -m bot serve` in webhook mode against the fake Bot API (tests/fake_telegram.py)
and the tests' redis-server, drives a conversation through the fake, and signals the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.config import VARIABLES
from conversations.texts import t
from tests import fake_telegram as ft

ROOT = Path(__file__).resolve().parent.parent
CHAT = 731_904_256  # a private chat: chat id = user id
FIRST_NAME = "Zhenxiuqiong"
AMOUNT = "73519"  # cannot appear by accident in a timestamp, a port or a duration
SLOW_SEND = 1.0  # seconds the fake takes for each sendMessage while a signal arrives
UNTHROTTLED = {"THROTTLE_RATE": "100", "THROTTLE_BURST": "100"}  # the test answers faster than a person


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BotProcess:
    """`python -m bot serve` with the given settings; stderr goes to a file (no pipe to fill)."""

    def __init__(self, fake: ft.FakeTelegram, redis_url: str, log_dir: Path, **env: str) -> None:
        self.port = _free_port()
        self.fake = fake
        self.stderr_path = log_dir / f"serve-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if k not in {var.name for var in VARIABLES}}
        self.env = {
            **base,
            "PYTHONPATH": os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "TELEGRAM_BOT_TOKEN": fake.token,
            "TELEGRAM_BASE_URL": fake.base_url,
            "WEBHOOK_URL": f"http://127.0.0.1:{self.port}/telegram",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "REDIS_URL": redis_url,
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 30.0) -> BotProcess:
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve"], cwd=ROOT, env=self.env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/healthz"
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.stderr}")
                hook = self.fake.webhook()
                if hook and hook["url"] == self.env["WEBHOOK_URL"]:
                    with contextlib.suppress(aiohttp.ClientError, OSError):
                        async with http.get(url) as resp:
                            if resp.status == 200:
                                return self
                await asyncio.sleep(0.05)
        raise AssertionError(f"serve did not start within {timeout}s:\n{self.stderr}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.proc.poll()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""


@pytest.fixture
async def fake() -> AsyncIterator[ft.FakeTelegram]:
    async with ft.FakeTelegram() as server:
        yield server


@pytest.fixture
async def clean_redis(redis_url: str) -> str:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    await client.aclose()
    return redis_url


@pytest.fixture
def processes() -> Iterator[list[BotProcess]]:
    started: list[BotProcess] = []
    yield started
    for process in started:
        process.kill()


async def _session(redis_url: str) -> dict:
    client = aioredis.Redis.from_url(redis_url)
    try:
        raw = await client.hget(f"yibao:{{telegram:{CHAT}}}:session:{CHAT}", "d")
    finally:
        await client.aclose()
    return json.loads(raw) if raw else {}


def _slow_sends(fake: ft.FakeTelegram, seconds: float) -> None:
    original = fake._send_message

    async def slow(state, params):
        await asyncio.sleep(seconds)
        return await original(state, params)

    fake.register_method("sendMessage", slow)


def _sends(fake: ft.FakeTelegram, since: int) -> list[ft.Call]:
    return [c for c in fake.calls[since:] if c.method == "sendMessage"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_finishes_the_update_in_hand_and_a_restart_continues(
    sig: signal.Signals, fake: ft.FakeTelegram, clean_redis: str, tmp_path: Path, processes: list[BotProcess]
) -> None:
    first = BotProcess(fake, clean_redis, tmp_path)
    processes.append(first)
    await first.start()

    _slow_sends(fake, SLOW_SEND)
    mark = fake.mark()
    delivery = asyncio.create_task(fake.send_text(CHAT, CHAT, "/start", first_name=FIRST_NAME))
    # The update is being handled: its reply (the welcome and the region question, one message) is on
    # its way (and slow).
    deadline = time.monotonic() + 10
    while not _sends(fake, mark) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert _sends(fake, mark), f"no reply started:\n{first.stderr}"
    assert not _sends(fake, mark)[-1].done
    signalled = time.monotonic()
    first.signal(sig)

    status = await asyncio.wait_for(delivery, 15)
    code = await first.wait(timeout=10)
    took = time.monotonic() - signalled
    assert code == 0, f"exit code {code} after {sig.name}:\n{first.stderr}"
    assert took < 8, f"took {took:.1f}s to stop"
    assert status == 200, "the update in hand was not acknowledged (Telegram would send it again)"
    sends = fake.calls_of("sendMessage", chat_id=CHAT)
    assert len(sends) == 1 and sends[0].ok, "the reply of the update in hand was cut off"
    shown = ft.render_text(sends[0].params["text"], sends[0].params.get("parse_mode"))
    assert shown == f"{t('zh', 'welcome')}\n\n{t('zh', 'prompts.region')}"
    assert sends[0].params.get("reply_markup"), "the region question lost its buttons"
    assert (await _session(clean_redis)).get("c") == "region"

    # A new process continues the same conversation where it stopped.
    _slow_sends(fake, 0)
    second = BotProcess(fake, clean_redis, tmp_path)
    processes.append(second)
    await second.start()
    region = fake.last_bot_message(CHAT)["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    assert await fake.press_button(CHAT, CHAT, None, region) == 200
    session = await _session(clean_redis)
    assert session.get("a", {}).get("region"), session
    assert session.get("c") not in (None, "region"), session
    second.signal(signal.SIGTERM)
    assert await second.wait(timeout=10) == 0, second.stderr


ANSWERS = {"total": AMOUNT, "age": "45", "retired_year": "2010", "admission": "1"}


async def _converse(fake: ft.FakeTelegram, redis_url: str) -> dict:
    """/start, a text with the person's name, then every question answered (a typed answer, Skip, or the
    first button) up to the estimate."""
    assert await fake.send_text(CHAT, CHAT, "/start", first_name=FIRST_NAME) == 200
    assert await fake.send_text(CHAT, CHAT, f"我叫{FIRST_NAME}", first_name=FIRST_NAME) == 200
    for _ in range(30):
        session = await _session(redis_url)
        if session.get("s") not in ("ask", "summary"):
            return session
        buttons = [b["callback_data"] for row in fake.last_bot_message(CHAT)["reply_markup"]["inline_keyboard"]
                   for b in row]  # fmt: skip
        preferred = [b for b in buttons if b.endswith(("|~skip", "|~calc"))]
        if session.get("c") in ANSWERS and session["s"] == "ask":
            status = await fake.send_text(CHAT, CHAT, ANSWERS[session["c"]], first_name=FIRST_NAME)
        else:
            status = await fake.press_button(CHAT, CHAT, None, (preferred or buttons)[0], first_name=FIRST_NAME)
        assert status == 200
    raise AssertionError("the conversation did not reach an estimate")


async def test_json_logs_carry_update_ids_and_no_personal_data(
    fake: ft.FakeTelegram, clean_redis: str, tmp_path: Path, processes: list[BotProcess]
) -> None:
    process = BotProcess(fake, clean_redis, tmp_path, LOG_FORMAT="json", LOG_LEVEL="debug", **UNTHROTTLED)
    processes.append(process)
    await process.start()
    session = await _converse(fake, clean_redis)
    assert session["s"] == "done" and session["a"]["total"].startswith(AMOUNT)
    assert any(AMOUNT[:2] in text for text in fake.sent_texts(CHAT)[-3:]), "the estimate was sent"
    # An update that fails is logged (with its traceback) without its content either.
    fake.fail_next("sendMessage", CHAT, ft.BadRequest(f"Bad Request: chat {CHAT} of {FIRST_NAME} is odd"))
    assert await fake.send_text(CHAT, CHAT, f"{AMOUNT} {FIRST_NAME}", first_name=FIRST_NAME) == 200
    process.signal(signal.SIGTERM)
    assert await process.wait(timeout=10) == 0, process.stderr

    lines = process.stderr.splitlines()
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        for secret in (AMOUNT, "73,519", FIRST_NAME, str(CHAT), fake.token):
            assert secret not in line, f"{secret!r} logged: {line}"
    handled = [e for e in events if e["msg"] == "update handled"]
    updates = [u["update_id"] for u in fake.injected]
    assert sorted(int(e["update"]) for e in handled) == sorted(updates), "one line, with its id, per update"
    assert {e["chat"] for e in handled} == {handled[0]["chat"]} and re.fullmatch(r"[0-9a-f]{12}", handled[0]["chat"])
    assert any(e["level"] == "error" and e.get("update") for e in events), "the failed update is logged"
    assert all({"ts", "level", "logger", "msg"} <= e.keys() for e in events)
