"""`yibao serve` as a real process answering WeChat with no Telegram token, and the WeChat settings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import fake_wechat as fw
import pytest

from bot.config import VARIABLES, ConfigError, Settings

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "processToken7"
APP_ID = "wxfedcba9876543210"
AES_KEY = "Zm9yIHRoZSB0ZXN0czogYSBrZXkgb2YgMzIgYnl0ZXM"  # base64 of a 32-byte text, less its "="


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_serve_answers_wechat_without_a_telegram_token(redis, redis_url, tmp_path):
    port = _free_port()
    base = {k: v for k, v in os.environ.items() if k not in {var.name for var in VARIABLES}}
    env = {**base, "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "PORT": str(port), "REDIS_URL": redis_url,
           "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_AES_KEY": AES_KEY, "LOG_FORMAT": "json"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log.read_text()
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{url}/readyz") as response:
                        if response.status == 200:
                            break
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.05)
        async with fw.FakeWeChat(f"{url}/wechat", TOKEN, aes_key=AES_KEY, app_id=APP_ID) as fake:
            assert await fake.verify("abc") == (200, "abc")
            answer = await fake.text("oProcessPerson", "开始")
            assert answer.status == 200 and "你在哪个地区参保？" in answer.content
            assert (await fake.text("oProcessPerson", "上海")).content.startswith("→ 上海")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        logged = log.read_text()
        assert "oProcessPerson" not in logged and "上海" not in logged
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_serve_without_any_token_says_what_to_set():
    base = {k: v for k, v in os.environ.items() if k not in {var.name for var in VARIABLES}}
    done = subprocess.run([sys.executable, "-m", "bot", "serve"], cwd=ROOT, env={**base, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "TELEGRAM_BOT_TOKEN nor WECHAT_TOKEN" in done.stderr


@pytest.mark.parametrize(("env", "message"), [
    ({"WECHAT_AES_KEY": "short"}, "WECHAT_AES_KEY: expected the 43-character EncodingAESKey"),
    ({"WECHAT_AES_KEY": "!" * 43}, "WECHAT_AES_KEY: expected the 43-character EncodingAESKey"),
    ({"WECHAT_AES_KEY": AES_KEY}, "WECHAT_APP_ID: expected the Official Account's AppID"),
    ({"WECHAT_PATH": "wechat"}, "WECHAT_PATH: expected a URL path starting with /"),
])
def test_wechat_settings_are_checked(env, message):
    with pytest.raises(ConfigError) as bad:
        Settings.from_env({"WECHAT_TOKEN": TOKEN, **env})
    assert str(bad.value).startswith(message)


def test_wechat_settings_read():
    settings = Settings.from_env({"WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_AES_KEY": AES_KEY,
                                  "WECHAT_PATH": "/wx/in"})
    assert (settings.wechat_path, settings.wechat_app_id, str(settings.wechat_aes_key)) == ("/wx/in", APP_ID, AES_KEY)
    assert "Secret(" in repr(settings.wechat_token) and TOKEN not in repr(settings)
    assert settings.salt() == TOKEN  # log hashes salted with the WeChat token when there is no bot token
