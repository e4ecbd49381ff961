"""Broadcast throughput: one job to many subscribers, against the fake Bot API, with a real Redis.

    python benchmarks/bench_broadcast.py [--slow N] [--fast N]

Two runs, each a fresh Redis (tests/redis_server.RedisTestServer) and a fresh fake Bot API server in
its own process (so that its work does not slow the runner's event loop):

- 25/s (BROADCAST_RATE's default) to --slow subscribers (default 1,000: about 40 s);
- 1000/s (allow_paid_broadcast) to --fast subscribers (default 10,000: about 10 s).

One BroadcastRunner (the one `yibao serve` runs, with its default number of workers) uses
telegram_sender (one JSON POST a message to the URL of a python-telegram-bot `Bot`). The sustained
rate is measured from the fake's own records: successful sends of the job's text, from the first to
the last, (n - 1) / (t_last - t_first),
so the start-up and the end are not counted. Duplicates and losses are counted from the same records.
Prints one line per run and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
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
        times = sorted(c.time for c in sends)
        return {"per_chat": per_chat, "first": times[0] if times else 0, "last": times[-1] if times else 0,
                "violations": Counter(v.kind for v in fake.rate_violations)}

    fake.register_method("benchStats", stats)
    await fake.start()
    print(fake.base_url, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await fake.stop()


# -- one run ---------------------------------------------------------------------------------------------

async def run(rate: float, subscribers: int, paid: bool) -> dict:
    fake_proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--fake", str(int(rate * 1.2) if paid else 30),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    base_url = (await fake_proc.stdout.readline()).decode().strip()
    token = "123456789:TEST-fake-token_AAAAAAAAAAAAAAAAAAAAAAAAAA"
    server = RedisTestServer(Path(tempfile.mkdtemp(prefix="bench-broadcast-"))).start()
    redis = aioredis.Redis.from_url(server.url, max_connections=None)
    try:
        store = BroadcastStore(redis)
        limiter = RateLimiter(redis, rate)
        recipients = [str(1_000_000 + i) for i in range(subscribers)]
        text = f"benchmark notice {rate:g}/s"
        job = await store.create(text, recipients, regions=None, lang=None)
        probe = BroadcastRunner(store, limiter, None)  # type: ignore[arg-type]
        workers = probe.workers
        request = HTTPXRequest(connection_pool_size=workers + 4)
        async with Bot(token, base_url=base_url, request=request) as bot:
            runner = BroadcastRunner(store, limiter, telegram_sender(bot, paid), poll_s=0.2)
            started = time.perf_counter()
            task = asyncio.create_task(runner.run())
            while (await store.status(job)).state != "done":
                await asyncio.sleep(0.1)
            took = time.perf_counter() - started
            runner.stop()
            await task
        async with aiohttp.ClientSession() as http, \
                http.post(base_url.format(token=token) + "/benchStats", json={"text": text}) as resp:
            stats = (await resp.json())["result"]
        status = await store.status(job)
    finally:
        await redis.aclose()
        server.stop()
        fake_proc.stdin.close()
        await fake_proc.wait()
    per_chat = Counter(stats["per_chat"])
    sent = sum(per_chat.values())
    sustained = (sent - 1) / (stats["last"] - stats["first"]) if sent > 1 else 0.0
    return {"rate": rate, "paid": paid, "subscribers": subscribers, "workers": workers, "took_s": round(took, 2),
            "sustained_per_s": round(sustained, 1), "ratio": round(sustained / rate, 3),
            "duplicates": sum(n - 1 for n in per_chat.values()),
            "losses": len(set(recipients) - set(per_chat)),
            "recorded_sent": status.sent if status else None, "fake_rate_violations": stats["violations"]}


async def main(args: argparse.Namespace) -> None:
    for rate, count, paid in ((25.0, args.slow, False), (1000.0, args.fast, True)):
        result = await run(rate, count, paid)
        print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--fake":
        asyncio.run(serve_fake(int(sys.argv[2])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=1000, help="subscribers for the 25/s run")
    parser.add_argument("--fast", type=int, default=10_000, help="subscribers for the 1000/s run")
    asyncio.run(main(parser.parse_args()))
