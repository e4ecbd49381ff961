"""Figures of issue 13: malformed input per endpoint, Redis outages per channel, redeliveries applied.

    python benchmarks/bench_robustness.py [--cases 20000] [--duplicates 200]

Everything runs for real in this process: `yibao serve` (webhook mode, web chat and admin API on) or
the polling bot, the fake Bot API (which, like Telegram, sends an unacknowledged update again), and
throw-away redis-servers (one of them frozen with SIGSTOP for the outage figures).

1. Fuzz (tests/http_fuzz.py): `--cases` bodies per endpoint; statuses, answers >= 500, log lines at
   ERROR and tracebacks.
2. Outage: Redis frozen; per channel the seconds until the person is told "服务暂时繁忙", whether the
   message was acknowledged, and whether it was applied exactly once after Redis came back.
3. Redeliveries: the same update sent `--duplicates` times (webhook and polling): how many were applied.

Always exits 0 (it reports, it does not gate).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import aiohttp  # noqa: E402
from http_fuzz import Endpoint, admin_body, fuzz, web_body, webhook_body  # noqa: E402
from redis_server import RedisTestServer  # noqa: E402
from test_outage import BUSY, Keyboard, StoppableRedis, session_of, web_client  # noqa: E402
from test_telegram import SECRET, Chat, base_env, serving, text_update, webhook_env  # noqa: E402

from bot.channels.terminal import run_chat  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.runtime import open_runtime  # noqa: E402
from conversations.texts import t  # noqa: E402
from tests import fake_telegram as ft  # noqa: E402

ADMIN = "bench-admin-token"


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.tracebacks = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.tracebacks += record.exc_info is not None


async def fuzzing(cases: int, redis_url: str) -> None:
    print(f"1. fuzz, {cases} bodies per endpoint")
    async with ft.FakeTelegram(webhook_retry_delays=()) as fake:
        env = webhook_env(base_env(fake, redis_url, WEB_CHAT="true", ADMIN_TOKEN=ADMIN, LOG_LEVEL="warning"))
        async with serving(fake, env) as served:
            for endpoint in (Endpoint("web chat POST /api/chat", "POST", "/api/chat", web_body),
                             Endpoint("webhook POST /telegram", "POST", "/telegram", webhook_body,
                                      {"X-Telegram-Bot-Api-Secret-Token": SECRET}),
                             Endpoint("admin POST /admin/broadcasts", "POST", "/admin/broadcasts", admin_body,
                                      {"Authorization": f"Bearer {ADMIN}"})):
                errors = Errors()
                logging.getLogger().addHandler(errors)
                began = time.perf_counter()
                tally = await fuzz(served.url, endpoint, cases, seed=int(time.time()))
                logging.getLogger().removeHandler(errors)
                statuses = ", ".join(f"{s}: {n}" for s, n in sorted(tally.statuses.items()))
                print(f"   {endpoint.name}: {tally.cases} cases in {time.perf_counter() - began:.1f} s; "
                      f"5xx {tally.server_errors}; ERROR log lines {errors.count}, tracebacks {errors.tracebacks}"
                      f"\n      statuses {statuses}")


async def outage(tmp: Path) -> None:
    print("2. Redis frozen (SIGSTOP), then thawed")
    (tmp / "outage").mkdir()
    redis = StoppableRedis(tmp / "outage").start()
    try:
        async with ft.FakeTelegram(webhook_retry_delays=(0.5, 1, 2, 2, 2, 2)) as fake:
            for mode in ("webhook", "polling"):
                env = base_env(fake, redis.url, LOG_LEVEL="error")
                async with serving(fake, webhook_env(env) if mode == "webhook" else env):
                    chat = Chat(fake, 990_001 if mode == "webhook" else 990_002, timeout=15)
                    await chat.start()
                    await chat.press("上海")
                    redis.freeze()
                    mark, began = fake.mark(), time.perf_counter()
                    status = await fake.send_text(chat.id, chat.id, "在职")
                    await fake.wait_for("sendMessage", 1, 10, chat_id=chat.id, since=mark)
                    told = time.perf_counter() - began
                    await asyncio.sleep(1)
                    redis.thaw()
                    await fake.settle()
                    await fake.wait_for(lambda c: c.params.get("text") == t("zh", "prompts.visit"), 1, 20,
                                        chat_id=chat.id, since=mark)
                    session = await session_of(redis.url, "telegram", str(chat.id))
                    busy = fake.sent_texts(chat.id).count(BUSY)
                    print(f"   Telegram {mode}: told busy after {told:.2f} s ({busy} notice); acknowledged during "
                          f"the outage: {'no (HTTP ' + str(status) + ')' if status else 'no (not confirmed)'}; "
                          f"applied after the thaw: {session['a'].get('member') == 'in_service'}, "
                          f"history {session['h']}")
        async with web_client(redis.url) as client:
            await client.post("/api/chat", json={"text": "上海"})
            redis.freeze()
            began = time.perf_counter()
            response = await client.post("/api/chat", json={"text": "在职"})
            told = time.perf_counter() - began
            ready_began = time.perf_counter()
            ready = await client.get("/readyz")
            ready_took = time.perf_counter() - ready_began
            redis.thaw()
            after = await client.post("/api/chat", json={"text": "在职"})
            print(f"   web chat: HTTP {response.status} busy after {told:.2f} s; /readyz {ready.status} after "
                  f"{ready_took:.2f} s; after the thaw HTTP {after.status}")
        keyboard, screen = Keyboard(), io.StringIO()
        async with open_runtime(Settings(redis_url=redis.url)) as runtime:
            task = asyncio.create_task(run_chat(runtime, user="bench", stdin=keyboard, out=screen))
            while t("zh", "prompts.region") not in screen.getvalue():
                await asyncio.sleep(0.01)
            redis.freeze()
            began = time.perf_counter()
            keyboard.type("上海")
            while BUSY not in screen.getvalue():
                await asyncio.sleep(0.01)
            told = time.perf_counter() - began
            redis.thaw()
            keyboard.type("/exit")
            await task
            print(f"   terminal: told busy after {told:.2f} s, the chat went on")
    finally:
        redis.stop()


async def duplicates(count: int, redis_url: str) -> None:
    print(f"3. the same update delivered {count} times")
    async with ft.FakeTelegram() as fake:
        for mode in ("webhook", "polling"):
            env = base_env(fake, redis_url, LOG_LEVEL="error")
            async with serving(fake, webhook_env(env) if mode == "webhook" else env) as served:
                chat = Chat(fake, 995_001 if mode == "webhook" else 995_002)
                for text in ["/start", "上海", "退休", "住院", "三级", "2005"]:
                    await chat.say(text)
                update = text_update(7_000_000 + chat.id % 10, chat.id, "30000", 77)
                if mode == "webhook":
                    async with aiohttp.ClientSession() as http:
                        async def post(update: dict = update) -> int:
                            async with http.post(f"{served.url}/telegram", json=update,
                                                 headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as resp:
                                return resp.status
                        statuses = await asyncio.gather(*(post() for _ in range(count)))
                    acked = sum(s == 200 for s in statuses)
                else:
                    for _ in range(count):
                        await fake.push_update(update)
                    acked = count
                await asyncio.sleep(1.0)
                session = await session_of(redis_url, "telegram", str(chat.id))
                applied = int("total" in session["a"]) + int("self_pay" in session["a"])
                replies = fake.sent_texts(chat.id)[6:]
                print(f"   {mode}: acknowledged {acked}, applied {applied} (total kept, self-pay untouched: "
                      f"{'self_pay' not in session['a']}), replies sent {len(replies)}")


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("bot.notices.sending").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisTestServer(Path(tmp) / "redis").start()
        try:
            await fuzzing(args.cases, server.url)
            await outage(Path(tmp))
            await duplicates(args.duplicates, server.url)
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--duplicates", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
