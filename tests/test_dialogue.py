"""Whole guided conversations through `Dialogue.handle`, against a real redis-server (see conftest.py).

Figures asserted in estimate texts are worked out by hand from rules/policies/*.yaml (the `why` comment
next to each shows how), never by calling the engine. The dialogue's date is fixed to 2025-03-01.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from policy_sets import hand_maintained_policies

from bot.store import RedisSessionStore
from conversations.dialogue import Dialogue, Session
from conversations.questions import QUESTIONS
from conversations.replies import Incoming, Turn
from conversations.store import SessionConflictError, SessionKey
from conversations.texts import raw, t

REDIS_MODES = ("single", "cluster")  # every Redis test here runs on one server and on a Redis Cluster

TODAY = dt.date(2025, 3, 1)
# The hand-maintained files alone: these conversations exercise the dialogue over a small set, where
# the region question shows every region as a button. The whole country's province → city picker is
# tested in test_region_picker.py, and every imported region's estimates in test_region_walk.py.
POLICIES = hand_maintained_policies()
KEY = SessionKey("telegram", "-100777", "42")


def today() -> dt.date:
    return TODAY


class Chat:
    """One person talking to the bot: sends text, commands and button presses, keeps the last turn."""

    def __init__(self, dialogue: Dialogue, key: SessionKey = KEY):
        self.dialogue = dialogue
        self.key = key
        self.turn: Turn | None = None
        self.seen: list[str] = []  # every button id offered so far

    async def send(self, incoming: Incoming) -> Turn:
        self.turn = await self.dialogue.handle(self.key, incoming)
        assert self.turn.replies or self.turn.effects, "a turn without any reply"
        self.seen += self.buttons
        return self.turn

    async def say(self, text: str) -> Turn:
        return await self.send(Incoming(text=text))

    async def command(self, name: str, argument: str = "") -> Turn:
        return await self.send(Incoming(command=name, argument=argument))

    async def press(self, action: str) -> Turn:
        """Press the button of the last reply whose action (the part after "<q>|") is `action`."""
        found = [b for b in self.buttons if b.partition("|")[2] == action]
        assert found, f"no button {action!r} in {self.buttons}"
        return await self.send(Incoming(choice=found[0]))

    async def press_label(self, label: str) -> Turn:
        assert self.turn is not None
        found = [b.id for r in self.turn.replies for b in r.choices if b.label == label]
        assert found, f"no button labelled {label!r}"
        return await self.send(Incoming(choice=found[0]))

    @property
    def buttons(self) -> list[str]:
        return [b.id for r in (self.turn.replies if self.turn else []) for b in r.choices]

    @property
    def actions(self) -> list[str]:
        return [b.partition("|")[2] for b in self.buttons]

    @property
    def text(self) -> str:
        assert self.turn is not None
        return "\n".join((f"{r.title}\n" if r.title else "") + r.full_text for r in self.turn.replies)  # unfolded

    @property
    def last_text(self) -> str:
        assert self.turn is not None
        return self.turn.replies[-1].text

    async def session(self) -> Session:
        stored, _ = await self.dialogue.store.load(self.key)
        return Session.from_dict(stored)


def asks(chat: Chat, qid: str, lang: str = "zh") -> bool:
    """Whether the last reply is question `qid` (its prompt text)."""
    prompt = raw(lang, f"prompts.{qid}").split("{")[0]  # {year_start} depends on the region
    return chat.last_text.startswith(prompt)


def figure(text: str, key: str, lang: str = "zh") -> Decimal:
    """The amount on the result line `result.<key>` ("个人支付：4,275.00 元")."""
    head = t(lang, f"result.{key}", amount="\x00").split("\x00")[0]
    match = re.search(re.escape(head) + r"([\d,]+\.\d\d)", text)
    assert match, f"no {key!r} line in:\n{text}"
    return Decimal(match.group(1).replace(",", ""))


def figure_range(text: str, key: str, lang: str = "zh") -> tuple[Decimal, Decimal] | None:
    """The (low, high) on the result line `result.<key>_range` ("个人约付 11,000–20,288 元"), if any."""
    head = t(lang, f"result.{key}_range", low="\x00", high="").split("\x00")[0]
    match = re.search(re.escape(head) + r"([\d,]+(?:\.\d\d)?)–([\d,]+(?:\.\d\d)?)", text)
    if not match:
        return None
    return tuple(Decimal(g.replace(",", "")) for g in match.groups())  # type: ignore[return-value]


@pytest.fixture
def store(redis) -> RedisSessionStore:
    return RedisSessionStore(redis, ttl_seconds=3600)


@pytest.fixture
def dialogue(store) -> Dialogue:
    return Dialogue(POLICIES, store, today=today)


@pytest.fixture
def chat(dialogue) -> Chat:
    return Chat(dialogue)


# -- every region: a typical case to an estimate or a clear "cannot estimate" ---------------------

PREFERRED = {"plan": "employee", "grade": "1", "member": "in_service", "visit": "inpatient", "level": "3"}
TYPED = {"age": "45", "retired_year": "2005", "total": "10000", "self_pay": "0", "class_b": "0", "admission": "1"}


async def drive_to_summary(chat: Chat, region_text: str) -> list[str]:
    """Answer every question of a typical case; returns the question ids asked."""
    await chat.command("start")
    assert asks(chat, "region")
    await chat.say(region_text)
    asked = []
    for _ in range(len(QUESTIONS) + 1):
        s = await chat.session()
        if s.state != "ask":
            break
        qid = s.question
        assert qid is not None and asks(chat, qid)
        asked.append(qid)
        question = QUESTIONS[qid]
        if question.kind == "choice":
            options = [a for a in chat.actions if not a.startswith("~")]
            assert options, f"{qid} asked without options"
            await chat.press(PREFERRED[qid] if PREFERRED.get(qid) in options else options[0])
        elif question.ytd:
            await chat.press("~skiprest")
        else:
            await chat.say(TYPED[qid])
    assert (await chat.session()).state == "summary", chat.text
    return asked


@pytest.mark.parametrize("region", sorted(POLICIES.regions))
async def test_every_region_typical_case(chat, region):
    asked = await drive_to_summary(chat, POLICIES.regions[region].name.zh)
    assert "total" in asked and "~calc" in chat.actions
    await chat.press("~calc")
    s = await chat.session()
    assert s.state == "done"
    assert set(chat.actions) >= {"~new", "~change"}
    if chat.turn.kind == "estimate":
        text = chat.text
        assert t("zh", "result.title") in text
        total = figure(text, "total")
        assert total == Decimal("10000.00")
        ranges = figure_range(text, "insurance"), figure_range(text, "personal")
        if ranges == (None, None):
            insurance, personal = figure(text, "insurance"), figure(text, "personal")
            assert insurance + personal == total and insurance >= 0 and personal >= 0
        else:  # the person pays least where the insurance pays most
            (ins_low, ins_high), (own_low, own_high) = ranges
            assert ins_low + own_high == total == ins_high + own_low and ins_low >= 0 and own_low >= 0
        assert POLICIES.regions[region].name.zh in text.splitlines()[1]  # the context line
    else:
        assert chat.last_text.startswith(t("zh", "result.cannot", reason="").rstrip())
        assert t("zh", "result.cannot_next") in chat.last_text


async def test_every_region_ends_in_an_estimate(chat):
    """Every region a person can pick answers (bounded where a figure is unknown); none ends in "cannot"."""
    kinds = {}
    for region in sorted(POLICIES.regions):
        chat.key = SessionKey("telegram", region, "1")
        await drive_to_summary(chat, region)
        await chat.press("~calc")
        kinds[region] = chat.turn.kind
    assert set(kinds.values()) == {"estimate"}, kinds


# -- hand-worked estimates --------------------------------------------------------------------------


async def test_shanghai_inpatient_by_buttons(chat):
    # Shanghai employee (the only plan, not asked), in service, inpatient 三级, 20,000, 自费 0:
    # (20000 − 1500) × 85% = 15725; personal 20000 − 15725 = 4275.
    await chat.command("start")
    await chat.press("shanghai")
    assert asks(chat, "member")
    await chat.press("in_service")
    await chat.press("inpatient")
    await chat.press("3")
    assert asks(chat, "total")
    await chat.say("20000")
    assert asks(chat, "self_pay")
    await chat.say("0")
    assert asks(chat, "ytd_fund")
    await chat.press("~skiprest")
    assert chat.turn.replies[0].title == t("zh", "summary.title")
    summary = chat.last_text
    for line in ("地区: 上海", "在职/退休: 在职", "就诊类型: 住院", "医院等级: 三级医院", "总费用: 20,000.00 元",
                 "自费: 0.00 元", "本年统筹已付: 跳过"):
        assert line in summary
    await chat.press("~calc")
    assert chat.turn.kind == "estimate"
    text = chat.text
    assert "上海 · 职工医保（在职） · 住院 · 三级医院" in text
    assert figure(text, "total") == Decimal("20000.00")
    assert figure(text, "insurance") == Decimal("15725.00")
    assert figure(text, "personal") == Decimal("4275.00")
    assert "统筹基金 15,725.00" in text
    assert "(合规费用 20,000.00 − 起付线 1,500.00) × 85% = 15,725.00" in text
    # Other levels: the same 1,500 deductible and 85% at 一级 and 二级 → 4,275 too.
    assert "同样的费用在一级医院约自付 4,275.00 元" in text
    assert "同样的费用在二级医院约自付 4,275.00 元" in text
    assert "医保年度：2024-07-01 至 2025-06-30" in text


async def test_shanghai_typed_amounts_and_typo(chat):
    # "shanghia" → Shanghai; total 1.2万 = 12,000; 自费 ¥800 → compliant 11,200;
    # (11200 − 1500) × 85% = 8245; personal 12000 − 8245 = 3755.
    await chat.say("shanghia")  # typed while idle: starts and answers the region at once
    s = await chat.session()
    assert s.answers == {"region": "shanghai"} and s.question == "member"
    await chat.say("在职")
    await chat.say("住院治疗")
    await chat.say("三甲")
    await chat.say("1.2万")
    assert (await chat.session()).answers["total"] == "12000.00"
    await chat.say("¥800")
    assert (await chat.session()).answers["self_pay"] == "800.00"
    await chat.say("没有")  # a skip word
    await chat.say("ok")
    assert chat.turn.kind == "estimate"
    assert figure(chat.text, "insurance") == Decimal("8245.00")
    assert figure(chat.text, "personal") == Decimal("3755.00")


async def test_beijing_second_admission(chat):
    # Beijing employee, in service, inpatient 二级, 10,000, 自费 0, 2nd admission of the year:
    # deductible 1300 × 0.5 = 650; (10000 − 650) × 87% = 8134.50; personal 1865.50 (< 大病 threshold).
    await chat.command("start")
    await chat.say("beijnig")  # typo
    assert (await chat.session()).answers["region"] == "beijing"
    await chat.say("1")  # in service, by number
    await chat.say("住院")
    await chat.say("二级")
    await chat.say("一万")
    await chat.say("0")
    assert asks(chat, "admission")
    await chat.say("2")
    await chat.press("~skiprest")  # nothing else this year
    s = await chat.session()
    assert s.state == "summary" and s.answers["admission"] == 2
    assert "第几次住院: 第 2 次" in chat.last_text
    await chat.press("~calc")
    text = chat.text
    assert figure(text, "insurance") == Decimal("8134.50")
    assert figure(text, "personal") == Decimal("1865.50")
    assert "北京 · 职工医保（在职） · 住院 · 二级医院" in text


async def test_beijing_retired_bands(chat):
    # Beijing retired, inpatient 一级, 45,000: 28700 × 94% = 26978; 10000 × 97% = 9700; 5000 × 98.2% = 4910;
    # fund 41588; personal 45000 − 41588 = 3412.
    await chat.say("北京")
    await chat.press("retired")
    await chat.press("inpatient")
    await chat.press("1")
    await chat.say("45000元")
    await chat.press("~skip")  # 自费 unknown: the whole total counts as compliant
    s = await chat.session()
    assert "self_pay" in s.answers and s.answers["self_pay"] is None
    await chat.press("~skiprest")
    assert "自费: 跳过" in chat.last_text
    await chat.press("~calc")
    assert figure(chat.text, "insurance") == Decimal("41588.00")
    assert figure(chat.text, "personal") == Decimal("3412.00")
    assert t("zh", "result.warnings") in chat.text  # an unknown 自费 makes it an upper bound


async def test_shenzhen_self_pay_and_class_b(chat):
    # Shenzhen employee 一档 in service, inpatient 二级, 20,000 with 自费 1,000 and 乙类 5,000:
    # compliant 20000 − 1000 − 5000 × 1% = 18950; (18950 − 400) × 92% = 17066; personal 2934.
    await chat.say("深圳")
    assert asks(chat, "plan")
    await chat.say("职工")
    assert asks(chat, "grade")
    await chat.say("一档")
    await chat.say("在职")
    await chat.say("住院")
    await chat.say("二级")
    assert asks(chat, "where")  # Shenzhen's policy tells the kinds of out-of-city care apart
    await chat.say("本地")
    await chat.say("2万")
    await chat.say("1000")
    assert asks(chat, "class_b")
    await chat.say("19001")  # more than the 19,000 the total leaves
    assert chat.text.startswith(t("zh", "hints.amount_exceeds", limit="19,000.00"))
    assert asks(chat, "class_b")
    await chat.say("五千")
    s = await chat.session()
    assert (s.answers["self_pay"], s.answers["class_b"]) == ("1000.00", "5000.00")
    await chat.press("~skiprest")
    await chat.press("~calc")
    text = chat.text
    assert "深圳 · 职工医保（在职） · 住院 · 二级医院" in text
    assert figure(text, "insurance") == Decimal("17066.00")
    assert figure(text, "personal") == Decimal("2934.00")


async def test_shenzhen_out_of_the_city_keeps_the_hospital_level(chat):
    # Shenzhen employee 一档 in service, an emergency stay at a 三级 hospital out of the city, 20,000 with no
    # 自费 and no 乙类: the 三级 deductible 600 and the 三级 ratio 90% × 90% (art. 40) = 81%:
    # (20000 − 600) × 81% = 15714; personal 4286.
    for text in ("深圳", "职工", "一档", "在职", "住院", "三级"):
        await chat.say(text)
    assert asks(chat, "where")
    await chat.say("急诊抢救")
    await chat.say("20000")
    await chat.say("0")
    await chat.say("0")
    await chat.press("~skiprest")
    await chat.press("~calc")
    text = chat.text
    assert "三级医院 · 异地：急诊抢救" in text
    assert figure(text, "insurance") == Decimal("15714.00")
    assert figure(text, "personal") == Decimal("4286.00")


async def test_a_range_when_the_policy_leaves_a_part_unknown(chat):
    # Luoyang employee in service, 二级 stay of 50,000, no split known: the fund pays (50000 − 480) × 60%
    # = 29712 exactly; 大病 bands and cap are not on record, so 大病 pays 0 to (20288 − 11000) = 9288.
    for text in ("洛阳", "在职", "住院", "二级", "50000", "跳过"):
        await chat.say(text)
    await chat.press("~skiprest")
    await chat.press("~calc")
    text = chat.text
    assert "个人约付 11,000–20,288 元" in text
    assert "医保约付：29,712–39,000 元\n" in chat.turn.replies[-1].text  # on the card; its make-up below
    assert "医保支付构成：统筹基金 29,712.00，大病保险 0–9,288" in chat.turn.replies[-1].details
    assert "大病保险分段比例、大病保险年度限额未收录" in text


# -- editing, back, cancel ----------------------------------------------------------------------------


async def shanghai_summary(chat: Chat, total: str = "20000") -> None:
    await chat.say("上海")
    await chat.press("in_service")
    await chat.press("inpatient")
    await chat.press("3")
    await chat.say(total)
    await chat.say("0")
    await chat.press("~skiprest")
    assert (await chat.session()).state == "summary"


async def test_edit_an_amount_from_the_summary(chat):
    await shanghai_summary(chat)
    await chat.press("~edit:total")
    assert asks(chat, "total")
    await chat.say("10000")
    # Only the edited answer was asked again; the summary is back with the new total.
    s = await chat.session()
    assert s.state == "summary" and s.answers["total"] == "10000.00"
    assert "总费用: 10,000.00 元" in chat.last_text
    await chat.press("~calc")
    # (10000 − 1500) × 85% = 7225; personal 2775.
    assert figure(chat.text, "insurance") == Decimal("7225.00")
    assert figure(chat.text, "personal") == Decimal("2775.00")


async def test_edit_by_typed_field_name_and_change_after_result(chat):
    await shanghai_summary(chat)
    await chat.say("改医院等级")
    assert asks(chat, "level")
    await chat.press("1")
    assert (await chat.session()).state == "summary" and "医院等级: 一级医院" in chat.last_text
    await chat.say("计算")
    assert chat.turn.kind == "estimate"
    await chat.press("~change")  # from the result: back to the summary
    assert (await chat.session()).state == "summary"
    await chat.press("~edit:member")
    await chat.press("retired")
    # Retired in Shanghai needs the retirement year, which was never asked: it is asked now.
    assert asks(chat, "retired_year")
    await chat.say("1998")
    assert (await chat.session()).state == "summary"
    await chat.press("~calc")
    # Retired by 2000, 一级 inpatient: (20000 − 700) × 92% = 17756; personal 2244.
    assert figure(chat.text, "insurance") == Decimal("17756.00")
    assert figure(chat.text, "personal") == Decimal("2244.00")


async def test_edit_region_reasks_what_it_invalidated(chat):
    await shanghai_summary(chat)
    await chat.press("~edit:region")
    assert asks(chat, "region")
    await chat.press("shenzhen")
    # Shenzhen has two plans and grades and asks 乙类: the answers that still fit are kept.
    s = await chat.session()
    assert s.question == "plan" and s.answers["total"] == "20000.00"
    await chat.press("employee")
    await chat.press("2")
    assert asks(chat, "where")
    await chat.press("local")
    assert asks(chat, "class_b")
    await chat.say("0")
    await chat.press("~skiprest")
    assert (await chat.session()).state == "summary"
    await chat.press("~calc")
    # Shenzhen 二档 in service, inpatient 三级: (20000 − 600) × 90% = 17460; personal 2540.
    assert figure(chat.text, "insurance") == Decimal("17460.00")
    assert figure(chat.text, "personal") == Decimal("2540.00")


async def test_back_by_command_button_and_word(chat):
    await chat.say("上海")
    await chat.press("in_service")
    await chat.press("inpatient")
    assert asks(chat, "level")
    await chat.command("back")  # /back as a platform command
    assert asks(chat, "visit")
    s = await chat.session()
    assert "visit" not in s.answers and s.history == ["region", "member"]
    await chat.press("~back")  # the button
    assert asks(chat, "member")
    await chat.say("/back")  # typed command
    assert asks(chat, "region")
    assert (await chat.session()).answers == {}
    await chat.say("返回")  # typed word: nothing left to go back to
    assert chat.text.startswith(t("zh", "hints.no_back"))
    assert asks(chat, "region")
    await chat.say("上海")
    await chat.say("退休")
    await chat.say("住院")
    await chat.say("一级")
    assert asks(chat, "retired_year")  # retired in Shanghai: the year decides the row


async def test_back_from_the_summary(chat):
    await shanghai_summary(chat)
    await chat.press("~back")
    s = await chat.session()
    assert s.state == "ask" and s.question == "ytd_fund"
    await chat.say("0")
    assert (await chat.session()).state == "summary"
    assert "本年统筹已付: 0.00 元" in chat.last_text


async def test_cancel_and_restart(chat):
    await chat.say("上海")
    await chat.press("in_service")
    old = list(chat.buttons)
    await chat.command("cancel")
    assert chat.text.startswith(t("zh", "commands.cancelled"))
    s = await chat.session()
    assert (s.state, s.answers, s.history, s.question) == ("idle", {}, [], None)
    assert chat.actions == ["~new"]
    restart = chat.buttons[0]
    # An old question's button after cancelling is stale: the idle session just starts again.
    await chat.send(Incoming(choice=old[0]))
    assert chat.turn.replies[0].text == t("zh", "hints.stale") and asks(chat, "region")
    assert (await chat.session()).answers == {}
    await chat.send(Incoming(choice=restart))
    assert asks(chat, "region")
    await chat.say("取消")  # the typed word
    assert (await chat.session()).state == "idle"


# -- language ------------------------------------------------------------------------------------------


async def test_language_switch_mid_dialogue(chat):
    await chat.say("上海")
    await chat.press("in_service")
    assert asks(chat, "visit")
    await chat.command("language")
    assert chat.last_text == t("zh", "commands.choose_language")
    await chat.press("~lang:en")
    assert chat.turn.lang == "en"
    assert chat.turn.replies[0].text == t("en", "commands.language")
    assert asks(chat, "visit", "en")
    labels = [b.label for b in chat.turn.replies[-1].choices]
    assert t("en", "labels.visits.inpatient") in labels and t("en", "buttons.back") in labels
    s = await chat.session()
    assert s.lang == "en" and s.answers == {"region": "shanghai", "member": "in_service"}
    # Answers typed in either language keep working.
    await chat.say("hospital stay")
    await chat.say("level 3")
    await chat.say("20000")
    assert asks(chat, "self_pay", "en")
    await chat.say("skip")
    await chat.press("~skiprest")
    assert chat.turn.replies[0].title == t("en", "summary.title")
    assert "Total cost: 20,000.00 yuan" in chat.last_text
    await chat.press_label(t("en", "buttons.calculate"))
    text = chat.text
    assert "Shanghai · Employee insurance (In service) · Hospital stay · Level 3 hospital" in text
    assert figure(text, "insurance", "en") == Decimal("15725.00")
    assert figure(text, "personal", "en") == Decimal("4275.00")
    assert "医保支付" not in text
    # And back to Chinese by typed command with an argument.
    await chat.say("/language 中文")
    assert chat.turn.lang == "zh" and chat.turn.replies[0].text == t("zh", "commands.language")
    assert chat.last_text == t("zh", "commands.done_hint")


async def test_language_by_word_and_command_argument(chat):
    await chat.say("上海")
    await chat.command("language", "en")
    assert asks(chat, "member", "en")
    await chat.say("language")  # the word asks for the choice
    assert chat.last_text == t("en", "commands.choose_language")
    await chat.press("~lang:zh")
    assert asks(chat, "member")


# -- skipping ------------------------------------------------------------------------------------------


async def test_skip_paths(chat):
    await chat.say("北京")
    await chat.press("in_service")
    await chat.press("inpatient")
    await chat.press("3")
    assert asks(chat, "total")
    assert "~skip" not in chat.actions
    await chat.say("跳过")  # the total cannot be skipped
    assert chat.text.startswith(t("zh", "hints.cannot_skip"))
    assert asks(chat, "total")
    await chat.say("20000")
    await chat.say("不清楚")  # 自费 skipped by a word
    assert asks(chat, "admission")
    await chat.press("~skip")  # admission: skipped by the button
    assert asks(chat, "ytd_fund")
    await chat.say("skip")
    assert asks(chat, "ytd_burden")
    await chat.press("~skip")
    s = await chat.session()
    assert s.state == "summary"
    assert all(s.answers[q] is None for q in ("self_pay", "admission", "ytd_fund", "ytd_burden"))
    await chat.press("~calc")
    # 自费 unknown → all of it compliant; first admission: (20000 − 1300) × 85% = 15895; personal 4105.
    assert figure(chat.text, "insurance") == Decimal("15895.00")
    assert figure(chat.text, "personal") == Decimal("4105.00")


async def test_skip_all_of_this_year(chat):
    await chat.say("北京")
    await chat.press("in_service")
    await chat.press("inpatient")
    await chat.press("3")
    await chat.say("20000")
    await chat.say("0")
    assert asks(chat, "admission") and "~skiprest" in chat.actions
    await chat.press("~skiprest")
    s = await chat.session()
    assert s.state == "summary"
    assert {q: s.answers[q] for q in ("admission", "ytd_fund", "ytd_burden")} == dict.fromkeys(
        ("admission", "ytd_fund", "ytd_burden"))
    # The skipped answers can still be edited one by one.
    await chat.press("~edit:ytd_fund")
    await chat.say("9万")
    assert (await chat.session()).state == "summary"
    await chat.press("~calc")
    # Fund cap 100,000 with 90,000 paid: cap left 10,000 < (20000 − 1300) × 85% = 15895.
    # Above the cap the 大额互助 pays 85%: the fund's 10,000 covers 10000 / 0.85 = 11764.7059 of the
    # 18,700 above the deductible; (18700 − 11764.7059) × 85% = 5895.00; insurance 15895; personal 4105.
    text = chat.text
    assert "统筹基金 10,000.00" in text
    assert "大额医疗互助 5,895.00" in text
    assert figure(text, "personal") == Decimal("4105.00")


async def test_skiprest_where_it_does_not_apply(chat):
    await chat.say("上海")
    old = list(chat.buttons)
    await chat.press("in_service")
    # A skip-all button never offered for this question: the stale hint and the question again.
    await chat.send(Incoming(choice=f"{(await chat.session()).q}|~skiprest"))
    assert chat.text.startswith(t("zh", "hints.cannot_skip"))
    assert asks(chat, "visit")
    await chat.send(Incoming(choice=old[0]))
    assert chat.text.startswith(t("zh", "hints.stale"))


# -- restart with a new process, stale buttons ----------------------------------------------------------


async def test_restart_continues_the_conversation(make_redis):
    first = make_redis()
    await first.flushall()
    chat1 = Chat(Dialogue(POLICIES, RedisSessionStore(first), today=today))
    await chat1.say("上海")
    await chat1.press("in_service")
    await chat1.press("inpatient")
    buttons = list(chat1.buttons)
    await first.aclose()  # the process goes away

    second = make_redis()
    try:
        chat2 = Chat(Dialogue(POLICIES, RedisSessionStore(second), today=today))
        # The buttons of the message sent by the old process still work.
        level3 = next(b for b in buttons if b.endswith("|3"))
        await chat2.send(Incoming(choice=level3))
        assert asks(chat2, "total")
        await chat2.say("20000")
        await chat2.say("0")
        await chat2.press("~skiprest")
        await chat2.press("~calc")
        assert figure(chat2.text, "personal") == Decimal("4275.00")
    finally:
        await second.aclose()


async def test_stale_buttons(chat):
    await chat.command("start")
    region_buttons = list(chat.buttons)
    await chat.press("shanghai")
    member_buttons = list(chat.buttons)
    await chat.press("in_service")
    before = (await chat.session()).to_dict()
    for old in (region_buttons[0], member_buttons[1], "garbage", "", "|", "999|in_service", "2|~edit:total"):
        await chat.send(Incoming(choice=old))
        assert chat.text.startswith(t("zh", "hints.stale")), old
        assert asks(chat, "visit")
        assert (await chat.session()).to_dict() == before  # nothing changed, not even the counter
    # The re-asked question's buttons are live.
    await chat.press("inpatient")
    assert asks(chat, "level")


async def test_stale_summary_buttons_after_the_result(chat):
    await shanghai_summary(chat)
    edit = next(b for b in chat.buttons if b.endswith("~edit:total"))
    await chat.press("~calc")
    await chat.send(Incoming(choice=edit))
    assert chat.text.startswith(t("zh", "hints.stale"))
    assert chat.last_text == t("zh", "commands.done_hint")
    assert (await chat.session()).state == "done"


# -- typed answers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "stored"), [
    ("1.2万", "12000.00"), ("一万二", "12000.00"), ("¥800", "800.00"), ("￥800", "800.00"),
    ("12,000", "12000.00"), ("800元", "800.00"), ("３千５", "3500.00"), ("1234.5", "1234.50"),
    ("人民币2000块", "2000.00"), ("2w", "20000.00"),
])
async def test_amounts_as_people_type_them(chat, typed, stored):
    await chat.say("上海")
    await chat.say("在职")
    await chat.say("住院")
    await chat.say("3")
    await chat.say(typed)
    s = await chat.session()
    assert s.answers["total"] == stored and s.question == "self_pay"


@pytest.mark.parametrize(("typed", "hint"), [
    ("abc", "hints.amount_unreadable"), ("0", "hints.amount_zero"), ("-5", "hints.amount_negative"),
    ("1亿", "hints.amount_too_large"), ("1.234", "hints.amount_too_precise"), ("3万5千万", "hints.amount_unreadable"),
])
async def test_invalid_amount_gets_a_hint_and_the_same_question(chat, typed, hint):
    await chat.say("上海")
    await chat.say("在职")
    await chat.say("住院")
    await chat.say("3")
    before = (await chat.session()).to_dict()
    await chat.say(typed)
    assert chat.turn.replies[0].text == t("zh", hint)
    assert asks(chat, "total")
    assert (await chat.session()).to_dict() == before


async def test_invalid_answers_of_every_kind(chat):
    await chat.command("start")
    await chat.say("火星")
    assert chat.text.startswith("没找到这个地区。目前支持：北京、") and asks(chat, "region")
    await chat.say("上海")
    await chat.say("职工")  # not an option of this question (the plan is implied)
    assert chat.turn.replies[0].text == t("zh", "hints.choice") and asks(chat, "member")
    await chat.say("9")  # no option 9
    assert asks(chat, "member") and (await chat.session()).question == "member"
    await chat.say("退休")
    await chat.say("门诊")
    await chat.say("1")
    await chat.say("2099")
    assert chat.turn.replies[0].text == t("zh", "hints.retired_year", year=TODAY.year)
    assert asks(chat, "retired_year")
    await chat.say("1998")
    assert asks(chat, "total")
    await chat.send(Incoming())  # a sticker
    assert chat.turn.replies[0].text == t("zh", "hints.not_text") and asks(chat, "total")
    await chat.say("1" * 600)
    assert chat.turn.replies[0].text == t("zh", "hints.too_long") and asks(chat, "total")
    await chat.say("   ")
    assert chat.turn.replies[0].text == t("zh", "hints.not_text")
    await chat.command("nonsense")
    assert chat.turn.replies[0].text == t("zh", "hints.unknown_command") and asks(chat, "total")
    await chat.say("5000")
    await chat.say("6000")  # 自费 larger than the total
    assert chat.turn.replies[0].text == t("zh", "hints.amount_exceeds", limit="5,000.00")
    assert asks(chat, "self_pay")


async def test_age_is_asked_where_the_policy_needs_it(chat):
    # Shanghai in-service outpatient ratios depend on the age (44 or less / 45 or more).
    await chat.say("上海")
    await chat.say("在职")
    await chat.say("门诊")
    await chat.say("二级")
    assert asks(chat, "age")
    await chat.say("两百")
    assert chat.turn.replies[0].text == t("zh", "hints.age") and asks(chat, "age")
    await chat.say("50")
    await chat.say("5000")
    await chat.say("0")
    await chat.press("~skiprest")
    await chat.press("~calc")
    # 45 or more, 二级: (5000 − 1500) × 70% = 2450; personal 2550 (自负段 1500 not met earlier this year).
    assert figure(chat.text, "insurance") == Decimal("2450.00")
    assert figure(chat.text, "personal") == Decimal("2550.00")


# -- concurrency ---------------------------------------------------------------------------------------


async def test_concurrent_turns_lose_no_update(make_redis, redis):
    """Many tasks, each on its own Redis connection, send turns to the same session at once."""
    setup = Chat(Dialogue(POLICIES, RedisSessionStore(redis), today=today))
    await setup.say("上海")
    start, version0 = await setup.dialogue.store.load(KEY)

    tasks, turns_each = 12, 6
    clients = [make_redis() for _ in range(tasks)]
    saved = {"language": 0, "help": 0}
    conflicts = 0
    attempts = 0

    class CountingStore(RedisSessionStore):
        async def save(self, key, session, version):
            nonlocal attempts
            attempts += 1
            return await super().save(key, session, version)

    async def worker(client: aioredis.Redis, n: int) -> None:
        nonlocal conflicts
        dialogue = Dialogue(POLICIES, CountingStore(client), today=today)
        for i in range(turns_each):
            # /language <current> asks the question again with fresh buttons: q goes up by exactly one.
            # /help shows the question again as it is: q stays (but the session is saved all the same).
            kind = "language" if (n + i) % 3 else "help"
            incoming = Incoming(command="language", argument="zh") if kind == "language" else Incoming(text="/help")
            try:
                turn = await dialogue.handle(KEY, incoming)
            except SessionConflictError:
                conflicts += 1
                continue
            assert turn.replies[-1].text == t("zh", "prompts.member")
            saved[kind] += 1

    try:
        await asyncio.gather(*(worker(c, n) for n, c in enumerate(clients)))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))

    end, version = await setup.dialogue.store.load(KEY)
    assert sum(saved.values()) + conflicts == tasks * turns_each
    assert attempts > tasks * turns_each  # the turns really raced (some saves were refused and retried)
    assert version - version0 == sum(saved.values())  # one version per saved turn: none overwrote another
    assert end["q"] - start["q"] == saved["language"]
    assert Session.from_dict(end).to_dict() == end
    assert {k: v for k, v in end.items() if k != "q"} == {k: v for k, v in start.items() if k != "q"}


async def test_concurrent_counter_is_exact(make_redis, redis):
    """Only counter-moving turns: q advances by exactly the number of turns saved."""
    await Chat(Dialogue(POLICIES, RedisSessionStore(redis), today=today)).say("北京")
    store0 = RedisSessionStore(redis)
    start, version0 = await store0.load(KEY)
    clients = [make_redis() for _ in range(10)]
    results: list[bool] = []

    async def worker(client: aioredis.Redis) -> None:
        dialogue = Dialogue(POLICIES, RedisSessionStore(client), today=today)
        for _ in range(8):
            try:
                await dialogue.handle(KEY, Incoming(command="language", argument="en"))
                results.append(True)
            except SessionConflictError:
                results.append(False)

    try:
        await asyncio.gather(*(worker(c) for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    end, version = await store0.load(KEY)
    assert len(results) == 80 and sum(results) > 0
    assert end["q"] - start["q"] == sum(results) == version - version0
    assert end["l"] == "en" and end["a"] == {"region": "beijing"}


async def test_double_tap_answers_once(make_redis, redis):
    chat = Chat(Dialogue(POLICIES, RedisSessionStore(redis), today=today))
    await chat.say("上海")
    tap = next(b for b in chat.buttons if b.endswith("|in_service"))
    q0 = (await chat.session()).q
    clients = [make_redis() for _ in range(8)]
    try:
        turns = await asyncio.gather(*(
            Dialogue(POLICIES, RedisSessionStore(c), today=today).handle(KEY, Incoming(choice=tap)) for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    answered = [turn for turn in turns if turn.answered]
    assert len(answered) == 1 and answered[0].answered == "在职"
    stale = [turn for turn in turns if turn.replies[0].text == t("zh", "hints.stale")]
    assert len(stale) == len(turns) - 1
    s = await chat.session()
    assert s.q == q0 + 1 and s.history == ["region", "member"] and s.question == "visit"


# -- store: expiry, forgetting ---------------------------------------------------------------------------


async def test_session_ttl_comes_from_the_store(redis):
    store = RedisSessionStore(redis, ttl_seconds=1234)
    chat = Chat(Dialogue(POLICIES, store, today=today))
    await chat.say("上海")
    key = store.session_key(KEY)
    assert 1200 < await redis.ttl(key) <= 1234
    assert 1200 < await redis.ttl(store.index_key(KEY.platform, KEY.user)) <= 1234
    await redis.expire(key, 5)
    await chat.press("in_service")  # every save refreshes the expiry
    assert 1200 < await redis.ttl(key) <= 1234


async def test_session_expires(redis):
    store = RedisSessionStore(redis, ttl_seconds=1)
    chat = Chat(Dialogue(POLICIES, store, today=today))
    await chat.say("上海")
    await chat.press("in_service")
    old = list(chat.buttons)
    await asyncio.sleep(1.3)
    assert await redis.exists(store.session_key(KEY)) == 0
    assert await store.load(KEY) == (None, 0)
    # An old button after expiry: the stale hint, and a fresh conversation starts.
    await chat.send(Incoming(choice=old[0]))
    assert chat.turn.replies[0].text == t("zh", "hints.stale")
    assert chat.turn.replies[1].text == t("zh", "welcome") and asks(chat, "region")
    s = await chat.session()
    assert s.state == "ask" and s.question == "region" and s.answers == {}


async def test_forget_deletes_every_key_of_the_user(redis):
    store = RedisSessionStore(redis)
    forgotten = []

    async def forget_effect(key: SessionKey, argument: str, lang: str) -> None:
        forgotten.append((key, lang))

    dialogue = Dialogue(POLICIES, store, effects={"forget": forget_effect}, today=today)
    chat = Chat(dialogue)
    await chat.say("上海")
    # The same user in another chat, a key of another module, and another user.
    await Chat(dialogue, SessionKey("telegram", "555", "42")).say("北京")
    other = Chat(dialogue, SessionKey("telegram", "-100777", "43"))
    await other.say("深圳")
    subscriptions = store.user_key("telegram", "42", "subs")
    await redis.sadd(subscriptions, "shanghai")
    await store.remember_key("telegram", "42", subscriptions)
    prefix = store.user_prefix("telegram", "42")
    assert len(await redis.keys(prefix + "*")) == 4  # two sessions, the index, the subscriptions

    await chat.command("forget")
    assert chat.text == t("zh", "commands.forget_confirm")
    assert len(await redis.keys(prefix + "*")) == 4
    await chat.press("~forget:yes")
    assert chat.turn.forgot and chat.text == t("zh", "commands.forgotten")
    assert await redis.keys(prefix.replace("{", "\\{").replace("}", "\\}") + "*") == []
    assert [k for k in await redis.keys("*") if b"{telegram:42}" in k] == []
    assert forgotten == [(KEY, "zh")]
    # The other user keeps everything.
    assert await redis.keys(store.user_prefix("telegram", "43").replace("{", "\\{").replace("}", "\\}") + "*")
    assert (await other.session()).answers == {"region": "shenzhen"}
    # Starting again afterwards works.
    await chat.say("上海")
    assert (await chat.session()).answers == {"region": "shanghai"}


async def test_forget_keeps_when_declined(chat):
    await chat.say("上海")
    await chat.say("/forget")
    assert chat.actions == ["~forget:yes", "~forget:no"]
    await chat.say("好")  # typed text while confirming: asked again
    assert chat.turn.replies[0].text == t("zh", "hints.choice")
    assert chat.actions == ["~forget:yes", "~forget:no"]
    await chat.press("~forget:no")
    assert chat.turn.replies[0].text == t("zh", "commands.forget_kept")
    assert asks(chat, "member")
    s = await chat.session()
    assert s.state == "ask" and s.answers == {"region": "shanghai"} and s.back_to is None


# -- information commands ----------------------------------------------------------------------------------


async def test_help_regions_policy(chat):
    await chat.say("上海")
    await chat.command("help")
    assert chat.turn.replies[0].text == t("zh", "commands.help") and asks(chat, "member")
    await chat.say("帮助")
    assert chat.turn.replies[0].text == t("zh", "commands.help")
    await chat.say("/regions")
    regions = chat.turn.replies[0].text
    assert regions.startswith("支持的地区：")
    for region in POLICIES:
        assert f"• {region.name.zh}" in regions
    assert "上海市" in regions and asks(chat, "member")
    await chat.say("/policy 上海")
    table = chat.turn.replies[0].text
    assert table.startswith("上海 · 现行医保参数（2025-03-01）")
    assert "1,500.00" in table and "85%" in table and "630,000.00" in table
    assert asks(chat, "member")
    await chat.command("policy", "sz")
    assert chat.turn.replies[0].text.startswith("深圳 · ")
    await chat.command("policy", "shanghia")  # a typo works here too
    assert chat.turn.replies[0].text.startswith("上海 · ")
    await chat.command("policy", "火星")
    assert chat.turn.replies[0].text.startswith("没找到地区「火星」。支持：")
    await chat.command("policy")
    assert chat.turn.replies[0].text == t("zh", "commands.policy_usage")
    assert (await chat.session()).answers == {"region": "shanghai"}


async def test_information_commands_in_english_while_idle(chat):
    await chat.command("language", "en")
    await chat.command("help")
    assert chat.turn.replies[0].text == t("en", "commands.help")
    await chat.command("regions")
    assert chat.text.strip().startswith("Regions I know:") and "• Shanghai" in chat.text
    await chat.say("/policy@yibao_bot Beijing")
    assert chat.turn.replies[0].text.startswith("Beijing · ")
    assert (await chat.session()).state == "idle"


async def test_stored_session_is_compact_json(chat, redis, store):
    await shanghai_summary(chat)
    await chat.press("~calc")
    raw = await redis.hget(store.session_key(KEY), "d")
    data = json.loads(raw)
    assert Session.from_dict(data).to_dict() == data
    assert len(raw) < 1024
