"""What people read never names our internal files, research notes or ids: every region's estimates
(every plan, visit type, hospital level and person category the region offers, walked through the
dialogue) and `/policy` for every region, in both languages. Sources are cited as documents."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest

from conversations.dialogue import Dialogue, Session
from conversations.questions import open_question
from conversations.replies import Incoming, Reply
from conversations.texts import LANGUAGES
from rules.loader import load_policies

POLICIES = load_policies()
TODAY = dt.date(2026, 3, 1)  # some yearly figures are past their year: stale lines are checked too
TYPED = {"age": "45", "retired_year": "2005", "total": "30000", "self_pay": "1000", "class_b": "2000",
         "admission": "2"}
FORBIDDEN = re.compile(r"\.md\b|\.txt\b|policy-facts|seeds/|种子文章|seed[- ]only|\bseed\b", re.IGNORECASE)
SNAKE_ID = re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b")  # fund_cap, class_b_self_ratio, in_service, out_of_area…
SOURCE_IDS = {sid for region in POLICIES for sid in region.sources if re.search(r"[-\d]", sid)}  # seed-000, qa-358


SAMPLE = {"guangzhou", "chengdu", "alxa"}
URL = re.compile(r"https?://\S+")
WORD = re.compile(r"[\w-]+")


def leaks(text: str) -> list[str]:
    """Internal names in `text` (links to the documents themselves are what we want: not searched)."""
    text = URL.sub("", text)
    found = FORBIDDEN.findall(text) + SNAKE_ID.findall(text)
    found += [word for word in WORD.findall(text) if word in SOURCE_IDS]  # a whole word, as ids are written
    return found


def dialogue() -> Dialogue:
    return Dialogue(POLICIES, store=None, today=lambda: TODAY)  # the pure `step`: no store needed


def walk(d: Dialogue, session: Session) -> Iterator[Session]:
    """Every way through the choice questions (typed answers for the rest), up to the summary."""
    ctx = d._context(session)
    question = open_question(ctx)
    if question is None:
        yield session
        return
    if question.kind == "choice":
        values = [o.id for o in question.options(ctx)]
    elif question.id in TYPED:
        values = [question.answer(ctx, TYPED[question.id])]
    else:
        values = [question.skip_value]
    for value in values:
        branch = Session.from_dict(session.to_dict())
        branch.answers[question.id] = value
        yield from walk(d, branch)


def estimates(lang: str) -> Iterator[tuple[str, Reply]]:
    d = dialogue()
    # The hand-maintained files, and a sample of the ~340 generated ones (written alike by one importer).
    for region in [r for r in POLICIES if not r.imported or r.id in SAMPLE]:
        start = Session(lang=lang, state="ask", question="region", answers={"region": region.id})
        for session in walk(d, start):
            session.state, session.question, session.q = "summary", None, 1
            turn = d.step(session, Incoming(choice="1|~calc"))
            yield f"{region.id} {session.answers}", turn.replies[0]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_estimate_cites_documents_only(lang):
    count = 0
    for where, reply in estimates(lang):
        count += 1
        for part in (reply.title or "", reply.text, reply.details):
            assert not leaks(part), f"{where}: {leaks(part)}\n{part}"
    assert count >= 60  # every region, plan, visit type, level and person category


@pytest.mark.parametrize("lang", LANGUAGES)
def test_policy_of_every_region_fits_one_message_and_names_no_internals(lang):
    d = dialogue()
    for region in POLICIES:
        session = Session(lang=lang)
        turn = d.step(session, Incoming(command="policy", argument=region.name(lang)))
        text = turn.replies[0].text
        assert region.name(lang) in text.splitlines()[0]
        assert not leaks(text), f"{region.id}: {leaks(text)}\n{text}"
        assert len(text) <= 4096, f"{region.id}: {len(text)} characters, more than one Telegram message"
        for note in region.notes:  # research notes are for maintainers
            assert note(lang) not in text


def test_a_web_article_is_cited_as_one():
    d = dialogue()
    session = Session(lang="zh")
    text = d.step(session, Incoming(command="policy", argument="自贡")).replies[0].text
    assert "自贡市居民医疗保险报销比例 · 网络文章，未经核实" in text
    text = d.step(Session(lang="zh"), Incoming(command="policy", argument="深圳")).replies[0].text
    assert "深圳市医疗保障办法（深圳市人民政府令第358号） · 深圳市人民政府 · 2023-10-01 起施行" in text


def test_the_leak_check_can_fail():
    assert leaks("见 policy-facts.md#beijing") and leaks("seeds/000_4d0440124a71a0f4.txt")
    assert leaks("fund_cap 630,000") and leaks("[qa-358] 深圳") and not leaks("统筹基金年度最高支付限额 630,000")
    assert not leaks("· http://ybj.als.gov.cn/art/2023/11/25/art_11221_1189912.html")
