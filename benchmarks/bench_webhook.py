"""Webhook benchmark: updates per second through `yibao serve` in webhook mode, beside a bare
python-telegram-bot echo bot served the same way, in the same run.

    python benchmarks/bench_webhook.py [--updates 2000] [--chats 50] [--concurrency 20] [--profile]

Every part is its own process, as in production: a throw-away redis-server (tests/redis_server.py),
the fake Bot API (tests/fake_telegram.py, `--role fake`), and the bot under test, which is

* ours: `python -m bot serve` (exactly what `yibao serve` runs: run_serve, the ChatOrderedProcessor,
  the Redis flood limit and chat lock, the dialogue with its Redis session, HTML replies);
* echo: `--role echo`, a PTB Application with one MessageHandler that sends the text back, behind an
  aiohttp webhook route of the same shape as ours (secret header check, `Update.de_json`,
  `update_processor.process_update(update, application.process_update(update))`, answer after handling).

This process is Telegram: it POSTs the updates to the webhook with the secret header, each chat's updates
one after another (the next once the previous was answered, as Telegram does), `--concurrency` requests
in flight across chats. The load is the same text messages for both bots: whole estimates typed in
Chinese (/start, 上海, 退休, 住院, 三级, 2005, 30000, 跳过, 跳过, 计算), repeated. The flood limit is
raised out of the way (it still runs: one Lua call per update).

Printed per bot: updates/s (wall clock), CPU milliseconds per update of the bot process (the cost that
decides how many updates one process can take) and of redis-server and the fake. Then the ratios.
Aim: ours at most 1.3x the echo bot's CPU per update. `--profile` runs our bot under cProfile and prints
where its time goes. Always exits 0 (it reports, it does not gate).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import aiohttp  # noqa: E402
import psutil  # noqa: E402

TOKEN = "123456789:BENCH-fake-token_AAAAAAAAAAAAAAAAAAAAAAAAAA"
SECRET = "bench-webhook-secret"
SCRIPT = ["/start", "上海", "退休", "住院", "三级", "2005", "30000", "跳过", "跳过", "计算"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- roles run in their own processes ---------------------------------------------------------------


async def role_fake(port: int) -> None:
    """The fake Bot API on a fixed port until SIGTERM; its records are trimmed as it goes (a long run
    would otherwise slow its rate bookkeeping down and make the fake the bottleneck)."""
    from aiohttp import web
    from fake_telegram import FakeTelegram

    fake = FakeTelegram(TOKEN)
    runner = web.AppRunner(fake.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake._session = aiohttp.ClientSession()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
        fake.reset()
        for state in fake._bots.values():
            state.send_times.clear()
            state.chat_send_times.clear()
            state.messages.clear()
    await fake._session.close()
    await runner.cleanup()


async def role_echo(port: int, base_url: str) -> None:
    """The bare echo bot: one MessageHandler, the same webhook shape as bot.telegram.add_webhook_route."""
    import secrets

    from aiohttp import web
    from telegram import Update
    from telegram.error import TelegramError
    from telegram.ext import ApplicationBuilder, MessageHandler, filters

    async def echo(update: Update, context) -> None:
        await context.bot.send_message(update.effective_chat.id, update.effective_message.text)

    application = (ApplicationBuilder().token(TOKEN).base_url(base_url).updater(None)
                   .concurrent_updates(256).build())
    application.add_handler(MessageHandler(filters.ALL, echo))

    async def receive(request: web.Request) -> web.Response:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not secrets.compare_digest(given.encode(), SECRET.encode()):
            return web.Response(status=403, text="forbidden")
        try:
            update = Update.de_json(await request.json(), application.bot)
        except (ValueError, TypeError, KeyError, TelegramError):
            return web.Response(status=400, text="not an update")
        await application.update_processor.process_update(update, application.process_update(update))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/telegram", receive)
    app.router.add_get("/healthz", lambda request: web.json_response({"status": "ok"}))
    await application.initialize()
    await application.start()
    await application.bot.set_webhook(f"http://127.0.0.1:{port}/telegram", secret_token=SECRET)
    from bot.lifecycle import run_site, stop_event_on_signals

    await run_site(app, "127.0.0.1", port, stop_event_on_signals())
    await application.stop()
    await application.shutdown()


# -- the driver (this process) ----------------------------------------------------------------------


@dataclass
class Figures:
    name: str
    updates: int
    seconds: float
    bot_cpu: float
    redis_cpu: float
    fake_cpu: float
    failed: int

    @property
    def per_second(self) -> float:
        return self.updates / self.seconds

    def ms(self, cpu: float) -> float:
        return cpu / self.updates * 1000


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def wait_http(url: str, proc: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise SystemExit(f"{url}: the process exited with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as resp:
                    if resp.status in (200, 404):
                        return
            await asyncio.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def text_update(update_id: int, chat_id: int, message_id: int, text: str) -> bytes:
    user = {"id": chat_id, "is_bot": False, "first_name": "Bench", "language_code": "zh-hans"}
    message = {"message_id": message_id, "from": user, "chat": {"id": chat_id, "type": "private", "first_name": "B"},
               "date": int(time.time()), "text": text}
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text)}]
    return json.dumps({"update_id": update_id, "message": message}, ensure_ascii=False).encode()


async def drive(hook: str, chats: list[int], per_chat: int, concurrency: int, first_id: int) -> tuple[int, int]:
    """POSTs `per_chat` updates to each chat (in order within a chat); returns (sent, failed)."""
    gate = asyncio.Semaphore(concurrency)
    ids = iter(range(first_id, first_id + len(chats) * per_chat))
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    failed = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def chat(chat_id: int) -> None:
            nonlocal failed
            for i in range(per_chat):
                body = text_update(next(ids), chat_id, i + 1, SCRIPT[i % len(SCRIPT)])
                async with gate, http.post(hook, data=body, headers=headers) as resp:
                    await resp.read()
                    failed += resp.status != 200

        await asyncio.gather(*(chat(c) for c in chats))
    return len(chats) * per_chat, failed


async def measure(name: str, cmd: list[str], env: dict[str, str], port: int, args, redis_proc: psutil.Process,
                  fake_proc: psutil.Process, log: Path) -> tuple[Figures, str]:
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=err)
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        hook = f"http://127.0.0.1:{port}/telegram"
        per_chat = max(1, args.updates // args.chats)
        # warm up (imports, policy caches, connection pools, Lua scripts) on other chats
        await drive(hook, list(range(9_000_001, 9_000_001 + args.chats)), len(SCRIPT), args.concurrency, 10_000_000)
        bot = psutil.Process(proc.pid)
        before = cpu(bot), cpu(redis_proc), cpu(fake_proc)
        started = time.perf_counter()
        sent, failed = await drive(hook, list(range(1_000_001, 1_000_001 + args.chats)), per_chat, args.concurrency,
                                   1)
        seconds = time.perf_counter() - started
        after = cpu(bot), cpu(redis_proc), cpu(fake_proc)
        metrics = ""
        with contextlib.suppress(aiohttp.ClientError):
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                metrics = await resp.text() if resp.status == 200 else ""
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    return Figures(name, sent, seconds, after[0] - before[0], after[1] - before[1], after[2] - before[2],
                   failed), metrics


def metric(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return line.split()[1]
    return "?"


async def main_async(args) -> None:
    from redis_server import RedisTestServer

    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        tmp_path = Path(tmp)
        redis = RedisTestServer(tmp_path / "redis").start()
        fake_port = free_port()
        fake = await asyncio.create_subprocess_exec(sys.executable, __file__, "--role", "fake", "--port",
                                                    str(fake_port), cwd=ROOT)
        try:
            await wait_http(f"http://127.0.0.1:{fake_port}/", fake)
            base_url = f"http://127.0.0.1:{fake_port}/bot{{token}}"
            redis_proc, fake_proc = psutil.Process(redis.proc.pid), psutil.Process(fake.pid)
            base = {k: v for k, v in os.environ.items() if not k.startswith(("YIBAO_", "TELEGRAM_", "WEBHOOK_"))}

            results: list[Figures] = []
            port = free_port()
            echo_profile = tmp_path / "echo.prof"
            echo_cmd = [sys.executable, *(["-m", "cProfile", "-o", str(echo_profile)] if args.profile else []),
                        __file__, "--role", "echo", "--port", str(port), "--base-url", base_url]
            echo, _ = await measure("echo bot (bare PTB)", echo_cmd, base, port, args, redis_proc, fake_proc,
                                    tmp_path / "echo.log")
            results.append(echo)

            port = free_port()
            profile = tmp_path / "ours.prof"
            ours_env = dict(base, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_BASE_URL=base_url, HOST="127.0.0.1",
                            PORT=str(port), WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram", WEBHOOK_SECRET=SECRET,
                            REDIS_URL=redis.url, THROTTLE_RATE="1000000", THROTTLE_BURST="1000000",
                            LOG_LEVEL="warning")
            ours_cmd = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if args.profile else []),
                        "-m", "bot", "serve"]
            ours, metrics = await measure("yibao serve", ours_cmd, ours_env, port, args, redis_proc, fake_proc,
                                          tmp_path / "ours.log")
            results.append(ours)
            log = (tmp_path / "ours.log").read_text(errors="replace")
        finally:
            fake.send_signal(signal.SIGTERM)
            await asyncio.wait_for(fake.wait(), 30)
            redis.stop()

        print(f"webhook benchmark: {args.updates} updates over {args.chats} chats, {args.concurrency} in flight"
              f"{' (ours under cProfile: slower)' if args.profile else ''}")
        print(f"{'bot':<22}{'updates/s':>11}{'bot CPU ms/upd':>16}{'redis ms/upd':>14}{'fake ms/upd':>13}"
              f"{'failed':>8}")
        for f in results:
            print(f"{f.name:<22}{f.per_second:>11.0f}{f.ms(f.bot_cpu):>16.3f}{f.ms(f.redis_cpu):>14.3f}"
                  f"{f.ms(f.fake_cpu):>13.3f}{f.failed:>8}")
        bot_ratio = ours.bot_cpu / ours.updates / (echo.bot_cpu / echo.updates)
        with_redis = (ours.bot_cpu + ours.redis_cpu) / ours.updates / ((echo.bot_cpu + echo.redis_cpu) / echo.updates)
        print(f"ours / echo, bot CPU per update:          {bot_ratio:.2f}x  (aim: <= 1.30x)")
        print(f"ours / echo, bot + Redis CPU per update:  {with_redis:.2f}x")
        print(f"echo / ours, updates per second (wall):   {echo.per_second / ours.per_second:.2f}x")
        print(f"ours: estimates {metric(metrics, 'yibao_estimates_total')}, errors "
              f"{metric(metrics, 'yibao_errors_total')}, throttled {metric(metrics, 'yibao_throttled_total')}"
              + ("; log has a traceback" if "Traceback" in log else ""))
        if args.profile and profile.exists() and echo_profile.exists():
            print_profiles(pstats.Stats(str(profile)), pstats.Stats(str(echo_profile)),
                           (args.updates + args.chats * len(SCRIPT)))


def _group(filename: str) -> str:
    """The package a profiled function belongs to: site-packages/<pkg>, our packages, or stdlib."""
    path = filename.replace(os.sep, "/")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for ours in ("bot", "conversations", "rules"):
        if f"{ROOT.as_posix()}/{ours}/" in path:
            return f"[{ours}]"
    if path.startswith("~") or path.startswith("<"):
        return "builtins (C: sockets, json, …)"
    return "stdlib " + path.rsplit("/", 2)[-2] if "/lib/python" in path and path.count("/") > 2 else "stdlib"


def print_profiles(ours: pstats.Stats, echo: pstats.Stats, updates: int) -> None:
    """Self time per package per update (whole run, start-up included), ours beside the echo bot's."""
    groups: dict[str, list[float]] = {}
    for column, stats in enumerate((ours, echo)):
        for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
            groups.setdefault(_group(filename), [0.0, 0.0])[column] += tottime
    print("\nwhere the time goes: self time per update under cProfile (ms; whole run incl. start-up),")
    print("by package, largest difference first")
    print(f"{'package':<34}{'ours':>9}{'echo':>9}{'diff':>9}")
    rows = sorted(groups.items(), key=lambda kv: kv[1][1] - kv[1][0])
    for name, (a, b) in rows[:18]:
        print(f"{name:<34}{a / updates * 1000:>9.3f}{b / updates * 1000:>9.3f}{(a - b) / updates * 1000:>+9.3f}")
    total_a = sum(v[0] for v in groups.values())
    total_b = sum(v[1] for v in groups.values())
    print(f"{'total':<34}{total_a / updates * 1000:>9.3f}{total_b / updates * 1000:>9.3f}"
          f"{(total_a - total_b) / updates * 1000:>+9.3f}")
    print("\nours, top functions by self time:")
    ours.sort_stats("tottime").print_stats(20)
    print("echo, top functions by self time:")
    echo.sort_stats("tottime").print_stats(12)
    print("ours, our own code by cumulative time (coroutine call counts are resumptions):")
    ours.sort_stats("cumulative").print_stats(r"/(bot|conversations|rules)/", 20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="run our bot under cProfile and print the top")
    parser.add_argument("--role", choices=("driver", "fake", "echo"), default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "fake":
        asyncio.run(role_fake(args.port))
    elif args.role == "echo":
        asyncio.run(role_echo(args.port, args.base_url))
    else:
        asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
