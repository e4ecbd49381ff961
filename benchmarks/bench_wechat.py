"""WeChat benchmark: messages a second through `yibao serve` answering WeChat, in plain and in safe
(encrypted) mode, and retries answered from the first delivery's answer, in the same run.

    python benchmarks/bench_wechat.py [--people 40] [--concurrency 10]

Every part is its own process, as in production: a throw-away redis-server (tests/redis_server.py) and
`python -m bot serve` with only WECHAT_TOKEN (and WECHAT_APP_ID + WECHAT_AES_KEY in safe mode). This
process is WeChat (tests/fake_wechat.py): it signs (and encrypts) each message, each person's messages one
after another, `--concurrency` people at once, every person typing a whole estimate in Chinese; then every
message is delivered once more with its MsgId (a retry), which must get the same answer without a turn.

Printed per mode: messages/s (wall clock), CPU milliseconds per message of the bot process and of
redis-server, Redis commands per message; then the ratios safe/plain and retry/first delivery. Aims: safe
mode within 1.2x plain's CPU per message; a retry cheaper than a turn. Always exits 0 (it reports).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import aiohttp  # noqa: E402
import fake_wechat as fw  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402
from redis_server import RedisTestServer  # noqa: E402

from bot.config import VARIABLES  # noqa: E402

TOKEN = "benchToken42"
APP_ID = "wx00bench00000000"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
SCRIPT = ["开始", "上海", "退休", "住院", "三级", "2005", "30000", "跳过", "全部跳过", "9", "详情"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_bot(redis_url: str, port: int, safe: bool, log: Path) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if k not in {var.name for var in VARIABLES}}
    env = {**base, "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "PORT": str(port), "REDIS_URL": redis_url,
           "WECHAT_TOKEN": TOKEN, "THROTTLE_RATE": "100000", "THROTTLE_BURST": "100000", "LOG_LEVEL": "warning"}
    if safe:
        env.update(WECHAT_APP_ID=APP_ID, WECHAT_AES_KEY=AES_KEY)
    with open(log, "wb") as stderr:
        return subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)


async def wait_ready(url: str, proc: subprocess.Popen) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit(f"yibao serve exited with {proc.returncode}")
            try:
                async with http.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("yibao serve did not start")


class Meter:
    """CPU seconds of the bot and of redis-server, and Redis commands, between start() and stop()."""

    def __init__(self, bot_pid: int, redis_pid: int, redis_url: str):
        self.procs = [psutil.Process(bot_pid), psutil.Process(redis_pid)]
        self.client = redis.Redis.from_url(redis_url)

    def _now(self) -> tuple[float, float, float, int]:
        cpu = [sum(p.cpu_times()[:2]) for p in self.procs]
        return time.perf_counter(), cpu[0], cpu[1], int(self.client.info("stats")["total_commands_processed"])

    def start(self) -> None:
        self.begin = self._now()

    def stop(self, messages: int) -> dict[str, float]:
        end = self._now()
        wall, bot, rds, cmds = (b - a for a, b in zip(self.begin, end, strict=True))
        return {"per_s": messages / wall, "bot_ms": 1000 * bot / messages, "redis_ms": 1000 * rds / messages,
                "cmds": (cmds - 1) / messages}  # less the INFO call itself


async def run_mode(server: RedisTestServer, safe: bool, people: int, concurrency: int, tmp: Path) -> dict:
    redis.Redis.from_url(server.url).flushall()
    port = free_port()
    proc = start_bot(server.url, port, safe, tmp / f"serve-{port}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, proc)
        meter = Meter(proc.pid, server.proc.pid, server.url)  # type: ignore[union-attr]
        gate = asyncio.Semaphore(concurrency)
        async with fw.FakeWeChat(f"{url}/wechat", TOKEN, aes_key=AES_KEY if safe else None, app_id=APP_ID) as fake:
            answers: list[fw.Answer] = []

            async def person(n: int) -> None:
                async with gate:
                    for text in SCRIPT:
                        answers.append(await fake.text(f"oBench{n:04d}", text))

            meter.start()
            await asyncio.gather(*(person(n) for n in range(people)))
            first = meter.stop(len(answers))
            if sum("【估算结果】" in a.content for a in answers) != people:
                raise SystemExit("not every estimate finished:\n" + "\n---\n".join(a.content for a in answers[:12]))

            async def retry(chunk: list[fw.Answer]) -> None:
                async with gate:
                    for answer in chunk:
                        again = await fake.replay(answer)
                        assert again.content == answer.content

            meter.start()
            await asyncio.gather(*(retry(answers[i::concurrency]) for i in range(concurrency)))
            retries = meter.stop(len(answers))
        return {"first": first, "retry": retries}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def show(name: str, figures: dict[str, float]) -> None:
    print(f"  {name:<16} {figures['per_s']:8.0f} msg/s   bot {figures['bot_ms']:6.2f} ms/msg   "
          f"redis {figures['redis_ms']:5.2f} ms/msg   {figures['cmds']:4.1f} Redis commands/msg")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = RedisTestServer(Path(folder) / "redis").start()
        try:
            results = {safe: await run_mode(server, safe, args.people, args.concurrency, Path(folder))
                       for safe in (False, True)}
        finally:
            server.stop()
    messages = args.people * len(SCRIPT)
    print(f"WeChat: {args.people} people × {len(SCRIPT)} messages = {messages} per mode, "
          f"{args.concurrency} people at once")
    for safe, name in ((False, "plain"), (True, "safe (AES)")):
        print(f"{name}:")
        show("first delivery", results[safe]["first"])
        show("retry (cached)", results[safe]["retry"])
    plain, safe = results[False]["first"], results[True]["first"]
    print(f"safe/plain bot CPU per message: {safe['bot_ms'] / plain['bot_ms']:.2f}x (aim ≤ 1.2x)")
    for mode, name in ((False, "plain"), (True, "safe")):
        ratio = results[mode]["retry"]["bot_ms"] / results[mode]["first"]["bot_ms"]
        print(f"retry/first bot CPU per message, {name}: {ratio:.2f}x (aim < 1)")


if __name__ == "__main__":
    asyncio.run(main())
