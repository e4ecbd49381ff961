"""Broadcast delivery against the fake Bot API, with the real python-telegram-bot `Bot` and a real Redis.

The runners here are built directly (`BroadcastStore`, `RateLimiter`, `BroadcastRunner` with
`telegram_sender`), with short leases, short progress intervals and small rates so that the suite stays
quick; the worker that is killed mid-job is a real process (SIGKILL), resumed by other processes.

What "delivered" means: a successful `sendMessage` of the broadcast's text as recorded by the fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.notices import sending
from bot.notices.jobs import JOB_TTL, MAX_ATTEMPTS, BroadcastStore, JobStatus, Outcome, Result
from bot.notices.sending import BroadcastRunner, RateLimiter
from bot.notices.subscriptions import Subscriptions
from bot.notices.telegram_sender import telegram_sender
from bot.store import RedisSessionStore
from tests import fake_telegram as ft

REDIS_MODES = ("single", "cluster")  # every Redis test here runs on one server and on a Redis Cluster

ROOT = Path(__file__).resolve().parent.parent

# -- harness --------------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[ft.FakeTelegram]:
    async with ft.FakeTelegram() as server:
        yield server


@pytest.fixture
async def bot(fake: ft.FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url, request=HTTPXRequest(connection_pool_size=16)) as b:
        yield b


def chats(n: int, start: int = 700_000) -> list[str]:
    return [str(start + i) for i in range(n)]


def delivered(fake: ft.FakeTelegram, text: str) -> Counter:
    """Chat id → successful sends of `text`."""
    return Counter(str(c.chat_id) for c in fake.calls_of("sendMessage") if c.ok and c.params.get("text") == text)


def attempts(fake: ft.FakeTelegram, text: str) -> list[ft.Call]:
    return [c for c in fake.calls_of("sendMessage") if c.params.get("text") == text]


def broadcast_violations(fake: ft.FakeTelegram, text: str, since: float = 0.0) -> list[ft.RateViolation]:
    """Rate violations among the broadcast's own sends (the fake also counts other messages)."""
    ours = {(str(c.chat_id), c.time) for c in attempts(fake, text)}
    return [v for v in fake.rate_violations if (str(v.chat_id), v.time) in ours and v.time >= since]


def global_window_max(fake: ft.FakeTelegram, text: str, window: float = 1.0) -> int:
    times = sorted(c.time for c in attempts(fake, text))
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class Progress:
    """Records the runner's progress callbacks."""

    def __init__(self) -> None:
        self.updates: list[JobStatus] = []
        self.finals: list[JobStatus] = []

    async def __call__(self, status: JobStatus, final: bool) -> None:
        (self.finals if final else self.updates).append(status)


def make_runner(redis, sender, *, rate: float = 20, workers: int = 4, lease_s: float = 5.0, **kw) -> BroadcastRunner:
    return BroadcastRunner(BroadcastStore(redis), RateLimiter(redis, rate), sender, workers=workers,
                           lease_s=lease_s, poll_s=0.05, progress_every_s=0.3, **kw)


@contextlib.asynccontextmanager
async def running(*runners: BroadcastRunner) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        yield
    finally:
        for r in runners:
            r.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)


async def finished(store: BroadcastStore, job: str, timeout: float = 20.0) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = await store.status(job)
        assert status is not None
        if status.state in ("done", "cancelled") and not await store.redis.sismember(store.active, job):
            return status
        assert time.monotonic() < deadline, f"job not finished in {timeout}s: {status}"
        await asyncio.sleep(0.05)


async def settled(store: BroadcastStore, job: str, count: int, timeout: float = 20.0) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = await store.status(job)
        assert status is not None
        if status.sent + status.blocked + status.failed >= count:
            return status
        assert time.monotonic() < deadline, f"fewer than {count} settled in {timeout}s: {status}"
        await asyncio.sleep(0.02)


# -- the happy path, progress and the rate ---------------------------------------------------------


async def test_every_recipient_once_at_the_configured_rate(fake: ft.FakeTelegram, bot: Bot, redis) -> None:
    text = "上海 2025 年度封顶线调整为 65 万元。"
    recipients = chats(40)
    progress = Progress()
    runner = make_runner(redis, telegram_sender(bot, False), rate=20, on_progress=progress)
    store = runner.store
    job = await store.create(text, recipients, regions=["shanghai"], lang="zh", admin_chat="1")
    started = time.monotonic()
    async with running(runner):
        status = await finished(store, job)
    took = time.monotonic() - started

    assert (status.state, status.total, status.sent, status.blocked, status.failed, status.pending) == \
        ("done", 40, 40, 0, 0, 0)
    got = delivered(fake, text)
    assert set(got) == set(recipients) and max(got.values()) == 1
    # 40 messages at 20/s (a burst of 2) take about 2 s; the limit holds in every one-second window
    assert took >= 1.7
    assert global_window_max(fake, text) <= 20 + 2
    assert broadcast_violations(fake, text) == []
    # progress was reported while sending, the final report exactly once
    assert progress.updates and all(u.id == job for u in progress.updates)
    assert any(0 < u.sent < 40 for u in progress.updates)
    assert [f.state for f in progress.finals] == ["done"] and progress.finals[0].sent == 40
    # the job is retired; a later runner does not report again
    assert job not in await store.active_jobs()
    for part in ("meta", "done"):  # the record of who was sent what is forgotten after a while
        assert 0 < await redis.ttl(store.key(job, part)) <= JOB_TTL
    again = Progress()
    async with running(make_runner(redis, telegram_sender(bot, False), on_progress=again)):
        await asyncio.sleep(0.3)
    assert again.finals == [] and delivered(fake, text) == got


async def test_a_job_without_recipients_is_done_at_once(redis) -> None:
    store = BroadcastStore(redis)
    job = await store.create("nobody", [], regions=None, lang=None)
    status = await store.status(job)
    assert status is not None and (status.state, status.total, status.pending) == ("done", 0, 0)
    assert job not in await store.active_jobs()
    assert await store.cancel(job) == 0 and await store.cancel("no-such-job") == -1
    assert 0 < await redis.ttl(store.key(job, "meta")) <= JOB_TTL  # its record expires like a finished one's


async def test_a_forgotten_chat_leaves_the_jobs_still_to_send(redis) -> None:
    store = BroadcastStore(redis)
    job = await store.create("soon", ["1", "2", "3"], regions=None, lang=None)
    await store.retry_later(job, (await store.claim(job, 60_000))[1], 30)  # "1" waits for a retry
    await store.drop_recipient("1")
    await store.drop_recipient("2")
    assert await store.claim(job, 60_000) == ("chat", "3")
    assert await redis.zcard(store.key(job, "retry")) == 0


async def test_a_forgotten_chat_leaves_the_records_of_finished_jobs_too(redis) -> None:
    store = BroadcastStore(redis)
    job = await store.create("sent", ["1", "2"], regions=None, lang=None)
    for _ in range(2):
        _, chat = await store.claim(job, 60_000)
        await store.record(job, chat, Outcome.SENT)
    await store.retire(job)
    assert await redis.hexists(store.key(job, "done"), "1")
    await store.drop_recipient("1")
    for part in ("pending", "retry", "inflight", "attempts", "done"):
        key = store.key(job, part)
        kind = (await redis.type(key)).decode()
        members = {"list": lambda k: redis.lrange(k, 0, -1), "zset": lambda k: redis.zrange(k, 0, -1),
                   "hash": redis.hkeys, "none": lambda k: asyncio.sleep(0, [])}[kind]
        assert b"1" not in await members(key), part
    assert await redis.hexists(store.key(job, "done"), "2")  # the others' records stay
    assert (await store.status(job)).sent == 2  # and the counts


# -- Telegram's errors -----------------------------------------------------------------------------


async def test_a_429_storm_pauses_everything_and_loses_nothing(fake: ft.FakeTelegram, bot: Bot, redis) -> None:
    text = "429 storm"
    recipients = chats(30, 710_000)
    storm = fake.fail_next("sendMessage", error=ft.RetryAfter(1), times=6,
                           predicate=lambda c: c.params.get("text") == text and len(attempts(fake, text)) > 5)
    runner = make_runner(redis, telegram_sender(bot, False), rate=25, workers=6)
    job = await runner.store.create(text, recipients, regions=None, lang=None)
    async with running(runner):
        status = await finished(runner.store, job, timeout=40)

    assert storm.hits == 6
    assert (status.sent, status.blocked, status.failed) == (30, 0, 0)
    got = delivered(fake, text)
    assert set(got) == set(recipients) and max(got.values()) == 1  # nothing lost, nothing twice
    # after each 429 nobody is sent anything for retry_after (sends already under way may still arrive)
    calls = attempts(fake, text)
    for limited in (c for c in calls if c.status == 429):
        quiet = [c for c in calls if limited.time + 0.15 < c.time < limited.time + 1.0 - 0.05]
        assert quiet == [], f"sent during a 429 pause: {[(c.chat_id, c.time - limited.time) for c in quiet]}"
    assert broadcast_violations(fake, text) == []


async def test_real_flood_control_429s_are_obeyed(redis, bot: Bot, fake: ft.FakeTelegram) -> None:
    """The fake enforces a limit below the configured rate: its 429s slow the broadcast, nothing is lost."""
    text = "flood control"
    fake.global_rate, fake.enforce_rate_limits = 8, True
    recipients = chats(16, 720_000)
    runner = make_runner(redis, telegram_sender(bot, False), rate=20, workers=4)
    job = await runner.store.create(text, recipients, regions=None, lang=None)
    async with running(runner):
        status = await finished(runner.store, job, timeout=40)
    assert (status.sent, status.failed) == (16, 0)
    assert any(v.enforced for v in fake.rate_violations)  # the fake did answer with 429s
    got = delivered(fake, text)
    assert set(got) == set(recipients) and max(got.values()) == 1


async def test_blocked_and_vanished_chats_are_counted_and_unsubscribed(
        fake: ft.FakeTelegram, bot: Bot, redis) -> None:
    text = "blocked"
    store = RedisSessionStore(redis)
    subs = Subscriptions(redis, store)
    recipients = chats(8, 730_000)
    for chat in recipients:
        await subs.subscribe(chat, "shanghai", "zh")
        await subs.subscribe(chat, "beijing", "zh")
    blocked, vanished, kicked = recipients[1], recipients[4], recipients[6]
    fake.block(blocked)
    fake.fail_next("sendMessage", vanished, ft.ChatNotFound(), times=None)
    fake.fail_next("sendMessage", kicked, ft.Forbidden("Forbidden: bot was kicked from the group chat"), times=None)
    progress = Progress()
    runner = make_runner(redis, telegram_sender(bot, False), on_blocked=subs.remove_chat, on_progress=progress)
    job = await runner.store.create(text, recipients, regions=["shanghai"], lang=None, admin_chat="1")
    async with running(runner):
        status = await finished(runner.store, job)

    assert (status.sent, status.blocked, status.failed, status.pending) == (5, 3, 0, 0)
    assert set(delivered(fake, text)) == set(recipients) - {blocked, vanished, kicked}
    assert len(attempts(fake, text)) == 8  # a blocked chat is not tried again
    gone = {blocked, vanished, kicked}
    assert set(await subs.recipients(["shanghai", "beijing"])) == set(recipients) - gone
    for chat in gone:
        assert await subs.regions_of(chat) == []
        assert not await redis.exists(subs.chat_key(chat))
    assert progress.finals[0].blocked == 3


async def test_5xx_is_retried_with_backoff_then_failed(
        fake: ft.FakeTelegram, bot: Bot, redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sending.random, "uniform", lambda a, b: a)  # the shortest backoff, 0.5 s
    text = "server errors"
    recipients = chats(6, 740_000)
    flaky, dead, slow = recipients[0], recipients[1], recipients[2]
    fake.fail_next("sendMessage", flaky, ft.ServerError(), times=2)
    fake.fail_next("sendMessage", dead, ft.ServerError(503, "Service Unavailable"), times=None)
    fake.fail_next("sendMessage", slow, ft.ServerError(500, "Internal Server Error"), times=1)
    runner = make_runner(redis, telegram_sender(bot, False), rate=20)
    job = await runner.store.create(text, recipients, regions=None, lang=None)
    async with running(runner):
        status = await finished(runner.store, job, timeout=30)

    assert (status.sent, status.blocked, status.failed, status.pending) == (5, 0, 1, 0)
    got = delivered(fake, text)
    assert set(got) == set(recipients) - {dead} and max(got.values()) == 1
    tries = {chat: [c.time for c in attempts(fake, text) if str(c.chat_id) == chat] for chat in (flaky, dead, slow)}
    assert (len(tries[flaky]), len(tries[dead]), len(tries[slow])) == (3, MAX_ATTEMPTS, 2)
    for times in tries.values():  # backed off (and never faster than one message a second to a chat)
        assert all(b - a >= 0.5 for a, b in itertools.pairwise(times))
    assert broadcast_violations(fake, text) == []


async def test_sender_maps_telegram_errors(fake: ft.FakeTelegram, bot: Bot) -> None:
    send = telegram_sender(bot, True)
    assert await send("1", "ok") == Result(Outcome.SENT)
    assert fake.calls_of("sendMessage")[-1].params.get("allow_paid_broadcast") is True
    fake.fail_next("sendMessage", error=ft.RetryAfter(7))
    assert await send("1", "x") == Result(Outcome.RETRY_AFTER, 7.0)
    fake.fail_next("sendMessage", error=ft.Forbidden())
    assert (await send("1", "x")).outcome is Outcome.BLOCKED
    fake.fail_next("sendMessage", error=ft.ChatNotFound())
    assert (await send("1", "x")).outcome is Outcome.BLOCKED
    fake.fail_next("sendMessage", error=ft.BadRequest("message is too long"))
    assert (await send("1", "x")).outcome is Outcome.FAILED
    fake.fail_next("sendMessage", error=ft.ServerError())
    assert (await send("1", "x")).outcome is Outcome.TRANSIENT
    fake.fail_next("sendMessage", error=ft.ServerError(500, "Internal Server Error"))
    assert (await send("1", "x")).outcome is Outcome.TRANSIENT
    plain = telegram_sender(bot, False)
    assert await plain("1", "plain") == Result(Outcome.SENT)
    assert "allow_paid_broadcast" not in fake.calls_of("sendMessage")[-1].params
    await send.aclose()
    await plain.aclose()


# -- cancelling, several workers ---------------------------------------------------------------------


async def test_cancel_mid_job_stops_sending(fake: ft.FakeTelegram, bot: Bot, redis) -> None:
    text = "cancel me"
    recipients = chats(60, 750_000)
    progress = Progress()
    runner = make_runner(redis, telegram_sender(bot, False), rate=15, workers=3, on_progress=progress)
    job = await runner.store.create(text, recipients, regions=None, lang=None, admin_chat="1")
    async with running(runner):
        await settled(runner.store, job, 10)
        assert await runner.store.cancel(job) == 1
        status = await finished(runner.store, job)
        at_cancel = sum(delivered(fake, text).values())
        await asyncio.sleep(0.5)
    assert status.state == "cancelled"
    assert await runner.store.cancel(job) == 0  # already finished
    got = delivered(fake, text)
    assert sum(got.values()) == at_cancel <= 10 + 3 + 3  # at most the messages already claimed went out
    assert max(got.values()) == 1
    final = await runner.store.status(job)
    assert final is not None and final.sent == sum(got.values()) and final.pending == 60 - final.sent
    assert [f.state for f in progress.finals] == ["cancelled"]


async def test_two_runners_on_one_job_send_each_message_once(fake: ft.FakeTelegram, bot: Bot, make_redis) -> None:
    text = "two runners"
    recipients = chats(60, 760_000)
    clients = [make_redis() for _ in range(2)]
    counts: list[Counter] = [Counter(), Counter()]
    progress = [Progress(), Progress()]

    def counting(i: int):
        send = telegram_sender(bot, False)

        async def sender(chat: str, message: str) -> Result:
            counts[i][chat] += 1
            return await send(chat, message)

        sender.aclose = send.aclose  # the runner closes its sender when it stops
        return sender

    try:
        await clients[0].flushall()
        runners = [make_runner(c, counting(i), rate=25, workers=3, on_progress=progress[i])
                   for i, c in enumerate(clients)]
        job = await runners[0].store.create(text, recipients, regions=None, lang=None, admin_chat="1")
        async with running(*runners):
            status = await finished(runners[0].store, job)
    finally:
        for c in clients:
            await c.aclose()
    assert (status.sent, status.pending) == (60, 0)
    got = delivered(fake, text)
    assert set(got) == set(recipients) and max(got.values()) == 1
    assert counts[0] and counts[1] and not set(counts[0]) & set(counts[1])  # both worked, never on one chat
    assert len(progress[0].finals) + len(progress[1].finals) == 1
    assert broadcast_violations(fake, text) == []


# -- the rate limiter ---------------------------------------------------------------------------------


async def test_rate_limiter_per_chat_per_group_and_pause(redis) -> None:
    limiter = RateLimiter(redis, 1000)
    assert await limiter.wait_ms("42") == 0
    wait = await limiter.wait_ms("42")
    assert 0 < wait <= 1000  # one message a second to a chat
    assert await limiter.wait_ms("43") == 0  # other chats are not held up
    for _ in range(20):
        assert await limiter.wait_ms("-100123") == 0
    wait = await limiter.wait_ms("-100123")
    assert 55_000 < wait <= 60_000  # 20 a minute to a group
    await limiter.pause(2)
    assert 1500 < await limiter.paused_ms() <= 2000
    assert 1500 < await limiter.wait_ms("44") <= 2000  # a 429 pauses everyone

    slow = RateLimiter(redis, 5, prefix="other")
    granted = 0
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        wait = await slow.wait_ms(str(800_000 + granted))
        if wait == 0:
            granted += 1
        else:
            await asyncio.sleep(wait / 1000)
    assert 5 <= granted <= 5 + 1 + 1  # the rate over a second, plus the burst


async def test_a_group_at_its_limit_does_not_hold_up_the_others(fake: ft.FakeTelegram, bot: Bot, redis) -> None:
    text = "group at its limit"
    group = "-100555"
    runner = make_runner(redis, telegram_sender(bot, False), rate=20, workers=2)
    filler = RateLimiter(redis, 1000)  # the same keys
    for _ in range(20):  # 20 messages went to the group in the last minute
        assert await filler.wait_ms(group) == 0
    recipients = [group, *chats(6, 770_000)]
    job = await runner.store.create(text, recipients, regions=None, lang=None)
    async with running(runner):
        await settled(runner.store, job, 6, timeout=4)
        assert delivered(fake, text)[group] == 0  # still waiting for its window
        assert await runner.store.cancel(job) == 1
    status = await runner.store.status(job)
    assert status is not None and (status.state, status.sent) == ("cancelled", 6)


# -- a worker killed mid-job ------------------------------------------------------------------------

WORKER = textwrap.dedent("""
    import asyncio, sys
    from telegram import Bot
    from telegram.request import HTTPXRequest
    from bot.notices.jobs import BroadcastStore
    from bot.notices.sending import BroadcastRunner, RateLimiter
    from bot.notices.telegram_sender import telegram_sender
    from bot.redis_client import connect

    async def main(redis_url, mode, base_url, token, job, rate, workers, lease):
        redis = connect(redis_url, cluster=mode == "cluster")
        store = BroadcastStore(redis)
        request = HTTPXRequest(connection_pool_size=int(workers) + 2)
        async with Bot(token, base_url=base_url, request=request) as bot:
            runner = BroadcastRunner(store, RateLimiter(redis, float(rate)), telegram_sender(bot, False),
                                     lease_s=float(lease), workers=int(workers), poll_s=0.05)
            task = asyncio.create_task(runner.run())
            print("running", flush=True)
            while (await store.status(job)).state not in ("done", "cancelled"):
                await asyncio.sleep(0.05)
            runner.stop()
            await task
        await redis.aclose()

    asyncio.run(main(*sys.argv[1:]))
""")


async def spawn_worker(script: Path, redis_url: str, mode: str, fake: ft.FakeTelegram, job: str, *,
                       rate: float, workers: int, lease: float) -> asyncio.subprocess.Process:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), redis_url, mode, fake.base_url, fake.token, job,
        str(rate), str(workers), str(lease),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() == b"running"
    return proc


async def test_a_worker_killed_mid_job_costs_at_most_one_duplicate_per_worker(
        fake: ft.FakeTelegram, redis, redis_url: str, redis_mode: str, tmp_path: Path) -> None:
    text = "killed mid-job"
    recipients = chats(50, 780_000)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    original = fake._methods["sendmessage"]
    inside: list[str] = []

    async def slow_send(state, params):  # Telegram takes 150 ms to accept a message: kills land mid-send
        inside.append(str(params.get("chat_id")))
        await asyncio.sleep(0.15)
        return await original(state, params)

    fake.register_method("sendMessage", slow_send)
    store = BroadcastStore(redis)
    job = await store.create(text, recipients, regions=None, lang=None)
    killed_workers = 2
    doomed = await spawn_worker(script, redis_url, redis_mode, fake, job, rate=20, workers=killed_workers, lease=1.0)
    await settled(store, job, 12)
    while len(inside) == sum(1 for c in attempts(fake, text) if c.done):  # wait until a send is in flight
        await asyncio.sleep(0.005)
    doomed.send_signal(signal.SIGKILL)
    await doomed.wait()
    before = await store.status(job)
    assert before is not None and before.state == "sending" and before.sent < 50
    in_flight = await redis.hlen(store.key(job, "inflight"))
    assert 1 <= in_flight <= killed_workers

    # two processes resume it together once the dead worker's leases have run out
    resumers = [await spawn_worker(script, redis_url, redis_mode, fake, job, rate=20, workers=2, lease=1.0)
                for _ in range(2)]
    assert [await asyncio.wait_for(p.wait(), 30) for p in resumers] == [0, 0]
    await asyncio.sleep(0.3)  # the fake finishes answering the killed worker's last sends

    status = await store.status(job)
    assert status is not None and (status.state, status.sent, status.pending) == ("done", 50, 0)
    got = delivered(fake, text)
    assert set(got) == set(recipients)  # no losses
    duplicates = sum(n - 1 for n in got.values())
    print(f"killed with {in_flight} in flight: {duplicates} duplicates")
    assert duplicates <= killed_workers and max(got.values()) <= 2, got.most_common(3)
    assert broadcast_violations(fake, text) == []


async def test_a_dead_workers_recipients_come_back_while_the_queue_is_still_long(
        fake: ft.FakeTelegram, redis, redis_url: str, redis_mode: str, tmp_path: Path) -> None:
    """A lease runs out after `lease_s` however long the queue, not only once it is empty: a recipient
    claimed by a killed process is sent again long before the others have all been sent."""
    text = "reclaimed early"
    recipients = chats(120, 785_000)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    original = fake._methods["sendmessage"]

    async def hanging_send(state, params):  # the doomed worker's sends never return: it dies holding them
        if int(params.get("chat_id", 0)) < 785_002:
            await asyncio.sleep(3600)
        return await original(state, params)

    fake.register_method("sendMessage", hanging_send)
    store = BroadcastStore(redis)
    job = await store.create(text, recipients, regions=None, lang=None)
    doomed = await spawn_worker(script, redis_url, redis_mode, fake, job, rate=20, workers=2, lease=1.0)
    while await redis.hlen(store.key(job, "inflight")) < 2:
        await asyncio.sleep(0.02)
    held = {text_of_bytes(c) for c in await redis.hkeys(store.key(job, "inflight"))}
    assert held == {"785000", "785001"}
    doomed.send_signal(signal.SIGKILL)
    await doomed.wait()
    fake.register_method("sendMessage", original)

    resumer = await spawn_worker(script, redis_url, redis_mode, fake, job, rate=10, workers=2, lease=1.0)
    try:
        while not held <= set(delivered(fake, text)):
            await asyncio.sleep(0.05)
        status = await store.status(job)
        assert status is not None and status.pending > 60  # back long before the queue drained (12 s at 10/s)
    finally:
        resumer.send_signal(signal.SIGKILL)
        await resumer.wait()


async def test_leases_are_renewed_while_a_slow_send_is_under_way(fake: ft.FakeTelegram, bot: Bot, redis) -> None:
    """Sends slower than the lease: renewed every quarter lease, nothing is taken back or sent twice."""
    text = "slow sends"
    recipients = chats(4, 790_000)
    original = fake._methods["sendmessage"]

    async def slow_send(state, params):
        await asyncio.sleep(1.5)
        return await original(state, params)

    fake.register_method("sendMessage", slow_send)
    runner = make_runner(redis, telegram_sender(bot, False), rate=20, workers=2, lease_s=0.6)
    job = await runner.store.create(text, recipients, regions=None, lang=None)
    async with running(runner):
        status = await finished(runner.store, job, timeout=30)
    assert (status.sent, status.failed) == (4, 0)
    assert delivered(fake, text) == Counter({c: 1 for c in recipients})


async def test_store_renews_only_live_leases_and_reclaims_by_redis_time(redis) -> None:
    store = BroadcastStore(redis)
    job = await store.create("leases", ["1", "2", "3"], regions=None, lang=None)
    assert await store.claim(job, 200) == ("chat", "1")
    assert await store.claim(job, 200) == ("chat", "2")
    assert await store.renew(job, ["1", "3"], 60_000) == 1  # "3" is not in flight: not revived
    await asyncio.sleep(0.3)
    assert await store.reclaim_expired(job) == 1  # "2" ran out, "1" was renewed
    assert await redis.hkeys(store.key(job, "inflight")) == [b"1"]
    assert await store.claim(job, 60_000) == ("chat", "2")  # given back to the front of the queue


# -- the rate limiter keeps one clock: Redis's ----------------------------------------------------------


async def redis_ms(redis) -> float:
    seconds, micros = await redis.time()
    return seconds * 1000 + micros / 1000


async def grant_for(limiters: list[RateLimiter], seconds: float) -> tuple[int, float]:
    """Ask round-robin as fast as Redis answers (new chats, so only the global rate holds them back) for
    `seconds` of Redis's time; (granted, elapsed Redis ms from before the first ask to after the last)."""
    redis = limiters[0].redis
    started = await redis_ms(redis)
    granted = 0
    for n in itertools.count():
        if await limiters[n % len(limiters)].wait_ms(str(900_000 + n)) == 0:
            granted += 1
        if n % 20 == 0 and await redis_ms(redis) - started > seconds * 1000:
            break
    return granted, await redis_ms(redis) - started


async def test_the_rate_holds_across_processes_whatever_their_clocks(redis, monkeypatch) -> None:
    """Two limiters (two processes) whose own clocks disagree by a minute grant together no more than the
    rate over Redis's time, plus the burst: the first second included. The bound is what the bucket
    can hold, so a slow machine only grants fewer."""
    rate = 400.0
    a, b = RateLimiter(redis, rate), RateLimiter(redis, rate)
    monkeypatch.setattr(time, "time", lambda real=time.time: real() + 60)  # this process is a minute ahead
    granted, elapsed = await grant_for([a, b], 1.0)
    assert granted <= a.burst + rate * elapsed / 1000 + 1
    assert a.start + rate <= 1.05 * rate  # the first second: `start` slots at once, then the rate
    assert granted >= 0.5 * rate * elapsed / 1000  # and it does grant (loosely: the machine may be busy)
    granted, elapsed = await grant_for([a, b], 1.5)  # later windows: never more than one burst either
    assert granted <= a.burst + rate * elapsed / 1000 + 1


async def test_the_stored_time_never_moves_backwards(redis) -> None:
    """A schedule whose next free slot is ahead of Redis's clock (slots reserved ahead, or Redis's clock
    stepped back) grants nothing before it, and is never moved back."""
    limiter = RateLimiter(redis, 100)
    key = limiter._key("bucket")
    ahead = await redis_ms(redis) + 2000
    await redis.hset(key, "next", ahead)
    assert 1900 < await limiter.wait_ms("1") <= 2000
    assert float(await redis.hget(key, "next")) == pytest.approx(ahead)
    await asyncio.sleep(0.3)
    assert 1500 < await limiter.wait_ms("2") <= 1700  # no time counted twice
    assert await limiter.reserve("3", ahead_ms=1000) == (False, pytest.approx(700, abs=100))
    assert float(await redis.hget(key, "next")) == pytest.approx(ahead)
    reserved, go_in = await limiter.reserve("4", ahead_ms=5000)
    assert reserved and 1500 < go_in <= 1700  # the slot at `ahead`; the next one 10 ms later
    assert float(await redis.hget(key, "next")) == pytest.approx(ahead + 10)


async def test_a_429_pause_is_timed_by_redis_and_never_shortened(redis) -> None:
    limiter = RateLimiter(redis, 100)
    await limiter.pause(3)
    await limiter.pause(1)  # a shorter pause from another worker keeps the longer one
    assert 2500 < await limiter.paused_ms() <= 3000
    assert 2500 < await limiter.wait_ms("5") <= 3000


def text_of_bytes(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
