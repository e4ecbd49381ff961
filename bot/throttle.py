"""A flood limit shared by every bot process through Redis: a token bucket per user (or address).

One Lua call per update decides atomically, so two processes serving the same user count together
and nobody else is slowed. The first update over the limit is told so ("notice"); later ones in the
same flood are dropped silently, so throttling itself never floods the chat.
"""

from __future__ import annotations

import time
from enum import Enum

import redis.asyncio as aioredis

# A Lua function, also used inside the session store's begin script (bot/store.py).
# bucket(key, rate tokens/s, burst, now s (float), ttl s) → 1 allowed, 0 dropped with a notice due,
# -1 dropped silently.
BUCKET_FUNCTION = """
local function bucket(key, rate, burst, now, ttl)
  local b = redis.call('HMGET', key, 't', 'ts', 'n')
  local tokens = tonumber(b[1]) or burst
  local ts = tonumber(b[2]) or now
  local noticed = b[3] == '1'
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  local verdict
  if tokens >= 1 then
    tokens = tokens - 1
    noticed = false
    verdict = 1
  elseif noticed then
    verdict = -1
  else
    noticed = true
    verdict = 0
  end
  redis.call('HSET', key, 't', tokens, 'ts', now, 'n', noticed and '1' or '0')
  redis.call('EXPIRE', key, ttl)
  return verdict
end
"""

# KEYS[1] bucket hash; ARGV: rate (tokens/s), burst, now (s, float), ttl (s)
_BUCKET_LUA = BUCKET_FUNCTION + """
return bucket(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
"""


def bucket_ttl(rate: float, burst: int) -> int:
    """Seconds a bucket is kept after its last use: long enough to refill completely."""
    return max(60, int(burst / rate) + 60)


class Verdict(Enum):
    ALLOW = 1
    NOTICE = 0  # over the limit: drop, and say so once
    DROP = -1


class Throttle:
    def __init__(self, redis: aioredis.Redis, rate: float, burst: int, prefix: str = "yibao"):
        self.redis = redis
        self.rate = rate
        self.burst = burst
        self.prefix = prefix
        self._script = redis.register_script(_BUCKET_LUA)
        self._ttl = bucket_ttl(rate, burst)

    def key(self, scope: str, who: str) -> str:
        return f"{self.prefix}:{{throttle:{scope}:{who}}}"

    async def check(self, scope: str, who: str) -> Verdict:
        result = await self._script(
            keys=[self.key(scope, who)], args=[self.rate, self.burst, f"{time.time():.6f}", self._ttl]
        )
        return Verdict(int(result))
