"""Every 统筹区 loaded: what ~350 policy files cost at start, on reload and in each dialogue turn.

    python benchmarks/bench_regions.py [--turns 40]

Targets (issue 11): all policies loaded at start in < 100 ms (content-hash cache, never stale); a
reload off the event loop (no stall of other traffic); a dialogue turn's CPU independent of the
number of regions (<= 1.1x from 10 to 350 regions); the region question < 2 KB and no keyboard over
~30 buttons; estimates a second unchanged; `yibao rules check` over the whole set < 2 s.
Ratios are measured in the same run; CPU time (process_time) is printed beside wall time because
the machine may be shared. Reports and never fails a build.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conversations.dialogue import Dialogue, Session  # noqa: E402
from conversations.replies import Incoming, Reply  # noqa: E402
from rules.case import Case, Estimate  # noqa: E402
from rules.engine import estimate  # noqa: E402
from rules.loader import DEFAULT_DIR, load_policies  # noqa: E402

TODAY = dt.date(2025, 3, 1)
SMALL = ["guangzhou", "chengdu", "wuhan", "hangzhou", "nanjing", "xian", "changsha", "zhengzhou", "jinan",
         "shenyang"]
CONVERSATION = ["广州", "职工", "在职", "住院", "三级", "本地", "20000", "0", "~skiprest", "~calc"]
EXTRA_TURNS = ["guangzou", "广东", "suzhou", "火星"]  # a typo, a province, a shared name, nothing


def make_sets(base: Path) -> tuple[Path, Path]:
    """A 10-region folder and a 350-region folder (the shipped set plus synthetic copies)."""
    small, large = base / "small", base / "large"
    files = {p.stem: p for p in (DEFAULT_DIR / "cn").glob("*/*.yaml")}
    small.mkdir()
    for rid in SMALL:
        shutil.copy(files[rid], small / f"{rid}.yaml")
    shutil.copytree(DEFAULT_DIR, large)
    count = len(load_policies(large).regions)
    template = files["guangzhou"].read_text(encoding="utf-8")
    for n in range(350 - count):
        text = re.sub(r"^region: guangzhou$", f"region: synthetic-{n}", template, flags=re.M)
        text = re.sub(r"^name: .*$", f"name: {{zh: 合成{n}, en: Synthetic {n}}}", text, flags=re.M)
        text = re.sub(r"^aliases: .*$", f"aliases: [合成{n}市]", text, flags=re.M)
        text = re.sub(r"^code: .*$", f"code: '99{n:04d}'", text, flags=re.M)
        (large / "cn" / "guangdong" / f"synthetic-{n}.yaml").write_text(text, encoding="utf-8")
    return small, large


def timed(fn, repeat: int = 5) -> tuple[float, float]:
    """Best (cpu ms, wall ms) of `repeat` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        best = min(best, ((time.process_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000))
    return best


def load_figures(folder: Path, cache: Path) -> None:
    os.environ["YIBAO_CACHE_DIR"] = "off"
    cold = timed(lambda: load_policies(folder), 3)
    os.environ["YIBAO_CACHE_DIR"] = str(cache)
    load_policies(folder)  # fills the cache
    warm = timed(lambda: load_policies(folder), 7)
    regions = len(load_policies(folder).regions)
    print(f"load {regions} regions: no cache {cold[0]:.0f} ms cpu ({cold[1]:.0f} wall); "
          f"cached {warm[0]:.1f} ms cpu ({warm[1]:.1f} wall)   target < 100 ms")


def check_figures(folder: Path, cache: Path) -> None:
    env = {**os.environ, "YIBAO_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    for label, cache_env in (("no cache", "off"), ("filling the cache", str(cache)), ("cached", str(cache))):
        env["YIBAO_CACHE_DIR"] = cache_env
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([sys.executable, "-m", "bot", "rules", "check", "--policy-dir", str(folder)],
                              env=env, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        print(f"yibao rules check ({label}): {cpu:.2f} s cpu ({time.perf_counter() - start:.2f} s wall), "
              f"exit {done.returncode}   target < 2 s")


def reply_size(reply: Reply) -> int:
    data = {"text": reply.text, "buttons": [[{"id": b.id, "label": b.label} for b in row] for row in reply.buttons]}
    return len(json.dumps(data, ensure_ascii=False).encode())


def conversation(dialogue: Dialogue) -> tuple[int, list[Reply]]:
    """One whole estimate (and a few region answers of other kinds); returns the turns and the replies."""
    session = Session()
    replies: list[Reply] = []
    turns = 0
    for text in EXTRA_TURNS:
        session = Session()
        dialogue.step(session, Incoming(command="start"))
        replies += dialogue.step(session, Incoming(text=text)).replies
        turns += 2
    session = Session()
    replies += dialogue.step(session, Incoming(command="start")).replies
    turns += 1
    for text in CONVERSATION:
        if text.startswith("~"):
            turn = dialogue.step(session, Incoming(choice=f"{session.q}|{text}"))
        else:
            turn = dialogue.step(session, Incoming(text=text))
        replies += turn.replies
        turns += 1
    assert session.state == "done", session
    return turns, replies


def turn_figures(small: Path, large: Path, rounds: int) -> None:
    per_turn = {}
    for label, folder in (("10", small), ("350", large)):
        dialogue = Dialogue(load_policies(folder), store=None, today=lambda: TODAY)  # type: ignore[arg-type]
        turns, replies = conversation(dialogue)  # warm: the region index is built once per policy set
        samples = []
        for _ in range(5):
            cpu = time.process_time()
            for _ in range(rounds):
                conversation(dialogue)
            samples.append((time.process_time() - cpu) / (rounds * turns))
        per_turn[label] = min(samples)
        question = [r for r in replies if r.buttons]
        print(f"{label:>3} regions: {per_turn[label] * 1e6:.0f} µs cpu a turn; largest reply "
              f"{max(reply_size(r) for r in replies)} B, most buttons {max(len(r.choices) for r in question)}")
    print(f"turn cost 350 / 10 regions: {per_turn['350'] / per_turn['10']:.2f}x   target <= 1.1x; "
          "replies < 2048 B, <= ~30 buttons")


def estimate_figures(small: Path, large: Path) -> None:
    for label, folder in (("10", small), ("350", large)):
        policies = load_policies(folder)
        cases = [Case(region=rid, plan=plan, member="in_service" if plan == "employee" else None, visit=visit,
                      level=level, total=Decimal(total), date=TODAY)
                 for rid in SMALL for plan in ("employee", "resident") for visit in ("outpatient", "inpatient")
                 for level in ("1", "3") for total in ("860.50", "23000", "680000")]
        cases = [c for c in cases if isinstance(estimate(c, policies), Estimate)]
        cpu = time.process_time()
        n = 0
        while time.process_time() - cpu < 1.0:
            for case in cases:
                estimate(case, policies)
            n += len(cases)
        print(f"estimates a second ({label} regions loaded): {n / (time.process_time() - cpu):,.0f}")


async def _lag_during(reload) -> float:
    """The longest the event loop went without running a 1 ms ticker while `reload` ran."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker():
        nonlocal worst
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    await reload()
    done.set()
    await task
    return worst * 1000


def reload_figures(large: Path) -> None:
    os.environ["YIBAO_CACHE_DIR"] = "off"  # a reload after an edit parses files: the worst case

    async def on_loop():
        load_policies(large)

    async def in_thread():
        await asyncio.to_thread(load_policies, large)

    stall_on = asyncio.run(_lag_during(on_loop))
    stall_off = asyncio.run(_lag_during(in_thread))
    print(f"reload of 350 files: longest event-loop stall {stall_on:.0f} ms on the loop, {stall_off:.0f} ms "
          "with asyncio.to_thread (what /reload and SIGHUP use)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20, help="conversations per sample")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-regions-") as tmp:
        base = Path(tmp)
        cache = base / "cache"
        os.environ["YIBAO_CACHE_DIR"] = str(cache)
        small, large = make_sets(base)
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        load_figures(large, cache)
        check_figures(large, base / "cache-check")
        os.environ["YIBAO_CACHE_DIR"] = str(cache)
        turn_figures(small, large, args.turns)
        estimate_figures(small, large)
        reload_figures(large)
    return 0


if __name__ == "__main__":
    sys.exit(main())
