"""Scale figures for the README: what one bot process and one Redis (or a Redis Cluster) can carry.

    python benchmarks/bench_scale.py [--sessions 100000] [--conversations 200]

Starts its own throw-away redis-server and a 3-master Redis Cluster (tests/redis_cluster.py), and prints,
for each of the two:

* bytes per finished session in Redis, and Redis memory per 100,000 sessions (`used_memory` before and
  after writing that many finished sessions through `RedisSessionStore.save`, summed over the nodes);
* on the cluster, how those sessions spread over the nodes (share of keys per node);
* turns per second of one bot process (whole conversations through `Dialogue.handle`, 32 at once);
* broadcast sends per second of one worker and of 8 workers (the job store and the shared rate limiter
  in Redis, with a sender that answers at once, so the figure is our own cost, not Telegram's).

It reports and never fails a build. Each figure of the cluster is measured in the same run as the one
of the single server, so read them as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests", ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_conversation import SCRIPTS, TODAY, play  # noqa: E402
from redis_cluster import RedisTestCluster  # noqa: E402
from redis_server import RedisTestServer  # noqa: E402

from bot.notices.jobs import BroadcastStore, Outcome, Result  # noqa: E402
from bot.notices.sending import BroadcastRunner, RateLimiter  # noqa: E402
from bot.redis_client import connect  # noqa: E402
from bot.store import RedisSessionStore  # noqa: E402
from conversations.dialogue import Dialogue  # noqa: E402
from conversations.store import SessionKey  # noqa: E402
from rules.loader import load_policies  # noqa: E402


async def used_memory(client, cluster: bool) -> int:
    if not cluster:
        return int((await client.info("memory"))["used_memory"])
    total = 0
    for node in client.get_primaries():
        total += int((await client.info("memory", target_nodes=node))["used_memory"])
    return total


async def finished_sessions(dialogue: Dialogue, store: RedisSessionStore) -> list[dict]:
    sessions = []
    for n, script in enumerate(SCRIPTS.values()):
        key = SessionKey("bench", f"sample{n}", f"sample{n}")
        await play(dialogue, key, script)
        sessions.append((await store.load(key))[0])
    return sessions


async def memory_figures(client, store: RedisSessionStore, cluster: bool, sessions: list[dict],
                         count: int) -> tuple[float, dict[str, float]]:
    before = await used_memory(client, cluster)
    semaphore = asyncio.Semaphore(256)

    async def save(n: int) -> None:
        async with semaphore:
            await store.save(SessionKey("telegram", str(10_000_000 + n), str(10_000_000 + n)),
                             sessions[n % len(sessions)], 0)

    await asyncio.gather(*(save(n) for n in range(count)))
    per_session = (await used_memory(client, cluster) - before) / count
    spread: dict[str, float] = {}
    if cluster:
        for node in client.get_primaries():
            keys = int(await client.dbsize(target_nodes=node))
            spread[f"{node.port}"] = keys
        total = sum(spread.values()) or 1
        spread = {name: keys / total for name, keys in spread.items()}
    return per_session, spread


async def turn_rate(dialogue: Dialogue, conversations: int, concurrency: int = 32) -> float:
    scripts = list(SCRIPTS.values())
    queue = list(range(conversations))
    turns = 0

    async def worker() -> None:
        nonlocal turns
        while queue:
            n = queue.pop()
            played = await play(dialogue, SessionKey("bench", f"t{n}", f"t{n}"), scripts[n % len(scripts)])
            turns += played

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return turns / (time.perf_counter() - start)


async def send_rate(client, workers: int, recipients: int) -> float:
    async def instant(chat: str, text: str) -> Result:
        return Result(Outcome.SENT)

    store = BroadcastStore(client)
    limiter = RateLimiter(client, 100_000.0)  # far above what we measure: the limiter's cost, not its cap
    job = await store.create("bench", [str(900_000_000 + i) for i in range(recipients)], regions=None, lang=None)
    runner = BroadcastRunner(store, limiter, instant, workers=workers, poll_s=0.01, progress_every_s=3600)
    start = time.perf_counter()
    task = asyncio.create_task(runner.run())
    while (await store.status(job)).state != "done":
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - start
    runner.stop()
    await task
    return recipients / elapsed


async def measure(url: str, cluster: bool, sessions_n: int, conversations: int) -> dict:
    client = connect(url, cluster=cluster, max_connections=512)
    try:
        await client.flushall()
        store = RedisSessionStore(client)
        dialogue = Dialogue(load_policies(), store, today=lambda: TODAY)
        samples = await finished_sessions(dialogue, store)
        await client.flushall()
        per_session, spread = await memory_figures(client, store, cluster, samples, sessions_n)
        await client.flushall()
        turns = await turn_rate(dialogue, conversations)
        one = await send_rate(client, 1, 1500)
        eight = await send_rate(client, 8, 3000)
        return {"bytes": per_session, "spread": spread, "turns": turns, "send1": one, "send8": eight}
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000, help="finished sessions written (default 100000)")
    parser.add_argument("--conversations", type=int, default=200, help="whole conversations for the turn rate")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="yibao-scale-") as folder:
        server = RedisTestServer(Path(folder) / "single").start()
        cluster = RedisTestCluster(Path(folder) / "cluster").start()
        try:
            single = asyncio.run(measure(server.url, False, args.sessions, args.conversations))
            clustered = asyncio.run(measure(cluster.url, True, args.sessions, args.conversations))
        finally:
            server.stop()
            cluster.stop()
    print(f"{'':44s} {'1 redis-server':>16s} {'3-master cluster':>18s}")
    print(f"{'bytes of Redis memory per finished session':44s} {single['bytes']:16,.0f} {clustered['bytes']:18,.0f}")
    print(f"{'MiB of Redis memory per 100,000 sessions':44s} {single['bytes'] * 1e5 / 2**20:16,.1f}"
          f" {clustered['bytes'] * 1e5 / 2**20:18,.1f}")
    print(f"{'turns/s of one bot process (32 at once)':44s} {single['turns']:16,.0f} {clustered['turns']:18,.0f}")
    print(f"{'broadcast sends/s, 1 worker':44s} {single['send1']:16,.0f} {clustered['send1']:18,.0f}")
    print(f"{'broadcast sends/s, 8 workers (one process)':44s} {single['send8']:16,.0f} {clustered['send8']:18,.0f}")
    shares = ", ".join(f"{share:.1%}" for share in clustered["spread"].values())
    print(f"share of the {args.sessions:,} sessions' keys on each cluster node: {shares}")
    print(f"cluster / single: turns {clustered['turns'] / single['turns']:.2f}×, "
          f"sends (8 workers) {clustered['send8'] / single['send8']:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
