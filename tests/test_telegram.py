"""The Telegram bot end to end, in process: `run_serve(settings)` — exactly what `yibao serve` runs —
as an asyncio task, with the real python-telegram-bot stack talking HTTP to the fake Bot API server
(tests/fake_telegram.py) and a real redis-server. Nothing reaches the internet; nothing in PTB is patched.

Each bot is stopped the way an operator stops it: SIGTERM to this process, caught by the handler
`run_serve` installs (`bot.serving.stop_event_on_signals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from redis_server import RedisTestServer

from bot.app import run_serve
from bot.channels.telegram import COMMANDS, MERGE_LIMIT, html_chunks, merge_replies
from bot.config import Settings
from conversations.replies import Button, Reply
from conversations.texts import t
from tests import fake_telegram as ft

TOKEN = ft.DEFAULT_TOKEN
SECRET = "test-webhook-secret_0123456789"
STALE = t("zh", "hints.stale")
THROTTLED = t("zh", "errors.throttled")
APOLOGY = t("zh", "errors.apology")
WELCOME = t("zh", "welcome")
REGION = t("zh", "prompts.region")


def parts(message: str) -> list[str]:
    """The replies a message was merged from (`merge_replies` joins them with a blank line)."""
    return message.split("\n\n")

# -- harness --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(fake: ft.FakeTelegram, redis_url: str, **extra: str) -> dict[str, str]:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_BASE_URL": fake.base_url,
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "REDIS_URL": redis_url,
        # conversations here are scripted and fast: keep the flood limit out of their way
        "THROTTLE_RATE": "1000",
        "THROTTLE_BURST": "1000",
        "LOG_LEVEL": "info",
    }
    env.update(extra)
    return env


def webhook_env(env: dict[str, str], secret: str | None = SECRET) -> dict[str, str]:
    env = dict(env, WEBHOOK_URL=f"http://127.0.0.1:{env['PORT']}/telegram")
    if secret:
        env["WEBHOOK_SECRET"] = secret
    return env


@dataclass
class Served:
    settings: Settings
    task: asyncio.Task[int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def polling(self) -> bool:
        return not self.settings.webhook_url


def _our_sigterm_handler_installed() -> bool:
    # asyncio's loop.add_signal_handler replaces the default disposition with its own no-op handler
    return signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)


async def stop_serving(served: Served, timeout: float = 15.0) -> int:
    if not served.task.done():
        assert _our_sigterm_handler_installed(), "run_serve is running but did not install its SIGTERM handler"
        os.kill(os.getpid(), signal.SIGTERM)
    return await asyncio.wait_for(served.task, timeout)


@contextlib.asynccontextmanager
async def serving(fake: ft.FakeTelegram, env: dict[str, str], timeout: float = 15.0) -> AsyncIterator[Served]:
    """`run_serve` running until the block ends; ready when the Bot API is set up and HTTP answers."""
    settings = Settings.from_env(env)
    mark = fake.mark()
    served = Served(settings, asyncio.create_task(run_serve(settings)))
    try:
        # polling: the first long poll is under way; webhook: the webhook is registered
        ready = "getUpdates" if served.polling else "setWebhook"
        deadline = asyncio.get_running_loop().time() + timeout
        while not any(c.method == ready and (served.polling or c.ok) for c in fake.calls[mark:]):
            if served.task.done():
                raise AssertionError(f"run_serve ended during start: {served.task.result()!r}")
            assert asyncio.get_running_loop().time() < deadline, "run_serve did not start in time"
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{served.url}/healthz") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.02)
        yield served
    finally:
        if served.task.done() or _our_sigterm_handler_installed():
            code = await stop_serving(served)
            assert code == 0
        else:  # failed before installing its handler: nothing else can stop it
            served.task.cancel()
            with contextlib.suppress(BaseException):
                await served.task


@pytest.fixture(autouse=True)
def _restore_logging():
    """`run_serve` configures logging for the process (handlers, levels): put it back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    named = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "telegram", "aiohttp.access")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in named.items():
        logging.getLogger(name).setLevel(lvl)


@pytest.fixture
async def fake() -> AsyncIterator[ft.FakeTelegram]:
    async with ft.FakeTelegram() as server:
        yield server


@pytest.fixture
def env(fake: ft.FakeTelegram, redis_url: str, redis) -> dict[str, str]:  # `redis`: an emptied database
    return base_env(fake, redis_url)


@pytest.fixture(params=["polling", "webhook"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def bot(fake: ft.FakeTelegram, env: dict[str, str], mode: str) -> AsyncIterator[Served]:
    async with serving(fake, webhook_env(env) if mode == "webhook" else env) as served:
        yield served


class Chat:
    """One person in a private chat with the bot; every action waits for the bot's replies."""

    def __init__(self, fake: ft.FakeTelegram, chat_id: int, first_name: str = "Ann", timeout: float = 5.0):
        self.fake = fake
        self.id = chat_id
        self.first_name = first_name
        self.timeout = timeout

    async def _replies(self, action, replies: int) -> list[str]:
        mark = self.fake.mark()
        status = await action()
        assert status in (None, 200), status
        calls = await self.fake.wait_for(
            lambda c: c.method == "sendMessage" and c.ok, replies, self.timeout, chat_id=self.id, since=mark
        )
        return [ft.render_text(c.params["text"], c.params.get("parse_mode")) for c in calls]

    async def say(self, text: str, replies: int = 1) -> list[str]:
        return await self._replies(lambda: self.fake.send_text(self.id, self.id, text, self.first_name), replies)

    async def press(self, label: str, replies: int = 1) -> list[str]:
        return await self._replies(lambda: self.fake.click(self.id, self.id, label), replies)

    async def press_data(self, message_id: int, data: str, replies: int = 1) -> list[str]:
        return await self._replies(
            lambda: self.fake.press_button(self.id, self.id, message_id, data, check=False), replies
        )

    async def start(self) -> str:
        """/start: the welcome and the region question, in one message."""
        [message] = await self.say("/start")
        assert parts(message) == [WELCOME, REGION], message
        return message

    def last(self) -> dict[str, Any]:
        return self.fake.last_bot_message(self.id)


async def full_estimate_by_buttons(chat: Chat) -> str:
    """Shanghai, retired, inpatient, 三级, retired in 2005, 30,000 in total, skip, skip, calculate."""
    [start] = await chat.say("/start")
    welcome, question = parts(start)
    assert "医保" in welcome and question == REGION
    assert (await chat.press("上海")) == [t("zh", "prompts.member")]
    assert (await chat.press("退休")) == [t("zh", "prompts.visit")]
    assert (await chat.press("住院")) == [t("zh", "prompts.level")]
    assert (await chat.press("三级医院")) == [t("zh", "prompts.retired_year")]
    assert (await chat.say("2005")) == [t("zh", "prompts.total")]
    assert (await chat.say("30000")) == [t("zh", "prompts.self_pay")]
    await chat.press("跳过")
    [summary] = await chat.press("跳过")
    assert t("zh", "summary.title") in summary and "30,000.00" in summary
    [result] = await chat.press(t("zh", "buttons.calculate"))
    return result


def assert_flood_answered(texts: list[str]) -> None:
    """What a flood of 30 greetings gets with a burst of five: five answers, each one message (the
    welcome with the region question, then a "no such region" hint that asks again with the provinces),
    and one notice."""
    assert len(texts) == 5 + 1 and texts.count(THROTTLED) == 1, texts
    first, *others = [text for text in texts if text != THROTTLED]
    assert parts(first) == [WELCOME, REGION]
    no_such_region = t("zh", "hints.region_unknown", text="\x00").split("\x00")[0]
    assert all(parts(text)[0].startswith(no_such_region) and len(parts(text)) == 1 for text in others), others


def assert_shanghai_result(result: str) -> None:
    assert t("zh", "result.title") in result
    assert "医保支付：26,496.00 元" in result
    assert "个人支付：3,504.00 元" in result


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


async def post_update(url: str, update: dict[str, Any] | bytes, secret: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    data = update if isinstance(update, bytes) else json.dumps(update).encode()
    async with aiohttp.ClientSession() as http, http.post(url, data=data, headers=headers) as resp:
        return resp.status


def text_update(update_id: int, chat_id: int, text: str, message_id: int = 1) -> dict[str, Any]:
    user = {"id": chat_id, "is_bot": False, "first_name": "Ann"}
    message = {"message_id": message_id, "from": user, "chat": {"id": chat_id, "type": "private", "first_name": "Ann"},
               "date": 1_700_000_000, "text": text}
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return {"update_id": update_id, "message": message}


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


# -- conversations ----------------------------------------------------------------------------------


async def test_full_estimate_by_buttons(fake: ft.FakeTelegram, bot: Served) -> None:
    chat = Chat(fake, 5001)
    assert_shanghai_result(await full_estimate_by_buttons(chat))
    # every press was answered, and every answered question shows its answer
    presses = [u["callback_query"]["id"] for u in fake.injected if "callback_query" in u]
    assert len(presses) == 7
    assert len(fake.calls_of("answerCallbackQuery")) == 7
    assert all(fake.callback_answer(q) is not None for q in presses)
    edits = [c.params["text"] for c in fake.calls_of("editMessageText", chat_id=chat.id) if c.ok]
    assert any(e.endswith("→ <b>上海</b>") for e in edits), edits
    # the region question came with the welcome, in one message: that message shows the answer
    region_question = next(m for m in fake.bot_messages(chat.id) if m["text"].startswith(WELCOME))
    assert parts(region_question["text"]) == [WELCOME, REGION, "→ 上海"] and "reply_markup" not in region_question
    assert all(e.endswith(f"→ <b>{a}</b>") for e, a in zip(edits, ["上海", "退休", "住院", "三级医院"], strict=False))
    # the result message offers what comes next
    buttons = [b["text"] for row in chat.last()["reply_markup"]["inline_keyboard"] for b in row]
    assert t("zh", "buttons.new") in buttons
    if not bot.polling:
        assert fake.webhook()["secret_token"] == SECRET
        assert fake.webhook_deliveries and all(d.status == 200 for d in fake.webhook_deliveries)
        assert all(d.secret_token == SECRET for d in fake.webhook_deliveries)
    else:
        assert not fake.webhook_deliveries


async def test_the_result_card_unfolds_in_place(fake: ft.FakeTelegram, bot: Served) -> None:
    """The estimate comes as a card (the figures, what it is for, what they rest on); "计算过程" edits
    that same message to show the steps, the other levels and the documents, keeping its buttons."""
    chat = Chat(fake, 5009)
    card = await full_estimate_by_buttons(chat)
    message = chat.last()
    keyboard = [[b["text"] for b in row] for row in message["reply_markup"]["inline_keyboard"]]
    assert keyboard[0] == [t("zh", "buttons.details")] and t("zh", "buttons.new") in keyboard[1]
    assert "依据：" in card and "\n1. " not in card and "来源" not in card
    assert len(card.splitlines()) <= 14  # one phone screen, title included
    mark = fake.mark()
    status = await fake.click(chat.id, chat.id, t("zh", "buttons.details"))
    assert status in (None, 200)
    [edit] = await fake.wait_for(lambda c: c.method == "editMessageText" and c.ok, 1, chat_id=chat.id, since=mark)
    await asyncio.sleep(0.2)  # and nothing is sent besides
    assert not [c for c in fake.calls[mark:] if c.method == "sendMessage"]
    assert edit.params["message_id"] == message["message_id"]
    unfolded = ft.render_text(edit.params["text"], "HTML")
    assert unfolded.startswith(card.rstrip()) and "\n1. " in unfolded and "来源" in unfolded
    assert "上海市医疗保障局关于2024医保年度基本医疗保险有关事项的通知 · 上海市医疗保障局" in unfolded
    shown = fake.message(chat.id, message["message_id"])
    keyboard = [[b["text"] for b in row] for row in shown["reply_markup"]["inline_keyboard"]]
    assert t("zh", "buttons.details") not in keyboard[0] and t("zh", "buttons.new") in keyboard[0]
    # The next step still works from the unfolded message.
    assert (await chat.press(t("zh", "buttons.new")))[0].startswith(WELCOME)


async def test_full_estimate_by_typed_text(fake: ft.FakeTelegram, bot: Served) -> None:
    chat = Chat(fake, 5002)
    await chat.start()
    assert (await chat.say("上海")) == [t("zh", "prompts.member")]
    assert (await chat.say("退休")) == [t("zh", "prompts.visit")]
    assert (await chat.say("住院")) == [t("zh", "prompts.level")]
    assert (await chat.say("三级")) == [t("zh", "prompts.retired_year")]
    assert (await chat.say("2005")) == [t("zh", "prompts.total")]
    assert (await chat.say("3万")) == [t("zh", "prompts.self_pay")]
    await chat.say("跳过")
    [summary] = await chat.say("跳过")
    assert t("zh", "summary.title") in summary
    [result] = await chat.say("计算")
    assert_shanghai_result(result)
    assert not fake.calls_of("answerCallbackQuery")
    assert all(c.ok for c in fake.calls if c.method != "getUpdates")


async def test_stale_button_gets_hint_and_current_question(fake: ft.FakeTelegram, bot: Served) -> None:
    chat = Chat(fake, 5003)
    await chat.start()
    region_question = chat.last()["message_id"]
    await chat.press("上海")
    await chat.press("退休")
    # the region keyboard was retired; a client that still shows it presses 北京 anyway
    [message] = await chat.press_data(region_question, "1|beijing")
    hint, question = parts(message)
    assert hint == STALE and question == t("zh", "prompts.visit")
    # …and an old "back" of the member question: stale too, nothing undone
    member_question = next(m for m in fake.bot_messages(chat.id) if m["text"].startswith(t("zh", "prompts.member")))
    [message] = await chat.press_data(member_question["message_id"], "2|~back")
    hint, question = parts(message)
    assert hint == STALE and question == t("zh", "prompts.visit")
    assert all(c.ok for c in fake.calls_of("answerCallbackQuery"))
    assert len(fake.calls_of("answerCallbackQuery")) == 4
    _, metrics = await get(f"{bot.url}/metrics")
    assert metric(metrics, "yibao_errors_total") == 0
    # the conversation goes on where it was
    assert (await chat.press("住院")) == [t("zh", "prompts.level")]


async def test_commands_menu_in_chinese_and_english(fake: ft.FakeTelegram, bot: Served) -> None:
    zh = fake.commands(language_code="")
    en = fake.commands(language_code="en")
    assert zh and en
    expected = [c for c in COMMANDS if c != "estimate"] + ["subscribe", "unsubscribe", "subscriptions"]
    assert [c["command"] for c in zh] == expected == [c["command"] for c in en]
    assert {c["command"]: c["description"] for c in zh}["help"] == t("zh", "menu.help")
    assert {c["command"]: c["description"] for c in en}["help"] == t("en", "menu.help")
    menus = {c.params.get("language_code") for c in fake.calls_of("setMyCommands") if not c.params.get("scope")}
    assert menus == {None, "en"}


@pytest.mark.parametrize("mode", ["polling"])
async def test_forget_deletes_the_users_keys(fake: ft.FakeTelegram, bot: Served, redis) -> None:
    chat = Chat(fake, 5004)
    other = Chat(fake, 5005)
    await chat.start()
    await chat.press("上海")
    await other.start()
    mine = [k async for k in redis.scan_iter(match=f"yibao:{{telegram:{chat.id}}}*")]
    assert len(mine) == 3  # the session, the index of the user's keys, the flood-limit bucket
    [confirm] = await chat.say("/forget")
    assert confirm == t("zh", "commands.forget_confirm")
    assert (await chat.press(t("zh", "buttons.forget_yes"))) == [t("zh", "commands.forgotten")]
    assert [k async for k in redis.scan_iter(match=f"yibao:{{telegram:{chat.id}}}*")] == []
    assert [k async for k in redis.scan_iter(match=f"*{chat.id}*")] == []  # the flood bucket and lock too
    assert [k async for k in redis.scan_iter(match=f"yibao:{{telegram:{other.id}}}*")]  # others kept
    # a fresh start afterwards
    await chat.start()


@pytest.mark.parametrize("mode", ["polling"])
async def test_forget_can_be_declined(fake: ft.FakeTelegram, bot: Served, redis) -> None:
    chat = Chat(fake, 5006)
    await chat.start()
    await chat.press("上海")
    await chat.say("/forget")
    [message] = await chat.press(t("zh", "buttons.forget_no"))
    kept, question = parts(message)
    assert kept == t("zh", "commands.forget_kept") and question == t("zh", "prompts.member")
    assert [k async for k in redis.scan_iter(match=f"yibao:{{telegram:{chat.id}}}*")]


# -- formatting ---------------------------------------------------------------------------------


async def test_the_longest_policy_fits_one_message(fake: ft.FakeTelegram, bot: Served) -> None:
    """深圳 in English, the longest table: one message, then the current question (folded into it)."""
    chat = Chat(fake, 5007)
    assert (await chat.say("/language en")) == [t("en", "commands.language")]
    mark = fake.mark()
    await fake.send_text(chat.id, chat.id, "/policy 深圳")
    await fake.wait_for("sendMessage", 1, chat_id=chat.id, since=mark)
    await asyncio.sleep(0.2)  # nothing else follows
    calls = [c for c in fake.calls[mark:] if c.method == "sendMessage"]
    assert len(calls) == 1 and calls[0].ok and len(calls[0].params["text"]) <= 4096
    shown = ft.render_text(calls[0].params["text"], "HTML")
    assert shown.startswith("Shenzhen · ") and "深圳市人民政府令第358号" in shown


async def test_html_is_escaped(fake: ft.FakeTelegram, bot: Served) -> None:
    chat = Chat(fake, 5008)
    [reply] = await chat.say("/policy <b>&amp; <i>x")
    assert "「<b>&amp; <i>x」" in reply  # shown literally, not as markup
    sent = fake.calls_of("sendMessage", chat_id=chat.id)[-1]
    assert sent.ok and sent.params["parse_mode"] == "HTML"
    assert "&lt;b&gt;&amp;amp; &lt;i&gt;x" in sent.params["text"]


def test_html_chunks_split_at_line_ends_and_keep_entities_whole() -> None:
    line = "• <住院> & 门诊 \"自付\" 'x' " * 8  # ~200 characters, ~300 escaped
    reply = Reply("\n".join(f"{i}: {line}" for i in range(60)), title="<标题> & more")
    chunks = html_chunks(reply)
    assert len(chunks) > 2
    assert all(len(c) <= 4096 for c in chunks)
    rendered = [ft.render_text(c, "HTML") for c in chunks]  # each chunk is valid HTML by itself
    assert rendered[0].startswith("<标题> & more\n\n0: ")
    assert "\n".join(rendered) == f"<标题> & more\n\n{reply.text}"
    assert all(r.split("\n")[-1].endswith(line) for r in rendered)  # cut at line ends only


def test_html_chunks_cut_an_enormous_line_between_entities() -> None:
    text = ("a&" * 3000) + "<>" * 10
    chunks = html_chunks(Reply(text), limit=1000)
    assert all(len(c) <= 1000 for c in chunks)
    assert "".join(ft.render_text(c, "HTML") for c in chunks) == text
    assert html_chunks(Reply("")) == ["…"]
    assert html_chunks(Reply("short", title="T")) == ["<b>T</b>\n\nshort"]


def test_merge_replies_folds_a_buttonless_reply_into_the_next() -> None:
    yes, no = Button("1|yes", "是"), Button("1|no", "否")
    hint, question = Reply("没看懂。\n"), Reply("你是在职还是退休？", buttons=((yes, no),))
    # a reply without buttons goes with the next one, a blank line between; the last one's buttons stay
    assert merge_replies([hint, question]) == [Reply("没看懂。\n\n你是在职还是退休？", buttons=((yes, no),))]
    assert merge_replies([Reply("a", title="T"), Reply("b"), Reply("c", buttons=((yes,),))]) == [
        Reply("a\n\nb\n\nc", title="T", buttons=((yes,),))]
    # a reply with buttons keeps its own message
    assert merge_replies([question, hint]) == [question, hint]
    # a titled reply (a summary, a result) is never folded into
    summary = Reply("总计 30,000 元", title="确认", buttons=((yes,),))
    assert merge_replies([hint, summary]) == [hint, summary]
    # nor is anything that would make one long message
    long = Reply("x" * (MERGE_LIMIT - len(question.text)))
    assert merge_replies([long, question]) == [long, question]
    shorter = Reply("x" * (MERGE_LIMIT - len(question.text) - 1))
    assert merge_replies([shorter, question]) == [Reply(f"{shorter.text}\n\n{question.text}", buttons=((yes, no),))]
    assert merge_replies([]) == [] and merge_replies([hint]) == [hint]


# -- the webhook ------------------------------------------------------------------------------------


async def test_webhook_secret_is_checked(fake: ft.FakeTelegram, env: dict[str, str]) -> None:
    async with serving(fake, webhook_env(env)) as served:
        hook = f"{served.url}/telegram"
        assert fake.webhook()["url"] == hook
        assert fake.webhook()["secret_token"] == SECRET
        assert set(fake.webhook()["allowed_updates"]) == {"message", "callback_query"}
        assert await post_update(hook, text_update(900_001, 5010, "/help"), None) == 403
        assert await post_update(hook, text_update(900_002, 5010, "/help"), "wrong") == 403
        assert await post_update(hook, text_update(900_003, 5010, "/help"), SECRET[:-1]) == 403
        assert not fake.calls_of("sendMessage")
        assert await post_update(hook, b"{not json", SECRET) == 400
        assert await post_update(hook, text_update(900_004, 5010, "/help"), SECRET) == 200
        # handled before the answer: the reply is already out
        [help_text] = [c.params["text"] for c in fake.calls_of("sendMessage", chat_id=5010)]
        assert "/forget" in help_text
        status, _ = await get(f"{served.url}/telegram")
        assert status == 405


async def test_webhook_secret_derived_from_token_when_unset(fake: ft.FakeTelegram, env: dict[str, str]) -> None:
    async with serving(fake, webhook_env(env, secret=None)) as served:
        derived = hashlib.sha256(b"yibao-webhook:" + TOKEN.encode()).hexdigest()[:64]
        assert served.settings.secret_token() == derived
        assert fake.webhook()["secret_token"] == derived
        hook = f"{served.url}/telegram"
        assert await post_update(hook, text_update(900_011, 5011, "/help"), None) == 403
        assert await post_update(hook, text_update(900_012, 5011, "/help"), TOKEN) == 403
        assert await post_update(hook, text_update(900_013, 5011, "/help"), derived) == 200
        # and the fake, which got the secret through setWebhook, is let in
        assert await fake.send_text(5012, 5012, "/help") == 200


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_failed_send_is_sent_again_and_the_chat_goes_on(
    fake: ft.FakeTelegram, env: dict[str, str], mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reply the Bot API did not take (502): the turn was saved, the update is left unacknowledged, and
    its redelivery sends the reply it owes without applying the answer again."""
    name = "Zhang-Sanfeng-Secretname"
    env = dict(env, LOG_LEVEL="debug", LOG_FORMAT="json")
    async with serving(fake, webhook_env(env) if mode == "webhook" else env) as served:
        chat = Chat(fake, 731_845_296, first_name=name)
        await chat.start()
        for label in ("上海", "退休", "住院", "三级医院"):
            await chat.press(label)
        fake.fail_next("sendMessage", chat_id=chat.id)  # the next question is lost: 502 Bad Gateway
        mark = fake.mark()
        assert await fake.send_text(chat.id, chat.id, "2005", name) in (None, 503)  # not acknowledged
        [sent] = await fake.wait_for(lambda c: c.method == "sendMessage" and c.ok, 1, 5, chat_id=chat.id, since=mark)
        assert sent.params["text"] == t("zh", "prompts.total")  # …and it comes with the redelivery
        assert fake.calls_of("sendMessage", chat_id=chat.id)[-2].status == 502
        assert (await chat.say("30000")) == [t("zh", "prompts.self_pay")]
        await chat.press("跳过")
        await chat.press("跳过")
        [result] = await chat.press(t("zh", "buttons.calculate"))
        assert_shanghai_result(result)
        _, metrics = await get(f"{served.url}/metrics")
        assert metric(metrics, "yibao_errors_total") == 0
        assert metric(metrics, "yibao_unavailable_total") == 1
        assert metric(metrics, "yibao_estimates_total") == 1
        assert APOLOGY not in fake.sent_texts(chat.id)
    logs = capsys.readouterr().err
    assert "left for a redelivery: NotDelivered" in logs and "redelivered update not applied again" in logs
    for private in ("30000", "30,000", "26,496", "26496", "3,504", name, "Zhang", "上海", "住院", str(chat.id), TOKEN,
                    TOKEN.split(":")[1]):
        assert private not in logs, private  # …but nothing the person wrote or was told, nor who they are


async def test_telegram_down_for_a_while(fake: ft.FakeTelegram, env: dict[str, str]) -> None:
    """The Bot API refuses the reply twice: the update stays unconfirmed and is handled again until the
    reply goes out — once, and without a second turn."""
    async with serving(fake, env) as served:
        chat = Chat(fake, 5021)
        await chat.start()
        fake.fail_next("sendMessage", chat_id=chat.id, times=2)
        mark = fake.mark()
        await fake.send_text(chat.id, chat.id, "上海")
        [sent] = await fake.wait_for(lambda c: c.method == "sendMessage" and c.ok, 1, 10, chat_id=chat.id, since=mark)
        assert sent.params["text"] == t("zh", "prompts.member")
        assert [c.status for c in fake.calls_of("sendMessage", chat_id=chat.id)[-3:]] == [502, 502, 200]
        [message] = await chat.say("/help")
        assert parts(message) == [t("zh", "commands.help").rstrip(), t("zh", "prompts.member")]
        _, metrics = await get(f"{served.url}/metrics")
        assert metric(metrics, "yibao_errors_total") == 0
        assert metric(metrics, "yibao_unavailable_total") == 2


# -- flooding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_flood_is_throttled_for_that_user_only(fake: ft.FakeTelegram, env: dict[str, str], mode: str) -> None:
    # five at once, then one a minute: nothing refills during the test
    env = dict(env, THROTTLE_RATE="0.0167", THROTTLE_BURST="5")
    async with serving(fake, webhook_env(env) if mode == "webhook" else env) as served:
        flooder, calm = Chat(fake, 5030), Chat(fake, 5031)

        async def flood() -> None:
            await asyncio.gather(*(fake.send_text(flooder.id, flooder.id, f"你好 {i}") for i in range(30)))

        async def converse() -> None:
            await asyncio.sleep(0.01)
            await calm.start()
            assert (await calm.press("上海")) == [t("zh", "prompts.member")]
            assert (await calm.say("在职")) == [t("zh", "prompts.visit")]

        await asyncio.gather(flood(), converse())
        async with aiohttp.ClientSession() as http:
            for _ in range(250):
                async with http.get(f"{served.url}/metrics") as resp:
                    metrics = await resp.text()
                if metric(metrics, "yibao_updates_total") >= 33:
                    break
                await asyncio.sleep(0.02)
        assert metric(metrics, "yibao_updates_total") == 33
        assert metric(metrics, "yibao_throttled_total") == 25
        await asyncio.sleep(0.1)
        texts = fake.sent_texts(flooder.id)
        assert texts.count(THROTTLED) == 1
        assert_flood_answered(texts)
        assert THROTTLED not in fake.sent_texts(calm.id)
        assert all(c.ok for c in fake.calls_of("sendMessage"))


# -- health, readiness, metrics ----------------------------------------------------------------------


async def test_health_readiness_and_metrics(fake: ft.FakeTelegram, tmp_path, mode: str) -> None:
    server = RedisTestServer(tmp_path / "redis").start()
    try:
        env = base_env(fake, server.url)
        async with serving(fake, webhook_env(env) if mode == "webhook" else env) as served:
            assert await get(f"{served.url}/healthz") == (200, '{"status": "ok"}')
            status, body = await get(f"{served.url}/readyz")
            assert status == 200 and json.loads(body) == {"status": "ready", "policies": True, "redis": True}
            _, before = await get(f"{served.url}/metrics")
            assert metric(before, "yibao_updates_total") == 0

            chat = Chat(fake, 777_123_456, first_name="Metric-Person")
            assert_shanghai_result(await full_estimate_by_buttons(chat))
            for _ in range(100):  # the last update is timed once its lease is released, just after its reply
                _, after = await get(f"{served.url}/metrics")
                if metric(after, "yibao_update_seconds_count") == 10:
                    break
                await asyncio.sleep(0.02)
            assert metric(after, "yibao_updates_total") == 10
            assert metric(after, "yibao_estimates_total") == 1
            assert metric(after, "yibao_errors_total") == 0
            assert metric(after, "yibao_update_seconds_count") == 10
            assert metric(after, 'yibao_update_seconds_bucket{le="+Inf"}') == 10
            for private in (str(chat.id), "Metric-Person", "30000", "上海", "26,496", TOKEN.split(":")[0]):
                assert private not in after

            server.stop()  # Redis goes away: not ready, still alive
            status, body = await get(f"{served.url}/readyz")
            assert status == 503 and json.loads(body)["redis"] is False
            assert (await get(f"{served.url}/healthz"))[0] == 200
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["polling"])
@pytest.mark.parametrize(
    ("method", "error"),
    [
        ("answerCallbackQuery", ft.BadRequest("query is too old and response timeout expired or query ID is invalid")),
        ("answerCallbackQuery", ft.ServerError()),
        ("editMessageText", ft.ServerError()),
    ],
)
async def test_a_failed_answer_or_edit_does_not_lose_the_next_question(
    fake: ft.FakeTelegram, bot: Served, method: str, error: ft.ApiError
) -> None:
    """Answering the press and marking the question are cosmetic: when Telegram refuses them (a press
    answered too late, after a restart; a 502), the person still gets the next question."""
    chat = Chat(fake, 5040)
    await chat.start()
    fake.fail_next(method, error=error)
    assert (await chat.press("上海")) == [t("zh", "prompts.member")]
    assert (await chat.press("退休")) == [t("zh", "prompts.visit")]


@pytest.mark.parametrize("mode", ["polling"])
async def test_a_failed_reply_to_a_press_ends_in_an_apology(fake: ft.FakeTelegram, bot: Served) -> None:
    """The press was answered before the reply was refused (a 400: sending it again would not help);
    answering it again for the apology is refused by Telegram, and the apology must go out all the same."""
    chat = Chat(fake, 5041)
    await chat.start()
    fake.fail_next("sendMessage", chat_id=chat.id, error=ft.BadRequest("Bad Request: message is too long"))
    assert (await chat.press("上海")) == [APOLOGY]
    assert (await chat.say("退休")) == [t("zh", "prompts.visit")]
