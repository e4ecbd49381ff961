"""Conversation benchmark: whole guided conversations through `Dialogue.handle` with a real Redis.

    python benchmarks/bench_conversation.py [--conversations 300] [--concurrency 32]

Starts its own throw-away redis-server (tests/redis_server.py), then plays a mix of scripted
conversations to the end (buttons, typed answers, typos, an edit from the summary, back, a language
switch, a region the policy cannot estimate), each under its own session key, and prints:

* turns per second through `Dialogue.handle` (load → step → compare-and-set save), one conversation
  at a time and with many at once; and, for comparison, the pure `Dialogue.step` alone;
* Redis round trips per turn, counted on the client (packets sent) and on the server (INFO commandstats
  deltas: HMGET for the load, EVALSHA for the save; the save script's inner commands are not round trips);
* bytes per session: the stored JSON and MEMORY USAGE of the session hash (and of the user's index set).

Targets: <= 2 round trips per turn, < 1 KiB per session. Always exits 0 (it reports, it does not gate).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import redis.asyncio as aioredis  # noqa: E402
from redis.asyncio.connection import Connection  # noqa: E402
from redis_server import RedisTestServer  # noqa: E402

from bot.store import RedisSessionStore  # noqa: E402
from conversations.dialogue import Dialogue, Session  # noqa: E402
from conversations.replies import Incoming, Turn  # noqa: E402
from conversations.store import SessionKey  # noqa: E402
from rules.loader import load_policies  # noqa: E402

TARGET_ROUND_TRIPS = 2
TARGET_BYTES = 1024
TODAY = dt.date(2025, 3, 1)

# A step is typed text, ">action" (press the button of the last reply with that action) or "/command arg".
SCRIPTS: dict[str, list[str]] = {
    "shanghai by buttons": ["/start", ">shanghai", ">in_service", ">inpatient", ">3", "20000", "0", ">~skiprest",
                            ">~calc"],
    "shenzhen typed": ["深圳", "职工", "一档", "在职", "住院", "二级", "2万", "1000", "五千", ">~skiprest", "ok"],
    "beijing with edit": ["北京", "退休", "住院", "一级", "45000元", ">~skip", ">~skiprest", ">~edit:total",
                          "1.2万", ">~calc"],
    "shanghai typos and back": ["shanghia", "在职", "门诊", "三甲", "/back", "二级", "50", "abc", "¥800", "0",
                                "跳过", "ok"],
    "english switch": ["上海", "/language en", "retired", "hospital stay", "level 2", "1998", "10000", "skip",
                       ">~skiprest", "calculate"],
    "bounded estimate": ["洛阳", "在职", "住院", "二级", "50000", "0", ">~skiprest", ">~calc"],
}


class CountingConnection(Connection):
    """Counts the packets the client sends: one per command, one per pipeline (= round trips)."""

    sent = 0

    async def send_packed_command(self, command, check_health=True):
        type(self).sent += 1
        return await super().send_packed_command(command, check_health)


def incoming_for(step: str, last: Turn | None) -> Incoming:
    if step.startswith(">"):
        action = step[1:]
        ids = [b.id for r in (last.replies if last else []) for b in r.choices if b.id.partition("|")[2] == action]
        if not ids:
            raise RuntimeError(f"no button {action!r} in the last reply")
        return Incoming(choice=ids[0])
    return Incoming(text=step)


async def play(dialogue: Dialogue, key: SessionKey, script: list[str]) -> int:
    last = None
    for step in script:
        last = await dialogue.handle(key, incoming_for(step, last))
    return len(script)


def pure_rate(dialogue: Dialogue, rounds: int) -> float:
    turns, start = 0, time.perf_counter()
    for _ in range(rounds):
        for script in SCRIPTS.values():
            s, last = Session(), None
            for step in script:
                last = dialogue.step(s, incoming_for(step, last))
                s = Session.from_dict(s.to_dict())
                turns += 1
    return turns / (time.perf_counter() - start)


async def commandstats(admin: aioredis.Redis) -> dict[str, int]:
    stats = await admin.info("commandstats")
    return {name.removeprefix("cmdstat_"): s["calls"] for name, s in stats.items()}


async def bench(url: str, conversations: int, concurrency: int) -> None:
    policies = load_policies()
    pool = aioredis.ConnectionPool.from_url(url, connection_class=CountingConnection,
                                            max_connections=max(concurrency, 1) + 4)
    client = aioredis.Redis(connection_pool=pool)
    admin = aioredis.Redis.from_url(url)
    store = RedisSessionStore(client)
    dialogue = Dialogue(policies, store, today=lambda: TODAY)
    scripts = list(SCRIPTS.values())
    names = list(SCRIPTS)
    try:
        # Warm up: connections, the save script loaded on the server, the policies' caches.
        for name, script in SCRIPTS.items():
            key = SessionKey("bench", "warm", name)
            await play(dialogue, key, script)
            state = Session.from_dict((await store.load(key))[0]).state
            if state != "done":
                raise RuntimeError(f"script {name!r} ends in state {state!r}, not with a result")
        await admin.flushall()

        # 1. One conversation at a time, counting round trips on both sides.
        sent0, stats0 = CountingConnection.sent, await commandstats(admin)
        turns, start = 0, time.perf_counter()
        for n in range(conversations):
            turns += await play(dialogue, SessionKey("bench", f"u{n}", f"u{n}"), scripts[n % len(scripts)])
        sequential = turns / (time.perf_counter() - start)
        sent, stats = CountingConnection.sent - sent0, await commandstats(admin)
        calls = {k: v - stats0.get(k, 0) for k, v in stats.items() if v != stats0.get(k, 0)}
        calls.pop("info", None)
        client_rt = sent / turns
        server_rt = (calls.get("hmget", 0) + calls.get("evalsha", 0) + calls.get("eval", 0)) / turns

        # 2. Many conversations at once on one connection pool.
        queue = list(range(conversations))
        concurrent_turns = 0

        async def worker() -> None:
            nonlocal concurrent_turns
            while queue:
                n = queue.pop()
                key = SessionKey("bench", f"c{n}", f"c{n}")
                played = await play(dialogue, key, scripts[n % len(scripts)])
                concurrent_turns += played  # not `+= await …`: that reads the total before awaiting

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        concurrent = concurrent_turns / (time.perf_counter() - start)

        # 3. Bytes per session, after every conversation ended (all answers in: the largest a session gets).
        json_sizes, memory, index_memory = {}, {}, {}
        for n, name in enumerate(names):
            key = SessionKey("bench", f"u{n}", f"u{n}")
            json_sizes[name] = len(await admin.hget(store.session_key(key), "d"))
            memory[name] = await admin.memory_usage(store.session_key(key), samples=0)
            index_memory[name] = await admin.memory_usage(store.index_key("bench", f"u{n}"), samples=0)

        pure = pure_rate(Dialogue(policies, store, today=lambda: TODAY), rounds=max(conversations // 30, 5))
    finally:
        await client.aclose()
        await admin.aclose()

    print(f"conversations: {conversations} ({len(SCRIPTS)} scripts, {turns} turns in a pass), date {TODAY}")
    print(f"turns/s through Dialogue.handle + Redis, sequential: {sequential:10,.0f}")
    print(f"turns/s through Dialogue.handle + Redis, {concurrency:3d} at once: {concurrent:10,.0f}")
    print(f"turns/s of the pure Dialogue.step (no Redis):          {pure:10,.0f}")
    print(f"Redis round trips per turn (client packets):            {client_rt:10.2f}"
          f"  (target <= {TARGET_ROUND_TRIPS})")
    print(f"Redis round trips per turn (server HMGET + EVALSHA):    {server_rt:10.2f}")
    print("server commands in the sequential pass: "
          + ", ".join(f"{k} {v / turns:.2f}/turn" for k, v in sorted(calls.items())))
    print("bytes per session at the end of each conversation (JSON / MEMORY USAGE hash / index set):")
    for name in names:
        print(f"  {name:26s} {json_sizes[name]:5d} / {memory[name]:5d} / {index_memory[name]:5d}")
    worst = max(memory.values())
    print(f"largest session: {max(json_sizes.values())} bytes of JSON, {worst} bytes in Redis "
          f"(+ {max(index_memory.values())} for the user's index)  (target < {TARGET_BYTES})")
    mean_json = statistics.mean(json_sizes.values())
    print(f"mean JSON per session: {mean_json:.0f} bytes")
    ok = client_rt <= TARGET_ROUND_TRIPS and worst < TARGET_BYTES
    print("targets met" if ok else "TARGETS MISSED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=300, help="conversations per pass (default 300)")
    parser.add_argument("--concurrency", type=int, default=32, help="conversations at once in the second pass")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="yibao-bench-") as folder:
        server = RedisTestServer(Path(folder)).start()
        try:
            asyncio.run(bench(server.url, args.conversations, args.concurrency))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
