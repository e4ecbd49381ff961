"""The web chat's page and JSON API (bot/channels/web.py), against a real redis-server (see conftest.py)."""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie

import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer

from bot.channels.web import COOKIE, IP_FACTOR, MAX_BODY, add_web_chat, build_web_app
from bot.config import Settings
from bot.http_app import build_app
from bot.metrics import Metrics
from bot.runtime import Runtime, open_runtime
from conversations.texts import t

JSON = {"Content-Type": "application/json"}
REDIS_MODES = ("single", "cluster")  # every test here runs on one redis-server and on a Redis Cluster
_CLUSTER = {"on": False}


@pytest.fixture(autouse=True)
def _redis_mode_for_web_client(redis_cluster: bool):
    """web_client() builds its Runtime from a URL; tell it whether that URL is a cluster node."""
    _CLUSTER["on"] = redis_cluster


@asynccontextmanager
async def web_client(redis_url: str, *, web_chat: bool = True, cookies: bool = True, **settings):
    """A test client of the bot's application on a Runtime built like `yibao web` builds it."""
    async with open_runtime(Settings(redis_url=redis_url, redis_cluster=_CLUSTER["on"], **settings)) as runtime:
        metrics = Metrics()
        app = build_app(runtime, metrics)
        if web_chat:
            add_web_chat(app)
        jar = None if cookies else DummyCookieJar()
        async with TestClient(TestServer(app), cookie_jar=jar) as client:
            client.runtime = runtime  # type: ignore[attr-defined]
            client.metrics = metrics  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def client(redis, redis_url):  # `redis` empties the database first
    async with web_client(redis_url, throttle_rate=1000.0, throttle_burst=1000) as client:
        yield client


async def say(client: TestClient, expect: int = 200, headers: dict | None = None, **body) -> dict:
    response = await client.post("/api/chat", json=body, headers=headers)
    data = await response.json()
    assert response.status == expect, data
    return data


def button(data: dict, label: str) -> str:
    """The id of the button with this label in the last reply."""
    for row in data["replies"][-1]["buttons"]:
        for b in row:
            if b["label"] == label:
                return b["id"]
    raise AssertionError(f"no button {label!r} in {data['replies'][-1]}")


def set_cookie(response) -> SimpleCookie:
    cookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        cookie.load(header)
    return cookie


def session_id(client: TestClient) -> str:
    return next(c.value for c in client.session.cookie_jar if c.key == COOKIE)


async def web_keys(redis) -> list[bytes]:
    return [k async for k in redis.scan_iter(match="yibao:*web*")]


# -- a whole estimate ------------------------------------------------------------------------------


async def test_full_estimate_through_the_api(client, redis):
    data = await say(client, command="resume", argument="en")
    assert data["lang"] == "en"
    assert data["replies"][-1]["text"] == t("en", "prompts.region")
    data = await say(client, choice=button(data, "Shanghai"))
    assert data["replies"][-1]["text"] == "Are you in service or retired?"
    for text in ("retired", "hospital stay", "level 3", "2005", "30000"):
        data = await say(client, text=text)
    data = await say(client, choice=button(data, "Skip"))
    data = await say(client, choice=button(data, "No other care this year: skip all"))
    assert data["replies"][-1]["title"] == "Please check your answers"
    data = await say(client, choice=button(data, "Calculate"))
    assert data["kind"] == "estimate"
    result = data["replies"][-1]
    assert result["title"] == "Estimate"
    assert "You pay: 3,504.00 yuan" in result["text"]
    assert "Insurance pays: 26,496.00 yuan" in result["text"]
    assert "█" in result["text"]  # the share bar the page draws
    assert "How it was worked out" in result["details"] and result["details_label"] == "How it's computed"
    metrics = client.metrics.render()
    assert "yibao_estimates_total 1" in metrics
    assert "yibao_updates_total 10" in metrics
    assert "yibao_update_seconds_count 10" in metrics
    sid = session_id(client)
    assert await redis.exists(f"yibao:{{web:{sid}}}:session:{sid}")


async def test_chinese_by_default_and_buttons_answer_with_their_label(client):
    data = await say(client, command="resume")
    assert data["lang"] == "zh"
    data = await say(client, choice=button(data, "上海"))
    data = await say(client, choice=button(data, "退休"))
    assert data["answered"] == "退休"


async def test_reload_mid_dialogue_resumes_without_resetting(client):
    data = await say(client, command="resume", argument="en")
    data = await say(client, choice=button(data, "Shanghai"))
    data = await say(client, text="retired")
    asked = data["replies"][-1]
    again = await say(client, command="resume", argument="zh")
    # A recap of the answers, then the same question with the same button ids; the language kept.
    assert again["replies"][0]["text"] == "Your answers so far:\n• Region: Shanghai\n• In service / retired: Retired"
    assert again["replies"][1:] == [asked]
    assert again["lang"] == "en"
    data = await say(client, choice=button(again, "Hospital stay"))
    assert data["replies"][-1]["text"] == "At which level of hospital?"


async def test_typed_commands_and_language_switch(client):
    await say(client, command="resume")
    data = await say(client, command="language", argument="en")
    assert data["lang"] == "en"
    assert data["replies"][0]["text"] == "Switched to English."
    data = await say(client, text="/help")  # typed as in Telegram: the help, in the web's words
    assert "The menu at the top right" in data["replies"][0]["text"] and "/back" not in data["replies"][0]["text"]
    data = await say(client, command="regions")
    assert "Shanghai" in data["replies"][0]["text"]


# -- the session cookie and forgetting ---------------------------------------------------------------


async def test_cookie_is_random_httponly_and_strict(client):
    response = await client.post("/api/chat", json={"command": "resume"})
    morsel = set_cookie(response)[COOKIE]
    assert len(morsel.value) >= 40
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert not morsel["secure"]
    assert morsel["path"] == "/api/chat"
    response = await client.post("/api/chat", json={"text": "上海"})
    assert set_cookie(response)[COOKIE].value == morsel.value  # the same conversation continues


async def test_cookie_secure_behind_https_proxy(redis, redis_url):
    async with web_client(redis_url, trust_proxy=True) as client:
        response = await client.post("/api/chat", json={"command": "resume"},
                                     headers={"X-Forwarded-Proto": "https"})
        assert set_cookie(response)[COOKIE]["secure"] is True


async def test_forwarded_headers_are_ignored_without_trust_proxy(client):
    """Anybody can write X-Forwarded-*: without TRUST_PROXY they change nothing."""
    response = await client.post("/api/chat", json={"command": "resume"}, headers={"X-Forwarded-Proto": "https"})
    assert not set_cookie(response)[COOKIE]["secure"]
    forged = {"Origin": "http://evil.example", "X-Forwarded-Host": "evil.example"}
    assert (await say(client, 403, headers=forged, command="resume"))["error"] == "cross-site request"


async def test_forwarded_host_and_scheme_with_trust_proxy(redis, redis_url):
    async with web_client(redis_url, trust_proxy=True) as client:
        proxied = {"X-Forwarded-Host": "bot.example.org", "X-Forwarded-Proto": "https"}
        await say(client, headers={**proxied, "Origin": "https://bot.example.org"}, command="resume")
        for origin in ("http://bot.example.org", "https://evil.example"):  # the scheme is compared too
            await say(client, 403, headers={**proxied, "Origin": origin}, command="resume")


async def test_the_origins_scheme_must_be_the_sites(client):
    await say(client, 403, headers={"Origin": f"https://{client.host}:{client.port}"}, command="resume")
    await say(client, 403, headers={"Origin": f"ftp://{client.host}:{client.port}"}, command="resume")


async def test_a_session_is_stored_only_once_the_person_answered_something(client, redis):
    data = await say(client, command="resume", argument="en")
    assert data["replies"][-1]["text"].startswith("Where are you insured?")
    for _ in range(3):  # opening the page again and again, or a cookie-less script: nothing stored
        data = await say(client, command="resume", argument="en")
    await say(client, command="help")
    assert [k for k in await web_keys(redis) if b":session:" in k] == []
    data = await say(client, choice=button(data, "Shanghai"))  # the buttons shown before work all the same
    assert data["replies"][-1]["text"] == "Are you in service or retired?"
    assert len([k for k in await web_keys(redis) if b":session:" in k]) == 1


async def test_forged_cookie_gets_a_new_session(client):
    client.session.cookie_jar.update_cookies({COOKIE: "short"})
    response = await client.post("/api/chat", json={"command": "resume"})
    assert set_cookie(response)[COOKIE].value != "short"


async def test_forget_clears_redis_and_the_cookie(client, redis):
    data = await say(client, command="resume", argument="en")
    await say(client, choice=button(data, "Shanghai"))
    sid = session_id(client)
    assert await web_keys(redis)
    data = await say(client, command="forget")
    assert data["forgot"] is False
    response = await client.post("/api/chat", json={"choice": button(data, "Yes, delete")})
    data = await response.json()
    assert data["forgot"] is True
    assert "deleted" in data["replies"][0]["text"]
    morsel = set_cookie(response)[COOKIE]
    assert morsel.value == ""
    assert morsel["max-age"] == "0"
    assert [k for k in await web_keys(redis) if sid.encode() in k] == []
    assert not any(c.key == COOKIE for c in client.session.cookie_jar)
    data = await say(client, command="resume")  # a fresh conversation from the start
    assert session_id(client) != sid


# -- what the API refuses ------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
async def test_cross_site_requests_are_refused(client, headers):
    data = await say(client, 403, headers=headers, command="resume")
    assert data["error"] == "cross-site request"
    assert "replies" not in data


async def test_same_origin_requests_pass(client):
    origin = f"http://{client.host}:{client.port}"
    await say(client, headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"}, command="resume")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
async def test_wrong_content_type(client, content_type):
    response = await client.post("/api/chat", data=b'{"text": "hi"}', headers={"Content-Type": content_type})
    assert response.status == 415
    assert "application/json" in (await response.json())["error"]


async def test_oversize_body(client):
    body = json.dumps({"text": "x" * MAX_BODY}).encode()
    response = await client.post("/api/chat", data=body, headers=JSON)
    assert response.status == 413


async def test_oversize_body_without_length(client):
    async def chunks():
        yield b'{"text": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = await client.post("/api/chat", data=chunks(), headers=JSON)
    assert response.status == 413


@pytest.mark.parametrize(("body", "reason"), [
    ({"text": "x" * 501}, "text longer than 500 characters"),
    ({"text": 5}, "text must be a string"),
    ({"choice": ["1|x"]}, "choice must be a string"),
    ({"choice": ""}, "choice must be 1 to 200 characters"),
    ({"command": None}, "command must be a string"),
    ({"command": "start", "argument": 1}, "argument must be a string, and only with a command"),
    ({"text": "hi", "argument": "en"}, "argument must be a string, and only with a command"),
    ({"text": "hi", "choice": "1|x"}, "give exactly one of text, choice, command"),
    ({}, "give exactly one of text, choice, command"),
    ({"text": "hi", "extra": 1}, "unknown field: extra"),
    ({"command": "rm -rf"}, "unknown command"),
    ([1, 2], "body must be a JSON object"),
    ("hello", "body must be a JSON object"),
])
async def test_bad_bodies(client, body, reason):
    response = await client.post("/api/chat", data=json.dumps(body), headers=JSON)
    assert response.status == 400
    assert (await response.json())["error"] == reason


async def test_not_json(client):
    response = await client.post("/api/chat", data=b"{nope", headers=JSON)
    assert response.status == 400
    assert (await response.json())["error"] == "body is not JSON"


async def test_text_of_exactly_500_characters_is_fine(client):
    await say(client, command="resume")
    data = await say(client, text="x" * 500)
    assert data["replies"]


async def test_get_is_not_the_api(client):
    response = await client.get("/api/chat")
    assert response.status == 405


# -- throttling and errors ----------------------------------------------------------------------------


async def test_throttled_per_session(redis, redis_url):
    async with web_client(redis_url, throttle_rate=0.001, throttle_burst=3) as client:
        for _ in range(3):
            await say(client, command="resume", argument="en")
        data = await say(client, 429, command="resume")
        assert data["replies"][0]["text"] == "You're sending messages a little fast; please wait a few seconds."
        assert data["lang"] == "en"
        await say(client, 429, text="again")  # still throttled, still told why
        assert "yibao_throttled_total 2" in client.metrics.render()


async def test_throttled_per_address(redis, redis_url):
    async with web_client(redis_url, cookies=False, throttle_rate=0.001, throttle_burst=2) as client:
        for _ in range(8):  # eight new sessions from one address: its allowance is four sessions' worth
            await say(client, command="resume")
        data = await say(client, 429, command="resume")
        assert data["replies"][0]["text"] == "你发得有点快，请稍等几秒再继续。"


async def test_addresses_behind_a_trusted_proxy(redis, redis_url):
    """With TRUST_PROXY the last X-Forwarded-For hop (what our proxy saw) is the client; earlier hops
    are whatever the client wrote and do not count. Each address may open IP_FACTOR sessions at once."""
    async with web_client(redis_url, cookies=False, throttle_rate=0.001, throttle_burst=1, trust_proxy=True) as client:
        def via(*hops: str) -> dict:
            return {"X-Forwarded-For": ", ".join(hops)}

        for _ in range(IP_FACTOR):
            await say(client, headers=via("203.0.113.1"), command="resume")
        await say(client, 429, headers=via("203.0.113.1"), command="resume")
        await say(client, 429, headers=via("198.51.100.9", "203.0.113.1"), command="resume")  # spoofed first hop
        await say(client, headers=via("203.0.113.2"), command="resume")  # another person behind the proxy


async def test_forwarded_for_ignored_without_a_trusted_proxy(redis, redis_url):
    async with web_client(redis_url, cookies=False, throttle_rate=0.001, throttle_burst=1) as client:
        for n in range(IP_FACTOR):
            await say(client, headers={"X-Forwarded-For": f"203.0.113.{n}"}, command="resume")
        await say(client, 429, headers={"X-Forwarded-For": "203.0.113.200"}, command="resume")


async def test_forget_resets_the_session_throttle(redis, redis_url):
    async with web_client(redis_url, throttle_rate=0.001, throttle_burst=3) as client:
        await say(client, command="resume")
        data = await say(client, command="forget")
        sid = session_id(client)
        await say(client, choice=button(data, "确认删除"))
        assert not [k async for k in redis.scan_iter(match=f"*{sid}*")]


async def test_errors_answer_with_an_apology_and_log_no_text(client, caplog, monkeypatch):
    await say(client, command="resume", argument="en")
    sid = session_id(client)

    async def broken(key, incoming, **options):
        raise ValueError(f"cannot handle {incoming.text}")

    monkeypatch.setattr(client.runtime.dialogue, "handle", broken)
    with caplog.at_level(logging.INFO):
        data = await say(client, 500, text="my secret 12345")
    assert data["replies"][0]["text"].startswith("Sorry, something went wrong.")
    assert "yibao_errors_total 1" in client.metrics.render()
    logged = "\n".join(r.getMessage() + str(getattr(r, "chat", "")) for r in caplog.records)
    assert "ValueError" in logged
    assert "12345" not in logged and "secret" not in logged
    assert sid not in logged
    from bot.logs import hash_id

    assert hash_id(sid) in logged


# -- the page and its files ---------------------------------------------------------------------------


async def test_page_has_a_strict_content_security_policy(client):
    response = await client.get("/chat")
    assert response.status == 200
    assert response.content_type == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    html = await response.text()
    assert '<script src="/chat/static/chat.js" defer></script>' in html
    assert "<script>" not in html and " style=" not in html and "http://" not in html and "https://" not in html
    api = await client.post("/api/chat", json={"command": "resume"})
    assert api.headers["Cache-Control"] == "no-store"
    assert api.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("path", "content_type"), [
    ("/chat/static/chat.js", "text/javascript"),
    ("/chat/static/chat.css", "text/css"),
    ("/chat/static/icon.svg", "image/svg+xml"),
])
async def test_static_files_are_served(client, path, content_type):
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type in (content_type, "application/javascript")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = (await response.text()).replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, not a request
    assert "http://" not in body and "https://" not in body and "@import" not in body  # nothing third-party


@pytest.mark.parametrize("path", ["/chat/static/../web.py", "/chat/static/%2e%2e/web.py", "/chat/static/"])
async def test_nothing_else_is_served(client, path):
    response = await client.get(path)
    assert response.status in (403, 404)


async def test_no_chat_unless_added(redis, redis_url):
    async with web_client(redis_url, web_chat=False) as client:
        assert (await client.get("/chat")).status == 404
        assert (await client.post("/api/chat", json={"command": "resume"})).status in (404, 405)
        assert (await client.get("/healthz")).status == 200


async def test_the_web_command_app_has_the_chat(redis, redis_url):
    async with open_runtime(Settings(redis_url=redis_url, web_chat=True)) as runtime:
        assert isinstance(runtime, Runtime)
        app = build_web_app(runtime, Metrics())
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/chat")).status == 200
            response = await client.get("/", allow_redirects=False)
            assert response.status == 302 and response.headers["Location"] == "/chat"
            assert (await client.get("/readyz")).status == 200


async def test_reload_while_asked_to_confirm_forgetting(client):
    await say(client, command="resume", argument="en")
    await say(client, command="forget")
    again = await say(client, command="resume")
    assert again["replies"][-1]["text"].startswith("Delete all your data")
    data = await say(client, choice=button(again, "Keep my data"))  # the buttons shown again work
    assert data["replies"][0]["text"] == "OK, nothing was deleted."
