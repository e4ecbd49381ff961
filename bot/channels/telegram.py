"""The Telegram adapter: python-telegram-bot updates in, dialogue turns through, messages out.

Assembly is in `build_application`, one visible list of handlers. Each handler is thin: it turns the
update into an `Incoming`, lets the dialogue run the turn (state read from and written to Redis on
every update, never kept here), and sends the replies as HTML messages with inline keyboards. A
pressed button is answered and its question message edited to show the choice, so the chat reads as
a clean record.

Updates of one chat are handled one at a time and in order inside a process (`ChatOrderedProcessor`)
and never at the same time across processes (a short Redis lock per chat); the dialogue's
compare-and-set makes even a lost lock harmless.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    ReplyParameters,
    Update,
)
from telegram.constants import MessageLimit, ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.channels.paging import pack_lines
from bot.channels.telegram_groups import GATE_GROUP, group_gate, reply_target
from bot.config import Settings
from bot.logs import hash_id, reset_update_context, update_context
from bot.metrics import Metrics
from bot.runtime import Runtime
from bot.throttle import Throttle, Verdict
from conversations.replies import Incoming, Reply, Turn
from conversations.store import SessionKey
from conversations.texts import DEFAULT_LANGUAGE, LANGUAGES, raw, t

log = logging.getLogger(__name__)

PLATFORM = "telegram"
COMMANDS = ("start", "estimate", "back", "cancel", "help", "language", "regions", "policy", "ask", "year",
            "forget")
MENU = COMMANDS[:1] + COMMANDS[2:] + ("subscribe", "unsubscribe", "subscriptions")  # shown in the command menu
MAX_INPUT = 1000  # characters passed to the dialogue; longer texts are cut here
ALLOWED_UPDATES = ["message", "callback_query"]
LOCK_MS = 30_000

_UNLOCK_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class ChatOrderedProcessor(BaseUpdateProcessor):
    """Many chats at once, each chat's updates one at a time in arrival order.

    In process: an asyncio lock per chat (FIFO). Across processes: a Redis lock per chat, so two bot
    processes behind one webhook never run two turns of one chat together.
    """

    def __init__(self, runtime: Runtime, max_concurrent_updates: int = 256):
        super().__init__(max_concurrent_updates)
        self.runtime = runtime
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}  # chat → its lock, holders + waiters
        self._unlock = runtime.redis.register_script(_UNLOCK_LUA)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat.id if isinstance(update, Update) and update.effective_chat else None
        if chat is None:
            await coroutine
            return
        lock, users = self._locks.get(chat, (asyncio.Lock(), 0))
        self._locks[chat] = (lock, users + 1)
        try:
            async with lock:
                await self._across_processes(chat, coroutine)
        finally:
            lock, users = self._locks[chat]
            if users == 1:  # nobody else holds or waits for this chat's lock
                del self._locks[chat]
            else:
                self._locks[chat] = (lock, users - 1)

    async def _across_processes(self, chat: int, coroutine: Awaitable[Any]) -> None:
        key = f"yibao:{{tg-lock:{chat}}}"
        token = secrets.token_hex(8)
        deadline = time.monotonic() + LOCK_MS / 1000
        while not await self.runtime.redis.set(key, token, nx=True, px=LOCK_MS):
            if time.monotonic() > deadline:
                break  # a crashed holder: its lock expires; compare-and-set still protects the session
            await asyncio.sleep(0.02)
        try:
            await coroutine
        finally:
            await self._unlock(keys=[key], args=[token])

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


# -- formatting ------------------------------------------------------------------------------


def _keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    rows = ([(reply.unfold,)] if reply.unfold else []) + list(reply.buttons)  # details first: read before acting
    if not rows:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.label, callback_data=b.id) for b in row] for row in rows])


def html_chunks(reply: Reply, limit: int = MessageLimit.MAX_TEXT_LENGTH) -> list[str]:
    """The reply as escaped HTML (title in bold), cut at line ends into messages Telegram accepts."""
    lines = ([f"<b>{html.escape(reply.title)}</b>", ""] if reply.title else []) + [
        html.escape(line) for line in reply.text.split("\n")]

    def cut(line: str) -> int:  # one enormous line: cut it, never inside an entity
        at = line.rfind("&", 0, limit)
        return limit if at < limit - 8 else at

    return pack_lines(lines, limit, len, cut) or ["…"]


MERGE_LIMIT = 3000


def merge_replies(replies: list[Reply]) -> list[Reply]:
    """Fold a reply without buttons into the one after it ("that amount is unreadable" + the question
    again): one message instead of two reads better and keeps a chat under Telegram's one message a
    second."""
    merged: list[Reply] = []
    for reply in replies:
        last = merged[-1] if merged else None
        if last and not last.buttons and not reply.title and len(last.text) + len(reply.text) < MERGE_LIMIT:
            merged[-1] = Reply(f"{last.text.rstrip()}\n\n{reply.text}", last.title, reply.buttons, reply.details,
                               reply.unfold)
        else:
            merged.append(reply)
    return merged


# -- the bridge between updates and the dialogue -----------------------------------------------


class TelegramBridge:
    def __init__(self, runtime: Runtime, metrics: Metrics, bot: Bot):
        self.runtime = runtime
        self.metrics = metrics
        self.bot = bot
        settings = runtime.settings
        self.throttle = Throttle(runtime.redis, settings.throttle_rate, settings.throttle_burst)

    @staticmethod
    def key(update: Update) -> SessionKey:
        chat, user = update.effective_chat, update.effective_user
        return SessionKey(PLATFORM, str(chat.id), str(user.id if user else chat.id))

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        text = (update.effective_message.text or "")[:MAX_INPUT]
        name, _, argument = text[1:].partition(" ")
        await self.run(update, Incoming(command=name.split("@")[0].lower(), argument=argument))

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        text = message.text if message and message.text is not None else None
        await self.run(update, Incoming(text=text[:MAX_INPUT] if text is not None else None))

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        await self.run(update, Incoming(choice=(query.data or "")[:64]))

    async def run(self, update: Update, incoming: Incoming) -> None:
        """One update for the dialogue: the turn and its replies."""

        async def turn() -> None:
            result = await self.runtime.dialogue.handle(self.key(update), incoming)
            if result.kind == "estimate":
                self.metrics.inc("yibao_estimates_total")
            await self.deliver(update, result)

        await self.guarded(update, turn)

    async def guarded(self, update: Update, work: Callable[[], Awaitable[None]]) -> None:
        """What every handler shares: the flood limit, metrics, log context, and an apology on errors."""
        started = time.perf_counter()
        token = update_context(str(update.update_id))
        key = self.key(update)
        self.metrics.inc("yibao_updates_total")
        try:
            verdict = await self.throttle.check(PLATFORM, key.user)
            if verdict is not Verdict.ALLOW:
                await self._throttled(update, verdict)
                return
            await work()
        except Exception:
            self.metrics.inc("yibao_errors_total")
            log.exception("update failed", extra={"chat": hash_id(key.chat), "event": "error"})
            await self._apologise(update)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe(elapsed)
            log.debug("update handled", extra={"chat": hash_id(key.chat), "ms": round(elapsed * 1000, 1)})
            reset_update_context(token)

    async def deliver(self, update: Update, turn: Turn) -> None:
        query = update.callback_query
        if query is not None and turn.kind == "details" and turn.replies:
            await self.answer_press(query)
            if await self._edit_in_place(query, turn.replies[0]):
                return
        elif query is not None:
            await self._settle_button(query, turn)
        chat_id = update.effective_chat.id
        quote = reply_target(update)  # in a group: the first message quotes the one it answers
        for reply in merge_replies(turn.replies):
            await self.send(chat_id, reply, quote)
            quote = None

    async def send(self, chat_id: int, reply: Reply, quote: ReplyParameters | None = None,
                   chunks: list[str] | None = None) -> None:
        chunks = chunks or html_chunks(reply)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            await self.bot.send_message(chat_id, chunk, parse_mode=ParseMode.HTML,
                                   reply_markup=_keyboard(reply) if last else None,
                                   link_preview_options=LinkPreviewOptions(is_disabled=True),
                                   reply_parameters=quote if i == 0 else None)

    @staticmethod
    async def answer_press(query) -> None:
        """Answer a button press, best effort: Telegram refuses a press answered too late (updates
        waiting through a restart) or twice (the apology after a failed turn); that must not cost the
        person their reply."""
        try:
            await query.answer()
        except TelegramError as bad:
            log.debug("could not answer the button press: %s", type(bad).__name__)

    async def _settle_button(self, query, turn: Turn) -> None:
        """Answer the press; mark the question with the choice and retire its keyboard (cosmetic: a
        refused edit is logged, and the replies still go out)."""
        await self.answer_press(query)
        message = query.message
        if message is None or not turn.replies or not getattr(message, "text", None):
            return
        try:
            if turn.answered:
                text = f"{message.text_html}\n\n→ <b>{html.escape(turn.answered)}</b>"
                await query.edit_message_text(text[: MessageLimit.MAX_TEXT_LENGTH], parse_mode=ParseMode.HTML)
            elif message.reply_markup:
                await query.edit_message_reply_markup(None)
        except TelegramError as bad:  # "message is not modified", a message too old to edit, a 502
            log.debug("could not edit the answered message: %s", bad.message)

    async def _edit_in_place(self, query, reply: Reply) -> bool:
        """The estimate unfolded into the message whose details button was pressed (what does not fit
        follows as new messages); False when Telegram refuses the edit, so the reply is sent instead."""
        chunks = html_chunks(reply)
        try:
            await query.edit_message_text(chunks[0], parse_mode=ParseMode.HTML,
                                          reply_markup=_keyboard(reply) if len(chunks) == 1 else None,
                                          link_preview_options=LinkPreviewOptions(is_disabled=True))
        except TelegramError as bad:  # a message too old to edit, "message is not modified", a 502
            log.debug("could not unfold the estimate in place: %s", bad.message)
            return False
        if len(chunks) > 1:
            await self.send(query.message.chat_id, reply, chunks=chunks[1:])  # the keyboard goes with the last
        return True

    async def _throttled(self, update: Update, verdict: Verdict) -> None:
        self.metrics.inc("yibao_throttled_total")
        if update.callback_query:
            await self.answer_press(update.callback_query)
        if verdict is Verdict.NOTICE:
            lang = await self.language(self.key(update))
            await self.bot.send_message(update.effective_chat.id, t(lang, "errors.throttled"))

    async def _apologise(self, update: Update) -> None:
        try:
            lang = await self.language(self.key(update))
            if update.callback_query:
                await self.answer_press(update.callback_query)
            await self.bot.send_message(update.effective_chat.id, t(lang, "errors.apology"))
        except Exception:  # the apology itself failed (Telegram down): the log already has the error
            log.warning("could not send the apology", extra={"event": "error"})

    async def language(self, key: SessionKey) -> str:
        """The language the person chose in the dialogue (their session), else the default."""
        session, _ = await self.runtime.store.load(key)
        lang = (session or {}).get("l")
        return lang if lang in LANGUAGES else DEFAULT_LANGUAGE

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Errors outside `run` (PTB's own): logged without the update's content."""
        log.error("telegram error: %s", type(context.error).__name__, exc_info=context.error,
                  extra={"event": "error"})


# -- assembly --------------------------------------------------------------------------------


def base_file_url(base_url: str) -> str:
    """The file URL beside a Bot API URL: …/bot{token} → …/file/bot{token}."""
    head, sep, tail = base_url.rpartition("/bot")
    return f"{head}/file/bot{tail}" if sep else base_url


def build_application(runtime: Runtime, metrics: Metrics, *, polling: bool) -> tuple[Application, TelegramBridge]:
    settings: Settings = runtime.settings
    builder = (ApplicationBuilder().token(settings.telegram_token.value)
               .concurrent_updates(ChatOrderedProcessor(runtime)))
    if settings.telegram_base_url:
        builder = builder.base_url(settings.telegram_base_url).base_file_url(base_file_url(settings.telegram_base_url))
    if not polling:
        builder = builder.updater(None)
    application = builder.build()
    bridge = TelegramBridge(runtime, metrics, application.bot)
    handlers = [
        CommandHandler(list(COMMANDS), bridge.on_command),
        CallbackQueryHandler(bridge.on_button),
        MessageHandler(filters.ALL, bridge.on_message),
    ]
    application.add_handlers(handlers)
    application.add_handler(group_gate(), group=GATE_GROUP)  # in groups: only what is meant for the bot
    application.add_error_handler(bridge.on_error)
    return application, bridge


async def register_commands(application: Application) -> None:
    """The command menu, in Chinese (the default) and English."""
    for lang in LANGUAGES:
        commands = [BotCommand(name, raw(lang, f"menu.{name}")) for name in MENU]
        code = None if lang == DEFAULT_LANGUAGE else lang
        await application.bot.set_my_commands(commands, language_code=code)


def webhook_path(settings: Settings) -> str:
    from urllib.parse import urlparse

    return urlparse(settings.webhook_url or "").path or "/telegram"


def add_webhook_route(app: web.Application, application: Application, settings: Settings) -> None:
    """POST <path of WEBHOOK_URL>: checks the secret header, then handles the update before answering,
    so an update is acknowledged only once handled (Telegram retries the ones that fail)."""
    secret = settings.secret_token()

    async def receive(request: web.Request) -> web.Response:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not secrets.compare_digest(given.encode(), secret.encode()):
            return web.Response(status=403, text="forbidden")
        try:
            data = await request.json()
            update = Update.de_json(data, application.bot)
        except (ValueError, TypeError, KeyError, TelegramError):
            return web.Response(status=400, text="not an update")
        processor = application.update_processor
        await processor.process_update(update, application.process_update(update))
        return web.Response(text="ok")

    app.router.add_post(webhook_path(settings), receive)
