"""Every update applied at most once, whatever Telegram sends again: a plain retry, a webhook answered too
late (a slow send), and a process killed (SIGKILL) between saving a turn and sending its replies, in
webhook and polling mode; the dead process's conversation lock lapses within seconds. Also: which
start-up calls are fatal.

The fake Bot API (tests/fake_telegram.py) behaves like Telegram here: an update not answered 2xx in
time is POSTed again; in polling mode it comes back in every getUpdates until confirmed by the offset.
The dangerous case of the issue is the model: at the "total" question the person types 30000; applied
twice, the second 30000 would become the self-pay amount and the estimate "insurance pays 0%".
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from test_telegram import Chat, base_env, get, metric, post_update, serving, text_update, webhook_env

from bot.app import run_serve
from bot.config import Settings
from bot.runtime import StartError
from conversations.texts import t
from tests import fake_telegram as ft

ROOT = Path(__file__).resolve().parent.parent
TO_TOTAL = ["/start", "上海", "退休", "住院", "三级", "2005"]  # typed answers up to the "total" question


async def to_total(chat: Chat) -> None:
    for text in TO_TOTAL:
        await chat.say(text)
    assert chat.fake.sent_texts(chat.id)[-1] == t("zh", "prompts.total")


async def session(redis_url: str, chat: int) -> dict:
    client = aioredis.Redis.from_url(redis_url)
    try:
        raw = await client.hget(f"yibao:{{telegram:{chat}}}:session:{chat}", "d")
    finally:
        await client.aclose()
    return json.loads(raw) if raw else {}


def slow_sends(fake: ft.FakeTelegram, seconds: float) -> None:
    original = fake._send_message

    async def slow(state, params):
        await asyncio.sleep(seconds)
        return await original(state, params)

    fake.register_method("sendMessage", slow if seconds else original)


def assert_applied_once(found: dict) -> None:
    """30000 is the total, the self-pay question is open, and nothing answered it."""
    assert found["a"]["total"] in ("30000", 30000, "30000.00"), found
    assert "self_pay" not in found["a"] and found.get("c") == "self_pay", found


# -- in process: retries and slow sends ------------------------------------------------------------


@pytest.fixture
async def fake() -> ft.FakeTelegram:
    async with ft.FakeTelegram(webhook_timeout=1.0, webhook_retry_delays=(0.2, 0.5, 1, 2, 4)) as server:
        yield server


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_the_same_update_twice_is_applied_once(fake: ft.FakeTelegram, redis_url: str, redis, mode: str):
    env = base_env(fake, redis_url)
    async with serving(fake, webhook_env(env) if mode == "webhook" else env) as served:
        chat = Chat(fake, 7101)
        await to_total(chat)
        update = text_update(900_001, chat.id, "30000", message_id=50)
        mark = fake.mark()
        for _ in range(3):  # Telegram's retries carry the same update_id
            await fake.push_update(update)
        await fake.wait_for("sendMessage", 1, 5, chat_id=chat.id, since=mark)
        if mode == "webhook":  # and straight to the webhook, as a second Telegram data centre might
            assert await post_update(f"{served.url}/telegram", update, "test-webhook-secret_0123456789") == 200
        await asyncio.sleep(0.5)
        assert fake.sent_texts(chat.id)[-1] == t("zh", "prompts.self_pay")
        assert len(fake.calls_of("sendMessage", chat_id=chat.id)[-2:]) == 2  # one reply, not three
        assert [c.params["text"] for c in fake.calls_of("sendMessage", chat_id=chat.id)[len(TO_TOTAL):]] \
            == [t("zh", "prompts.self_pay")]
        assert_applied_once(await session(redis_url, chat.id))
        _, text = await get(f"{served.url}/metrics")
        if mode == "webhook":
            assert metric(text, "yibao_redeliveries_total") >= 2


async def test_a_send_slower_than_the_webhook_timeout_is_not_applied_twice(fake: ft.FakeTelegram, redis_url: str,
                                                                         redis):
    async with serving(fake, webhook_env(base_env(fake, redis_url))):
        chat = Chat(fake, 7102)
        await to_total(chat)
        slow_sends(fake, 1.6)  # longer than the fake's 1 s webhook timeout: Telegram sends the update again
        first = await fake.send_text(chat.id, chat.id, "30000")
        assert first is None  # timed out
        update_id = fake.last_update["update_id"]
        await fake.settle()
        deliveries = fake.deliveries_of(update_id)
        assert len(deliveries) >= 2 and deliveries[-1].status == 200, deliveries
        slow_sends(fake, 0)
        texts = fake.sent_texts(chat.id)[len(TO_TOTAL):]
        assert texts == [t("zh", "prompts.self_pay")], texts  # one reply, no apology, no second turn
        assert_applied_once(await session(redis_url, chat.id))


# -- real processes killed mid-turn ------------------------------------------------------------------


class Process:
    """`python -m bot serve` (webhook or polling), its stderr in a file."""

    def __init__(self, fake: ft.FakeTelegram, env: dict[str, str], log: Path):
        self.fake, self.env, self.log = fake, env, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Process:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("YIBAO_", "TELEGRAM_", "WEBHOOK_"))}
        env.update(self.env)
        mark = self.fake.mark()
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "serve", cwd=ROOT, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err)
        ready = "setWebhook" if self.env.get("WEBHOOK_URL") else "getUpdates"
        deadline = time.monotonic() + 30
        while not any(c.method == ready for c in self.fake.calls[mark:]):
            assert self.proc.returncode is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{self.env['PORT']}/healthz") as resp:
                        if resp.status == 200:
                            return self
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


@pytest.fixture
async def spawn(fake: ft.FakeTelegram, redis_url: str, redis, tmp_path: Path):
    started: list[Process] = []

    async def start(webhook: bool) -> Process:
        env = base_env(fake, redis_url)
        process = Process(fake, webhook_env(env) if webhook else env, tmp_path / f"bot-{len(started)}.log")
        started.append(process)
        return await process.start()

    yield start
    for process in started:
        process.kill()
        if process.proc is not None:
            await process.proc.wait()


@pytest.mark.parametrize("mode", ["webhook", "polling"])
async def test_sigkill_between_saving_and_sending(fake: ft.FakeTelegram, spawn, redis_url: str, mode: str):
    """The turn is saved, its reply is on the way, the process dies (SIGKILL). Telegram sends the update
    again to the next process: it is not applied again, the reply it still owed is sent, and the dead
    process's lock held it up a few seconds at most."""
    first = await spawn(mode == "webhook")
    chat = Chat(fake, 7103, timeout=15)
    await to_total(chat)
    slow_sends(fake, 30)  # the reply hangs: the process is killed while sending it
    mark = fake.mark()
    delivery = asyncio.ensure_future(fake.send_text(chat.id, chat.id, "30000"))
    deadline = time.monotonic() + 10
    while not fake.calls_of("sendMessage", chat_id=chat.id)[len(TO_TOTAL):]:  # the reply is on its way
        assert time.monotonic() < deadline, "no reply was sent"
        await asyncio.sleep(0.02)
    assert_applied_once(await session(redis_url, chat.id))  # saved before the send
    first.kill()
    await first.proc.wait()
    killed = time.monotonic()
    await delivery
    slow_sends(fake, 0)
    mark = fake.mark()
    await spawn(mode == "webhook")
    [call] = await fake.wait_for(lambda c: c.method == "sendMessage" and c.ok, 1, 20, chat_id=chat.id, since=mark)
    waited = time.monotonic() - killed
    assert call.params["text"] == t("zh", "prompts.self_pay")  # the reply it owed, once
    await asyncio.sleep(1.0)
    sent = [c.params["text"] for c in fake.calls_of("sendMessage", chat_id=chat.id) if c.ok]
    assert sent[len(TO_TOTAL):] == [t("zh", "prompts.self_pay")], sent
    assert_applied_once(await session(redis_url, chat.id))
    assert waited < 15, waited  # a restart (a few seconds) plus the dead process's lock (5 s at most)
    # and the conversation goes on with the next process
    [reply] = await chat.say("跳过")
    assert reply not in (t("zh", "prompts.self_pay"), t("zh", "errors.apology")), reply


# -- start-up: what is fatal -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_failing_command_menus_are_a_warning(fake: ft.FakeTelegram, redis_url: str, redis, mode: str,
                                                   capfd: pytest.CaptureFixture):
    fake.fail_next("setMyCommands", error=ft.ApiError(404, "Not Found"), times=10)
    env = base_env(fake, redis_url)
    async with serving(fake, webhook_env(env) if mode == "webhook" else env):
        chat = Chat(fake, 7104)
        await chat.start()
    assert "WARNING bot.app: could not set the command menus" in capfd.readouterr().err


async def test_unknown_methods_answer_404_and_do_not_stop_the_bot(fake: ft.FakeTelegram, redis_url: str, redis):
    del fake._methods["setmycommands"]  # an older Bot API server without the method
    async with serving(fake, base_env(fake, redis_url)):
        assert fake.calls_of("setMyCommands")[0].status == 404
        await Chat(fake, 7105).start()


@pytest.mark.parametrize("method", ["getMe", "setWebhook"])
async def test_what_the_bot_cannot_run_without_stops_the_start(fake: ft.FakeTelegram, redis_url: str, redis,
                                                               method: str):
    fake.fail_next(method, error=ft.ApiError(401 if method == "getMe" else 400, "Unauthorized"), times=10)
    settings = Settings.from_env(webhook_env(base_env(fake, redis_url)))
    with pytest.raises(StartError):
        await asyncio.wait_for(run_serve(settings), 20)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
