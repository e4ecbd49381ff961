"""No input gives a 500 or a traceback, on every endpoint that reads a body: the web chat's API, the
Telegram webhook (with the right secret, so bodies get past the door), and the admin API (with the
token). Thousands of malformed and odd bodies each (tests/http_fuzz.py), sent to `yibao serve` running
in this process against the fake Bot API and the tests' Redis; its log must hold no traceback and no
error line. A bigger run: benchmarks/bench_fuzz.py.
"""

from __future__ import annotations

import pytest
from http_fuzz import Endpoint, admin_body, fuzz, web_body, webhook_body
from test_telegram import SECRET, base_env, serving, webhook_env

from tests import fake_telegram as ft

CASES = 2000
ADMIN = "fuzz-admin-token"


@pytest.fixture
async def fake():
    async with ft.FakeTelegram(webhook_retry_delays=()) as server:
        yield server


async def test_no_input_gives_a_500_or_a_traceback(fake, redis_url: str, redis, capfd: pytest.CaptureFixture):
    # a loaded CI machine may be slow to answer: this test is about bodies, not about a stalled Redis
    env = webhook_env(base_env(fake, redis_url, WEB_CHAT="true", ADMIN_TOKEN=ADMIN, LOG_LEVEL="info",
                               REDIS_TIMEOUT="10"))
    endpoints = [
        Endpoint("web chat", "POST", "/api/chat", web_body),
        Endpoint("webhook", "POST", "/telegram", webhook_body, {"X-Telegram-Bot-Api-Secret-Token": SECRET}),
        Endpoint("admin API", "POST", "/admin/broadcasts", admin_body, {"Authorization": f"Bearer {ADMIN}"}),
    ]
    results = {}
    async with serving(fake, env) as served:
        for endpoint in endpoints:
            results[endpoint.name] = await fuzz(served.url, endpoint, CASES)
    log = capfd.readouterr().err
    for name, tally in results.items():
        assert tally.cases == CASES, name
        assert tally.server_errors == 0, (name, dict(tally.statuses))
        assert tally.busy == 0, (name, dict(tally.statuses))
        assert sum(n for status, n in tally.statuses.items() if status == 400) > CASES / 4, dict(tally.statuses)
    assert "Traceback" not in log, log[log.index("Traceback") - 500:][:3000]
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert errors == [], errors[:5]
