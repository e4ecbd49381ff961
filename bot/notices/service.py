"""Policy-change notices: who subscribed, starting a broadcast, and drafts made from a policy reload.

Shared by the Telegram commands (`bot.notices.telegram_admin`) and the HTTP admin API (`bot.notices.admin_api`), so
a broadcast means the same thing whichever way an admin starts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass

from bot.notices.jobs import BroadcastStore, JobStatus
from bot.notices.subscriptions import Subscriptions
from bot.runtime import Runtime
from rules.loader import PolicyErrors, load_policies
from rules.policy import PolicySet

log = logging.getLogger(__name__)

MAX_TEXT = 3500  # in Telegram's units (see telegram_length); leaves room under its 4096
DRAFT_TTL = 14 * 24 * 3600


def telegram_length(text: str) -> int:
    """A text's length as Telegram counts it: UTF-16 code units after entity parsing. Broadcasts are
    sent without a parse mode, so there is nothing to parse and the text is what Telegram counts; an
    emoji or a rare CJK character outside the BMP counts two."""
    return len(text.encode("utf-16-le")) // 2


class BadBroadcast(ValueError):
    """A broadcast request that cannot be carried out; the message says why (shown to the admin)."""


@dataclass(frozen=True, slots=True)
class Reload:
    """What a policy reload did: the changes and, per region and language, a draft notice (by id)."""

    ok: bool
    regions: int = 0
    changes: int = 0
    drafts: tuple[tuple[str, str, str, str], ...] = ()  # (draft id, region id, lang, text)
    errors: tuple[str, ...] = ()


class NoticeService:
    def __init__(self, runtime: Runtime, subscriptions: Subscriptions, broadcasts: BroadcastStore):
        self.runtime = runtime
        self.subscriptions = subscriptions
        self.broadcasts = broadcasts

    @property
    def policies(self) -> PolicySet:
        return self.runtime.policies

    def region_ids(self, names: list[str] | None) -> list[str]:
        """Region ids for names or aliases; all regions for None; BadBroadcast for an unknown one."""
        if names is None:
            return sorted(self.policies.regions)
        ids = []
        for name in names:
            region = self.policies.find(str(name))
            if region is None:
                raise BadBroadcast(f"unknown region: {name!r}")
            ids.append(region.id)
        return sorted(set(ids))

    async def start(self, text: str, regions: list[str] | None, lang: str | None,
                    admin_chat: str | None = None, *, by_id: bool = False) -> JobStatus:
        """Create a broadcast job. `by_id`: `regions` are ids as stored (a draft may name a region the
        reloaded policies no longer have; its subscribers are still there)."""
        text = text.strip()
        if not text:
            raise BadBroadcast("text is empty")
        if telegram_length(text) > MAX_TEXT:
            raise BadBroadcast(f"text is longer than {MAX_TEXT} characters as Telegram counts them "
                               f"(UTF-16 units: {telegram_length(text)}; an emoji counts 2)")
        if lang not in (None, "zh", "en"):
            raise BadBroadcast("lang must be 'zh', 'en' or null")
        ids = sorted(set(regions)) if by_id and regions is not None else self.region_ids(regions)
        recipients = await self.subscriptions.recipients(ids, lang)
        job = await self.broadcasts.create(text, sorted(recipients), regions=None if regions is None else ids,
                                           lang=lang, admin_chat=admin_chat)
        log.info("broadcast created", extra={"event": "broadcast", "job": job, "count": len(recipients)})
        status = await self.broadcasts.status(job)
        assert status is not None
        return status

    # -- reloads and drafts -------------------------------------------------------------------

    def _draft_key(self, draft: str) -> str:
        return f"yibao:{{drafts}}:{draft}"

    async def reload(self) -> Reload:
        """Load the policy folder again; keep the old set if the new one is invalid."""
        from rules.diff import diff_policies, draft_notices

        try:  # parsing ~350 files and comparing them is CPU work: off the event loop, so traffic flows on
            new = await asyncio.to_thread(load_policies, self.runtime.settings.policy_dir)
        except PolicyErrors as bad:
            log.error("policy reload failed, the policies loaded before stay in use:\n%s",
                      "\n".join(f"  {e}" for e in bad.errors), extra={"event": "reload"})
            return Reload(False, errors=tuple(str(e) for e in bad.errors))
        changes = await asyncio.to_thread(diff_policies, self.policies, new)
        self.runtime.replace_policies(new)
        drafts = []
        for lang in ("zh", "en"):
            for region, text in draft_notices(changes, lang).items():
                draft = secrets.token_hex(6)
                await self.runtime.redis.set(self._draft_key(draft),
                                             json.dumps({"region": region, "lang": lang, "text": text}),
                                             ex=DRAFT_TTL)
                drafts.append((draft, region, lang, text))
        log.info("policies reloaded", extra={"event": "reload", "count": len(changes)})
        return Reload(True, len(new.regions), len(changes), tuple(drafts))

    async def approve(self, draft: str, admin_chat: str | None) -> JobStatus | None:
        """Send a draft to its region's subscribers of its language; None if it is gone."""
        key = self._draft_key(draft)
        raw = await self.runtime.redis.getdel(key)  # taken atomically: two admins approving send it once
        if raw is None:
            return None
        data = json.loads(raw)
        try:
            return await self.start(data["text"], [data["region"]], data["lang"], admin_chat, by_id=True)
        except BadBroadcast:
            await self.runtime.redis.set(key, raw, ex=DRAFT_TTL)  # give it back: the admin may discard it
            raise

    async def discard(self, draft: str) -> bool:
        return bool(await self.runtime.redis.delete(self._draft_key(draft)))
