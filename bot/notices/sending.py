"""Sending broadcasts: the shared rate limiter (Telegram's limits, counted in Redis for every process)
and the runner whose workers claim recipients from the job store, wait their turn and record outcomes.

See `bot.notices.jobs` for the keys and the delivery guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from bot.notices.jobs import REDIS_NOW, BroadcastStore, JobStatus, Outcome, Result, Sender, text_of

log = logging.getLogger(__name__)

LEASE_S = 10.0  # a claim's lease; renewed every LEASE_S / 4 while its message is being sent


# KEYS bucket, chat window, pause; ARGV rate, burst, start, chat_limit, window_ms, ahead_ms
# Returns {1, ms}: a send slot is reserved `ms` from now (0: now) and counted; {0, ms}: nothing reserved,
# ask again in `ms` (a 429 pause, the chat's own window, or no free slot within `ahead_ms`).
#
# The global rate is a schedule of slots `1000 / rate` ms apart (GCRA): `next` is the next free slot.
# Unused slots are credited up to `burst` (workers waking late do not lower the rate), after a second
# idle only `start` (a job's first second stays within the rate plus `start`). Time is Redis's own
# (REDIS_NOW), never a caller's, so processes whose clocks disagree share one clock, and `next` only
# ever moves forward: no interval is counted twice, were Redis's clock stepped back.
_ACQUIRE = REDIS_NOW + """
local now = redis_now_ms()
local pause = tonumber(redis.call('GET', KEYS[3]) or '0')
if pause > now then return {0, math.ceil(pause - now)} end
local limit, window = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if redis.call('ZCARD', KEYS[2]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, math.max(1, math.ceil(tonumber(oldest[2]) + window - now))}
end
local interval = 1000 / tonumber(ARGV[1])
local burst, start, ahead = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[6])
local stored = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
local credit = burst
if stored < now - 1000 then credit = start end
local nxt = math.max(stored, now - (credit - 1) * interval)
local slot = math.max(nxt, now)
if slot - now > ahead then return {0, math.max(1, math.ceil(slot - now - ahead))} end
redis.call('HSET', KEYS[1], 'next', string.format('%.3f', nxt + interval))
-- a unique member: two sends in one ms must count twice
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('PEXPIRE', KEYS[1], 60000)
redis.call('ZADD', KEYS[2], slot, seq)
redis.call('PEXPIRE', KEYS[2], window + math.ceil(slot - now))
return {1, math.ceil(slot - now)}
"""

# KEYS pause; ARGV ms. A 429's pause, until Redis's now + ms (a later pause already set is kept).
_PAUSE = REDIS_NOW + """
local till = redis_now_ms() + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if till > current then redis.call('SET', KEYS[1], till, 'PX', tonumber(ARGV[1]) + 1000) end
return 1
"""

# KEYS pause. Milliseconds left of the pause, 0 if none.
_PAUSED = REDIS_NOW + """
local left = tonumber(redis.call('GET', KEYS[1]) or '0') - redis_now_ms()
if left > 0 then return math.ceil(left) end
return 0
"""


class RateLimiter:
    """Telegram's limits, shared by every process: a global rate, 1 message a second per chat and
    20 a minute per group, and a pause for everyone after a 429.

    The global rate is a schedule of send slots in Redis, timed by Redis's clock (see `_ACQUIRE`). A
    worker reserves its slot and sleeps until it, instead of asking again and again: one Redis call a
    message, however many workers wait. Up to `burst` slots (20 ms of sending, at least 2) left unused by
    workers waking late are made up; after a second idle only `start` (20 ms, at least 1), so no second,
    a job's first included, carries more than 2% over the rate (one message more at low rates)."""

    AHEAD_MS = 1000  # how far ahead a worker may reserve its slot

    def __init__(self, redis: aioredis.Redis, rate: float, prefix: str = "yibao"):
        self.redis = redis
        self.rate = rate
        self.burst = max(2.0, rate / 50)
        self.start = max(1.0, rate / 50)
        self.prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._pause = redis.register_script(_PAUSE)
        self._paused = redis.register_script(_PAUSED)

    def _key(self, part: str) -> str:
        return f"{self.prefix}:{{bcrate}}:{part}"

    async def reserve(self, chat: str, ahead_ms: int = AHEAD_MS) -> tuple[bool, int]:
        """(True, ms): a message to `chat` may go in `ms` (counted); (False, ms): ask again in `ms`."""
        group = chat.startswith("-")
        limit, window = (20, 60_000) if group else (1, 1_000)
        reserved, ms = await self._acquire(
            keys=[self._key("bucket"), self._key(f"chat:{chat}"), self._key("pause")],
            args=[self.rate, self.burst, self.start, limit, window, ahead_ms])
        return bool(reserved), int(ms)

    async def wait_ms(self, chat: str) -> int:
        """0 if a message to `chat` may go now (it is counted), else how long to wait."""
        reserved, ms = await self.reserve(chat, ahead_ms=0)
        return 0 if reserved else max(1, ms)

    async def pause(self, seconds: float) -> None:
        await self._pause(keys=[self._key("pause")], args=[int(seconds * 1000)])

    async def paused_ms(self) -> int:
        return int(await self._paused(keys=[self._key("pause")]))


class BroadcastRunner:
    """Works on every active job in the background of a bot process, together with other processes."""

    def __init__(self, store: BroadcastStore, limiter: RateLimiter, send: Sender, *,
                 on_blocked: Callable[[str], Awaitable[None]] | None = None,
                 on_progress: Callable[[JobStatus, bool], Awaitable[None]] | None = None,
                 lease_s: float = LEASE_S, workers: int | None = None, poll_s: float = 1.0,
                 progress_every_s: float = 3.0):
        self.store = store
        self.limiter = limiter
        self.send = send
        self.on_blocked = on_blocked
        self.on_progress = on_progress
        self.lease_ms = int(lease_s * 1000)
        self.workers = workers or max(2, min(8, math.ceil(limiter.rate / 8)))
        self.poll_s = poll_s
        self.late_ms = max(50.0, 2000 / limiter.rate)  # a slot missed by more than this is given up
        self.progress_every_s = progress_every_s
        self._stop = asyncio.Event()
        self._jobs: dict[str, asyncio.Task] = {}
        self._held: dict[str, set[str]] = {}  # job → recipients this process has claimed and not settled

    async def run(self) -> None:
        """Until `stop()`: pick up active jobs, work on them, report progress."""
        while not self._stop.is_set():
            try:
                for job in await self.store.active_jobs():
                    if job not in self._jobs or self._jobs[job].done():
                        self._jobs[job] = asyncio.create_task(self._job(job), name=f"broadcast {job}")
            except Exception:
                log.exception("broadcast runner: cannot read the jobs", extra={"event": "broadcast"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.poll_s)
        await asyncio.gather(*self._jobs.values(), return_exceptions=True)
        close = getattr(self.send, "aclose", None)
        if close is not None:
            await close()

    def stop(self) -> None:
        """Stop claiming; the messages in flight finish and are recorded; jobs resume on next start."""
        self._stop.set()

    async def _job(self, job: str) -> None:
        await self.store.reclaim_expired(job)
        status = await self.store.status(job)
        if status is None:
            await self.store.retire(job)
            return
        helpers = [asyncio.create_task(self._progress(job)), asyncio.create_task(self._leases(job))]
        try:
            await asyncio.gather(*(self._worker(job, status.text) for _ in range(self.workers)))
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self._held.pop(job, None)
        status = await self.store.status(job)
        if status and status.state in ("done", "cancelled"):
            await self.store.retire(job)
            if self.on_progress and await self.store.claim_final_report(job):
                try:
                    await self.on_progress(status, True)
                except Exception:
                    log.warning("broadcast final report failed", extra={"event": "broadcast", "job": job})
            log.info("broadcast finished", extra={"event": "broadcast", "job": job, "count": status.sent})

    async def _worker(self, job: str, text: str) -> None:
        """Claim, send, record, until the job is done; an error (Redis away a moment) is logged and the
        worker goes on, so a job never has fewer workers than it should, nor stray ones."""
        while not self._stop.is_set():
            try:
                if await self._step(job, text):
                    return
            except Exception:
                log.exception("broadcast worker error; going on", extra={"event": "broadcast", "job": job})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)

    async def _step(self, job: str, text: str) -> bool:
        """One recipient; True when the job has nothing left for this worker."""
        kind, value = await self.store.claim(job, self.lease_ms)
        if kind in ("done", "stop"):
            return True
        if kind == "wait":
            delay = max(0.05, min(5.0, int(value or 0) / 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            await self.store.reclaim_expired(job)
            return False
        chat = value or ""
        held = self._held.setdefault(job, set())
        held.add(chat)
        try:
            await self._deliver(job, chat, text)
        finally:
            held.discard(chat)
        return False

    async def _leases(self, job: str) -> None:
        """While the job runs here: renew the leases of the recipients being sent to, and give back the
        ones whose worker died (in this process or another), a few times a lease."""
        every = max(0.05, self.lease_ms / 4000)
        while True:
            await asyncio.sleep(every)
            try:
                await self.store.renew(job, sorted(self._held.get(job, ())), self.lease_ms)
                if await self.store.reclaim_expired(job):
                    log.info("broadcast: recipients of a lost worker back in the queue", extra={"event": "broadcast"})
            except Exception:
                log.warning("broadcast: could not renew the leases", extra={"event": "broadcast", "job": job})

    async def _deliver(self, job: str, chat: str, text: str) -> None:
        while True:
            reserved, wait = await self.limiter.reserve(chat)
            if reserved:
                break
            if self._stop.is_set() or wait > 2000:
                if not self._stop.is_set() and await self.limiter.paused_ms() == 0:
                    # not a 429 pause but this chat's own window (a group's 20 a minute): the others go on
                    await self.store.defer(job, chat, wait / 1000)
                    return
                await self.store.requeue(job, chat)  # long pause or stopping: give the recipient back
                if not self._stop.is_set():
                    await asyncio.sleep(min(wait / 1000, 5.0))
                return
            await asyncio.sleep(wait / 1000)
        if wait > 0:
            loop = asyncio.get_running_loop()
            due = loop.time() + wait / 1000
            await asyncio.sleep(wait / 1000)  # until the reserved slot
            if await self.limiter.paused_ms() > 0:  # a 429 came meanwhile: the slot is given up
                await self.store.requeue(job, chat)
                return
            if (loop.time() - due) * 1000 > self.late_ms:
                # woken far too late (a stalled machine): sent now, this message would crowd the ones
                # on time; its slot is given up and the recipient tried again in a second
                await self.store.defer(job, chat, 1.0)
                return
        result = await self.send(chat, text)
        await self._settle(job, chat, result)

    async def _settle(self, job: str, chat: str, result: Result) -> None:
        if result.outcome in (Outcome.SENT, Outcome.FAILED):
            await self.store.record(job, chat, result.outcome)
        elif result.outcome is Outcome.BLOCKED:
            await self.store.record(job, chat, Outcome.BLOCKED)
            if self.on_blocked:
                await self.on_blocked(chat)
        elif result.outcome is Outcome.RETRY_AFTER:
            await self.limiter.pause(result.retry_after)
            await self.store.requeue(job, chat)
            log.warning("broadcast paused %.0f s by a 429", result.retry_after, extra={"event": "broadcast"})
        else:
            await self.store.retry_later(job, chat, 0.5 * 2 ** random.uniform(0, 3))

    async def _progress_turn(self, job: str) -> bool:
        """Only one process reports a job's progress at a time."""
        key = self.store.key(job, "progress-lock")
        token = f"{id(self)}"
        got = await self.store.redis.set(key, token, nx=True, px=int(self.progress_every_s * 3000))
        if got:
            return True
        return text_of(await self.store.redis.get(key)) == token and bool(
            await self.store.redis.pexpire(key, int(self.progress_every_s * 3000)))

    async def _progress(self, job: str) -> None:
        if not self.on_progress:
            return
        while True:
            await asyncio.sleep(self.progress_every_s)
            status = await self.store.status(job)
            if status and await self._progress_turn(job):
                try:
                    await self.on_progress(status, False)
                except Exception:
                    log.warning("broadcast progress message failed", extra={"event": "broadcast", "job": job})


def progress_bar(status: JobStatus, width: int = 20) -> str:
    done = status.sent + status.blocked + status.failed
    share = done / status.total if status.total else 1.0
    filled = round(share * width)
    return "█" * filled + "░" * (width - filled) + f" {share:.0%}"


def eta_seconds(status: JobStatus, rate: float) -> int:
    return math.ceil(status.pending / rate) if rate > 0 else 0

