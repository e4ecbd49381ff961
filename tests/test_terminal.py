"""`python -m bot chat` as a process: stdin and stdout pipes, the real Redis of the tests or the embedded one.

Figures: Shanghai employee in service, inpatient 三级, 20,000 with 自费 0 (the same on any date since
2023-07-01): (20000 − 1500) × 85% = 15725 paid by the fund; the person pays 20000 − 15725 = 4275.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
PROMPT = b"> "
TIMEOUT = 60


def chat_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "YIBAO_", "TELEGRAM_"))}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", **extra)
    return env


def chat_args(user: str, *more: str) -> list[str]:
    return [sys.executable, "-m", "bot", "chat", "--user", user, *more]


def run_chat(user: str, lines: list[str], env: dict[str, str], *more: str) -> subprocess.CompletedProcess[str]:
    """Everything typed at once, then end of input."""
    return subprocess.run(chat_args(user, *more), input="".join(f"{line}\n" for line in lines), cwd=ROOT, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=TIMEOUT)


class Terminal:
    """The chat driven line by line: send a line, read until the next prompt."""

    def __init__(self, user: str, env: dict[str, str], *more: str):
        self.proc = subprocess.Popen(chat_args(user, *more), cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.screen = self._until_prompt()

    def _until_prompt(self) -> str:
        assert self.proc.stdout is not None
        data = b""
        deadline = time.monotonic() + TIMEOUT
        while not data.endswith(PROMPT):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(data.decode(errors="replace"))
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise EOFError(data.decode(errors="replace") + self.proc.stderr.read().decode(errors="replace"))
            data += chunk
        return data.decode()

    def send(self, line: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()
        self.screen = self._until_prompt()
        return self.screen

    def keys(self) -> dict[str, str]:
        """Label → the key shown for it ([1] 上海, [a] ⬅ 返回) on the current screen."""
        found = {}
        for line in self.screen.splitlines():
            for key, label in re.findall(r"\[([0-9a-z]+)\] (.+?)(?=   \[|$)", line):
                found[label.strip()] = key
        return found

    def press(self, label: str) -> str:
        keys = self.keys()
        assert label in keys, f"{label!r} not in {keys}"
        return self.send(keys[label])

    def close(self) -> tuple[int, str, str]:
        """End of input (Ctrl-D): the chat exits."""
        out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def user() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def test_estimate_by_numbers_and_letters(redis_url, user):
    term = Terminal(user, chat_env(REDIS_URL=redis_url))
    try:
        assert "你在哪个地区参保？" in term.screen
        keys = term.keys()
        assert keys["北京"] == "a" and keys["上海"] == "i"  # provinces (views of the picker) get letters
        term.press("上海")
        assert "你是在职还是退休？" in term.screen and "→ 上海" in term.screen
        assert term.keys()["⬅ 返回"] == "a"  # other buttons get letters
        term.press("在职")
        term.press("住院")
        term.press("三级医院")
        assert "总费用是多少元" in term.screen
        term.send("20000")
        term.press("⬅ 返回")  # back: the total again
        assert "总费用是多少元" in term.screen
        term.send("2万")
        term.send("0")
        term.press("今年没有其他就医，全部跳过")
        assert "== 请确认你的信息 ==" in term.screen and "• 总费用: 20,000.00 元" in term.screen
        term.press("✅ 开始计算")
        screen = term.screen
        assert "== 估算结果 ==" in screen
        assert "医保支付：15,725.00 元" in screen and "个人支付：4,275.00 元" in screen
        assert "[a] 🆕 新的估算" in screen
        code, _, err = term.close()
    finally:
        term.kill()
    assert code == 0, err
    assert "Traceback" not in err


def test_estimate_by_text(redis_url, user):
    lines = ["shanghia", "在职", "住院", "三甲", "2万", "0", "跳过", "ok"]
    done = run_chat(user, lines, chat_env(REDIS_URL=redis_url))
    assert done.returncode == 0, done.stderr
    assert "个人支付：4,275.00 元" in done.stdout
    assert "医保 ████████░░ 个人（79% / 21%）" in done.stdout
    assert done.stdout.rstrip().endswith(">")  # the prompt, then end of input


def test_estimate_in_english_and_exit_command(redis_url, user):
    lines = ["Shanghai", "in service", "hospital stay", "level 3", "20000", "0", "skip", "calculate", "/exit",
             "never read"]
    done = run_chat(user, lines, chat_env(REDIS_URL=redis_url), "--lang", "en")
    assert done.returncode == 0, done.stderr
    assert "Hello! I estimate what your medical insurance" in done.stdout
    assert "Where are you insured?" in done.stdout and "[i] Shanghai" in done.stdout  # provinces by code
    assert "You pay: 4,275.00 yuan" in done.stdout and "Insurance pays: 15,725.00 yuan" in done.stdout
    assert "个人支付" not in done.stdout


def test_second_process_continues(redis_url, user):
    env = chat_env(REDIS_URL=redis_url)
    first = run_chat(user, ["上海", "在职"], env)
    assert first.returncode == 0 and "这次是哪种就诊？" in first.stdout
    second = run_chat(user, ["住院", "三级"], env)
    assert second.returncode == 0, second.stderr
    assert "你好！" not in second.stdout  # not started again
    assert second.stdout.index("这次是哪种就诊？") < second.stdout.index("这次的总费用是多少元")
    third = run_chat(user, ["20000", "0", "跳过", "ok"], env, "--lang", "zh")
    assert "个人支付：4,275.00 元" in third.stdout
    # Once the estimate is done, the next chat starts a new one.
    fourth = run_chat(user, [], env)
    assert "你好！" in fourth.stdout and "你在哪个地区参保？" in fourth.stdout


def test_bad_redis_url_fails_in_one_line(user):
    done = run_chat(user, [], chat_env(REDIS_URL="redis://127.0.0.1:1/0"))
    assert done.returncode == 1
    assert done.stderr.startswith("yibao: Redis at redis://127.0.0.1:1/0 does not answer")
    assert "Traceback" not in done.stderr


def redis_servers_of(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "redis-server" in cmdline and str(folder) in cmdline:
            found.append(proc)
    return found


def test_embedded_redis_without_redis_url(user):
    # A short folder: the unix socket path must fit in sun_path.
    with tempfile.TemporaryDirectory(prefix="yb-", dir="/tmp") as tmp:
        folder = Path(tmp) / "r"
        env = chat_env(YIBAO_REDIS_DIR=str(folder), XDG_DATA_HOME=tmp)
        try:
            first = run_chat(user, ["上海", "在职"], env)
            assert first.returncode == 0, first.stderr
            assert "这次是哪种就诊？" in first.stdout
            assert (folder / "dump.rdb").exists()  # saved on the way out
            assert redis_servers_of(folder) == []  # and stopped
            pid_file = folder / "redis.pid"
            assert not pid_file.exists() or not psutil.pid_exists(int(pid_file.read_text() or 0))

            second = run_chat(user, ["住院", "三级", "20000", "0", "跳过", "ok"], env)
            assert second.returncode == 0, second.stderr
            assert "你好！" not in second.stdout  # the conversation continued from the snapshot
            assert "个人支付：4,275.00 元" in second.stdout
            assert redis_servers_of(folder) == []
        finally:
            for proc in redis_servers_of(folder):  # only the servers of this test's folder
                proc.kill()
