"""Telegram commands for subscriptions to a region's policy-change notices.

/subscribe [REGION], /unsubscribe [REGION], /subscriptions, and the "notify me" button after an estimate
(the dialogue's `subscribe` effect). `/forget` also drops the person from subscriber sets and queued
broadcasts. The admin commands (`bot.notices.telegram_admin`) build on this class.
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Update
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot.channels.telegram import TelegramBridge
from bot.channels.telegram_groups import may_manage
from bot.notices.service import NoticeService
from conversations.questions import SMALL_SET
from conversations.store import SessionKey
from conversations.texts import t
from rules.regions import region_index


class SubscriptionCommands:
    """/subscribe, /unsubscribe, /subscriptions and the "notify me" effect, plus the plumbing the admin
    commands share (`NoticeCommands` extends this)."""


    def __init__(self, service: NoticeService, bridge: TelegramBridge, admin_ids: frozenset[int]):
        self.service = service
        self.bridge = bridge
        self.admins = admin_ids
        self.subs = service.subscriptions

    # -- plumbing ---------------------------------------------------------------------------

    async def _lang(self, update: Update) -> str:
        return await self.bridge.language(self.bridge.key(update))

    async def _say(self, chat_id: int, text: str, buttons: list[list[tuple[str, str]]] | None = None):
        markup = InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data) for label, data in row]
                                       for row in buttons]) if buttons else None
        return await self.bridge.bot.send_message(chat_id, text, reply_markup=markup,
                                                  link_preview_options=LinkPreviewOptions(is_disabled=True))

    def _region_names(self, lang: str) -> str:
        sep = ", " if lang == "en" else "、"
        if len(self.service.policies.regions) > SMALL_SET:  # the whole country: no list of 350 names
            return t(lang, "commands.regions_hint")
        return sep.join(r.name(lang) for r in sorted(self.service.policies, key=lambda r: r.id))

    def _region_buttons(self, prefix: str, regions: list[str], lang: str) -> list[list[tuple[str, str]]]:
        names = [(self.service.policies.regions[r].name(lang), f"{prefix}:{r}") for r in regions
                 if r in self.service.policies.regions]
        return [names[i:i + 3] for i in range(0, len(names), 3)]

    def is_admin(self, update: Update) -> bool:
        return bool(update.effective_user) and update.effective_user.id in self.admins

    async def _may_manage(self, update: Update, lang: str) -> bool:
        """In a group only its administrators change its subscriptions; others are told so."""
        sender = update.effective_message.sender_chat if update.effective_message else None
        user = update.effective_user
        if await may_manage(self.bridge.bot, update.effective_chat.id, user.id if user else None,
                            sender.id if sender else None):
            return True
        await self._say(update.effective_chat.id, t(lang, "notices.group_admins_only"))
        return False

    # -- subscriptions --------------------------------------------------------------------------

    async def on_subscription_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.bridge.guarded(update, lambda: self._subscription_command(update))
        raise ApplicationHandlerStop

    async def _subscription_command(self, update: Update) -> None:
        lang = await self._lang(update)
        text = update.effective_message.text or ""
        command, _, argument = text[1:].partition(" ")
        command = command.split("@")[0].lower()
        chat = str(update.effective_chat.id)
        if command == "subscriptions":
            regions = await self.subs.regions_of(chat)
            names = ", ".join(self.service.policies.regions[r].name(lang) for r in regions
                              if r in self.service.policies.regions)
            await self._say(update.effective_chat.id, t(lang, "notices.list", regions=names) if names
                            else t(lang, "notices.none"))
            return
        if not await self._may_manage(update, lang):
            return
        if not argument.strip():
            if command == "subscribe" and len(self.service.policies.regions) > SMALL_SET:
                await self._say(update.effective_chat.id, t(lang, "notices.subscribe_usage"))
            elif command == "subscribe":
                await self._say(update.effective_chat.id, t(lang, "notices.subscribe_choose"),
                                self._region_buttons("sub", sorted(self.service.policies.regions), lang))
            else:
                regions = await self.subs.regions_of(chat)
                if not regions:
                    await self._say(update.effective_chat.id, t(lang, "notices.none"))
                else:
                    await self._say(update.effective_chat.id, t(lang, "notices.unsubscribe_choose"),
                                    self._region_buttons("unsub", regions, lang))
            return
        found = region_index(self.service.policies).lookup(argument.strip()).region
        region = self.service.policies.regions.get(found) if found else None
        if region is None:
            await self._say(update.effective_chat.id, t(lang, "notices.unknown_region", region=argument.strip()[:40],
                                                        regions=self._region_names(lang)))
            return
        await self._toggle(update.effective_chat.id, command == "subscribe", region.id, lang)

    async def _toggle(self, chat_id: int, subscribe: bool, region_id: str, lang: str) -> None:
        name = self.service.policies.regions[region_id].name(lang)
        if subscribe:
            added = await self.subs.subscribe(str(chat_id), region_id, lang)
            await self._say(chat_id, t(lang, "notices.subscribed" if added else "notices.already", region=name))
        else:
            removed = await self.subs.unsubscribe(str(chat_id), region_id)
            await self._say(chat_id, t(lang, "notices.unsubscribed" if removed else "notices.not_subscribed",
                                       region=name))

    async def subscribe_effect(self, key: SessionKey, region_id: str, lang: str) -> None:
        """The dialogue's "notify me" button after an estimate (in a group: an administrator's press)."""
        if key.platform != "telegram" or region_id not in self.service.policies.regions:
            return
        if not await may_manage(self.bridge.bot, int(key.chat), int(key.user)):
            await self._say(int(key.chat), t(lang, "notices.group_admins_only"))
            return
        await self._toggle(int(key.chat), True, region_id, lang)

    async def forget_effect(self, key: SessionKey, argument: str, lang: str) -> None:
        """/forget: the user's subscriptions go with the rest of their data."""
        if key.platform == "telegram":
            await self.subs.remove_chat(key.user)
            await self.service.broadcasts.drop_recipient(key.user)  # not even a notice already queued
