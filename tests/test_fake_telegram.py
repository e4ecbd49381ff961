"""The fake Bot API server, driven by the real python-telegram-bot stack over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dtm
import socket
from collections.abc import AsyncIterator

import pytest
import telegram
import telegram.error
from aiohttp import web
from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests import fake_telegram as ft

TOKEN = ft.DEFAULT_TOKEN
OTHER_TOKEN = "987654321:OTHER-token_BBBBBBBBBBBBBBBBBBBBBBBBBBBB"


@pytest.fixture
async def fake() -> AsyncIterator[ft.FakeTelegram]:
    async with ft.FakeTelegram() as server:
        yield server


@pytest.fixture
async def bot(fake: ft.FakeTelegram) -> AsyncIterator[telegram.Bot]:
    async with telegram.Bot(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url) as b:
        yield b


# Reading RetryAfter.retry_after as int is deprecated in PTB 22.2+; we accept either type.
_ignore_retry_after_type = pytest.mark.filterwarnings("ignore:.*retry_after.*")


def _seconds(value: int | dtm.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("门诊", callback_data="kind:outpatient")],
            [InlineKeyboardButton("住院", callback_data="kind:inpatient")],
        ]
    )


# ---------------------------------------------------------------------------- plain Bot calls


async def test_get_me(fake: ft.FakeTelegram, bot: telegram.Bot) -> None:
    me = await bot.get_me()
    assert me.is_bot
    assert me.username == "yibao_test_bot"
    assert me.id == 123456789
    assert fake.calls_of("getMe")[0].token == TOKEN


async def test_send_edit_and_commands(fake: ft.FakeTelegram, bot: telegram.Bot) -> None:
    first = await bot.send_message(42, "<b>医保</b> 报销 &amp; 自付", parse_mode="HTML", reply_markup=_keyboard())
    second = await bot.send_message(42, "second")
    other_chat = await bot.send_message(-100123, "group hello")
    assert (first.message_id, second.message_id, other_chat.message_id) == (1, 2, 1)
    assert first.text == "医保 报销 & 自付"
    assert first.chat.type == "private"
    assert other_chat.chat.type == "supergroup"
    assert first.reply_markup == _keyboard()

    call = fake.calls_of("sendMessage")[0]
    assert call.params["chat_id"] == 42
    assert call.params["parse_mode"] == "HTML"
    assert call.params["reply_markup"]["inline_keyboard"][1][0]["callback_data"] == "kind:inpatient"
    assert fake.sent_texts(42) == ["<b>医保</b> 报销 &amp; 自付", "second"]

    edited = await bot.edit_message_text("edited", chat_id=42, message_id=first.message_id)
    assert isinstance(edited, telegram.Message)
    assert edited.text == "edited"
    assert edited.reply_markup is None  # editing text without reply_markup drops the keyboard
    assert edited.edit_date is not None
    with pytest.raises(telegram.error.BadRequest, match="not modified"):
        await bot.edit_message_text("edited", chat_id=42, message_id=first.message_id)
    with pytest.raises(telegram.error.BadRequest, match="not found"):
        await bot.edit_message_text("x", chat_id=42, message_id=99)

    markup_only = await bot.edit_message_reply_markup(42, first.message_id, reply_markup=_keyboard())
    assert isinstance(markup_only, telegram.Message)
    assert markup_only.reply_markup == _keyboard()

    assert await bot.send_chat_action(42, "typing")
    assert await bot.delete_message(42, second.message_id)
    with pytest.raises(telegram.error.BadRequest, match="not found"):
        await bot.delete_message(42, second.message_id)
    assert [m["message_id"] for m in fake.messages(42)] == [1]

    commands = [BotCommand("start", "开始"), BotCommand("help", "帮助")]
    assert await bot.set_my_commands(commands)
    assert await bot.get_my_commands() == tuple(commands)
    assert await bot.get_my_commands(language_code="en") == ()
    assert fake.commands() == [{"command": "start", "description": "开始"}, {"command": "help", "description": "帮助"}]
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Command", "x")])
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()


async def test_text_validation(bot: telegram.Bot) -> None:
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(1, "长" * 4097)
    await bot.send_message(1, "长" * 4096)
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(1, "")
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(1, "1.5 元", parse_mode="MarkdownV2")
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(1, "<b>unclosed", parse_mode="HTML")
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(
            1, "x", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="x" * 65)]])
        )
    ok = await bot.send_message(1, r"*粗体* 1\.5 元", parse_mode="MarkdownV2")
    assert ok.text == "粗体 1.5 元"


async def test_get_updates_long_polling(fake: ft.FakeTelegram, bot: telegram.Bot) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await bot.get_updates(timeout=0.3) == ()
    assert 0.25 <= loop.time() - started < 2

    async def inject_later() -> None:
        await asyncio.sleep(0.2)
        await fake.send_text(7, 7, "/start@yibao_test_bot payload")

    task = asyncio.create_task(inject_later())
    started = loop.time()
    updates = await bot.get_updates(timeout=5)
    await task
    assert loop.time() - started < 2
    assert len(updates) == 1
    msg = updates[0].message
    assert msg is not None
    assert msg.text == "/start@yibao_test_bot payload"
    assert msg.entities[0].type == "bot_command"
    assert msg.entities[0].length == len("/start@yibao_test_bot")
    assert msg.from_user is not None
    assert msg.from_user.first_name == "Ann"

    # Not confirmed yet: delivered again; confirmed with offset: gone.
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [updates[0].update_id]
    await fake.send_text(7, 7, "hello")
    again = await bot.get_updates(offset=updates[0].update_id + 1, timeout=0)
    assert [u.message.text for u in again if u.message] == ["hello"]
    assert again[0].update_id > updates[0].update_id
    assert fake.pending_updates()[0]["message"]["text"] == "hello"


async def test_press_button_and_answer(fake: ft.FakeTelegram, bot: telegram.Bot) -> None:
    sent = await bot.send_message(42, "选择类型", reply_markup=_keyboard())
    await fake.press_button(42, 42, sent.message_id, "kind:inpatient")
    with pytest.raises(LookupError):
        await fake.press_button(42, 42, sent.message_id, "no-such-button")
    (update,) = await bot.get_updates(timeout=0)
    query = update.callback_query
    assert query is not None
    assert query.data == "kind:inpatient"
    assert query.message is not None
    assert query.message.text == "选择类型"
    assert query.message.reply_markup == _keyboard()
    assert query.from_user.id == 42
    assert await bot.answer_callback_query(query.id, text="好的")
    assert fake.callback_answer(query.id) is not None
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(query.id)


# ---------------------------------------------------------------------------- failure injection


@_ignore_retry_after_type
async def test_retry_after_injection(fake: ft.FakeTelegram, bot: telegram.Bot) -> None:
    fake.fail_next("sendMessage", chat_id=5, error=ft.RetryAfter(7))
    await bot.send_message(6, "other chat is fine")
    with pytest.raises(telegram.error.RetryAfter) as info:
        await bot.send_message(5, "hi")
    assert _seconds(info.value.retry_after) == 7
    call = fake.calls_of("sendMessage", chat_id=5)[0]
    assert call.status == 429
    assert call.response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }
    await bot.send_message(5, "the rule was used up")
    assert fake.sent_texts(5) == ["the rule was used up"]


async def test_forbidden_chat_not_found_and_server_error(fake: ft.FakeTelegram, bot: telegram.Bot) -> None:
    fake.fail_next("sendMessage", chat_id=10, error=ft.Forbidden(), times=None)
    fake.fail_next("sendMessage", chat_id=11, error=ft.ChatNotFound())
    fake.fail_next("sendMessage", error=ft.ServerError(), times=2, predicate=lambda c: c.params["text"] == "flaky")
    for _ in range(2):
        with pytest.raises(telegram.error.Forbidden, match="blocked by the user"):
            await bot.send_message(10, "hi")
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(11, "hi")
    for _ in range(2):
        with pytest.raises(telegram.error.NetworkError):
            await bot.send_message(12, "flaky")
    await bot.send_message(12, "flaky")
    fake.block(13)
    with pytest.raises(telegram.error.Forbidden):
        await bot.send_chat_action(13, "typing")
    assert [c.status for c in fake.calls_of("sendMessage")] == [403, 403, 400, 502, 502, 200]


@_ignore_retry_after_type
async def test_rate_violations_recorded_and_enforced(bot: telegram.Bot) -> None:
    async with ft.FakeTelegram(global_rate=3) as fake:
        async with telegram.Bot(TOKEN, base_url=fake.base_url) as b:
            await b.send_message(1, "a")
            await b.send_message(1, "b")  # second message to chat 1 within a second
            await b.send_message(2, "c")
            await b.send_message(3, "d")  # fourth message overall within a second
        kinds = [(v.kind, v.chat_id) for v in fake.rate_violations]
        assert kinds == [("chat", 1), ("global", 3)]
        assert not any(v.enforced for v in fake.rate_violations)
        assert all(c.ok for c in fake.calls_of("sendMessage"))

    async with ft.FakeTelegram(enforce_rate_limits=True) as fake:
        async with telegram.Bot(TOKEN, base_url=fake.base_url) as b:
            await b.send_message(1, "a")
            with pytest.raises(telegram.error.RetryAfter) as info:
                await b.send_message(1, "b")
            assert _seconds(info.value.retry_after) == 1
            await b.send_message(2, "other chat")
        assert [v.enforced for v in fake.rate_violations] == [True]
        assert fake.sent_texts(1) == ["a"]


async def test_multiple_tokens(fake: ft.FakeTelegram, bot: telegram.Bot) -> None:
    async with telegram.Bot(OTHER_TOKEN, base_url=fake.base_url) as other:
        assert (await other.get_me()).id == 987654321
        await other.send_message(1, "from other")
        await fake.send_text(1, 1, "to other", token=OTHER_TOKEN)
        assert [u.message.text for u in await other.get_updates(timeout=0) if u.message] == ["to other"]
    await bot.send_message(1, "from default")
    assert await bot.get_updates(timeout=0) == ()
    assert fake.sent_texts(1, token=OTHER_TOKEN) == ["from other"]
    assert fake.sent_texts(1, token=TOKEN) == ["from default"]
    assert {c.token for c in fake.calls} == {TOKEN, OTHER_TOKEN}

    async with ft.FakeTelegram(tokens=[TOKEN]) as strict:
        unknown = telegram.Bot(OTHER_TOKEN, base_url=strict.base_url)
        try:
            with pytest.raises(telegram.error.InvalidToken):
                await unknown.initialize()  # getMe -> 401 Unauthorized
        finally:
            await unknown.shutdown()
        assert strict.calls[0].status == 401


# ---------------------------------------------------------------------------- Application


async def _on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text("请选择就诊类型", reply_markup=_keyboard())


async def _on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(f"收到：{update.effective_message.text}")


async def _on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer("好")
    await query.edit_message_text(f"已选择 {query.data}")


def _application(fake: ft.FakeTelegram, token: str = TOKEN) -> Application:
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .get_updates_read_timeout(2)
        .build()
    )
    app.add_handler(CommandHandler("start", _on_start))
    app.add_handler(CallbackQueryHandler(_on_button))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, _on_text))
    return app


async def test_application_polling(fake: ft.FakeTelegram) -> None:
    app = _application(fake)
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(timeout=1, poll_interval=0)
    try:
        await fake.send_text(42, 42, "/start")
        (reply,) = await fake.wait_for("sendMessage", chat_id=42)
        assert reply.params["text"] == "请选择就诊类型"

        await fake.press_button(42, 42, None, "kind:outpatient")
        await fake.wait_for("editMessageText", chat_id=42)
        (answer,) = await fake.wait_for("answerCallbackQuery")
        assert answer.ok
        assert answer.params["text"] == "好"
        assert fake.last_bot_message(42)["text"] == "已选择 kind:outpatient"
        assert "reply_markup" not in fake.last_bot_message(42)

        mark = fake.mark()
        await fake.send_text(42, 42, "住院 8000 元")
        await fake.wait_for("sendMessage", since=mark)
        assert fake.sent_texts(42) == ["请选择就诊类型", "收到：住院 8000 元"]
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
    assert fake.calls_of("deleteWebhook")
    assert all(c.ok for c in fake.calls if c.method != "getUpdates")
    # Two replies to chat 42 within a second: recorded (not refused) as a per-chat violation.
    assert [(v.kind, v.chat_id, v.enforced) for v in fake.rate_violations] == [("chat", 42, False)]


# ---------------------------------------------------------------------------- webhooks


async def test_webhook_delivery_with_secret(fake: ft.FakeTelegram, bot: telegram.Bot) -> None:
    received: list[tuple[str | None, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        secret = request.headers.get("X-Telegram-Bot-Api-Secret-Token")
        received.append((secret, await request.json()))
        return web.Response(status=200 if secret == "s3cret" else 403)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        url = f"http://127.0.0.1:{port}/hook"
        assert await bot.set_webhook(url, secret_token="s3cret")
        assert fake.webhook() is not None
        assert fake.webhook()["secret_token"] == "s3cret"  # type: ignore[index]
        info = await bot.get_webhook_info()
        assert info.url == url
        with pytest.raises(telegram.error.Conflict):
            await bot.get_updates(timeout=0)

        sent = await bot.send_message(5, "pick", reply_markup=_keyboard())
        statuses = await asyncio.gather(
            fake.send_text(5, 5, "/start"),
            fake.press_button(5, 5, sent.message_id, "kind:inpatient"),
            fake.send_text(6, 6, "hello"),
        )
        assert statuses == [200, 200, 200]
        assert {s for s, _ in received} == {"s3cret"}
        chat5 = [u for _, u in received if "message" in u and u["message"]["chat"]["id"] == 5]
        chat5_ids = [u["update_id"] for _, u in received if fake.update_chat_id(u) == 5]
        assert chat5_ids == sorted(chat5_ids)  # one chat's updates arrive in order
        assert chat5[0]["message"]["entities"][0]["type"] == "bot_command"
        assert any(u.get("callback_query", {}).get("data") == "kind:inpatient" for _, u in received)
        assert [d.status for d in fake.webhook_deliveries] == [200, 200, 200]

        assert await bot.set_webhook(url, secret_token="wrong")
        assert await fake.send_text(5, 5, "again") == 403
        assert (await bot.get_webhook_info()).last_error_message is not None

        assert await bot.delete_webhook()
        assert await fake.send_text(5, 5, "queued") is None
        await fake.settle()  # the refused "again" is not lost: getUpdates gets it, before "queued"
        assert [u.message.text for u in await bot.get_updates(timeout=0) if u.message] == ["again", "queued"]
    finally:
        await runner.cleanup()


async def test_application_webhook(fake: ft.FakeTelegram) -> None:
    pytest.importorskip("tornado")
    app = _application(fake)
    port = _free_port()
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_webhook(
        listen="127.0.0.1",
        port=port,
        url_path="tg",
        webhook_url=f"http://127.0.0.1:{port}/tg",
        secret_token="webhook-secret",
    )
    try:
        assert fake.webhook()["secret_token"] == "webhook-secret"  # type: ignore[index]
        assert await fake.send_text(9, 9, "/start") == 200
        await fake.wait_for("sendMessage", chat_id=9)
        assert fake.sent_texts(9) == ["请选择就诊类型"]
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


async def test_get_chat_member_answers_as_telegram_does(fake: ft.FakeTelegram, bot: telegram.Bot) -> None:
    """Each ChatMember kind parses in python-telegram-bot; unlisted members of a group are members."""
    group = -1009876
    fake.chat_members[group] = {1: "creator", 2: "administrator", 4: "left", 5: "kicked"}
    kinds = {u: type(await bot.get_chat_member(group, u)) for u in (1, 2, 3, 4, 5)}
    assert kinds == {1: telegram.ChatMemberOwner, 2: telegram.ChatMemberAdministrator,
                     3: telegram.ChatMemberMember, 4: telegram.ChatMemberLeft, 5: telegram.ChatMemberBanned}
    assert (await bot.get_chat_member(group, 2)).status == "administrator"
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)chat not found"):
        await bot.get_chat_member(77, 78)


async def test_group_messages_replies_and_anonymous_admins(fake: ft.FakeTelegram, bot: telegram.Bot) -> None:
    group = -1009877
    sent = await bot.send_message(group, "which region?")
    await fake.send_text(group, 11, "北京", reply_to=sent.message_id)
    await fake.send_text(group, 12, "/subscribe@yibao_test_bot 上海", anonymous_admin=True)
    first, second = (Update.de_json(u, bot) for u in await fake._get_updates(fake._bot(), {}))
    assert first.effective_chat.type == "supergroup"
    assert first.message.reply_to_message.from_user.id == bot.id
    assert second.message.sender_chat.id == group and second.effective_user.username == "GroupAnonymousBot"
    assert second.message.entities[0].type == "bot_command"
    with pytest.raises(LookupError):
        await fake.send_text(group, 11, "x", reply_to=999)
