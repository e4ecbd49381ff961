"""Random conversations: whatever a person sends, the dialogue answers and its session stays valid.

At every step the input is random text, a word or amount the dialogue knows, a button of the last reply,
a button of an older reply, a made-up button id, a command (with or without an argument) or nothing
readable (`Incoming()`). Most runs use the pure `Dialogue.step` on a `Session` (fast); a few go through
`Dialogue.handle` with the real Redis store and check it does exactly what the pure step does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.store import RedisSessionStore
from conversations.dialogue import COMMANDS, STATES, Dialogue, Session
from conversations.questions import QUESTIONS
from conversations.replies import Incoming, Turn
from conversations.store import SessionKey
from conversations.texts import t
from rules.loader import load_policies

TODAY = dt.date(2025, 3, 1)
POLICIES = load_policies()
DIALOGUE = Dialogue(POLICIES, store=None, today=lambda: TODAY)  # type: ignore[arg-type]  # step only

REGION_WORDS = [w for r in POLICIES for w in (r.id, r.name.zh, r.name.en, *r.aliases)]
WORDS = REGION_WORDS + [
    "shanghia", "beijnig", "上海市", "火星",
    "职工", "居民", "一档", "二档", "在职", "退休", "门诊", "住院", "门特", "三级", "三甲", "社区", "异地",
    "hospital stay", "level 3", "retired", "1", "2", "3", "9", "②",
    "0", "20000", "1.2万", "一万二", "¥800", "￥800", "12,000", "-5", "0.001", "1亿", "abc", "45", "2005", "2099",
    "跳过", "skip", "没有", "返回", "back", "取消", "cancel", "帮助", "help", "?", "开始", "start", "语言", "english",
    "ok", "好", "计算", "改总费用", "改地区", "change 总费用", "总费用",
    "/start", "/back", "/cancel", "/help", "/regions", "/policy 上海", "/policy", "/policy xx", "/language",
    "/language en", "/language zh", "/forget", "/nonsense", "/start@yibao_bot", "/", "//",
    "", " ", "\n", "x" * 501,
]
ACTIONS = [
    "~back", "~skip", "~skiprest", "~calc", "~change", "~new", "~forget:yes", "~forget:no", "~lang:en", "~lang:zh",
    "~lang:fr", "~sub:shanghai", "~edit:total", "~edit:region", "~edit:nope", "~edit:", "~",
    "in_service", "retired", "inpatient", "outpatient", "3", "community", "employee", "1", "shanghai", "shenzhen",
]
COMMAND_NAMES = sorted(COMMANDS) + ["unknown", "START", ""]

# Numbers people type for amounts, ages, years and admissions (valid or not for the question asked).
NUMBERS = ["20000", "0", "1.2万", "一万二", "¥800", "5000", "45", "70", "2005", "1998", "2", "1", "9万", "-1", "1亿"]
# Weighted so that conversations get deep (summaries, results) as well as wander.
KINDS = ["text", "word", "word", "number", "number", "current", "current", "current", "current", "current",
         "old", "made_up", "garbage", "command", "nothing"]


def draw_incoming(data: st.DataObject, current: list[str], seen: list[str], q: int) -> tuple[str, Incoming]:
    kind = data.draw(st.sampled_from(KINDS))
    if kind == "current" and not current:
        kind = "word"
    if kind == "old" and not seen:
        kind = "made_up"
    if kind == "text":
        return kind, Incoming(text=data.draw(st.text(max_size=30)))
    if kind == "word":
        return kind, Incoming(text=data.draw(st.sampled_from(WORDS)))
    if kind == "number":
        return kind, Incoming(text=data.draw(st.sampled_from(NUMBERS)))
    if kind == "current":
        return kind, Incoming(choice=data.draw(st.sampled_from(current)))
    if kind == "old":
        return kind, Incoming(choice=data.draw(st.sampled_from(seen)))
    if kind == "made_up":
        counter = data.draw(st.sampled_from([q, q - 1, q + 1, 0]))
        return kind, Incoming(choice=f"{counter}|{data.draw(st.sampled_from(ACTIONS))}")
    if kind == "garbage":
        return kind, Incoming(choice=data.draw(st.text(max_size=20)))
    if kind == "command":
        argument = data.draw(st.sampled_from(["", "上海", "en", "zh", "sz", "火星", " "]) | st.text(max_size=10))
        return kind, Incoming(command=data.draw(st.sampled_from(COMMAND_NAMES)), argument=argument)
    return kind, Incoming()


def check_turn(turn: Turn, s: Session, kind: str, written: bool = True) -> dict:
    """The invariants of one step; returns the session as it would be stored.

    `written`: the session was only ever written by the dialogue (not loaded from an arbitrary dict).
    """
    assert turn.replies, "no reply"
    assert all(isinstance(r.text, str) and r.text.strip() for r in turn.replies)
    assert turn.lang == s.lang
    # Every button offered carries the current counter, so it is live until the next turn.
    for reply in turn.replies:
        for button in reply.choices:
            assert button.id.partition("|")[0] == str(s.q), (button, s.q)
            assert button.label
    if kind == "current":
        # A button of the last reply is never "stale".
        assert turn.replies[0].text != t(s.lang, "hints.stale")
    stored = s.to_dict()
    assert json.loads(json.dumps(stored, ensure_ascii=False)) == stored
    assert Session.from_dict(stored).to_dict() == stored
    assert s.state in STATES
    if s.state == "ask":
        assert s.question in QUESTIONS
    if written:
        assert len(set(s.history)) == len(s.history)
        assert set(s.history) <= set(s.answers)
    return stored


def buttons(turn: Turn) -> list[str]:
    return [b.id for r in turn.replies for b in r.choices]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_conversations(data):
    s = Session()
    current: list[str] = []
    seen: list[str] = []
    for _ in range(data.draw(st.integers(1, 60), label="steps")):
        kind, incoming = draw_incoming(data, current, seen, s.q)
        turn = DIALOGUE.step(s, incoming)
        stored = check_turn(turn, s, kind)
        s = Session.from_dict(stored)  # as the store would give it back
        current = buttons(turn)
        seen += current


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_conversations_from_the_middle(data):
    """Start from a session deep in a conversation (a summary or a result), then go random."""
    s = Session()
    script = data.draw(st.sampled_from([
        ["上海", "在职", "住院", "三级", "20000", "0"],
        ["深圳", "职工", "一档", "在职", "住院", "二级", "本地", "2万", "1000", "5000"],
        ["北京", "退休", "门诊", "社区", "70", "3000"],
        ["重庆", "1", "住院", "1", "10000", "跳过"],
    ]))
    for text in script:
        DIALOGUE.step(s, Incoming(text=text))
    turn = DIALOGUE.step(s, Incoming(choice=f"{s.q}|~skiprest"))
    if data.draw(st.booleans()):
        turn = DIALOGUE.step(s, Incoming(choice=f"{s.q}|~calc"))
    current, seen = buttons(turn), buttons(turn)
    for _ in range(data.draw(st.integers(1, 30), label="steps")):
        kind, incoming = draw_incoming(data, current, seen, s.q)
        turn = DIALOGUE.step(s, incoming)
        s = Session.from_dict(check_turn(turn, s, kind))
        current = buttons(turn)
        seen += current


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["l", "s", "q", "c", "a", "h", "b", "x"]),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8)
                                    | st.sampled_from(sorted(QUESTIONS) + list(STATES) + ["zh", "en"]),
                                    lambda inner: st.lists(inner, max_size=3)
                                    | st.dictionaries(st.sampled_from(sorted(QUESTIONS)), inner, max_size=3),
                                    max_leaves=6)),
       st.sampled_from(["/help", "20000", "上海", "/back", "跳过", "ok"]))
def test_any_stored_dict_gives_a_valid_session(stored, text):
    """Whatever is in the store (an old format, a hand edit), loading it gives a session that works."""
    s = Session.from_dict(stored)
    turn = DIALOGUE.step(s, Incoming(text=text))
    check_turn(turn, s, "word", written=False)


# -- through Redis ---------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_conversations_through_redis(redis_server_url, data):
    """`Dialogue.handle` with the Redis store does what the pure step does, and stores a valid session."""
    key = SessionKey("fuzz", uuid.uuid4().hex[:8], uuid.uuid4().hex[:8])
    steps = range(data.draw(st.integers(1, 25), label="steps"))

    async def run() -> None:
        client = aioredis.Redis.from_url(redis_server_url)
        store = RedisSessionStore(client, ttl_seconds=600)
        dialogue = Dialogue(POLICIES, store, today=lambda: TODAY)
        current: list[str] = []
        seen: list[str] = []
        try:
            for _ in steps:
                before, _ = await store.load(key)
                kind, incoming = draw_incoming(data, current, seen, Session.from_dict(before).q)
                turn = await dialogue.handle(key, incoming)
                expected = Session.from_dict(before)
                pure = DIALOGUE.step(expected, incoming)
                assert turn.replies == pure.replies and turn.forgot == pure.forgot
                raw = await client.hget(store.session_key(key), "d")
                if turn.forgot:
                    assert raw is None and await client.keys(f"*{key.user}*") == []
                else:
                    stored = json.loads(raw)
                    assert stored == expected.to_dict()
                    check_turn(turn, Session.from_dict(stored), kind)
                    assert 0 < await client.ttl(store.session_key(key)) <= 600
                current = buttons(turn)
                seen += current
        finally:
            await client.delete(store.session_key(key), store.index_key(key.platform, key.user))
            await client.aclose()

    asyncio.run(run())
