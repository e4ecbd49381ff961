"""`RedisYearStore`: a person's insurance year in Redis (implements `conversations.year_store.YearStore`).

One key a person, in the person's hash tag (see `bot.store`)::

    yibao:{<platform>:<user>}:year   HASH  v = version, d = the book as compact JSON (profile and
                                           ledgers, each ledger with its own expiry date)
                                     EXPIREAT = YEAR_KEEP_DAYS after the end of the latest insurance
                                     year it holds; a ledger past its own expiry is left out when read
                                     and dropped at the next write

The save script checks the version, writes, sets the expiry and registers the key in the person's
index set (made persistent, like any registered key) in one step, so `/forget` deletes it with the
rest. Load = 1 round trip (HMGET; `load_turn` reads it in the session's round trip), save = 1 (EVALSHA).
"""

from __future__ import annotations

import json

from bot.store import RedisSessionStore, _decode
from conversations.store import SessionKey

__all__ = ["RedisYearStore"]

# KEYS[1] book hash, KEYS[2] index set; ARGV[1] expected version, ARGV[2] JSON, ARGV[3] expire at (unix s).
_SAVE_LUA = """
local cur = redis.call('HGET', KEYS[1], 'v')
if not cur then cur = '0' end
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[3]))
redis.call('SADD', KEYS[2], KEYS[1])
redis.call('PERSIST', KEYS[2])
return 1
"""


class RedisYearStore:
    """Books in Redis beside the sessions of `sessions` (same prefix, same hash tags, same index)."""

    SUFFIX = "year"

    def __init__(self, sessions: RedisSessionStore) -> None:
        self.sessions = sessions
        self.redis = sessions.redis
        self._save_script = self.redis.register_script(_SAVE_LUA)

    def book_key(self, platform: str, user: str) -> str:
        return self.sessions.user_key(platform, user, self.SUFFIX)

    async def load_book(self, platform: str, user: str) -> tuple[dict | None, int]:
        version, data = await self.redis.hmget(self.book_key(platform, user), ["v", "d"])
        return self._book(version, data)

    async def load_turn(self, key: SessionKey) -> tuple[dict | None, int, dict | None, int]:
        """The session and the book in one pipeline (both keys carry the person's hash tag)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.sessions.session_key(key), ["v", "d"])
            pipe.hmget(self.book_key(key.platform, key.user), ["v", "d"])
            (s_version, s_data), (b_version, b_data) = await pipe.execute()
        session = (_decode(s_data), int(s_version)) if s_version is not None and s_data is not None else (None, 0)
        return (*session, *self._book(b_version, b_data))

    @staticmethod
    def _book(version: bytes | None, data: bytes | None) -> tuple[dict | None, int]:
        if version is None or data is None:
            return None, 0
        try:
            book = json.loads(data)
        except ValueError:
            book = None  # unreadable: treated as empty, overwritten by the next save
        return (book if isinstance(book, dict) else None), int(version)

    async def save_book(self, platform: str, user: str, book: dict, version: int, expire_at: int) -> bool:
        text = json.dumps(book, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        ok = await self._save_script(
            keys=[self.book_key(platform, user), self.sessions.index_key(platform, user)],
            args=[str(int(version)), text.encode("utf-8", "surrogatepass"), int(expire_at)],
        )
        return bool(ok)

    def __repr__(self) -> str:
        return f"RedisYearStore(prefix={self.sessions.prefix!r})"
