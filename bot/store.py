"""`RedisSessionStore`: conversation sessions in Redis (implements `conversations.store.SessionStore`).

Key layout (``prefix`` defaults to ``yibao``; each id part is percent-encoded with
``urllib.parse.quote(part, safe="")``, so ``:``, ``{``, ``}``, ``%``, spaces and non-ASCII never appear
raw inside a part — plain ids such as ``telegram``, ``42`` or ``-1001234`` stay as they are)::

    yibao:{<platform>:<user>}:session:<chat>   HASH  v = version (int, 1 after the first save)
                                                     d = session as compact JSON (UTF-8)
                                               expires ttl_seconds after the last save
    yibao:{<platform>:<user>}:keys             SET   every key stored about the user: the session keys
                                               (added by save) and keys registered via remember_key
    yibao:{<platform>:<user>}:<suffix>         keys of other modules (e.g. subscriptions), built with
                                               `user_key()` and registered with `remember_key()`

The ``{platform:user}`` hash tag puts all keys of one user into one Redis Cluster slot, so the save
script, the forget script and multi-key DEL are legal in a cluster too.

Round trips (measured in tests/test_store.py): ``load`` = 1 (HMGET), ``save`` = 1 (EVALSHA of a Lua
script that checks the version, writes JSON + version, refreshes EXPIRE and the index atomically;
the very first call on a server that lacks the script costs 2 extra for NOSCRIPT + SCRIPT LOAD),
``delete_user`` = 1 (EVALSHA), ``remember_key`` = 1 (EVALSHA).

Index expiry: while the user has only sessions, the index set expires with them (its TTL is raised to
``ttl_seconds`` on every save, never lowered). Once another module registers a key with
`remember_key`, the index is made persistent, because that key may live longer than any session.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import redis.asyncio as aioredis

from conversations.store import SessionKey

__all__ = ["DEFAULT_TTL_SECONDS", "RedisSessionStore"]

DEFAULT_TTL_SECONDS = 7 * 24 * 3600

# KEYS[1] session hash, KEYS[2] index set; ARGV[1] expected version, ARGV[2] JSON, ARGV[3] ttl seconds.
_SAVE_LUA = """
local cur = redis.call('HGET', KEYS[1], 'v')
if not cur then cur = '0' end
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'v', 1)
local ttl = tonumber(ARGV[3])
redis.call('EXPIRE', KEYS[1], ttl)
local index_ttl = redis.call('TTL', KEYS[2])
redis.call('SADD', KEYS[2], KEYS[1])
if index_ttl == -2 or (index_ttl >= 0 and index_ttl < ttl) then
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
"""

# KEYS[1] index set. Deletes every member and the set itself; returns the number of keys deleted.
_DELETE_USER_LUA = """
local members = redis.call('SMEMBERS', KEYS[1])
local n = 0
for i = 1, #members, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #members) do chunk[#chunk + 1] = members[j] end
  n = n + redis.call('DEL', unpack(chunk))
end
return n + redis.call('DEL', KEYS[1])
"""

# KEYS[1] index set, ARGV[1] key to register.
_REMEMBER_LUA = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PERSIST', KEYS[1])
return 1
"""


def _part(value: str) -> str:
    return quote(str(value), safe="")


def _encode(session: dict) -> bytes:
    # surrogatepass: a lone surrogate in user input must not make the whole turn fail.
    text = json.dumps(session, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", "surrogatepass")


def _decode(data: bytes | str) -> dict:
    if isinstance(data, bytes):
        data = data.decode("utf-8", "surrogatepass")
    return json.loads(data)


class RedisSessionStore:
    """Sessions in Redis with compare-and-set saves; see the module docstring for the key layout."""

    def __init__(
        self, redis: aioredis.Redis, ttl_seconds: int = DEFAULT_TTL_SECONDS, prefix: str = "yibao"
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        if not prefix or any(c in prefix for c in "{}"):
            raise ValueError("prefix must be non-empty and must not contain '{' or '}'")
        self.redis = redis
        self.ttl_seconds = int(ttl_seconds)
        self.prefix = prefix
        self._save_script = redis.register_script(_SAVE_LUA)
        self._delete_script = redis.register_script(_DELETE_USER_LUA)
        self._remember_script = redis.register_script(_REMEMBER_LUA)

    # -- key names -------------------------------------------------------------------------------

    def user_prefix(self, platform: str, user: str) -> str:
        """``yibao:{<platform>:<user>}:`` — every key about the user starts with this (one cluster slot)."""
        return f"{self.prefix}:{{{_part(platform)}:{_part(user)}}}:"

    def user_key(self, platform: str, user: str, suffix: str) -> str:
        """A key for another module's data about the user, in the user's slot (register it with
        `remember_key` so that `delete_user` removes it)."""
        if not suffix or suffix == "keys" or suffix.startswith("session:"):
            raise ValueError(f"reserved or empty key suffix: {suffix!r}")
        return self.user_prefix(platform, user) + suffix

    def session_key(self, key: SessionKey) -> str:
        return f"{self.user_prefix(key.platform, key.user)}session:{_part(key.chat)}"

    def index_key(self, platform: str, user: str) -> str:
        return self.user_prefix(platform, user) + "keys"

    # -- SessionStore ----------------------------------------------------------------------------

    async def load(self, key: SessionKey) -> tuple[dict | None, int]:
        version, data = await self.redis.hmget(self.session_key(key), ["v", "d"])
        if version is None or data is None:
            return None, 0
        return _decode(data), int(version)

    async def save(self, key: SessionKey, session: dict, version: int) -> bool:
        if not isinstance(session, dict):
            raise TypeError(f"session must be a dict, not {type(session).__name__}")
        if version < 0:
            raise ValueError("version must be >= 0")
        ok = await self._save_script(
            keys=[self.session_key(key), self.index_key(key.platform, key.user)],
            args=[str(int(version)), _encode(session), self.ttl_seconds],
        )
        return bool(ok)

    async def delete_user(self, platform: str, user: str) -> None:
        await self._delete_script(keys=[self.index_key(platform, user)], args=[])

    # -- for other modules -----------------------------------------------------------------------

    async def remember_key(self, platform: str, user: str, key: str | bytes) -> None:
        """Register ``key`` (made with `user_key`) as data about the user, deleted by `delete_user`.

        The key must carry the user's hash tag so that deleting stays within one cluster slot.
        """
        name = key.decode() if isinstance(key, bytes) else key
        if not name.startswith(self.user_prefix(platform, user)):
            raise ValueError(f"{name!r} is not a key of {platform}:{user}; build it with user_key()")
        await self._remember_script(keys=[self.index_key(platform, user)], args=[name])

    def __repr__(self) -> str:
        return f"RedisSessionStore(prefix={self.prefix!r}, ttl_seconds={self.ttl_seconds})"

