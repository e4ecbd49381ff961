"""Telegram commands for policy-change notices: broadcasts for admins (subscriptions for everyone are in
`bot.notices.telegram_subscriptions`, which this class extends).

- Admins (ADMIN_IDS): /broadcast → text → target → preview with the recipient count → confirm;
  /broadcasts lists recent ones (with a cancel button while they run); /reload reloads the policies
  and sends each admin a ready-to-approve notice per changed region and language.

The composer's state lives in Redis (`yibao:{telegram:<admin>}:compose`), like every conversation.
Handlers here run in group -1, before the dialogue's, and stop the update when they consume it.
"""

from __future__ import annotations

import json
import logging

from telegram import Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.notices.jobs import JobStatus
from bot.notices.sending import eta_seconds, progress_bar
from bot.notices.service import MAX_TEXT, BadBroadcast, telegram_length
from bot.notices.telegram_subscriptions import SubscriptionCommands
from conversations.replies import Reply
from conversations.store import SessionKey
from conversations.texts import DEFAULT_LANGUAGE, raw, t

log = logging.getLogger(__name__)

COMPOSE_TTL = 3600
LIMIT = 4000  # below Telegram's 4096 characters a message


class NoticeCommands(SubscriptionCommands):
    """The admins' commands: /broadcast composer, /broadcasts, /reload and the drafted notices."""

    def handlers(self) -> list:
        admins = filters.User(user_id=list(self.admins)) if self.admins else None
        found = [
            CommandHandler(["subscribe", "unsubscribe", "subscriptions"], self.on_subscription_command),
            CommandHandler(["broadcast", "broadcasts", "reload"], self.on_admin_command),
            CallbackQueryHandler(self.on_button, pattern=r"^(sub|unsub|bc|draft):"),
        ]
        if admins is not None:
            found += [
                CommandHandler("cancel", self.on_compose_cancel, filters=admins),
                MessageHandler(filters.TEXT & ~filters.COMMAND & admins, self.on_compose_text),
            ]
        return found

    def add_to(self, application: Application) -> None:
        application.add_handlers(self.handlers(), group=-1)

    # -- buttons ----------------------------------------------------------------------------------

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.bridge.guarded(update, lambda: self._button(update))
        raise ApplicationHandlerStop

    async def _button(self, update: Update) -> None:
        query = update.callback_query
        await self.bridge.answer_press(query)
        kind, _, value = (query.data or "").partition(":")
        lang = await self._lang(update)
        chat_id = update.effective_chat.id
        if kind in ("sub", "unsub") and value in self.service.policies.regions:
            if await self._may_manage(update, lang):
                await self._retire_keyboard(query)
                await self._toggle(chat_id, kind == "sub", value, lang)
            return
        if not self.is_admin(update):
            await self._say(chat_id, t(lang, "notices.admin_only"))
            return
        await self._retire_keyboard(query)
        if kind == "bc":
            await self._compose_button(update, value, lang)
        elif kind == "draft":
            await self._draft_button(update, value, lang)

    @staticmethod
    async def _retire_keyboard(query) -> None:
        try:
            if query.message and query.message.reply_markup:
                await query.edit_message_reply_markup(None)
        except BadRequest:
            pass

    # -- admin commands ---------------------------------------------------------------------

    async def on_admin_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.bridge.guarded(update, lambda: self._admin_command(update))
        raise ApplicationHandlerStop

    async def _admin_command(self, update: Update) -> None:
        lang = await self._lang(update)
        chat_id = update.effective_chat.id
        if not self.is_admin(update):
            await self._say(chat_id, t(lang, "notices.admin_only"))
            return
        command = (update.effective_message.text or "")[1:].split(" ")[0].split("@")[0].lower()
        if command == "broadcast":
            await self._set_compose(update, {"step": "text"})
            await self._say(chat_id, t(lang, "notices.compose_text"))
        elif command == "broadcasts":
            await self._list(chat_id, lang)
        else:
            await self._reload(lang)

    async def _list(self, chat_id: int, lang: str) -> None:
        jobs = await self.service.broadcasts.recent(10)
        if not jobs:
            await self._say(chat_id, t(lang, "notices.list_empty"))
            return
        lines = [t(lang, "notices.list_title")] + [t(lang, "notices.list_line", **_status_values(j, lang))
                                                   for j in jobs]
        running = [[(f"✖ {j.id}", f"bc:stop:{j.id}")] for j in jobs if j.state in ("queued", "sending")]
        await self._say(chat_id, "\n".join(lines), running or None)

    async def _reload(self, lang: str) -> None:
        result = await self.service.reload()
        for admin in self.admins:
            try:
                await self._report_reload(admin, result, lang)
            except TelegramError:  # an admin who never started the bot, or blocked it: tell the others
                log.warning("could not tell an admin about the reload", extra={"event": "reload"})

    async def _report_reload(self, admin: int, result, lang: str) -> None:
        if not result.ok:
            errors = "\n".join(result.errors[:20])
            await self._say(admin, t(lang, "notices.reload_failed", errors=errors)[:LIMIT])
            return
        await self._say(admin, t(lang, "notices.reload_ok", regions=result.regions, changes=result.changes))
        for draft, region, draft_lang, text in result.drafts:
            name = self.service.policies.regions[region].name(lang) if region in self.service.policies.regions \
                else region
            title = raw(lang, "notices.draft_title").format(region=name, lang=draft_lang)  # t() has its own `lang`
            await self._say(admin, (title + "\n\n" + text)[:LIMIT],
                            [[(t(lang, "notices.draft_approve", region=name), f"draft:ok:{draft}"),
                              (t(lang, "notices.draft_discard"), f"draft:no:{draft}")]])

    async def reload_from_signal(self) -> None:
        """SIGHUP: reload and tell the admins, in Chinese (no chat to take a language from)."""
        try:
            await self._reload(DEFAULT_LANGUAGE)
        except Exception:  # a signal has nobody to apologise to: the log is the report
            log.exception("reload on SIGHUP failed", extra={"event": "reload"})

    async def _draft_button(self, update: Update, value: str, lang: str) -> None:
        action, _, draft = value.partition(":")
        chat_id = update.effective_chat.id
        if action == "ok":
            try:
                status = await self.service.approve(draft, str(chat_id))
            except BadBroadcast as bad:
                await self._say(chat_id, str(bad))
                return
            if status is None:
                await self._say(chat_id, t(lang, "notices.draft_gone"))
            else:
                await self._announce(chat_id, status, lang)
        elif await self.service.discard(draft):
            await self._say(chat_id, t(lang, "notices.draft_discarded"))
        else:
            await self._say(chat_id, t(lang, "notices.draft_gone"))

    # -- the composer -------------------------------------------------------------------------

    def _compose_key(self, update: Update) -> str:
        return self.bridge.runtime.store.user_key("telegram", str(update.effective_user.id), "compose")

    async def _get_compose(self, update: Update) -> dict | None:
        raw = await self.bridge.runtime.redis.get(self._compose_key(update))
        return json.loads(raw) if raw else None

    async def _set_compose(self, update: Update, state: dict | None) -> None:
        key = self._compose_key(update)
        if state is None:
            await self.bridge.runtime.redis.delete(key)
            return
        await self.bridge.runtime.redis.set(key, json.dumps(state, ensure_ascii=False), ex=COMPOSE_TTL)
        await self.bridge.runtime.store.remember_key("telegram", str(update.effective_user.id), key)

    async def on_compose_cancel(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self._get_compose(update) is None:
            return  # not composing: /cancel is the dialogue's
        await self._set_compose(update, None)
        await self._say(update.effective_chat.id, t(await self._lang(update), "notices.compose_cancelled"))
        raise ApplicationHandlerStop

    async def on_compose_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        state = await self._get_compose(update)
        if state is None or state.get("step") != "text":
            return  # not composing: the text is for the dialogue
        await self.bridge.guarded(update, lambda: self._compose_text(update, state))
        raise ApplicationHandlerStop

    async def _compose_text(self, update: Update, state: dict) -> None:
        lang = await self._lang(update)
        text = (update.effective_message.text or "").strip()
        if telegram_length(text) > MAX_TEXT:
            await self._say(update.effective_chat.id, t(lang, "notices.compose_too_long"))
            return
        await self._set_compose(update, {"step": "target", "text": text})
        buttons = self._region_buttons("bc:target", sorted(self.service.policies.regions), lang)
        buttons.append([(t(lang, "notices.compose_all"), "bc:target:*")])
        await self._say(update.effective_chat.id, t(lang, "notices.compose_target"), buttons)

    async def _compose_button(self, update: Update, value: str, lang: str) -> None:
        chat_id = update.effective_chat.id
        action, _, arg = value.partition(":")
        if action == "stop":
            await self.service.broadcasts.cancel(arg)
            await self._list(chat_id, lang)
            return
        state = await self._get_compose(update)
        if state is None:
            await self._say(chat_id, t(lang, "notices.draft_gone"))
            return
        if action == "target" and state.get("step") == "target":
            regions = None if arg == "*" else [arg]
            count = await self.subs.count(self.service.region_ids(regions))
            target = t(lang, "notices.compose_all") if regions is None else \
                self.service.policies.regions[arg].name(lang)
            await self._set_compose(update, {**state, "step": "confirm", "regions": regions})
            preview = t(lang, "notices.compose_preview", count=count, target=target, text=state["text"])
            await self._say(chat_id, preview[:4000], [[(t(lang, "notices.compose_confirm"), "bc:confirm:"),
                                                       (t(lang, "notices.compose_cancel"), "bc:cancel:")]])
        elif action == "confirm" and state.get("step") == "confirm":
            await self._set_compose(update, None)
            try:
                status = await self.service.start(state["text"], state.get("regions"), None, str(chat_id))
            except BadBroadcast as bad:
                await self._say(chat_id, str(bad))
                return
            await self._announce(chat_id, status, lang)
        else:
            await self._set_compose(update, None)
            await self._say(chat_id, t(lang, "notices.compose_cancelled"))

    async def _announce(self, chat_id: int, status: JobStatus, lang: str) -> None:
        if status.total == 0:
            await self._say(chat_id, t(lang, "notices.compose_nobody"))
            return
        message = await self._say(chat_id, t(lang, "notices.queued", id=status.id, total=status.total))
        await self.service.broadcasts.set_progress_message(status.id, message.message_id)

    # -- progress ---------------------------------------------------------------------------

    async def on_progress(self, status: JobStatus, final: bool) -> None:
        """Edit the admin's progress message; at the end, a final report."""
        if not status.admin_chat:
            return
        lang = await self.bridge.language(SessionKey("telegram", status.admin_chat, status.admin_chat))
        values = _status_values(status, lang)
        if final:
            await self._say(int(status.admin_chat), t(lang, "notices.final", **values))
            return
        if status.progress_message is None:
            return
        text = t(lang, "notices.progress", **values, bar=progress_bar(status),
                 eta=eta_seconds(status, self.service.runtime.settings.broadcast_rate))
        try:
            await self.bridge.bot.edit_message_text(text, chat_id=int(status.admin_chat),
                                                    message_id=status.progress_message)
        except BadRequest as bad:
            log.debug("progress not edited: %s", bad.message)



def _status_values(status: JobStatus, lang: str) -> dict:
    state = t(lang, f"notices.state_{status.state}") if status.state in ("done", "cancelled") else status.state
    return {"id": status.id, "state": state, "sent": status.sent, "blocked": status.blocked,
            "failed": status.failed, "pending": status.pending, "total": status.total}


__all__ = ["NoticeCommands", "Reply"]
