"""Process hygiene, checked on real processes: Ctrl-C ends `yibao chat` at once (not at the next Enter);
two terminals of one person on the embedded Redis coexist (the first to quit leaves it to the other, the
last one stops it); SIGHUP reloads the policies of `yibao web` and logs the outcome either way; with
METRICS_PORT, /metrics and /readyz leave the public port.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from test_terminal import ROOT, Terminal, chat_args, chat_env, redis_servers_of

from bot.config import Settings
from bot.http_app import build_app, probe_app
from bot.metrics import Metrics
from bot.runtime import open_runtime


def test_ctrl_c_ends_the_terminal_chat_at_once(redis_url):
    chat = Terminal("ctrl-c", chat_env(REDIS_URL=redis_url))
    try:
        chat.proc.send_signal(signal.SIGINT)  # waiting for a line; nothing typed
        began = time.monotonic()
        code = chat.proc.wait(timeout=20)
        assert time.monotonic() - began < 10  # not stuck in a read until Enter
        assert code in (0, 130)
        assert b"Traceback" not in chat.proc.stderr.read()
    finally:
        chat.kill()


def test_two_terminals_of_one_person_coexist():
    with tempfile.TemporaryDirectory(prefix="yb-", dir="/tmp") as tmp:
        folder = Path(tmp) / "r"
        env = chat_env(YIBAO_REDIS_DIR=str(folder), XDG_DATA_HOME=tmp)
        first, second = Terminal("same", env), None
        try:
            second = Terminal("same", env)
            first.send("上海")
            code, _, err = first.close()  # the first terminal quits…
            assert code == 0 and "Traceback" not in err
            assert len(redis_servers_of(folder)) == 1  # …and leaves Redis to the second
            screen = second.send("在职")  # the second goes on, no traceback
            assert "Traceback" not in screen and "这次是哪种就诊？" in screen
            code, _, err = second.close()
            assert code == 0 and "Traceback" not in err
            deadline = time.monotonic() + 10
            while redis_servers_of(folder) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert redis_servers_of(folder) == []  # the last one out stopped it
        finally:
            for terminal in (first, second):
                if terminal is not None:
                    terminal.kill()
            for proc in redis_servers_of(folder):
                proc.kill()


def test_sighup_reloads_the_web_chats_policies_and_logs_either_way(redis_url, tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "rules" / "policies", policies)
    log = tmp_path / "web.log"
    port = _free_port()
    env = chat_env(REDIS_URL=redis_url, YIBAO_POLICY_DIR=str(policies), PORT=str(port), HOST="127.0.0.1")
    with log.open("wb") as err:
        web = subprocess.Popen([*chat_args("x")[:3], "web"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=err)
    try:
        _wait_for(lambda: "listening on" in log.read_text(), web, log)
        web.send_signal(signal.SIGHUP)
        _wait_for(lambda: "policies reloaded" in log.read_text(), web, log)
        broken = next(policies.glob("*.yaml"))
        broken.write_text(broken.read_text() + "\n  this: [is not: valid\n")
        web.send_signal(signal.SIGHUP)
        _wait_for(lambda: "policy reload failed" in log.read_text(), web, log)
        assert web.poll() is None  # still serving, on the policies it had
        assert broken.name in log.read_text()  # the log says which file
        web.send_signal(signal.SIGTERM)
        assert web.wait(timeout=20) == 0
        assert "Traceback" not in log.read_text()
    finally:
        if web.poll() is None:
            web.kill()


async def test_metrics_and_readiness_on_their_own_port(redis, redis_url):
    settings = Settings(redis_url=redis_url, metrics_port=_free_port())
    async with open_runtime(settings) as runtime:
        app, probes = build_app(runtime, Metrics()), probe_app(runtime, Metrics())
        assert {r.resource.canonical for r in app.router.routes()} == {"/healthz"}
        assert {r.resource.canonical for r in probes.router.routes()} == {"/healthz", "/readyz", "/metrics"}
    async with open_runtime(Settings(redis_url=redis_url)) as runtime:
        assert probe_app(runtime, Metrics()) is None
        assert {"/readyz", "/metrics"} <= {r.resource.canonical for r in build_app(runtime, Metrics()).router.routes()}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(condition, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _no_stray_env():
    os.environ.pop("YIBAO_POLICY_DIR", None)
    yield
