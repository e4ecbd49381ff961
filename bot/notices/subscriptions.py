"""Who wants to hear about a region's policy changes, stored in Redis per region and language.

Keys::

    yibao:{subs}:region:<region>        HASH chat id → language (zh | en); all regions in one slot so a
                                        broadcast reads its recipients with one script
    yibao:{<platform>:<chat>}:subs      SET of regions of one chat; registered in the user's index so
                                        /forget deletes it (in private chats chat id == user id)

Only platforms that can push a message later (Telegram) have subscriptions; the web chat does not.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from bot.store import RedisSessionStore

# KEYS: the region hashes to read; ARGV[1]: language filter ('' = all). Returns chat, lang, chat, lang…
_RECIPIENTS_LUA = """
local seen, out = {}, {}
for _, key in ipairs(KEYS) do
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    local chat, lang = flat[i], flat[i + 1]
    if not seen[chat] and (ARGV[1] == '' or ARGV[1] == lang) then
      seen[chat] = true
      out[#out + 1] = chat
      out[#out + 1] = lang
    end
  end
end
return out
"""


class Subscriptions:
    def __init__(self, redis: aioredis.Redis, store: RedisSessionStore, platform: str = "telegram",
                 prefix: str = "yibao"):
        self.redis = redis
        self.store = store
        self.platform = platform
        self.prefix = prefix
        self._recipients = redis.register_script(_RECIPIENTS_LUA)

    def region_key(self, region: str) -> str:
        return f"{self.prefix}:{{subs}}:region:{region}"

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
        flat = await self._recipients(keys=[self.region_key(r) for r in regions], args=[lang or ""])
        items = [v.decode() if isinstance(v, bytes) else v for v in flat]
        return dict(zip(items[::2], items[1::2], strict=True))

    async def count(self, regions: list[str], lang: str | None = None) -> int:
        return len(await self.recipients(regions, lang))
