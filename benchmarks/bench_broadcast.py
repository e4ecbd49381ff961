"""Broadcast rate and crash recovery: one job sent by two bot processes whose clocks disagree, against the
fake Bot API, with a real Redis.

    python benchmarks/bench_broadcast.py [--slow N] [--fast N] [--skew MS]

Every run is a fresh Redis (tests/redis_server.RedisTestServer), a fresh fake Bot API server in its own
process, and two worker processes, each a BroadcastRunner (the one `yibao serve` runs, with its default
workers and lease) using telegram_sender. The second process's clock is --skew ms behind the first's
(its `time.time` is shifted; the limiter and the job scripts read Redis's clock, so it should not matter).

- rate: 25/s (BROADCAST_RATE's default) to --slow subscribers (default 750: 30 s), and 1000/s
  (allow_paid_broadcast) to --fast subscribers (default 20,000: 20 s). Figures from the fake's own
  records of successful sends of the job's text, as ratios to the configured rate:
  `sustained` (n - 1) / (t_last - t_first); `max_10s` the most sends in any 10 s window / (10 × rate);
  `first_1s` the sends in the first second / rate; `max_1s` the most in any 1 s window / rate.
- crash: 25/s to 500 subscribers; after 5 s the first process is killed (SIGKILL) holding its claims.
  `reclaim_s` is the time from the kill until every recipient it held was delivered by the survivor.

Duplicates and losses are counted from the same records, and `worker_cpu_ms_per_message` is the
workers' CPU time over the messages sent (what a machine needs per message, whatever else runs on it).
Prints one JSON line per run and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import aiohttp  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from redis_server import RedisTestServer  # noqa: E402
from telegram import Bot  # noqa: E402
from telegram.request import HTTPXRequest  # noqa: E402

from bot.notices.jobs import BroadcastStore  # noqa: E402
from bot.notices.sending import BroadcastRunner, RateLimiter  # noqa: E402
from bot.notices.telegram_sender import telegram_sender  # noqa: E402

# -- the fake, in its own process ------------------------------------------------------------------------

async def serve_fake(global_rate: int) -> None:
    from tests import fake_telegram as ft

    class Fake(ft.FakeTelegram):
        def _window_count(self, times: list[float], now: float) -> int:  # sends are recorded in order
            return len(times) - bisect.bisect_right(times, now - (self.rate_window - self.rate_tolerance))

    fake = Fake(global_rate=global_rate)

    async def stats(state, params):
        text = params.get("text")
        sends = [c for c in fake.calls if c.method == "sendMessage" and c.ok and c.params.get("text") == text]
        per_chat = Counter(str(c.chat_id) for c in sends)
        return {"per_chat": per_chat, "times": sorted(c.time for c in sends),
                "sent_at": {str(c.chat_id): c.time for c in sends},
                "violations": Counter(v.kind for v in fake.rate_violations)}

    fake.register_method("benchStats", stats)
    await fake.start()
    print(fake.base_url, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await fake.stop()


# -- a worker process ------------------------------------------------------------------------------------

async def work(redis_url: str, base_url: str, job: str, rate: float, paid: bool, skew_ms: float) -> None:
    real = time.time
    time.time = lambda: real() + skew_ms / 1000  # this machine's clock is off
    redis = aioredis.Redis.from_url(redis_url, max_connections=None)
    store = BroadcastStore(redis)
    limiter = RateLimiter(redis, rate)
    workers = BroadcastRunner(store, limiter, None).workers  # type: ignore[arg-type]
    async with Bot(TOKEN, base_url=base_url, request=HTTPXRequest(connection_pool_size=workers + 4)) as bot:
        runner = BroadcastRunner(store, limiter, telegram_sender(bot, paid), poll_s=0.2)
        task = asyncio.create_task(runner.run())
        print("running", flush=True)
        while (await store.status(job)).state != "done":
            await asyncio.sleep(0.1)
        runner.stop()
        await task
    await redis.aclose()
    print(f"cpu {time.process_time():.3f}", flush=True)  # this process's CPU seconds, for the parent


# -- one run ---------------------------------------------------------------------------------------------

TOKEN = "123456789:TEST-fake-token_AAAAAAAAAAAAAAAAAAAAAAAAAA"


def windows(times: list[float], width: float) -> int:
    """The most sends in any window of `width` seconds."""
    return max((bisect.bisect_left(times, t + width) - i for i, t in enumerate(times)), default=0)


async def spawn(*args: str, stdin: bool = False) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, __file__, *args, stdin=asyncio.subprocess.PIPE if stdin else None,
        stdout=asyncio.subprocess.PIPE, cwd=ROOT)


async def run(rate: float, subscribers: int, paid: bool, skew_ms: float, crash_after: float | None = None) -> dict:
    fake_proc = await spawn("--fake", str(int(rate * 1.2) if paid else 30), stdin=True)
    base_url = (await fake_proc.stdout.readline()).decode().strip()
    server = RedisTestServer(Path(tempfile.mkdtemp(prefix="bench-broadcast-"))).start()
    redis = aioredis.Redis.from_url(server.url, max_connections=None)
    procs: list[asyncio.subprocess.Process] = []
    reclaim_s = held = None
    try:
        store = BroadcastStore(redis)
        recipients = [str(1_000_000 + i) for i in range(subscribers)]
        text = f"benchmark notice {rate:g}/s {'crash' if crash_after else 'skew'}"
        job = await store.create(text, recipients, regions=None, lang=None)
        for skew in (0.0, -skew_ms):
            procs.append(await spawn("--worker", server.url, base_url, job, str(rate), str(int(paid)), str(skew)))
        for proc in procs:
            assert (await proc.stdout.readline()).strip() == b"running"
        started = time.perf_counter()
        if crash_after is not None:
            await asyncio.sleep(crash_after)
            before = {c.decode() for c in await redis.hkeys(store.key(job, "inflight"))}
            procs[0].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await procs[0].wait()
            await asyncio.sleep(2.0)  # the survivor's own claims of then are sent by now; the dead one's wait
            after = {c.decode() for c in await redis.hkeys(store.key(job, "inflight"))}
            lost = before & after
            held = len(lost)
        while (await store.status(job)).state != "done":
            await asyncio.sleep(0.1)
        took = time.perf_counter() - started
        cpu = 0.0
        for proc in procs:
            if proc.returncode is None:
                line = (await proc.stdout.readline()).decode().split()
                cpu += float(line[1]) if line[:1] == ["cpu"] else 0.0
                await proc.wait()
        async with aiohttp.ClientSession() as http, \
                http.post(base_url.format(token=TOKEN) + "/benchStats", json={"text": text}) as resp:
            stats = (await resp.json())["result"]
        if crash_after is not None:
            reclaim_s = round(max((stats["sent_at"][c] for c in lost), default=killed_at) - killed_at, 2)
        status = await store.status(job)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await redis.aclose()
        server.stop()
        fake_proc.stdin.close()
        await fake_proc.wait()
    per_chat = Counter(stats["per_chat"])
    times = sorted(stats["times"])
    sent = len(times)
    sustained = (sent - 1) / (times[-1] - times[0]) if sent > 1 else 0.0
    first_1s = bisect.bisect_left(times, times[0] + 1.0) if times else 0
    result = {"rate": rate, "paid": paid, "processes": 2, "skew_ms": skew_ms, "subscribers": subscribers,
              "took_s": round(took, 2), "sustained": round(sustained / rate, 3),
              "max_10s": round(windows(times, 10.0) / (10 * rate), 3) if times[-1] - times[0] >= 10 else None,
              "first_1s": round(first_1s / rate, 3), "max_1s": round(windows(times, 1.0) / rate, 3),
              "worker_cpu_ms_per_message": round(cpu * 1000 / sent, 3) if sent and crash_after is None else None,
              "duplicates": sum(n - 1 for n in per_chat.values()),
              "losses": len(set(recipients) - set(per_chat)),
              "recorded_sent": status.sent if status else None, "fake_rate_violations": stats["violations"]}
    if crash_after is not None:
        result.update(killed_after_s=crash_after, held_by_the_dead=held, reclaim_s=reclaim_s)
    return result


async def main(args: argparse.Namespace) -> None:
    for rate, count, paid in ((25.0, args.slow, False), (1000.0, args.fast, True)):
        print(json.dumps(await run(rate, count, paid, args.skew), ensure_ascii=False), flush=True)
    print(json.dumps(await run(25.0, 500, False, args.skew, crash_after=5.0), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--fake":
        asyncio.run(serve_fake(int(sys.argv[2])))
        sys.exit(0)
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        redis_url, base_url, job, rate, paid, skew = sys.argv[2:8]
        asyncio.run(work(redis_url, base_url, job, float(rate), paid == "1", float(skew)))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=750, help="subscribers for the 25/s run")
    parser.add_argument("--fast", type=int, default=20_000, help="subscribers for the 1000/s run")
    parser.add_argument("--skew", type=float, default=500.0, help="how far behind the second clock is, in ms")
    asyncio.run(main(parser.parse_args()))
