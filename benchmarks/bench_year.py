"""A person's insurance year: what remembering it costs, with a real Redis.

    python benchmarks/bench_year.py [--entries 50]

Starts its own throw-away redis-server (tests/redis_server.py) and prints:

* Redis round trips per turn (client packets) of a first-time conversation that records its visit, and
  of a returning person's (start, visit type, hospital, amount, record), beside the same first-time
  conversation with the year switched off;
* milliseconds to record a visit into a ledger that already holds N entries (load, engine, compare-and-
  set save), and to change the first entry's amount (every later visit replayed through the engine);
* bytes of the stored book per entry.

Targets: a returning person's turn <= 3 round trips (the book is read in the session's round trip; a
record adds its compare-and-set save), recording < 20 ms with 50 entries, < 300 bytes an entry.
Always exits 0 (it reports, it does not gate).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import redis.asyncio as aioredis  # noqa: E402
from redis.asyncio.connection import Connection  # noqa: E402
from redis_server import RedisTestServer  # noqa: E402

from bot.store import RedisSessionStore  # noqa: E402
from bot.year_store import RedisYearStore  # noqa: E402
from conversations.dialogue import Dialogue  # noqa: E402
from conversations.replies import Incoming, Turn  # noqa: E402
from conversations.store import SessionKey  # noqa: E402
from conversations.year import Book, change_total, record  # noqa: E402
from conversations.year_store import update_book  # noqa: E402
from rules.loader import load_policies  # noqa: E402

TODAY = dt.date(2025, 9, 1)
FIRST = ["/start", ">shanghai", ">in_service", ">inpatient", ">3", "20000", ">~skip", ">~skiprest", ">~calc",
         ">~y:rec", ">~y:ok"]
RETURNING = ["/start", ">inpatient", ">3", "30000", ">~y:rec"]


class CountingConnection(Connection):
    sent = 0

    async def send_packed_command(self, command, check_health=True):
        type(self).sent += 1
        return await super().send_packed_command(command, check_health)


def incoming(step: str, last: Turn | None) -> Incoming:
    if step.startswith("/"):
        return Incoming(command=step[1:])
    if step.startswith(">"):
        ids = [b.id for r in (last.replies if last else []) for b in r.choices
               if b.id.partition("|")[2] == step[1:]]
        if not ids:
            raise RuntimeError(f"no button {step[1:]!r}")
        return Incoming(choice=ids[0])
    return Incoming(text=step)


async def play(dialogue: Dialogue, key: SessionKey, steps: list[str]) -> float:
    """Round trips per turn of one scripted conversation."""
    last, before = None, CountingConnection.sent
    for step in steps:
        if step == ">~y:rec" and dialogue.year.store is None:
            break
        last = await dialogue.handle(key, incoming(step, last))
    played = steps.index(">~y:rec") if dialogue.year.store is None else len(steps)
    return (CountingConnection.sent - before) / played


async def round_trips(url: str) -> None:
    pool = aioredis.ConnectionPool.from_url(url, connection_class=CountingConnection)
    client = aioredis.Redis(connection_pool=pool)
    sessions = RedisSessionStore(client)
    policies = load_policies()
    plain = Dialogue(policies, sessions, today=lambda: TODAY)
    with_year = Dialogue(policies, sessions, years=RedisYearStore(sessions), today=lambda: TODAY)
    await play(with_year, SessionKey("bench", "warm", "warm"), FIRST)  # scripts loaded once
    off = await play(plain, SessionKey("bench", "off", "off"), FIRST)
    first = await play(with_year, SessionKey("bench", "p1", "p1"), FIRST)
    again = await play(with_year, SessionKey("bench", "p1", "p1"), RETURNING)
    print(f"round trips a turn, first conversation, year off (to its estimate): {off:6.2f}")
    print(f"round trips a turn, first conversation, recorded with consent:     {first:6.2f}")
    print(f"round trips a turn, returning person (start, 3 answers, record):    {again:6.2f}  (target <= 3)")
    await client.aclose()


async def ledger_costs(url: str, entries: int) -> None:
    client = aioredis.Redis.from_url(url)
    years = RedisYearStore(RedisSessionStore(client))
    policies = load_policies()
    inputs = {"visit": "outpatient", "level": "2", "total": "800.00", "member": "in_service", "age": 50}

    def add(entry_id: str):
        def change(stored):
            book = Book.from_json(stored, TODAY)
            ledger = book.ledger(policies, "shanghai", "employee", TODAY)
            record(ledger, entry_id, inputs, TODAY, policies)
            book.ledgers[ledger.id] = ledger
            return book.to_json(400), None
        return change

    expire = lambda data: 2_000_000_000  # noqa: E731
    for i in range(entries):
        await update_book(years, "bench", "book", add(f"e{i}"), expire)
    started = time.perf_counter()
    rounds = 20
    for i in range(rounds):
        await update_book(years, "bench", f"copy{i}", add("x"), expire)  # a first entry, for comparison
    empty_ms = (time.perf_counter() - started) / rounds * 1000
    started = time.perf_counter()
    for i in range(rounds):
        await update_book(years, "bench", "book", add(f"more{i}"), expire)
    full_ms = (time.perf_counter() - started) / rounds * 1000

    def change_first(stored):
        book = Book.from_json(stored, TODAY)
        ledger = next(iter(book.ledgers.values()))
        change_total(ledger, "e0", Decimal("900.00"), policies)
        return book.to_json(400), None

    started = time.perf_counter()
    await update_book(years, "bench", "book", change_first, expire)
    replay_ms = (time.perf_counter() - started) * 1000
    size = await client.hstrlen(years.book_key("bench", "book"), "d")
    total = entries + rounds
    print(f"record a visit into an empty ledger:            {empty_ms:7.2f} ms")
    print(f"record a visit into a ledger of {entries:3d}+ entries:   {full_ms:7.2f} ms  (target < 20 ms)")
    print(f"change the first of {total} entries (all replayed):  {replay_ms:7.2f} ms")
    print(f"stored book: {size} bytes for {total} entries = {size / total:.0f} bytes an entry  (target < 300)")
    await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = RedisTestServer(Path(folder)).start()
        try:
            await round_trips(server.url)
            await ledger_costs(server.url, args.entries)
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
