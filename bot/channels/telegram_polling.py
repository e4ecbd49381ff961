"""Long polling that confirms an update only once it was handled.

Telegram keeps sending an update in every `getUpdates` answer until a later call's `offset` passes its
id. python-telegram-bot's own poller confirms a batch as soon as it asks for the next one, before the
updates are handled: a crash, or Redis being down, would lose them. This poller asks with
``offset`` = the lowest update not yet handled (the watermark), so an update is confirmed only once it
and every update before it were handled; the ones Telegram sends again meanwhile are recognised by id
and skipped. An update that could not be handled for want of Redis (`TelegramBridge.unprocessed`) is
tried again after a pause until Redis answers; it stays unconfirmed all that time, so a restart gets it
again too. Applying it twice is impossible anyway: turns are idempotent (see bot/channels/telegram.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from telegram import Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError
from telegram.ext import Application

from bot.channels.telegram import usable

log = logging.getLogger(__name__)

RETRY_PAUSE = (0.5, 8.0)  # an unhandled update is tried again after this, doubling up to the second
ERROR_PAUSE = (0.5, 10.0)  # a failed getUpdates is tried again after this, doubling up to the second


class Poller:
    def __init__(self, application: Application, bridge, allowed_updates: list[str], *,
                 timeout: int = 10, limit: int = 100):
        self.application = application
        self.bridge = bridge
        self.allowed_updates = allowed_updates
        self.timeout = timeout
        self.limit = limit
        self.running = False
        self._handling: dict[int, asyncio.Task] = {}  # update id → its task, until handled
        self._tails: dict[object, asyncio.Task] = {}  # chat → its latest update's task (they run in order)
        self._next = 0  # one past the highest update id seen
        self._task: asyncio.Task | None = None

    def watermark(self) -> int:
        """The offset to poll with: every update below it was handled."""
        return min(self._handling, default=self._next)

    async def start(self) -> None:
        await self.application.bot.delete_webhook()
        self.running = True
        self._task = asyncio.create_task(self._poll(), name="telegram-polling")

    async def stop(self, timeout: float = 20.0) -> None:
        """Stop asking for updates, let those in hand finish (up to `timeout`), confirm the handled ones."""
        self.running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pending = list(self._handling.values())
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        if self._next:
            with contextlib.suppress(TelegramError):
                await self.application.bot.get_updates(offset=self.watermark(), timeout=0, limit=1,
                                                       allowed_updates=self.allowed_updates)

    async def _poll(self) -> None:
        pause = ERROR_PAUSE[0]
        while self.running:
            try:
                updates = await self.application.bot.get_updates(
                    offset=self.watermark() or None, timeout=self.timeout, limit=self.limit,
                    allowed_updates=self.allowed_updates)
            except InvalidToken:
                log.error("Telegram refused the token while polling; polling stops")
                self.running = False
                return
            except RetryAfter as wait:
                delay = wait.retry_after
                await asyncio.sleep(delay.total_seconds() if hasattr(delay, "total_seconds") else float(delay))
                continue
            except (Conflict, TelegramError) as bad:
                log.warning("getUpdates failed (%s); trying again in %.1f s", type(bad).__name__, pause)
                await asyncio.sleep(pause)
                pause = min(ERROR_PAUSE[1], pause * 2)
                continue
            pause = ERROR_PAUSE[0]
            fresh = [u for u in updates if u.update_id >= self._next and u.update_id not in self._handling]
            for update in fresh:
                self._next = max(self._next, update.update_id + 1)
                if usable(update):  # anything else is confirmed and ignored
                    self._handling[update.update_id] = self._schedule(update)
            if updates and not fresh:  # only updates still in hand came back: do not spin on them
                await asyncio.sleep(RETRY_PAUSE[0])

    def _schedule(self, update: Update) -> asyncio.Task:
        """A task for the update that starts once the chat's previous update was handled: an update
        tried again after an outage must not be overtaken by a later one of its chat."""
        chat = update.effective_chat.id if update.effective_chat else None
        task = asyncio.create_task(self._handle(update, self._tails.get(chat) if chat is not None else None))
        if chat is not None:
            self._tails[chat] = task
            task.add_done_callback(lambda done: self._tails.pop(chat) if self._tails.get(chat) is done else None)
        return task

    async def _handle(self, update: Update, previous: asyncio.Task | None) -> None:
        """Handle the update until it succeeds; only then does it leave `_handling` (and so may be
        confirmed). Stopping gives up on it: it stays in `_handling`, unconfirmed, for the next start."""
        if previous is not None:
            await asyncio.wait([previous])
            if not self.running:  # stopping: left unconfirmed for the next start
                return
        pause = RETRY_PAUSE[0]
        while True:
            processor = self.application.update_processor
            try:
                await processor.process_update(update, self.application.process_update(update))
            except Exception:  # process_update reports handler errors itself; this is a last resort
                log.exception("update %s could not be handled", update.update_id)
            if not self.bridge.take_unprocessed(update.update_id):
                self._handling.pop(update.update_id, None)
                return
            if not self.running:
                return
            await asyncio.sleep(pause)
            pause = min(RETRY_PAUSE[1], pause * 2)
