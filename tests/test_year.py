"""A person's insurance year (profile and ledger) through `Dialogue.handle`, against a real redis-server.

The reference figures come from the engine computing each visit with the year-to-date figures a person
would type by hand (what the earlier visits counted), never from the ledger code under test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from test_dialogue import Chat as DialogueChat

from bot.store import RedisSessionStore
from bot.year_store import RedisYearStore
from conversations.dialogue import Dialogue
from conversations.replies import Incoming
from conversations.store import SessionKey
from conversations.year import Book, Ledger, Totals, record, year_from_estimate
from conversations.year_store import update_book
from rules.case import ZERO, Case, Estimate
from rules.engine import estimate
from rules.loader import load_policies

REDIS_MODES = ("single", "cluster")  # every Redis test here runs on one server and on a Redis Cluster
ROOT = Path(__file__).resolve().parent.parent
PROPS = load_policies(ROOT / "tests" / "policies_props")
KEY = SessionKey("web", "p1", "p1")
# five hospital stays in Propland's 2025 insurance year (07-01 to 06-30): the fund's 200,000 cap, the
# supplementary fund and its cap, the 大病 threshold and cap and the halved later deductible all come in
VISITS = [(dt.date(2025, 7, 10), "3", "60000"), (dt.date(2025, 8, 2), "2", "150000"),
          (dt.date(2025, 9, 15), "3", "80000"), (dt.date(2025, 12, 1), "1", "40000"),
          (dt.date(2026, 3, 3), "3", "120000")]


class Chat(DialogueChat):
    async def send_choice(self, choice: str):
        return await self.send(Incoming(choice=choice))


class Clock:
    def __init__(self, day: dt.date):
        self.day = day

    def __call__(self) -> dt.date:
        return self.day


@pytest.fixture
def clock() -> Clock:
    return Clock(VISITS[0][0])


@pytest.fixture
def years(redis) -> RedisYearStore:
    return RedisYearStore(RedisSessionStore(redis))


@pytest.fixture
def dialogue(years, clock) -> Dialogue:
    return Dialogue(PROPS, years.sessions, years=years, today=clock)


def reference(visits=VISITS) -> tuple[list[Estimate], Totals]:
    """Each visit estimated by the engine from the year-to-date figures a person would type: what the
    engine itself says the year counted after the visit before (`year_after`)."""
    typed: dict = {}
    results = []
    for day, level, total in visits:
        case = Case(region="propland", plan="employee", visit="inpatient", level=level, total=Decimal(total),
                    member="in_service", date=day, **typed)
        result = estimate(case, PROPS)
        assert isinstance(result, Estimate) and result.year_after is not None
        results.append(result)
        typed = result.year_after.as_case()
    after = results[-1].year_after
    return results, Totals(after.deductible_met, after.fund_paid, after.supplementary_paid, after.critical_paid,
                           after.compliant, after.burden, after.admissions)


async def stored_ledger(years: RedisYearStore, start: dt.date = dt.date(2025, 7, 1)) -> Ledger:
    data, _ = await years.load_book(KEY.platform, KEY.user)
    book = Book.from_json(data, dt.date(2025, 1, 1))
    return book.ledgers[f"propland:employee:{start.isoformat()}"]


async def first_visit(chat: Chat, level: str, total: str) -> None:
    """A first-time person: every question, year-to-date skipped, then recorded with consent."""
    await chat.command("start")
    await chat.press("propland")
    await chat.press("employee")
    await chat.press("in_service")
    await chat.press("inpatient")
    await chat.press(level)
    await chat.say(total)
    while "~calc" not in chat.actions and "~skiprest" not in chat.actions:
        await chat.press("~skip")
    if "~skiprest" in chat.actions:
        await chat.press("~skiprest")
    await chat.press("~calc")
    await chat.press("~y:rec")
    assert "记入本年度？" in chat.text and "不保存姓名" in chat.text  # what is kept, before anything is
    await chat.press("~y:ok")
    assert "已记入" in chat.text


async def returning_visit(chat: Chat, level: str, total: str) -> None:
    """A returning person: visit type, hospital, amount — and the estimate is there."""
    await chat.command("start")
    assert "欢迎回来" in chat.text
    await chat.press("inpatient")
    await chat.press(level)
    await chat.say(total)
    assert chat.turn.kind == "estimate"
    await chat.press("~y:rec")
    assert "已记入" in chat.text


async def test_five_visits_recorded_match_the_engine_with_typed_figures(dialogue, years, clock):
    chat = Chat(dialogue, KEY)
    results, typed = reference()
    for n, (day, level, total) in enumerate(VISITS):
        clock.day = day
        await (first_visit if n == 0 else returning_visit)(chat, level, total)
        shown = await chat.session()
        assert shown.state == "idle"  # recorded: the conversation is over
    ledger = await stored_ledger(years)
    assert ledger.totals() == typed
    assert [e.personal for e in ledger.visits()] == [r.personal for r in results]
    assert [e.paid.fund_paid for e in ledger.visits()] == [r.fund for r in results]
    assert [e.paid.critical_paid for e in ledger.visits()] == [r.critical_illness for r in results]
    assert typed.fund_paid == Decimal(200000)  # the fund's cap was reached within the year
    assert typed.supplementary_paid == Decimal(50000)  # and the supplementary fund's
    assert typed.critical_paid == Decimal(30000)  # and 大病保险's
    assert typed.admissions == 5


async def test_the_estimate_shown_uses_the_ledger(dialogue, years, clock):
    chat = Chat(dialogue, KEY)
    results, _ = reference(VISITS[:3])
    for n, (day, level, total) in enumerate(VISITS[:2]):
        clock.day = day
        await (first_visit if n == 0 else returning_visit)(chat, level, total)
    clock.day, level, total = VISITS[2]
    await chat.command("start")
    await chat.press("inpatient")
    await chat.press(level)
    await chat.say(total)
    assert "本年度（2025-07-01 起）已记 2 次住院：起付线已付" in chat.text
    assert f"个人支付：{results[2].personal:,.2f} 元" in chat.text
    assert f"统筹基金 {results[2].fund:,.2f}" in chat.text


async def test_undo_restores_the_previous_totals(dialogue, years, clock):
    chat = Chat(dialogue, KEY)
    for n, (day, level, total) in enumerate(VISITS[:3]):
        clock.day = day
        await (first_visit if n == 0 else returning_visit)(chat, level, total)
    undo = next(b for b in chat.buttons if "|~y:undo:" in b)
    await chat.send_choice(undo)
    assert "已撤销" in chat.text
    assert (await stored_ledger(years)).totals() == reference(VISITS[:2])[1]
    await chat.send_choice(undo)  # the same undo again removes nothing more
    assert "没有改动" in chat.text
    assert (await stored_ledger(years)).totals() == reference(VISITS[:2])[1]


async def test_changing_an_amount_replays_the_later_visits(dialogue, years, clock):
    chat = Chat(dialogue, KEY)
    for n, (day, level, total) in enumerate(VISITS[:3]):
        clock.day = day
        await (first_visit if n == 0 else returning_visit)(chat, level, total)
    await chat.command("year")
    assert "我的年度" in chat.text and "统筹基金年度限额 200,000.00 元" in chat.text
    await chat.press("~y:amt")
    first = next(a for a in chat.actions if a.startswith("~y:amt:"))
    await chat.press(first)
    await chat.say("-5")
    assert "负数" in chat.text  # a hint, and the same question again
    await chat.say("70000")
    assert "已修改金额" in chat.text
    changed = [(VISITS[0][0], VISITS[0][1], "70000")] + VISITS[1:3]
    assert (await stored_ledger(years)).totals() == reference(changed)[1]


async def test_a_new_insurance_year_starts_empty(dialogue, years, clock):
    chat = Chat(dialogue, KEY)
    clock.day = dt.date(2026, 6, 30)  # the last day of Propland's 2025 insurance year
    await first_visit(chat, "3", "60000")
    clock.day = dt.date(2026, 7, 1)
    await chat.command("start")
    await chat.press("inpatient")
    await chat.press("3")
    await chat.say("60000")
    assert "本年度（2026-07-01 起）还没有记录" in chat.text
    first_year = reference([(dt.date(2026, 7, 1), "3", "60000")])[0][0]
    assert f"个人支付：{first_year.personal:,.2f} 元" in chat.text  # the full deductible again, admission 1
    await chat.press("~y:rec")
    data, _ = await years.load_book(KEY.platform, KEY.user)
    book = Book.from_json(data, clock.day)
    assert sorted(book.ledgers) == ["propland:employee:2025-07-01", "propland:employee:2026-07-01"]
    assert len(book.ledgers["propland:employee:2026-07-01"].entries) == 1


async def test_expiry_is_a_setting_after_the_year_ends(redis, years, clock):
    dialogue = Dialogue(PROPS, years.sessions, years=years, today=clock, year_keep_days=30)
    chat = Chat(dialogue, KEY)
    clock.day = dt.date(2027, 3, 1)  # Redis counts on the real clock: a year still ahead of it
    await first_visit(chat, "3", "60000")
    key = years.book_key(KEY.platform, KEY.user)
    expected = dt.datetime(2027, 7, 31, tzinfo=dt.UTC).timestamp()  # 2027-06-30 + 30 days, to its end
    assert abs(await redis.ttl(key) - (expected - time.time())) < 60
    assert key.encode() in await redis.smembers(years.sessions.index_key(KEY.platform, KEY.user))
    later = Book.from_json((await years.load_book(KEY.platform, KEY.user))[0], dt.date(2027, 7, 31))
    assert later.ledgers == {}  # past its expiry a ledger is no longer read, whatever Redis still holds


async def test_forget_deletes_the_year(redis, dialogue, years):
    chat = Chat(dialogue, KEY)
    await first_visit(chat, "3", "60000")
    await chat.command("forget")
    await chat.press("~forget:yes")
    assert [k async for k in redis.scan_iter(match="*")] == []


async def test_nothing_is_stored_without_the_tap(redis, dialogue, years):
    chat = Chat(dialogue, KEY)
    await chat.command("start")
    for action in ("propland", "employee", "in_service", "inpatient", "3"):
        await chat.press(action)
    await chat.say("60000")
    while "~calc" not in chat.actions and "~skiprest" not in chat.actions:
        await chat.press("~skip")
    if "~skiprest" in chat.actions:
        await chat.press("~skiprest")
    await chat.press("~calc")
    await chat.press("~y:rec")
    await chat.press("~y:no")
    assert "没有保存" in chat.text
    assert await redis.exists(years.book_key(KEY.platform, KEY.user)) == 0


async def test_a_double_tap_records_once(dialogue, years, clock):
    chat = Chat(dialogue, KEY)
    await first_visit(chat, "3", "60000")
    await chat.command("start")
    await chat.press("inpatient")
    await chat.press("3")
    await chat.say("30000")
    tap = next(b for b in chat.buttons if b.endswith("|~y:rec"))
    await asyncio.gather(chat.send_choice(tap), chat.send_choice(tap))
    assert len((await stored_ledger(years)).visits()) == 2


RECORDER = """
import asyncio, datetime as dt, sys
from bot.redis_client import connect
from bot.store import RedisSessionStore
from bot.year_store import RedisYearStore
from conversations.year import Book, record
from conversations.year_store import update_book
from rules.loader import load_policies

async def main(url, name, n, cluster):
    client = connect(url, cluster=cluster == "cluster")
    years = RedisYearStore(RedisSessionStore(client))
    policies = load_policies("tests/policies_props")
    day = dt.date(2025, 9, 1)
    for i in range(n):
        def change(stored):
            book = Book.from_json(stored, day)
            ledger = book.ledger(policies, "propland", "employee", day)
            record(ledger, f"{name}{i}", {"visit": "inpatient", "level": "3", "total": "30000.00",
                                          "member": "in_service"}, day, policies)
            book.ledgers[ledger.id] = ledger
            return book.to_json(400), None
        await update_book(years, "web", "p1", change, lambda data: 2_000_000_000, retries=200)
    await client.aclose()

asyncio.run(main(*sys.argv[1:3], int(sys.argv[3]), sys.argv[4]))
"""


async def test_two_processes_recording_at_once_lose_no_entry(redis_url, redis_mode, redis, years):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", RECORDER, redis_url, name, "15", redis_mode], cwd=ROOT, env=env)
             for name in ("a", "b")]
    for proc in procs:
        assert await asyncio.to_thread(proc.wait, 120) == 0
    ledger = await stored_ledger(years)
    assert sorted(e.id for e in ledger.entries) == sorted(f"{n}{i}" for n in "ab" for i in range(15))
    # every entry was computed from the totals the earlier ones left: the ledger equals a replay in order
    replay = Ledger(ledger.region, ledger.plan, ledger.start, ledger.end)
    for entry in ledger.entries:
        record(replay, entry.id, entry.inputs, entry.date, PROPS)
    assert replay.totals() == ledger.totals()
    assert ledger.totals().admissions == 30


async def test_concurrent_updates_in_one_process_are_retried(make_redis, years):
    clients = [make_redis() for _ in range(2)]
    stores = [RedisYearStore(RedisSessionStore(c)) for c in clients]
    day = dt.date(2025, 9, 1)

    async def add(store: RedisYearStore, entry_id: str) -> None:
        def change(stored):
            book = Book.from_json(stored, day)
            ledger = book.ledger(PROPS, "propland", "employee", day)
            record(ledger, entry_id, {"visit": "outpatient", "level": "2", "total": "800.00",
                                      "member": "in_service", "age": 30}, day, PROPS)
            book.ledgers[ledger.id] = ledger
            return book.to_json(400), None
        await update_book(store, "web", "p1", change, lambda data: 2_000_000_000, retries=100)

    await asyncio.gather(*(add(stores[i % 2], f"e{i}") for i in range(20)))
    ledger = await stored_ledger(years)
    assert len(ledger.entries) == 20
    assert ledger.totals().compliant == Decimal(16000)
    for client in clients:
        await client.aclose()


def test_undo_and_set_entries_in_the_pure_ledger():
    day = dt.date(2025, 9, 1)
    ledger = Ledger("propland", "employee", dt.date(2025, 7, 1), dt.date(2026, 6, 30))
    given = Totals(fund_paid=Decimal(150000), admissions=2)
    record(ledger, "x", {"visit": "inpatient", "level": "3", "total": "60000.00", "member": "in_service"}, day,
           PROPS, given)
    assert [e.kind for e in ledger.entries] == ["set", "visit"]
    case = Case(region="propland", plan="employee", visit="inpatient", level="3", total=Decimal(60000),
                member="in_service", date=day, **dict(given.case_args(), ytd_supplementary=None, ytd_critical=None))
    result = estimate(case, PROPS)  # what the person typed, the rest derived by the engine
    assert ledger.totals() == year_from_estimate(result, given)
    assert ledger.entries[-1].exact
    assert ledger.totals().fund_paid <= Decimal(200000) and ledger.totals().admissions == 3
    assert ZERO <= ledger.entries[-1].personal <= Decimal(60000)
    json.dumps(Book(None, {ledger.id: ledger}).to_json(400))  # stored as plain JSON


def test_a_visit_after_typed_figures_past_the_cap_is_not_exact():
    """Typed: the fund's cap is used up; what the supplementary fund paid so far is not known, so the
    visit's supplementary share is a range and the entry says it is not exact."""
    day = dt.date(2025, 9, 1)
    ledger = Ledger("propland", "employee", dt.date(2025, 7, 1), dt.date(2026, 6, 30))
    inputs = {"visit": "inpatient", "level": "3", "total": "60000.00", "member": "in_service"}
    record(ledger, "x", inputs, day, PROPS, Totals(fund_paid=Decimal(200000), admissions=1))
    assert not ledger.entries[-1].exact
    assert ledger.entries[-1].paid.supplementary_paid == ZERO  # the point figure: the insurance pays least
    assert ledger.totals().supplementary_paid == ZERO  # what it paid, not what the engine assumed of the past
    record(ledger, "y", inputs, day, PROPS)  # from here on the ledger knows what the funds paid
    assert ledger.entries[-1].exact


async def test_the_profile_remembers_the_language_after_the_session_expired(redis, dialogue, years):
    chat = Chat(dialogue, KEY)
    await chat.command("language", "en")
    await first_visit_en(chat)
    await redis.delete(years.sessions.session_key(KEY))  # the conversation expired (SESSION_TTL)
    await chat.command("start")
    assert "Welcome back" in chat.text and "Propland · Employee insurance · In service" in chat.text
    assert chat.turn.lang == "en"


async def first_visit_en(chat: Chat) -> None:
    await chat.command("start")
    for action in ("propland", "employee", "in_service", "inpatient", "3"):
        await chat.press(action)
    await chat.say("60000")
    while "~calc" not in chat.actions and "~skiprest" not in chat.actions:
        await chat.press("~skip")
    if "~skiprest" in chat.actions:
        await chat.press("~skiprest")
    await chat.press("~calc")
    await chat.press("~y:rec")
    await chat.press("~y:ok")
    assert "Added to the insurance year" in chat.text


async def test_a_reopened_chat_after_recording_does_not_offer_the_same_visit_again(dialogue, years):
    chat = Chat(dialogue, KEY)
    await first_visit(chat, "3", "60000")
    await chat.command("resume")  # the web page reloaded, the terminal chat reopened
    assert "欢迎回来" in chat.text and "~y:rec" not in chat.actions
    assert len((await stored_ledger(years)).visits()) == 1


async def test_a_returning_person_in_a_region_that_asks_where_care_happens(redis, years):
    """深圳 tells kinds of out-of-area care apart: a returning person's care counts as local (the
    greeting says so), so it is still visit type, hospital and amount."""
    today = dt.date(2025, 9, 1)
    dialogue = Dialogue(load_policies(), years.sessions, years=years, today=lambda: today)
    chat = Chat(dialogue, KEY)
    await chat.command("start")
    await chat.say("深圳")
    for _ in range(20):  # the first time: the first option of every question, amounts skipped
        if chat.turn.kind == "estimate":
            break
        if "~calc" in chat.actions:
            await chat.press("~calc")
        elif "~skip" in chat.actions:
            await chat.press("~skip")
        elif "这次的总费用" in chat.last_text:
            await chat.say("20000")
        else:
            await chat.press(next(a for a in chat.actions if not a.startswith("~")))
    assert chat.turn.kind == "estimate", chat.text
    await chat.press("~y:rec")
    await chat.press("~y:ok")
    assert "已记入" in chat.text, chat.text
    await chat.command("start")
    assert "就医地按本地" in chat.text
    await chat.press("inpatient")
    await chat.press(next(a for a in chat.actions if not a.startswith("~")))
    await chat.say("30000")
    assert chat.turn.kind == "estimate"
