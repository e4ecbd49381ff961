"""Durable, rate-limited broadcasts of policy-change notices.

A broadcast is a job in Redis; every recipient's state is recorded there, so a job survives restarts,
any number of bot processes can work on it together, and nobody is sent a notice twice.

Keys (one job's keys share the hash tag `{bc:<id>}`; the job index and the rate limiter have their own)::

    yibao:{bc:<id>}:meta      HASH  text, lang, regions, state (queued|sending|done|cancelled), created,
                                    admin_chat, progress_message, total, sent, blocked, failed
    yibao:{bc:<id>}:pending   LIST  chat ids still to send to
    yibao:{bc:<id>}:inflight  HASH  chat id → lease deadline (ms): claimed by a worker, being sent
    yibao:{bc:<id>}:retry     ZSET  chat id → when to try again (ms), after a network error or a 5xx
    yibao:{bc:<id>}:attempts  HASH  chat id → attempts so far
    yibao:{bc:<id>}:done      HASH  chat id → sent | blocked | failed
    yibao:{bcindex}:jobs      ZSET  job id → created (s)
    yibao:{bcindex}:active    SET   jobs with work left
    yibao:{bcrate}:*                the global token bucket, per-chat and per-group windows, the 429 pause

Delivery: a worker claims one recipient (pending → inflight, atomically), waits for the rate limiter,
sends, and records the outcome (inflight → done) — one message in flight per worker. A claim is a short
lease (10 s) that its process renews every few seconds while it sends; every process also gives back
the leases that ran out, so a crashed worker's recipients are back in the queue within about 10 s.
All times are Redis's clock (`REDIS_NOW`), so machines whose clocks disagree agree on leases.

The windows that cannot be closed, both on the side of "again" rather than "never":
- a worker that dies after Telegram accepted its message but before the outcome was recorded leaves
  the recipient in `inflight`; when the lease expires the recipient is sent again. So a crash causes at
  most one duplicate per worker that was running (8 a process by default), and never a loss. A process
  that stalls longer than a lease (a frozen VM) is treated as dead the same way;
- a request that times out, or a 5xx from a proxy in front of the Bot API, may have been delivered
  all the same; it is retried (up to MAX_ATTEMPTS), so such an answer can repeat that one message.
Everything else (restarts, several processes, 429 storms, cancel, a Redis error) neither loses nor
duplicates a message.
"""


from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

STATES = ("queued", "sending", "done", "cancelled")
MAX_ATTEMPTS = 5
JOB_TTL = 30 * 24 * 3600  # a finished broadcast's record is kept a month, then forgotten


class Outcome(Enum):
    SENT = "sent"
    BLOCKED = "blocked"  # 403 or "chat not found": the subscription is removed
    FAILED = "failed"  # a permanent error (bad request), or transient ones MAX_ATTEMPTS times
    RETRY_AFTER = "retry_after"  # 429: pause everything
    TRANSIENT = "transient"  # 5xx or a network error: try this chat again later


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    retry_after: float = 0.0


Sender = Callable[[str, str], Awaitable[Result]]


@dataclass(frozen=True, slots=True)
class JobStatus:
    id: str
    state: str
    total: int
    sent: int
    blocked: int
    failed: int
    pending: int
    created: float
    regions: list[str] | None
    lang: str | None
    text: str
    admin_chat: str | None = None
    progress_message: int | None = None

    def as_json(self) -> dict:
        return {"id": self.id, "state": self.state, "total": self.total, "sent": self.sent,
                "blocked": self.blocked, "failed": self.failed, "pending": self.pending,
                "regions": self.regions, "lang": self.lang, "created": self.created}


# -- scripts -------------------------------------------------------------------------------

# Every time in these scripts (and the rate limiter's) is Redis's own clock, never a caller's: bot
# processes on machines whose clocks disagree then agree on leases, retries and rates. Redis before 5
# refuses a write after TIME unless the script asks for its effects to be replicated.
REDIS_NOW = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function redis_now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
"""

# KEYS meta, pending, inflight, retry, done; ARGV lease_ms
_CLAIM = REDIS_NOW + """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'sending' then return {'stop'} end
local now = redis_now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
for _, chat in ipairs(due) do
  redis.call('ZREM', KEYS[4], chat)
  redis.call('LPUSH', KEYS[2], chat)
end
local chat = redis.call('LPOP', KEYS[2])
while chat and redis.call('HEXISTS', KEYS[5], chat) == 1 do
  chat = redis.call('LPOP', KEYS[2])
end
if not chat then
  if redis.call('HLEN', KEYS[3]) == 0 and redis.call('ZCARD', KEYS[4]) == 0 then
    redis.call('HSET', KEYS[1], 'state', 'done')
    return {'done'}
  end
  local next_due = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  local wait = 200
  if next_due[2] then wait = math.max(0, math.ceil(tonumber(next_due[2]) - now)) end
  return {'wait', tostring(wait)}
end
redis.call('HSET', KEYS[3], chat, now + tonumber(ARGV[1]))
if state == 'queued' then redis.call('HSET', KEYS[1], 'state', 'sending') end
return {'chat', chat}
"""

# KEYS meta, inflight, done; ARGV chat, outcome
_RECORD = """
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 and redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
return 1
"""

# KEYS inflight, retry, attempts, done, meta; ARGV chat, delay_ms, max attempts.
# Returns 1 if another attempt is scheduled, 0 if the recipient is recorded as failed.
_RETRY = REDIS_NOW + """
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HINCRBY', KEYS[3], ARGV[1], 1) >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[4], ARGV[1], 'failed')
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
  return 0
end
redis.call('ZADD', KEYS[2], redis_now_ms() + tonumber(ARGV[2]), ARGV[1])
return 1
"""

# KEYS inflight, pending; ARGV chat
_REQUEUE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then redis.call('LPUSH', KEYS[2], ARGV[1]) end
return 1
"""

# KEYS inflight, retry; ARGV chat, delay_ms. Later, without counting an attempt (the chat's own window is full).
_DEFER = REDIS_NOW + """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], redis_now_ms() + tonumber(ARGV[2]), ARGV[1])
end
return 1
"""

# KEYS inflight; ARGV lease_ms, chat... The leases of recipients still being sent, extended (never revived:
# one already given back stays given back).
_RENEW = REDIS_NOW + """
local deadline = redis_now_ms() + tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[i], deadline)
    n = n + 1
  end
end
return n
"""

# KEYS inflight, pending. Leases that ran out go back to the queue (see the window above).
_RECLAIM = REDIS_NOW + """
local now = redis_now_ms()
local flat = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #flat, 2 do
  if tonumber(flat[i + 1]) < now then
    redis.call('HDEL', KEYS[1], flat[i])
    redis.call('LPUSH', KEYS[2], flat[i])
    n = n + 1
  end
end
return n
"""

# KEYS pending, retry, inflight, attempts, done; ARGV chat. The chat leaves every record of the job
# (the job's counts stay: they say how many, not who).
_DROP = """
redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return redis.call('HDEL', KEYS[5], ARGV[1])
"""

# KEYS meta; cancels unless finished
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'done' or state == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'cancelled')
return 1
"""


def text_of(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class BroadcastStore:
    """The jobs and their recipients in Redis; every change of a recipient's state is one script."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "yibao"):
        self.redis = redis
        self.prefix = prefix
        self._claim = redis.register_script(_CLAIM)
        self._record = redis.register_script(_RECORD)
        self._retry = redis.register_script(_RETRY)
        self._requeue = redis.register_script(_REQUEUE)
        self._defer = redis.register_script(_DEFER)
        self._reclaim = redis.register_script(_RECLAIM)
        self._renew = redis.register_script(_RENEW)
        self._cancel = redis.register_script(_CANCEL)
        self._drop = redis.register_script(_DROP)

    def key(self, job: str, part: str) -> str:
        return f"{self.prefix}:{{bc:{job}}}:{part}"

    @property
    def index(self) -> str:
        return f"{self.prefix}:{{bcindex}}:jobs"

    @property
    def active(self) -> str:
        return f"{self.prefix}:{{bcindex}}:active"

    async def create(self, text: str, recipients: list[str], *, regions: list[str] | None, lang: str | None,
                     admin_chat: str | None = None) -> str:
        job = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        meta = {"text": text, "lang": lang or "", "regions": json.dumps(regions) if regions is not None else "",
                "state": "queued" if recipients else "done", "created": f"{time.time():.3f}",
                "admin_chat": admin_chat or "", "total": len(recipients), "sent": 0, "blocked": 0, "failed": 0}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(job, "meta"), mapping=meta)
            for i in range(0, len(recipients), 1000):
                pipe.rpush(self.key(job, "pending"), *recipients[i:i + 1000])
            if not recipients:  # done at once, never active: its record expires like a finished one's
                pipe.expire(self.key(job, "meta"), JOB_TTL)
            await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.index, {job: time.time()})
            if recipients:
                pipe.sadd(self.active, job)
            await pipe.execute()
        return job

    async def set_progress_message(self, job: str, message_id: int) -> None:
        await self.redis.hset(self.key(job, "meta"), "progress_message", message_id)

    async def status(self, job: str) -> JobStatus | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key(job, "meta"))
            pipe.llen(self.key(job, "pending"))
            pipe.hlen(self.key(job, "inflight"))
            pipe.zcard(self.key(job, "retry"))
            meta, pending, inflight, retry = await pipe.execute()
        if not meta:
            return None
        m = {text_of(k): text_of(v) for k, v in meta.items()}
        return JobStatus(
            id=job, state=m["state"], total=int(m["total"]), sent=int(m.get("sent", 0)),
            blocked=int(m.get("blocked", 0)), failed=int(m.get("failed", 0)),
            pending=pending + inflight + retry if m["state"] != "done" else 0, created=float(m["created"]),
            regions=json.loads(m["regions"]) if m.get("regions") else None, lang=m.get("lang") or None,
            text=m["text"], admin_chat=m.get("admin_chat") or None,
            progress_message=int(m["progress_message"]) if m.get("progress_message") else None,
        )

    async def recent(self, count: int = 10) -> list[JobStatus]:
        ids = [text_of(j) for j in await self.redis.zrevrange(self.index, 0, count - 1)]
        found = [await self.status(j) for j in ids]
        return [s for s in found if s]

    async def active_jobs(self) -> list[str]:
        return sorted(text_of(j) for j in await self.redis.smembers(self.active))

    async def retire(self, job: str) -> None:
        """A finished job leaves the active set; its keys (chat ids among them) expire after JOB_TTL."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.srem(self.active, job)
            for part in ("meta", "pending", "inflight", "retry", "attempts", "done", "progress-lock"):
                pipe.expire(self.key(job, part), JOB_TTL)
            await pipe.execute()

    async def drop_recipient(self, chat: str) -> None:
        """Take a chat out of every job, running or finished (it asked to be forgotten): not sent to
        any more, and no record of it kept, not even the 30 days a finished job's records live."""
        jobs = {text_of(j) for j in await self.redis.zrange(self.index, 0, -1)} | set(await self.active_jobs())
        for job in sorted(jobs):
            await self._drop(keys=self._keys(job, "pending", "retry", "inflight", "attempts", "done"), args=[chat])

    async def cancel(self, job: str) -> int:
        """1 cancelled, 0 already finished, -1 no such job."""
        return int(await self._cancel(keys=[self.key(job, "meta")]))

    def _keys(self, job: str, *parts: str) -> list[str]:
        return [self.key(job, p) for p in parts]

    async def claim(self, job: str, lease_ms: int) -> tuple[str, str | None]:
        """('chat', id) to send to, leased for `lease_ms`; ('wait', ms until the next retry is due) when
        only retries remain; ('done'|'stop', None)."""
        reply = await self._claim(keys=self._keys(job, "meta", "pending", "inflight", "retry", "done"),
                                  args=[lease_ms])
        kind = text_of(reply[0])
        return kind, text_of(reply[1]) if len(reply) > 1 else None

    async def record(self, job: str, chat: str, outcome: Outcome) -> None:
        await self._record(keys=self._keys(job, "meta", "inflight", "done"), args=[chat, outcome.value])

    async def retry_later(self, job: str, chat: str, delay_s: float) -> bool:
        """Schedule another attempt; False when attempts ran out and the recipient counts as failed."""
        keys = self._keys(job, "inflight", "retry", "attempts", "done", "meta")
        return bool(await self._retry(keys=keys, args=[chat, int(delay_s * 1000), MAX_ATTEMPTS]))

    async def claim_final_report(self, job: str) -> bool:
        """True for exactly one caller: the one that reports the job's end."""
        return bool(await self.redis.hsetnx(self.key(job, "meta"), "final_reported", 1))

    async def requeue(self, job: str, chat: str) -> None:
        await self._requeue(keys=self._keys(job, "inflight", "pending"), args=[chat])

    async def defer(self, job: str, chat: str, delay_s: float) -> None:
        """Give the recipient back until `delay_s` from now (no attempt counted); others go first."""
        await self._defer(keys=self._keys(job, "inflight", "retry"), args=[chat, int(delay_s * 1000)])

    async def renew(self, job: str, chats: list[str], lease_ms: int) -> int:
        """Extend the leases of recipients this process is still sending to; how many were extended."""
        if not chats:
            return 0
        return int(await self._renew(keys=[self.key(job, "inflight")], args=[lease_ms, *chats]))

    async def reclaim_expired(self, job: str) -> int:
        """Recipients whose lease ran out (their worker died) go back to the queue; how many."""
        return int(await self._reclaim(keys=self._keys(job, "inflight", "pending")))

