"""Policy-change notices end to end: `run_serve` in process (what `yibao serve` runs), the real
python-telegram-bot stack against the fake Bot API, a real Redis.

Subscriptions (/subscribe, /unsubscribe, /subscriptions, the "notify me" button, /forget), the admin's
composer (/broadcast → text → target → preview → confirm or cancel), /broadcasts with progress and a
cancel button, the progress message and the final report, /reload and SIGHUP with drafts to approve,
and the HTTP admin API.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.notices.service import MAX_TEXT
from bot.notices.subscriptions import Subscriptions
from bot.store import RedisSessionStore
from conversations.texts import raw, t
from tests import fake_telegram as ft
from tests.test_telegram import Chat, _restore_logging, base_env, full_estimate_by_buttons, serving  # noqa: F401

ADMIN, OTHER_ADMIN = 9001, 9002
TOKEN = "s3cret-admin-token"
POLICIES = Path(__file__).resolve().parent.parent / "rules" / "policies"
CAP_2025 = ("            # 2025-07-01: 650,000 is unverified (see notes); not encoded.",
            "            2025-07-01: 650000")


@pytest.fixture
async def fake() -> AsyncIterator[ft.FakeTelegram]:
    async with ft.FakeTelegram() as server:
        yield server


def notices_env(fake: ft.FakeTelegram, redis_url: str, **extra: str) -> dict[str, str]:
    env = base_env(fake, redis_url, TELEGRAM_BOT_TOKEN=fake.token, ADMIN_IDS=f"{ADMIN},{OTHER_ADMIN}")
    env.update(extra)
    return env


@pytest.fixture
async def served(fake: ft.FakeTelegram, redis_url: str, redis) -> AsyncIterator:  # `redis`: an emptied database
    async with serving(fake, notices_env(fake, redis_url, ADMIN_TOKEN=TOKEN)) as bot:
        yield bot


@pytest.fixture
def subs(redis) -> Subscriptions:
    return Subscriptions(redis, RedisSessionStore(redis))


def region_key(region: str) -> str:
    return f"yibao:{{subs:{region}}}:chats"


def delivered(fake: ft.FakeTelegram, text: str) -> Counter:
    return Counter(int(c.chat_id) for c in fake.calls_of("sendMessage") if c.ok and c.params.get("text") == text)


async def wait_delivered(fake: ft.FakeTelegram, text: str, count: int, timeout: float = 10.0) -> list[ft.Call]:
    return await fake.wait_for(lambda c: c.method == "sendMessage" and c.ok and c.params.get("text") == text,
                               count, timeout)


def bot_texts(fake: ft.FakeTelegram, chat: int, since: int = 0) -> list[str]:
    return [c.params["text"] for c in fake.calls[since:]
            if c.method == "sendMessage" and c.ok and str(c.chat_id) == str(chat)]


def fill(template: str) -> str:
    """A text template as a regex: every {placeholder} matches anything."""
    return "^" + re.sub(r"\\\{\w+\\\}", ".*", re.escape(template)) + "$"


# -- subscriptions ------------------------------------------------------------------------------------


async def test_subscribe_unsubscribe_and_list(fake: ft.FakeTelegram, served, redis) -> None:
    ann, bob = Chat(fake, 6001), Chat(fake, 6002, "Bob")
    assert await ann.say("/subscriptions") == [t("zh", "notices.none")]
    # the whole country is too many regions for buttons: the city is typed, found as the dialogue finds it
    assert await ann.say("/subscribe") == [t("zh", "notices.subscribe_usage")]
    assert "reply_markup" not in ann.last()
    assert await ann.say("/subscribe 上海市") == [t("zh", "notices.subscribed", region="上海")]
    assert await ann.say("/subscribe 上海") == [t("zh", "notices.already", region="上海")]
    assert await ann.say("/subscribe 北京") == [t("zh", "notices.subscribed", region="北京")]
    [unknown] = await ann.say("/subscribe 火星")
    assert unknown.startswith("没找到地区「火星」")
    assert await ann.say("/subscriptions") == [t("zh", "notices.list", regions="北京, 上海")]
    assert await redis.hget(region_key("shanghai"), "6001") == b"zh"
    assert await redis.smembers("yibao:{telegram:6001}:subs") == {b"shanghai", b"beijing"}

    # stored with the subscriber's language
    await bob.say("/language en", replies=1)
    assert await bob.say("/subscribe Shanghai") == [t("en", "notices.subscribed", region="Shanghai")]
    assert await redis.hget(region_key("shanghai"), "6002") == b"en"

    assert await ann.say("/unsubscribe") == [t("zh", "notices.unsubscribe_choose")]
    labels = [b["text"] for row in ann.last()["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["北京", "上海"]  # only what the user subscribed to
    assert await ann.press("上海") == [t("zh", "notices.unsubscribed", region="上海")]
    assert await ann.say("/unsubscribe 上海") == [t("zh", "notices.not_subscribed", region="上海")]
    assert await ann.say("/unsubscribe beijing") == [t("zh", "notices.unsubscribed", region="北京")]
    assert await ann.say("/unsubscribe") == [t("zh", "notices.none")]
    assert await redis.hget(region_key("shanghai"), "6001") is None
    assert await redis.hgetall(region_key("shanghai")) == {b"6002": b"en"}


async def test_notify_me_after_an_estimate_and_forget(fake: ft.FakeTelegram, served, redis) -> None:
    chat = Chat(fake, 6010)
    await full_estimate_by_buttons(chat)
    notify = t("zh", "buttons.subscribe", region="上海")
    assert await chat.press(notify) == [t("zh", "notices.subscribed", region="上海")]
    assert await chat.say("/subscribe 北京") == [t("zh", "notices.subscribed", region="北京")]
    assert await redis.hget(region_key("shanghai"), "6010") == b"zh"
    assert await redis.hget(region_key("beijing"), "6010") == b"zh"

    await chat.say("/forget")
    assert await chat.press(t("zh", "buttons.forget_yes")) == [t("zh", "commands.forgotten")]
    assert not await redis.hexists(region_key("shanghai"), "6010")
    assert not await redis.hexists(region_key("beijing"), "6010")
    assert [k async for k in redis.scan_iter(match="yibao:{telegram:6010}*")] == []
    assert await chat.say("/subscriptions") == [t("zh", "notices.none")]


# -- the composer ------------------------------------------------------------------------------------


async def test_admin_commands_are_for_admins_only(fake: ft.FakeTelegram, served) -> None:
    user = Chat(fake, 6020)
    for command in ("/broadcast", "/broadcasts", "/reload"):
        assert await user.say(command) == [t("zh", "notices.admin_only")]
    assert await user.press_data(1, "bc:confirm:") == [t("zh", "notices.admin_only")]
    assert await user.press_data(1, "draft:ok:abc") == [t("zh", "notices.admin_only")]
    # an admin's /cancel while not composing is the dialogue's
    admin = Chat(fake, ADMIN)
    [reply] = await admin.say("/cancel")
    assert reply != t("zh", "notices.compose_cancelled")


async def test_compose_preview_cancel_and_confirm(fake: ft.FakeTelegram, served, subs, redis) -> None:
    for chat in (6101, 6102, 6103):
        await subs.subscribe(str(chat), "shanghai", "zh")
    await subs.subscribe("6104", "beijing", "en")
    admin = Chat(fake, ADMIN)
    text = "医保新政：上海门诊起付线调整，详见官网。"

    # cancelled at the preview
    assert await admin.say("/broadcast") == [t("zh", "notices.compose_text")]
    assert await admin.say(text) == [t("zh", "notices.compose_target")]
    [preview] = await admin.press("上海")
    assert preview == t("zh", "notices.compose_preview", count=3, target="上海", text=text)
    assert await admin.press(t("zh", "notices.compose_cancel")) == [t("zh", "notices.compose_cancelled")]
    assert await redis.get("yibao:{telegram:9001}:compose") is None
    # cancelled with /cancel while writing; too long a text is refused
    await admin.say("/broadcast")
    assert await admin.say("x" * (MAX_TEXT + 1)) == [t("zh", "notices.compose_too_long")]
    assert await admin.say("/cancel") == [t("zh", "notices.compose_cancelled")]

    # confirmed, to everyone
    mark = fake.mark()
    await admin.say("/broadcast")
    await admin.say(text)
    [preview] = await admin.press(t("zh", "notices.compose_all"))
    assert preview == t("zh", "notices.compose_preview", count=4, target=t("zh", "notices.compose_all"), text=text)
    [queued] = await admin.press(t("zh", "notices.compose_confirm"))
    assert re.match(fill(t("zh", "notices.queued")), queued) and "共 4 位" in queued
    job = re.search(r"广播 (\S+) 已排队", queued).group(1)
    await wait_delivered(fake, text, 4)
    [final] = await fake.wait_for(lambda c: c.method == "sendMessage" and "已完成" in c.params.get("text", ""),
                                  1, 10, chat_id=ADMIN, since=mark)
    assert final.params["text"] == t("zh", "notices.final", id=job, state="已完成", sent=4, blocked=0, failed=0,
                                     total=4)
    assert delivered(fake, text) == Counter({6101: 1, 6102: 1, 6103: 1, 6104: 1})
    [listing] = await admin.say("/broadcasts")
    assert listing.splitlines()[0] == t("zh", "notices.list_title")
    assert t("zh", "notices.list_line", id=job, state="已完成", sent=4, total=4, blocked=0, failed=0,
             pending=0) in listing
    assert "reply_markup" not in admin.last()  # nothing running: no cancel buttons
    # a button of a finished composer
    assert await admin.press_data(admin.last()["message_id"], "bc:confirm:") == [t("zh", "notices.draft_gone")]
    await asyncio.sleep(0.3)
    assert len([x for x in bot_texts(fake, ADMIN, mark) if x.startswith(f"广播 {job} 已完成")]) == 1


async def test_progress_is_edited_listed_and_cancel_ends_with_one_report(
        fake: ft.FakeTelegram, redis_url: str, redis, subs) -> None:
    subscribers = list(range(6200, 6230))
    for chat in subscribers:
        await subs.subscribe(str(chat), "shanghai", "zh")
    env = notices_env(fake, redis_url, BROADCAST_RATE="5")
    text = "进度测试"
    async with serving(fake, env):
        admin = Chat(fake, ADMIN)
        mark = fake.mark()
        await admin.say("/broadcast")
        await admin.say(text)
        await admin.press("上海")
        [queued] = await admin.press(t("zh", "notices.compose_confirm"))
        job = re.search(r"广播 (\S+) 已排队", queued).group(1)
        progress_id = admin.last()["message_id"]
        # the runner edits the progress message (every 3 s in `yibao serve`)
        [edit] = await fake.wait_for("editMessageText", 1, 8, chat_id=ADMIN, since=mark)
        assert edit.params["message_id"] == progress_id
        edited = fake.message(ADMIN, progress_id)["text"]
        assert edited.startswith(f"广播 {job}\n") and "%" in edited and "已发送" in edited
        # /broadcasts shows it running, with its progress and a cancel button
        [listing] = await admin.say("/broadcasts")
        assert f"{job} · sending · " in listing
        buttons = [b["callback_data"] for row in admin.last()["reply_markup"]["inline_keyboard"] for b in row]
        assert buttons == [f"bc:stop:{job}"]
        [after] = await admin.press_data(admin.last()["message_id"], f"bc:stop:{job}")
        assert f"{job} · 已取消 · " in after
        [final] = await fake.wait_for(lambda c: c.method == "sendMessage" and "已取消：" in c.params.get("text", ""),
                                      1, 8, chat_id=ADMIN, since=mark)
        sent_then = sum(delivered(fake, text).values())
        await asyncio.sleep(1.5)
    got = delivered(fake, text)
    assert 0 < sum(got.values()) == sent_then < len(subscribers)  # stopped mid-job, nothing after
    assert max(got.values()) == 1
    finals = [x for x in bot_texts(fake, ADMIN, mark) if x.startswith(f"广播 {job} 已取消")]
    assert finals == [final.params["text"]]
    assert f"已发送 {sum(got.values())}，" in final.params["text"]
    ours = {(c.chat_id, c.time) for c in fake.calls_of("sendMessage") if c.params.get("text") == text}
    assert [v for v in fake.rate_violations if (v.chat_id, v.time) in ours] == []


# -- reloads and drafts ---------------------------------------------------------------------------------


async def test_reload_sends_drafts_to_approve(fake: ft.FakeTelegram, redis_url: str, redis, subs,
                                              tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for file in POLICIES.glob("*.yaml"):  # the hand-maintained files
        shutil.copy(file, policies / file.name)
    shanghai = policies / "shanghai.yaml"
    for chat, region, lang in ((6301, "shanghai", "zh"), (6302, "shanghai", "zh"), (6303, "shanghai", "en"),
                               (6304, "beijing", "zh")):
        await subs.subscribe(str(chat), region, lang)
    env = notices_env(fake, redis_url, YIBAO_POLICY_DIR=str(policies))
    async with serving(fake, env):
        admin, other = Chat(fake, ADMIN), Chat(fake, OTHER_ADMIN)
        original = shanghai.read_text()
        assert CAP_2025[0] in original
        shanghai.write_text(original.replace(*CAP_2025))

        mark = fake.mark()
        await admin.say("/reload", replies=3)
        for who in (ADMIN, OTHER_ADMIN):
            await fake.wait_for("sendMessage", 3, 5, chat_id=who, since=mark)
            ok, zh_draft, en_draft = bot_texts(fake, who, mark)
            assert ok == t("zh", "notices.reload_ok", regions=len(list(policies.glob("*.yaml"))), changes=1)
            assert zh_draft.startswith(raw("zh", "notices.draft_title").format(region="上海", lang="zh"))
            assert "63万 → 65万，自 2025-07-01 起" in zh_draft
            assert en_draft.startswith(raw("zh", "notices.draft_title").format(region="上海", lang="en"))
            assert "annual fund cap 630,000 → 650,000, from 2025-07-01" in en_draft
        drafts = [m for m in fake.bot_messages(ADMIN) if "reply_markup" in m][-2:]
        zh_data, en_data = ([b["callback_data"] for b in m["reply_markup"]["inline_keyboard"][0]] for m in drafts)
        zh_text = zh_draft.split("\n\n", 1)[1]
        en_text = en_draft.split("\n\n", 1)[1]

        # approving the Chinese draft: Shanghai's Chinese subscribers only
        [queued] = await admin.press_data(drafts[0]["message_id"], zh_data[0])
        assert "共 2 位" in queued
        await wait_delivered(fake, zh_text, 2)
        # the other admin has the same drafts: the one approved is gone, the English one goes to 6303
        assert await other.press_data(None, zh_data[0]) == [t("zh", "notices.draft_gone")]
        [queued] = await other.press_data(None, en_data[0])
        assert "共 1 位" in queued
        await wait_delivered(fake, en_text, 1)
        await asyncio.sleep(1.2)
        assert delivered(fake, zh_text) == Counter({6301: 1, 6302: 1})
        assert delivered(fake, en_text) == Counter({6303: 1})

        # SIGHUP: the same, told in Chinese; a draft can be discarded
        shanghai.write_text(original.replace(*CAP_2025).replace("value: 630000", "value: 640000"))
        mark = fake.mark()
        os.kill(os.getpid(), signal.SIGHUP)
        await fake.wait_for("sendMessage", 3, 5, chat_id=ADMIN, since=mark)
        await fake.wait_for("sendMessage", 3, 5, chat_id=OTHER_ADMIN, since=mark)
        ok, zh_draft, _ = bot_texts(fake, ADMIN, mark)
        assert ok == t("zh", "notices.reload_ok", regions=len(list(policies.glob("*.yaml"))), changes=1)
        assert "63万 → 64万，自 2024-07-01 起" in zh_draft
        discard = fake.last_bot_message(ADMIN)["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
        assert await admin.press_data(None, discard) == [t("zh", "notices.draft_discarded")]

        # an invalid policy set: the old one stays, the admins are told why
        shanghai.write_text(original.replace("plans:", "plans: [", 1))
        mark = fake.mark()
        [failed] = await admin.say("/reload")
        assert failed.startswith(t("zh", "notices.reload_failed", errors="").rstrip())
        assert "shanghai" in failed
        await fake.wait_for("sendMessage", 1, 5, chat_id=OTHER_ADMIN, since=mark)
        assert bot_texts(fake, OTHER_ADMIN, mark) == [failed]
        assert await Chat(fake, 6399).say("/subscribe 上海") == [t("zh", "notices.subscribed", region="上海")]
        # fixed again: the set in force is still the SIGHUP one, so nothing changed
        shanghai.write_text(original.replace(*CAP_2025).replace("value: 630000", "value: 640000"))
        regions = len(list(policies.glob("*.yaml")))
        assert await admin.say("/reload") == [t("zh", "notices.reload_ok", regions=regions, changes=0)]


# -- the HTTP admin API -----------------------------------------------------------------------------------


async def api(served, method: str, path: str, body=None, token: str | None = TOKEN, raw: bytes | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with aiohttp.ClientSession() as http, http.request(method, served.url + path, data=data,
                                                              headers=headers) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text and resp.content_type == "application/json" else text)


async def test_admin_api(fake: ft.FakeTelegram, served, subs) -> None:
    for chat in (6401, 6402):
        await subs.subscribe(str(chat), "shanghai", "zh")
    await subs.subscribe("6403", "beijing", "en")

    # authorisation
    assert (await api(served, "GET", "/admin/broadcasts", token=None))[0] == 401
    assert (await api(served, "GET", "/admin/broadcasts", token="wrong"))[0] == 401
    assert (await api(served, "POST", "/admin/broadcasts", {"text": "x"}, token=""))[0] == 401
    status, body = await api(served, "GET", "/admin/broadcasts/whatever", token="s3cret-admin-tokenX")
    assert status == 401 and body == {"error": "unauthorised"}

    # bad bodies
    bad = [
        (b"{not json", "the body must be JSON"),
        (b"\xff\xfe", "the body must be JSON"),
        (b"", "the body must be JSON"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b'"text"', "the body must be a JSON object"),
        (json.dumps({"text": "x", "when": "now"}).encode(), "unknown fields: when"),
        (json.dumps({}).encode(), "missing fields: text, regions"),
        (json.dumps({"text": "x"}).encode(), "missing fields: regions ('regions': a list of region ids or names, "
                                             "or null for every subscriber)"),
        (json.dumps({"text": 5, "regions": None}).encode(), "'text' must be a string"),
        (json.dumps({"text": "   ", "regions": None}).encode(), "text is empty"),
        (json.dumps({"text": "x" * (MAX_TEXT + 1), "regions": None}).encode(),
         f"text is longer than {MAX_TEXT} characters as Telegram counts them (UTF-16 units: {MAX_TEXT + 1};"),
        # Telegram counts UTF-16 units: an emoji is two, a CJK character of the BMP one
        (json.dumps({"text": "🏥" * (MAX_TEXT // 2 + 1), "regions": None}).encode(),
         f"text is longer than {MAX_TEXT} characters as Telegram counts them (UTF-16 units: {MAX_TEXT + 2};"),
        (json.dumps({"text": "🏥" * MAX_TEXT, "regions": None}).encode(), f"text is longer than {MAX_TEXT}"),
        (json.dumps({"text": "x", "regions": "shanghai"}).encode(), "'regions' must be a non-empty list"),
        (json.dumps({"text": "x", "regions": []}).encode(), "'regions' must be a non-empty list"),
        (json.dumps({"text": "x", "regions": [1]}).encode(), "'regions' must be a non-empty list"),
        (json.dumps({"text": "x", "regions": ["atlantis"]}).encode(), "unknown region: 'atlantis'"),
        (json.dumps({"text": "x", "regions": None, "lang": "fr"}).encode(), "lang must be 'zh', 'en' or null"),
        (json.dumps({"text": "x", "regions": None, "lang": ["zh"]}).encode(), "lang must be 'zh', 'en' or null"),
    ]
    for sent, reason in bad:
        status, body = await api(served, "POST", "/admin/broadcasts", raw=sent)
        assert status == 400 and body["error"].startswith(reason), (sent, body)

    # at the limit as Telegram counts it: accepted (nobody subscribed to 北京 in Chinese)
    for text in ("🏥" * (MAX_TEXT // 2), "医" * MAX_TEXT):
        status, body = await api(served, "POST", "/admin/broadcasts", {"text": text, "regions": ["北京"], "lang": "zh"})
        assert status == 202 and body["total"] == 0

    # errors aiohttp itself raises are in the API's shape too
    status, body = await api(served, "POST", "/admin/broadcasts", raw=b"{" + b" " * (1024 * 1024) + b"}")
    assert (status, body) == (413, {"error": "body larger than 1 MiB"})
    status, body = await api(served, "PUT", "/admin/broadcasts", {"text": "x", "regions": None})
    assert (status, body) == (405, {"error": "method not allowed"})
    assert await api(served, "GET", "/admin/nothing-here") == (404, {"error": "not found"})

    # create, follow, finish
    text = "API 通知：上海"
    status, body = await api(served, "POST", "/admin/broadcasts", {"text": text, "regions": ["上海"], "lang": "zh"})
    assert status == 202 and body["total"] == 2
    job = body["id"]
    status, shown = await api(served, "GET", f"/admin/broadcasts/{job}")
    assert status == 200 and {"state", "total", "sent", "blocked", "failed", "pending"} <= set(shown)
    assert shown["total"] == 2 and shown["regions"] == ["shanghai"] and shown["lang"] == "zh"
    await wait_delivered(fake, text, 2)
    for _ in range(100):
        status, shown = await api(served, "GET", f"/admin/broadcasts/{job}")
        if shown["state"] == "done":
            break
        await asyncio.sleep(0.05)
    assert {k: shown[k] for k in ("state", "total", "sent", "blocked", "failed", "pending")} == \
        {"state": "done", "total": 2, "sent": 2, "blocked": 0, "failed": 0, "pending": 0}
    assert delivered(fake, text) == Counter({6401: 1, 6402: 1})
    assert await api(served, "POST", f"/admin/broadcasts/{job}/cancel") == (409, {"state": "done"})

    # everyone, every language
    status, body = await api(served, "POST", "/admin/broadcasts", {"text": "to all", "regions": None, "lang": None})
    assert status == 202 and body["total"] == 3
    # cancel before it is picked up
    status, body = await api(served, "POST", "/admin/broadcasts", {"text": "never sent", "regions": ["beijing"]})
    assert status == 202
    assert await api(served, "POST", f"/admin/broadcasts/{body['id']}/cancel") == (200, {"state": "cancelled"})
    assert await api(served, "POST", f"/admin/broadcasts/{body['id']}/cancel") == (409, {"state": "cancelled"})
    status, listing = await api(served, "GET", "/admin/broadcasts")
    ids = [b["id"] for b in listing["broadcasts"]]
    assert status == 200 and ids[0] == body["id"] and job in ids  # newest first

    # unknown ids
    assert (await api(served, "GET", "/admin/broadcasts/nope"))[0] == 404
    assert (await api(served, "POST", "/admin/broadcasts/nope/cancel"))[0] == 404
    await wait_delivered(fake, "to all", 3)
    await asyncio.sleep(1.2)
    assert delivered(fake, "never sent") == Counter()


async def test_admin_api_is_absent_without_a_token(fake: ft.FakeTelegram, redis_url: str, redis) -> None:
    async with serving(fake, notices_env(fake, redis_url)) as bot:
        for method, path in (("POST", "/admin/broadcasts"), ("GET", "/admin/broadcasts"),
                             ("GET", "/admin/broadcasts/x"), ("POST", "/admin/broadcasts/x/cancel")):
            assert (await api(bot, method, path, {"text": "x"}))[0] == 404
            assert (await api(bot, method, path, {"text": "x"}, token=None))[0] == 404
