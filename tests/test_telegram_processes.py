"""Several `python -m bot serve` processes (webhook mode) on one Redis and one fake Bot API: one chat
served by two processes in turn, a restart in the middle of a conversation (SIGTERM, also while an
update is being handled), and the flood limit counted across processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from test_telegram import (
    REGION,
    SECRET,
    THROTTLED,
    WELCOME,
    Chat,
    assert_flood_answered,
    assert_shanghai_result,
    base_env,
    get,
    metric,
    parts,
    post_update,
    text_update,
    webhook_env,
)

from conversations.texts import t
from tests import fake_telegram as ft

ROOT = Path(__file__).resolve().parent.parent


class BotProcess:
    """`python -m bot serve` in webhook mode, its stderr in a file."""

    def __init__(self, fake: ft.FakeTelegram, env: dict[str, str], log: Path):
        self.fake = fake
        self.env = webhook_env(env)
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    @property
    def hook(self) -> str:
        return self.env["WEBHOOK_URL"]

    async def start(self, timeout: float = 30.0) -> BotProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("YIBAO_", "TELEGRAM_", "WEBHOOK_"))}
        env.update(self.env)
        mark = self.fake.mark()
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "serve", cwd=ROOT, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc.returncode is None, f"the bot exited during start:\n{self.log.read_text()}"
                assert asyncio.get_running_loop().time() < deadline, f"no start in time:\n{self.log.read_text()}"
                registered = any(c.method == "setWebhook" and c.ok and c.params.get("url") == self.hook
                                 for c in self.fake.calls[mark:])
                if registered:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"{self.url}/healthz") as resp:
                            if resp.status == 200:
                                return self
                await asyncio.sleep(0.05)

    def route(self) -> None:
        """Make the fake deliver the next updates to this process (as if the load balancer chose it)."""
        self.fake.webhook()["url"] = self.hook

    async def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
async def fake() -> AsyncIterator[ft.FakeTelegram]:
    async with ft.FakeTelegram() as server:
        yield server


@pytest.fixture
async def spawn(fake: ft.FakeTelegram, redis_url: str, redis, tmp_path: Path):
    """Starts bot processes on the emptied test Redis; kills any still running at the end."""
    started: list[BotProcess] = []

    async def start(**env: str) -> BotProcess:
        process = BotProcess(fake, base_env(fake, redis_url, **env), tmp_path / f"bot-{len(started)}.log")
        started.append(process)
        return await process.start()

    yield start
    for process in started:
        process.kill()
        if process.proc is not None:
            await process.proc.wait()


def assert_clean_exit(process: BotProcess, code: int) -> None:
    logs = process.logs()
    assert code == 0, logs
    assert "Traceback" not in logs and "stopped" in logs


async def updates_handled(process: BotProcess) -> float:
    _, text = await get(f"{process.url}/metrics")
    return metric(text, "yibao_updates_total")


async def test_two_processes_take_turns_in_one_chat(fake: ft.FakeTelegram, spawn) -> None:
    a, b = await asyncio.gather(spawn(), spawn())
    chat = Chat(fake, 6001)
    steps: list[tuple[Callable, str, int]] = [
        (chat.say, "/start", 1), (chat.press, "上海", 1), (chat.press, "退休", 1), (chat.say, "住院", 1),
        (chat.press, "三级医院", 1), (chat.say, "2005", 1), (chat.say, "30000", 1), (chat.press, "跳过", 1),
        (chat.say, "跳过", 1), (chat.press, "✅ 开始计算", 1),
    ]  # fmt: skip
    results = []
    for i, (action, what, replies) in enumerate(steps):
        (a if i % 2 == 0 else b).route()
        results.append(await action(what, replies=replies))
    [start] = results[0]
    assert parts(start) == [WELCOME, REGION]  # the welcome and the first question: one message
    assert_shanghai_result(results[-1][0])
    assert await updates_handled(a) == 5 and await updates_handled(b) == 5
    assert all(d.status == 200 for d in fake.webhook_deliveries)
    assert {d.url for d in fake.webhook_deliveries} == {a.hook, b.hook}
    # each press marked its question with the answer, whichever process handled it
    edits = [c.params["text"] for c in fake.calls_of("editMessageText", chat_id=chat.id) if c.ok]
    assert [e.rsplit("→ ", 1)[1] for e in edits] == ["<b>上海</b>", "<b>退休</b>", "<b>三级医院</b>"]
    assert_clean_exit(a, await a.terminate())
    assert_clean_exit(b, await b.terminate())


async def test_a_restart_in_the_middle_of_a_conversation(fake: ft.FakeTelegram, spawn) -> None:
    first = await spawn()
    chat = Chat(fake, 6002)
    await chat.start()
    await chat.press("上海")
    await chat.press("退休")
    assert_clean_exit(first, await first.terminate())
    assert fake.webhook()["url"] == first.hook  # Telegram still points at the stopped process…
    mark = fake.mark()
    assert await fake.send_text(chat.id, chat.id, "住院") is None  # …and that delivery fails
    assert fake.webhook_deliveries[-1].status is None
    second = await spawn()  # …until the new process registers itself, and Telegram sends it again
    assert fake.webhook()["url"] == second.hook
    await fake.settle()
    assert fake.deliveries_of(fake.last_update["update_id"])[-1].status == 200
    [level] = await fake.wait_for("sendMessage", 1, 5, chat_id=chat.id, since=mark)
    assert level.params["text"] == t("zh", "prompts.level")
    assert (await chat.press("三级医院")) == [t("zh", "prompts.retired_year")]
    await chat.say("2005")
    await chat.say("30000")
    await chat.press("跳过")
    await chat.press("跳过")
    [result] = await chat.press("✅ 开始计算")
    assert_shanghai_result(result)
    assert_clean_exit(second, await second.terminate())


async def test_sigterm_finishes_the_update_in_hand(fake: ft.FakeTelegram, spawn) -> None:
    """A stop while an update is being handled: the turn completes, its reply goes out, the webhook
    answers 200 (so Telegram does not send the update again), and the next process continues."""
    first = await spawn()
    chat = Chat(fake, 6003)
    await chat.start()

    release = asyncio.Event()
    send_message = fake._send_message  # the fake's own handler, wrapped to hold replies back

    async def slow_send(state, params):
        await release.wait()
        return await send_message(state, params)

    fake.register_method("sendMessage", slow_send)
    mark = fake.mark()
    delivery = asyncio.ensure_future(fake.click(chat.id, chat.id, "上海"))
    await fake.wait_for("editMessageText", since=mark)
    await fake.wait_for(lambda c: True, since=mark)
    for _ in range(500):  # until the reply is being sent
        if any(c.method == "sendMessage" and not c.done for c in fake.calls[mark:]):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the reply was never sent")
    first.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    assert first.proc.returncode is None  # waits for the update in hand
    release.set()
    assert await delivery == 200
    assert_clean_exit(first, await asyncio.wait_for(first.proc.wait(), 15))
    assert fake.sent_texts(chat.id)[-1] == t("zh", "prompts.member")

    fake.register_method("sendMessage", send_message)
    await spawn()
    assert (await chat.press("退休")) == [t("zh", "prompts.visit")]


async def test_the_flood_limit_is_shared_by_the_processes(fake: ft.FakeTelegram, spawn) -> None:
    a, b = await asyncio.gather(*(spawn(THROTTLE_RATE="0.0167", THROTTLE_BURST="5") for _ in range(2)))
    flooder, calm = 6010, 6011
    # 30 messages of one person at once, half to each process
    floods = [post_update(f"{(a, b)[i % 2].hook}", text_update(1000 + i, flooder, f"你好 {i}", i + 1), SECRET)
              for i in range(30)]
    calm_chat = Chat(fake, calm)

    async def converse() -> None:
        b.route()
        await calm_chat.start()
        a.route()
        assert (await calm_chat.press("上海")) == [t("zh", "prompts.member")]
        b.route()
        assert (await calm_chat.say("在职")) == [t("zh", "prompts.visit")]

    statuses, _ = await asyncio.gather(asyncio.gather(*floods), converse())
    assert statuses == [200] * 30
    texts = fake.sent_texts(flooder)
    assert texts.count(THROTTLED) == 1  # one notice between the two processes
    assert_flood_answered(texts)  # five answered (one message each) across both processes, one notice
    assert THROTTLED not in fake.sent_texts(calm)
    assert await updates_handled(a) + await updates_handled(b) == 33
    for process in (a, b):
        _, text = await get(f"{process.url}/metrics")
        assert metric(text, "yibao_throttled_total") > 0  # both dropped some
    assert all(c.ok for c in fake.calls_of("sendMessage"))
