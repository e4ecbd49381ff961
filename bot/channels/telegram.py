"""The Telegram adapter: python-telegram-bot updates in, dialogue turns through, messages out.

Assembly is in `build_application`, one visible list of handlers. Each handler is thin: it turns the
update into an `Incoming`, lets the dialogue run the turn (state read from and written to Redis on
every update, never kept here), and sends the replies as HTML messages with inline keyboards. A
pressed button is answered and its question message edited to show the choice, so the chat reads as
a clean record.

Updates of one chat are handled one at a time and in order inside a process (`ChatOrderedProcessor`);
across processes a conversation is leased to one turn at a time by the session store's lock (a lease
of a few seconds, renewed while the turn runs, so it dies with a crashed process).

Every update is applied at most once: its `update_id` goes with the turn into the session store, which
records it atomically with the new session; a redelivery (a webhook answered too late, a crash before
the acknowledgement) gets the replies its first delivery still owed, and is never applied again. The
lock, the redelivery check and the flood limit are one round trip (`SessionStore.begin`), the save a
second, the release a third.

When Redis does not answer, the person is told so politely (at most every `BUSY_EVERY` seconds a
chat) and the update is not acknowledged: the webhook answers 503 and the poller does not confirm it,
so Telegram delivers it again later; nothing is lost and nothing needs a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError
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
from telegram.error import BadRequest, NetworkError, TelegramError
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
from bot.http_input import BadInput, read_json
from bot.logs import hash_id, reset_update_context, update_context
from bot.metrics import Metrics
from bot.runtime import Runtime
from bot.throttle import Verdict
from conversations.replies import Incoming, Reply, Turn
from conversations.store import Guard, Loaded, SessionKey
from conversations.texts import DEFAULT_LANGUAGE, LANGUAGES, raw, t

log = logging.getLogger(__name__)

PLATFORM = "telegram"
COMMANDS = ("start", "estimate", "back", "cancel", "help", "language", "regions", "policy", "ask", "year",
            "forget")
MENU = COMMANDS[:1] + COMMANDS[2:] + ("subscribe", "unsubscribe", "subscriptions")  # shown in the command menu
MAX_INPUT = 1000  # characters passed to the dialogue; longer texts are cut here
ALLOWED_UPDATES = ["message", "callback_query"]
MAX_UPDATE_BYTES = 256 * 1024  # a message is at most 4096 characters; updates are far smaller
SEND_TIMEOUT = 30.0  # a slow Bot API answer is waited for, not taken for a failure (and sent again)
LOCK_MS = 5_000  # the conversation's lease: a crashed holder's lapses within this
LOCK_WAIT = 20.0  # seconds an update waits for a live holder before it is left for a redelivery
BUSY_EVERY = 30.0  # seconds between two "busy" notices to one chat during an outage
UNAVAILABLE = (RedisError, OSError)  # OSError includes TimeoutError


class Unavailable(Exception):
    """The update could not be handled now (Redis does not answer, the conversation stayed locked);
    it must not be acknowledged, so that Telegram delivers it again."""


class NotDelivered(Unavailable):
    """The turn was saved but the Bot API did not take its replies (a network error, a timeout): left
    unacknowledged, so the redelivery sends the replies it owes (from the outbox), without a second turn."""


class ChatOrderedProcessor(BaseUpdateProcessor):
    """Many chats at once, each chat's updates one at a time in arrival order (an asyncio lock per
    chat, FIFO). Across processes the session store's lock keeps a conversation to one turn at a time."""

    def __init__(self, max_concurrent_updates: int = 256):
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}  # chat → its lock, holders + waiters

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat.id if isinstance(update, Update) and update.effective_chat else None
        if chat is None:
            await coroutine
            return
        lock, users = self._locks.get(chat, (asyncio.Lock(), 0))
        self._locks[chat] = (lock, users + 1)
        try:
            async with lock:
                await coroutine
        finally:
            lock, users = self._locks[chat]
            if users == 1:  # nobody else holds or waits for this chat's lock
                del self._locks[chat]
            else:
                self._locks[chat] = (lock, users - 1)

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
        self.flood = (settings.throttle_rate, settings.throttle_burst)
        self.unprocessed: set[int] = set()  # update ids handled without success: not to be acknowledged
        self._busy_told: dict[int, float] = {}  # chat → when it was last told the service is busy

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

    def take_unprocessed(self, update_id: int) -> bool:
        """Whether the update failed for want of Redis (and must not be acknowledged); forgets it."""
        if update_id in self.unprocessed:
            self.unprocessed.discard(update_id)
            return True
        return False

    async def run(self, update: Update, incoming: Incoming) -> None:
        """One update for the dialogue, applied at most once: lease the conversation (and check the
        redelivery and the flood limit) → the turn → its replies → release, in three round trips."""
        key = self.key(update)
        incoming = replace(incoming, update_id=str(update.update_id))
        holder = secrets.token_hex(8)

        async def turn() -> None:
            guard = self.runtime.dialogue.guard(update_id=incoming.update_id, holder=holder, lock_ms=LOCK_MS,
                                                flood=self.flood)
            loaded = await self._begin(key, guard)
            if loaded.verdict != 1:
                await self._throttled(update, Verdict(loaded.verdict), loaded.session)
                return
            delivered = False
            try:
                async with self._lease(key, holder):
                    result = await self.runtime.dialogue.handle(key, incoming, loaded=loaded)
                    if result.duplicate:
                        self.metrics.inc("yibao_redeliveries_total")
                        log.info("redelivered update not applied again", extra={"event": "redelivery"})
                    elif result.kind == "estimate":
                        self.metrics.inc("yibao_estimates_total")
                    try:
                        await self.deliver(update, result)
                    except NetworkError as bad:  # TimedOut, 5xx: the Bot API may take it later
                        if isinstance(bad, BadRequest):  # (PTB's BadRequest is a NetworkError) it never will
                            raise
                        raise NotDelivered(type(bad).__name__) from None
                    delivered = True
            finally:
                with contextlib.suppress(*UNAVAILABLE):
                    await self.runtime.store.finish(key, holder, incoming.update_id if delivered else None)

        await self.guarded(update, turn, flood=False)

    async def _begin(self, key: SessionKey, guard: Guard) -> Loaded:
        """`begin`, waiting while another process's turn holds the conversation (a live holder renews
        its lease; a dead one's lapses within LOCK_MS)."""
        deadline = time.monotonic() + LOCK_WAIT
        delay = 0.02
        while True:
            loaded = await self.runtime.store.begin(key, guard)
            if loaded.locked:
                return loaded
            if time.monotonic() > deadline:
                raise Unavailable("the conversation stayed locked")
            await asyncio.sleep(delay)
            delay = min(0.25, delay * 1.5)

    @contextlib.asynccontextmanager
    async def _lease(self, key: SessionKey, holder: str):
        """Renew the conversation's lock while the turn runs (a slow Bot API, a slow Redis)."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(LOCK_MS / 3000)
                with contextlib.suppress(*UNAVAILABLE):
                    await self.runtime.store.renew(key, holder, LOCK_MS)

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewing.cancel()

    async def guarded(self, update: Update, work: Callable[[], Awaitable[None]], *, flood: bool = True) -> None:
        """What every handler shares: the flood limit (unless `work` charges it itself), metrics, log
        context, a polite "busy" while Redis does not answer, and an apology on other errors."""
        started = time.perf_counter()
        token = update_context(str(update.update_id))
        key = self.key(update)
        self.metrics.inc("yibao_updates_total")
        try:
            if flood:
                loaded = await self.runtime.store.begin(key, Guard(flood=self.flood))
                if loaded.verdict != 1:
                    await self._throttled(update, Verdict(loaded.verdict), loaded.session)
                    return
            await work()
        except (Unavailable, *UNAVAILABLE) as bad:
            self.metrics.inc("yibao_unavailable_total")
            self.unprocessed.add(update.update_id)
            log.warning("update not handled, left for a redelivery: %s", type(bad).__name__,
                        extra={"chat": hash_id(key.chat), "event": "unavailable"})
            if not isinstance(bad, NotDelivered):  # the Bot API is what failed: nothing to tell it
                await self._tell_busy(update)
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

    async def _throttled(self, update: Update, verdict: Verdict, session: dict | None) -> None:
        self.metrics.inc("yibao_throttled_total")
        if update.callback_query:
            await self.answer_press(update.callback_query)
        if verdict is Verdict.NOTICE:
            await self.bot.send_message(update.effective_chat.id, t(_language_of(session), "errors.throttled"))

    async def _tell_busy(self, update: Update) -> None:
        """"服务暂时繁忙，请稍后再试" (without Redis we cannot know the person's language), at most every
        BUSY_EVERY seconds a chat, so that redeliveries during an outage do not flood the chat."""
        chat = update.effective_chat.id
        now = time.monotonic()
        if now - self._busy_told.get(chat, -BUSY_EVERY) < BUSY_EVERY:
            return
        self._busy_told[chat] = now
        if len(self._busy_told) > 10_000:
            self._busy_told = {c: at for c, at in self._busy_told.items() if now - at < BUSY_EVERY}
        try:
            if update.callback_query:
                await self.answer_press(update.callback_query)
            await asyncio.wait_for(self.bot.send_message(chat, t(DEFAULT_LANGUAGE, "errors.busy")), 5)
        except Exception:
            log.warning("could not send the busy notice", extra={"event": "error"})

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
        return _language_of(session)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Errors outside `run` (PTB's own): logged without the update's content."""
        log.error("telegram error: %s", type(context.error).__name__, exc_info=context.error,
                  extra={"event": "error"})


def usable(update: Update) -> bool:
    """Whether the update has the shape the handlers rely on (Telegram's always has; a forged or
    mangled one may not): a chat and a sender with whole-number ids, text and button data as strings.
    Anything else is acknowledged and ignored, never a traceback."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or type(chat.id) is not int or (user is not None and type(user.id) is not int):
        return False
    message, query = update.effective_message, update.callback_query
    if message is not None and not isinstance(getattr(message, "text", None), str | None):
        return False
    return query is None or isinstance(query.data, str | None)


def _language_of(session: dict | None) -> str:
    lang = (session or {}).get("l") if isinstance(session, dict) else None
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


# -- assembly --------------------------------------------------------------------------------


def base_file_url(base_url: str) -> str:
    """The file URL beside a Bot API URL: …/bot{token} → …/file/bot{token}."""
    head, sep, tail = base_url.rpartition("/bot")
    return f"{head}/file/bot{tail}" if sep else base_url


def build_application(runtime: Runtime, metrics: Metrics) -> tuple[Application, TelegramBridge]:
    """The PTB application without PTB's poller: long polling is `telegram_polling.Poller`, which
    confirms an update only once handled."""
    settings: Settings = runtime.settings
    builder = (ApplicationBuilder().token(settings.telegram_token.value)
               .concurrent_updates(ChatOrderedProcessor())
               .read_timeout(SEND_TIMEOUT).write_timeout(SEND_TIMEOUT))
    if settings.telegram_base_url:
        builder = builder.base_url(settings.telegram_base_url).base_file_url(base_file_url(settings.telegram_base_url))
    application = builder.updater(None).build()
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


def add_webhook_route(app: web.Application, application: Application, bridge: TelegramBridge,
                      settings: Settings) -> None:
    """POST <path of WEBHOOK_URL>: checks the secret header, then handles the update before answering,
    so an update is acknowledged (200) only once handled; one that could not be handled for want of
    Redis gets 503, and Telegram delivers it again later. A body that is not an update is 400."""
    secret = settings.secret_token()

    async def receive(request: web.Request) -> web.Response:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not secrets.compare_digest(given.encode("utf-8", "surrogatepass"), secret.encode()):
            return web.Response(status=403, text="forbidden")
        try:
            data = await read_json(request, max_bytes=MAX_UPDATE_BYTES)
            if not isinstance(data, dict) or type(data.get("update_id")) is not int:
                raise BadInput(400, "not an update")
            update = Update.de_json(data, application.bot)
            if not usable(update):
                return web.Response(text="ignored")  # acknowledged: there is nothing to do with it
        except BadInput as bad:
            return web.Response(status=bad.status, text=bad.reason)
        except Exception:  # any shape PTB cannot read: not an update we can handle
            return web.Response(status=400, text="not an update")
        processor = application.update_processor
        await processor.process_update(update, application.process_update(update))
        if bridge.take_unprocessed(update.update_id):
            return web.Response(status=503, text="busy, send it again later", headers={"Retry-After": "5"})
        return web.Response(text="ok")

    app.router.add_post(webhook_path(settings), receive)
