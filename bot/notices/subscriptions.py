"""Who wants to hear about a region's policy changes, stored in Redis per region and language.

Keys::

    yibao:{subs:<region>}:chats         HASH chat id → language (zh | en); each region under its own
                                        hash tag, so on a Redis Cluster the index spreads over the nodes
    yibao:{<platform>:<chat>}:subs      SET of regions of one chat; registered in the user's index so
                                        /forget deletes it (in private chats chat id == user id)

Only platforms that can push a message later (Telegram) have subscriptions; the web chat does not.

Versions before 0.2 kept every region under the one tag `{subs}` (`yibao:{subs}:region:<region>`);
`migrate_legacy` moves such hashes to their own tags once, at start.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from bot.store import RedisSessionStore


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Subscriptions:
    def __init__(self, redis: aioredis.Redis, store: RedisSessionStore, platform: str = "telegram",
                 prefix: str = "yibao"):
        self.redis = redis
        self.store = store
        self.platform = platform
        self.prefix = prefix

    def region_key(self, region: str) -> str:
        return f"{self.prefix}:{{subs:{region}}}:chats"

    def legacy_region_key(self, region: str) -> str:
        return f"{self.prefix}:{{subs}}:region:{region}"

    async def migrate_legacy(self, regions: list[str]) -> int:
        """Move subscriber hashes of the one-tag layout to one tag per region; returns the regions moved.

        Idempotent and safe to run from several processes at once: HSETNX keeps a newer subscription's
        language, and the old hash is deleted only after its entries were copied.
        """
        moved = 0
        for region in regions:
            old = self.legacy_region_key(region)
            entries = await self.redis.hgetall(old)
            if not entries:
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                for chat, lang in entries.items():
                    pipe.hsetnx(self.region_key(region), chat, lang)
                await pipe.execute()
            await self.redis.delete(old)
            moved += 1
        return moved

    def chat_key(self, chat: str) -> str:
        return self.store.user_key(self.platform, chat, "subs")

    async def subscribe(self, chat: str, region: str, lang: str) -> bool:
        """True if newly subscribed (False: already was; the language is updated either way)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.region_key(region), chat, lang)
            pipe.sadd(self.chat_key(chat), region)
            _, added = await pipe.execute()
        await self.store.remember_key(self.platform, chat, self.chat_key(chat))
        return bool(added)

    async def unsubscribe(self, chat: str, region: str) -> bool:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hdel(self.region_key(region), chat)
            pipe.srem(self.chat_key(chat), region)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def regions_of(self, chat: str) -> list[str]:
        return sorted(r.decode() if isinstance(r, bytes) else r for r in await self.redis.smembers(self.chat_key(chat)))

    async def remove_chat(self, chat: str) -> None:
        """Drop every subscription of a chat (it blocked the bot, or asked to be forgotten)."""
        for region in await self.regions_of(chat):
            await self.redis.hdel(self.region_key(region), chat)
        await self.redis.delete(self.chat_key(chat))

    async def recipients(self, regions: list[str], lang: str | None = None) -> dict[str, str]:
        """Chat → language of everyone subscribed to any of `regions`, each chat once."""
        if not regions:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip a node on a cluster
            for region in regions:
                pipe.hgetall(self.region_key(region))
            hashes = await pipe.execute()
        found: dict[str, str] = {}
        for entries in hashes:
            for chat, chat_lang in entries.items():
                chat, chat_lang = _text(chat), _text(chat_lang)
                if (not lang or chat_lang == lang) and chat not in found:
                    found[chat] = chat_lang
        return found

    async def count(self, regions: list[str], lang: str | None = None) -> int:
        return len(await self.recipients(regions, lang))
