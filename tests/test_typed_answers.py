"""Answers typed as people type them, one table row a person and an answer, through `Dialogue.handle`
with a real Redis: each row drives a fresh conversation to the question, types the answer, and checks
what was stored — or that the same question is asked again with a hint (never a guess).
"""

from __future__ import annotations

import pytest

from bot.store import RedisSessionStore
from conversations.dialogue import Dialogue
from conversations.questions import QUESTIONS
from conversations.texts import t
from tests.test_dialogue import POLICIES, PREFERRED, Chat, asks, today

AGAIN = None  # the question is asked again

# (region, question, typed, stored answer or AGAIN)
ROWS = [
    # the plan (深圳 has both)
    ("深圳", "plan", "职工", "employee"),
    ("深圳", "plan", "职工医保", "employee"),
    ("深圳", "plan", "employee", "employee"),
    ("深圳", "plan", "Employee", "employee"),
    ("深圳", "plan", "我是单位职工", "employee"),
    ("深圳", "plan", "居民", "resident"),
    ("深圳", "plan", "城乡居民医保", "resident"),
    ("深圳", "plan", "resident", "resident"),
    ("深圳", "plan", "1", "employee"),  # its number
    ("深圳", "plan", "不是职工", AGAIN),
    ("深圳", "plan", "retired", AGAIN),  # a member type, not a plan
    ("深圳", "plan", "-1", AGAIN),
    # the member type (北京 asks it first)
    ("北京", "member", "在职", "in_service"),
    ("北京", "member", "上班", "in_service"),
    ("北京", "member", "还在上班", "in_service"),
    ("北京", "member", "在职职工", "in_service"),
    ("北京", "member", "working", "in_service"),
    ("北京", "member", "I'm working", "in_service"),
    ("北京", "member", "employed", "in_service"),
    ("北京", "member", "退休了", "retired"),
    ("北京", "member", "已退休", "retired"),
    ("北京", "member", "我已经退休了", "retired"),
    ("北京", "member", "retired", "retired"),
    ("北京", "member", "I am retired", "retired"),
    ("北京", "member", "retird", "retired"),  # a typo
    ("北京", "member", "1", "in_service"),
    ("北京", "member", "2", "retired"),
    ("北京", "member", "not working", AGAIN),
    ("北京", "member", "no longer working", AGAIN),
    ("北京", "member", "unemployed", AGAIN),
    ("北京", "member", "不上班了", AGAIN),
    ("北京", "member", "还没退休", AGAIN),
    ("北京", "member", "未退休", AGAIN),
    ("北京", "member", "employee", AGAIN),  # the 职工 plan, not a member type
    ("北京", "member", "在职还是退休", AGAIN),
    ("北京", "member", "-1", AGAIN),
    ("北京", "member", "-2", AGAIN),
    ("北京", "member", "3", AGAIN),
    # the hospital level (深圳: community, 1, 2, 3)
    ("深圳", "level", "1", "1"),
    ("深圳", "level", "2", "2"),
    ("深圳", "level", "3", "3"),
    ("深圳", "level", "３", "3"),
    ("深圳", "level", "三", "3"),
    ("深圳", "level", "三级", "3"),
    ("深圳", "level", "三甲医院", "3"),
    ("深圳", "level", "社区", "community"),
    ("深圳", "level", "4", "3"),  # a number that names no level: its place in the list (社区, 一级, 二级, 三级)
    ("深圳", "level", "5", AGAIN),
    ("深圳", "level", "-1", AGAIN),
    ("深圳", "level", "-2", AGAIN),
    ("深圳", "level", "负一", AGAIN),
    ("深圳", "level", "0", AGAIN),
    ("深圳", "level", "9", AGAIN),
    ("深圳", "level", "不是三级", AGAIN),
]


@pytest.fixture
def chat(redis) -> Chat:
    return Chat(Dialogue(POLICIES, RedisSessionStore(redis, ttl_seconds=3600), today=today))


async def reach(chat: Chat, region: str, qid: str) -> None:
    """A conversation in `region` up to question `qid`, every earlier question answered by button."""
    await chat.command("start")
    await chat.say(region)
    for _ in range(len(QUESTIONS)):
        s = await chat.session()
        if s.question == qid:
            return
        options = [a for a in chat.actions if not a.startswith("~")]
        await chat.press(PREFERRED[s.question] if PREFERRED.get(s.question) in options else options[0])
    raise AssertionError(f"{region} never asks {qid}")


@pytest.mark.parametrize(("region", "qid", "typed", "expected"), ROWS)
async def test_a_typed_answer(chat: Chat, region: str, qid: str, typed: str, expected: str | None) -> None:
    await reach(chat, region, qid)
    await chat.say(typed)
    s = await chat.session()
    if expected is AGAIN:
        assert qid not in s.answers and s.question == qid, f"{typed!r} was read as {s.answers.get(qid)!r}"
        assert t("zh", "hints.choice") in chat.text and asks(chat, qid)
    else:
        assert s.answers.get(qid) == expected, f"{typed!r}: {s.answers.get(qid)!r}, asked {s.question}"


@pytest.mark.parametrize(("typed", "lang"), [("English", "en"), ("english", "en"), ("英文", "en"), ("英语", "en"),
                                             ("ＥＮＧＬＩＳＨ", "en"), ("中文", "zh"), ("简体中文", "zh"),
                                             ("Chinese", "zh"), ("普通话", "zh")])
async def test_a_language_typed_by_its_name_after_language(chat: Chat, typed: str, lang: str) -> None:
    await chat.command("start")
    await chat.say("北京")
    await chat.command("language", "en" if lang == "zh" else "zh")  # start from the other one
    await chat.command("language")
    assert chat.last_text == t("zh", "commands.choose_language")
    await chat.say(typed)
    assert (await chat.session()).lang == lang
    assert chat.turn.replies[0].text == t(lang, "commands.language")
    assert asks(chat, "member", lang)  # and the conversation goes on where it was
