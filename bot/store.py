"""`RedisSessionStore`: conversation sessions in Redis (implements `conversations.store.SessionStore`).

Key layout (``prefix`` defaults to ``yibao``; each id part is percent-encoded with
``urllib.parse.quote(part, safe="")``, so ``:``, ``{``, ``}``, ``%``, spaces and non-ASCII never appear
raw inside a part — plain ids such as ``telegram``, ``42`` or ``-1001234`` stay as they are)::

    yibao:{<platform>:<user>}:session:<chat>   HASH  v = version (int, 1 after the first save)
                                                     d = session as compact JSON (UTF-8)
                                                     u = id of the last message applied (idempotent turns)
                                                     o = that turn's replies until delivered (outbox)
                                               expires ttl_seconds after the last save
    yibao:{<platform>:<user>}:lock:<chat>      STRING the holder of the conversation's lock (a lease of
                                               a few seconds, renewed while its turn runs)
    yibao:{<platform>:<user>}:flood            HASH  the person's flood-limit token bucket (bot/throttle.py)
    yibao:{<platform>:<user>}:keys             SET   every key stored about the user: the session keys
                                               (added by save) and keys registered via remember_key
    yibao:{<platform>:<user>}:<suffix>         keys of other modules (e.g. subscriptions), built with
                                               `user_key()` and registered with `remember_key()`

The ``{platform:user}`` hash tag puts all keys of one user into one Redis Cluster slot, so the save
script, the forget script and multi-key DEL are legal in a cluster too.

Round trips (measured in tests/test_store.py): ``load`` = 1 (HMGET), ``begin`` = 1 (EVALSHA: lock,
applied-id check, flood limit and load together), ``save`` = 1 (EVALSHA of a Lua script that checks the
applied id and the version, writes JSON + version (+ id + outbox), refreshes EXPIRE and the index atomically;
the very first call on a server that lacks the script costs 2 extra for NOSCRIPT + SCRIPT LOAD),
``delete_user`` = 1 (EVALSHA), ``remember_key`` = 1 (EVALSHA), ``finish`` and ``renew`` = 1 each.

Index expiry: while the user has only sessions, the index set expires with them (its TTL is raised to
``ttl_seconds`` on every save, never lowered). Once another module registers a key with
`remember_key`, the index is made persistent, because that key may live longer than any session.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import redis.asyncio as aioredis

from bot.throttle import BUCKET_FUNCTION, bucket_ttl
from conversations.store import DUPLICATE, Guard, Loaded, SessionKey

__all__ = ["DEFAULT_TTL_SECONDS", "RedisSessionStore"]

DEFAULT_TTL_SECONDS = 7 * 24 * 3600

# applied(last, id): was message `id` applied, `last` being the conversation's last applied id? A
# conversation's ids grow; decimal ids are compared as numbers (as strings: a 64-bit id stays exact).
_APPLIED_LUA = """
local function applied(last, id)
  if not last or id == '' then return false end
  if last == id then return true end
  if string.match(last, '^%d+$') and string.match(id, '^%d+$') then
    if #id ~= #last then return #id < #last end
    return id < last
  end
  return false
end
"""

# KEYS[1] session hash, KEYS[2] index set; ARGV[1] expected version, ARGV[2] JSON, ARGV[3] ttl seconds,
# ARGV[4] the message's id ('' none), ARGV[5] outbox JSON ('' none). 1 saved, 0 version conflict,
# 2 the message was applied already (nothing written).
_SAVE_LUA = _APPLIED_LUA + """
local s = redis.call('HMGET', KEYS[1], 'v', 'u')
if applied(s[2], ARGV[4]) then return 2 end
local cur = s[1] or '0'
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'v', 1)
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'u', ARGV[4])
  if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'o', ARGV[5]) else redis.call('HDEL', KEYS[1], 'o') end
end
local ttl = tonumber(ARGV[3])
redis.call('EXPIRE', KEYS[1], ttl)
local index_ttl = redis.call('TTL', KEYS[2])
redis.call('SADD', KEYS[2], KEYS[1])
if index_ttl == -2 or (index_ttl >= 0 and index_ttl < ttl) then
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
"""

# KEYS[1] session hash, KEYS[2] lock, KEYS[3] flood bucket, KEYS[4] a hash of the person's to read too (v, d);
# ARGV[1] message id ('' none), ARGV[2] lock holder ('' no lock), ARGV[3] lock ms, ARGV[4] flood rate ('' no
# flood limit), ARGV[5] burst, ARGV[6] now (s), ARGV[7] bucket ttl, ARGV[8] '1': read KEYS[4].
# → {'locked'} | {'applied', version, '', outbox} | {'ok', version, data, '', verdict, read v, read d}
_BEGIN_LUA = _APPLIED_LUA + BUCKET_FUNCTION + """
local holder = ARGV[2]
if holder ~= '' then
  local cur = redis.call('GET', KEYS[2])
  if cur and cur ~= holder then return {'locked'} end
end
local s = redis.call('HMGET', KEYS[1], 'v', 'd', 'u', 'o')
if applied(s[3], ARGV[1]) then
  if s[4] and holder ~= '' then redis.call('SET', KEYS[2], holder, 'PX', ARGV[3]) end
  return {'applied', s[1] or '0', '', s[4] or ''}
end
local verdict = 1
if ARGV[4] ~= '' then
  verdict = bucket(KEYS[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
end
if verdict == 1 and holder ~= '' then redis.call('SET', KEYS[2], holder, 'PX', ARGV[3]) end
local r = {false, false}
if ARGV[8] == '1' then r = redis.call('HMGET', KEYS[4], 'v', 'd') end
if not s[1] or not s[2] then return {'ok', '0', '', '', verdict, r[1] or '', r[2] or ''} end
return {'ok', s[1], s[2], '', verdict, r[1] or '', r[2] or ''}
"""

# KEYS[1] session hash, KEYS[2] lock; ARGV[1] holder ('' none), ARGV[2] message id ('' none).
_FINISH_LUA = """
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'u') == ARGV[2] then redis.call('HDEL', KEYS[1], 'o') end
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS[1] lock; ARGV[1] holder, ARGV[2] lease ms.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS[1] index set, KEYS[2] flood bucket. Deletes every member (and the lock beside each session), the
# bucket and the set itself; returns the number of keys deleted.
_DELETE_USER_LUA = """
local members = redis.call('SMEMBERS', KEYS[1])
local n = redis.call('DEL', KEYS[2])
for _, m in ipairs(members) do
  local head, chat = string.match(m, '^(.*}:)session:(.*)$')
  if head then n = n + redis.call('DEL', head .. 'lock:' .. chat) end
end
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode_or_none(data: bytes | str) -> dict | None:
    """A hash's JSON that may be unreadable (then None: treated as empty, overwritten by the next save)."""
    try:
        found = _decode(data)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


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
        self._begin_script = redis.register_script(_BEGIN_LUA)
        self._finish_script = redis.register_script(_FINISH_LUA)
        self._renew_script = redis.register_script(_RENEW_LUA)

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

    def lock_key(self, key: SessionKey) -> str:
        return f"{self.user_prefix(key.platform, key.user)}lock:{_part(key.chat)}"

    def flood_key(self, platform: str, user: str) -> str:
        return self.user_prefix(platform, user) + "flood"

    # -- SessionStore ----------------------------------------------------------------------------

    async def load(self, key: SessionKey) -> tuple[dict | None, int]:
        version, data = await self.redis.hmget(self.session_key(key), ["v", "d"])
        if version is None or data is None:
            return None, 0
        return _decode(data), int(version)

    async def save(self, key: SessionKey, session: dict, version: int, *, update_id: str | None = None,
                   outbox: dict | None = None) -> bool | str:
        if not isinstance(session, dict):
            raise TypeError(f"session must be a dict, not {type(session).__name__}")
        if version < 0:
            raise ValueError("version must be >= 0")
        ok = await self._save_script(
            keys=[self.session_key(key), self.index_key(key.platform, key.user)],
            args=[str(int(version)), _encode(session), self.ttl_seconds, update_id or "",
                  _encode(outbox) if update_id and outbox is not None else b""],
        )
        return DUPLICATE if int(ok) == 2 else bool(ok)

    async def begin(self, key: SessionKey, guard: Guard) -> Loaded:
        rate, burst = guard.flood or ("", 0)
        ttl = bucket_ttl(rate, burst) if guard.flood else 0
        also = self.user_key(key.platform, key.user, guard.read) if guard.read else self.session_key(key)
        found = await self._begin_script(
            keys=[self.session_key(key), self.lock_key(key), self.flood_key(key.platform, key.user), also],
            args=[guard.update_id or "", guard.holder or "", int(guard.lock_ms), rate, burst,
                  f"{time.time():.6f}", ttl, "1" if guard.read else ""],
        )
        status = _text(found[0])
        if status == "locked":
            return Loaded(locked=False)
        if status == "applied":
            return Loaded(None, int(found[1]), applied=True, outbox=_decode(found[3]) if found[3] else None)
        read = None
        if guard.read:
            read = (_decode_or_none(found[6]), int(found[5])) if found[5] and found[6] else (None, 0)
        return Loaded(_decode(found[2]) if found[2] else None, int(found[1]), verdict=int(found[4]), read=read)

    async def finish(self, key: SessionKey, holder: str | None, update_id: str | None) -> None:
        if holder or update_id:
            await self._finish_script(keys=[self.session_key(key), self.lock_key(key)],
                                      args=[holder or "", update_id or ""])

    async def renew(self, key: SessionKey, holder: str, lock_ms: int) -> bool:
        return bool(await self._renew_script(keys=[self.lock_key(key)], args=[holder, int(lock_ms)]))

    async def delete_user(self, platform: str, user: str) -> None:
        await self._delete_script(keys=[self.index_key(platform, user), self.flood_key(platform, user)], args=[])

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

