"""A person's year in the web chat, through the JSON API against a real redis-server (see conftest.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from test_web import _redis_mode_for_web_client, say, set_cookie, web_client  # noqa: F401 (autouse fixture)

from bot.channels.web import COOKIE

REDIS_MODES = ("single", "cluster")  # every test here runs on one redis-server and on a Redis Cluster


@pytest.fixture
async def client(redis, redis_url):  # `redis` empties the database first
    async with web_client(redis_url, throttle_rate=1000.0, throttle_burst=1000) as client:
        yield client


def act(data: dict, action: str) -> str:
    """The id of the button whose action (after "<q>|") is `action`, in any reply of the turn."""
    for reply in data["replies"]:
        for row in reply["buttons"]:
            for b in row:
                if b["id"].partition("|")[2] == action:
                    return b["id"]
    raise AssertionError(f"no button {action!r} in {data['replies']}")


def actions(data: dict) -> list[str]:
    return [b["id"].partition("|")[2] for r in data["replies"] for row in r["buttons"] for b in row]


def text(data: dict) -> str:
    return "\n".join(r["text"] for r in data["replies"])


async def first_estimate_recorded(client) -> dict:
    await say(client, command="resume")
    data = await say(client, text="上海")  # the region typed (its button sits in a province picker)
    for action in ("employee", "in_service", "inpatient", "3"):
        if action in actions(data):
            data = await say(client, choice=act(data, action))
    data = await say(client, text="20000")
    while "~calc" not in actions(data) and "~skiprest" not in actions(data):
        data = await say(client, choice=act(data, "~skip"))
    if "~skiprest" in actions(data):
        data = await say(client, choice=act(data, "~skiprest"))
    data = await say(client, choice=act(data, "~calc"))
    assert data["kind"] == "estimate"
    data = await say(client, choice=act(data, "~y:rec"))
    assert "记入本年度后，我会保存" in text(data)  # what is kept, shown before anything is
    return await say(client, choice=act(data, "~y:ok"))


async def test_a_returning_person_is_asked_three_answers(client, redis):
    data = await first_estimate_recorded(client)
    assert "已记入" in text(data)
    # a new conversation later (the menu's "new estimate"): only visit type, hospital and amount
    data = await say(client, command="start")
    assert "欢迎回来" in text(data) and "上海 · 职工医保 · 在职" in text(data)
    answers = [("choice", "inpatient"), ("choice", "3"), ("text", "30000")]
    for kind, value in answers:
        data = await say(client, **({"choice": act(data, value)} if kind == "choice" else {"text": value}))
    assert data["kind"] == "estimate"
    start = client.runtime.policies.regions["shanghai"].insurance_year(dt.date.today())[0]
    assert f"本年度（{start} 起）已记 1 次住院：起付线已付 1,500.00 元，统筹已付 15,725.00 元" in text(data)
    # 上海 住院 三级, a second stay: the deductible of a later stay is not on record (charged again in full
    # or waived): (30000 − 1500 … 30000) × 85% = 24225 … 25500, from a cap of 630000 with 15725 used
    assert "医保约付：24,225–25,500 元" in text(data)
    response = await client.post("/api/chat", json={"choice": act(data, "~y:rec")})
    assert "已记入" in text(await response.json())
    assert int(set_cookie(response)[COOKIE]["max-age"]) > 400 * 86400  # recognised as long as the year is kept


async def test_year_menu_item_and_forget(client, redis):
    data = await say(client, command="year")
    assert "你还没有保存任何年度记录" in text(data)
    await first_estimate_recorded(client)
    data = await say(client, command="year")
    assert "我的年度" in text(data) and "统筹已付 15,725.00 元" in text(data)
    assert "统筹基金年度限额" in text(data)
    assert [k async for k in redis.scan_iter(match="yibao:*:year")]
    data = await say(client, command="forget")
    data = await say(client, choice=act(data, "~forget:yes"))
    assert data["forgot"]
    assert [k async for k in redis.scan_iter(match="yibao:{web:*")] == []  # session, year, key set
