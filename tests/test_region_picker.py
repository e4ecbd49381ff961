"""The region question over the whole country (~340 regions): typed names, the province → city
picker with paging, the last region first, and replies small enough for any messenger."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from conversations.dialogue import Dialogue, Session
from conversations.replies import Incoming, Reply, Turn
from conversations.texts import t
from rules.engine import default_policies
from rules.regions import region_index

POLICIES = default_policies()
DIALOGUE = Dialogue(POLICIES, store=None, today=lambda: dt.date(2025, 3, 1))  # type: ignore[arg-type]


def started(lang: str = "zh", last: str | None = None) -> tuple[Session, Turn]:
    session = Session(lang=lang, last_region=last)
    return session, DIALOGUE.step(session, Incoming(command="start"))


def size(reply: Reply) -> int:
    data = {"text": reply.text, "buttons": [[{"id": b.id, "label": b.label} for b in row] for row in reply.buttons]}
    return len(json.dumps(data, ensure_ascii=False).encode())


def press(session: Session, reply: Reply, label: str) -> Turn:
    button = next(b for b in reply.choices if b.label == label)
    return DIALOGUE.step(session, Incoming(choice=button.id))


def views(session: Session, reply: Reply, seen: set[str]):
    """Every view reachable from a reply by the picker's buttons (provinces, cities, pages)."""
    yield reply
    for button in reply.choices:
        code = button.id.split("|", 1)[1]
        if code.startswith(("~rp:", "~rc:")) and code not in seen:
            seen.add(code)
            copy = Session.from_dict(session.to_dict())
            turn = DIALOGUE.step(copy, Incoming(choice=button.id))
            if copy.question == "region":
                yield from views(copy, turn.replies[-1], seen)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_view_is_small(lang):
    session, turn = started(lang, last="guangzhou")
    count = 0
    for reply in views(session, turn.replies[-1], set()):
        count += 1
        assert size(reply) < 2048 and len(reply.choices) <= 30, reply.text
    assert count > 25  # every province's page(s) and both pages of provinces


def test_every_region_can_be_picked_by_buttons():
    session, turn = started()
    reachable: set[str] = set()
    for reply in views(session, turn.replies[-1], set()):
        reachable |= {b.id.split("|", 1)[1] for b in reply.choices}
    singles = {p.regions[0] for p in region_index(POLICIES).provinces.values() if len(p.regions) == 1}
    assert set(POLICIES.regions) <= reachable | singles


def test_province_then_city_then_next_question():
    session, turn = started()
    turn = press(session, turn.replies[-1], "下一页 ▸")  # the second page of provinces
    assert "新疆" in [b.label for b in turn.replies[-1].choices]
    turn = press(session, turn.replies[-1], "◂ 上一页")
    turn = press(session, turn.replies[-1], "广东")
    assert turn.replies[-1].text == t("zh", "picker.province", province="广东")
    assert "潮州" in [b.label for b in turn.replies[-1].choices]
    turn = press(session, turn.replies[-1], "广州")
    assert session.answers["region"] == "guangzhou" and turn.answered == "广州"
    assert turn.replies[-1].text == t("zh", "prompts.plan")


def test_single_region_province_answers_at_once():
    session, turn = started()
    turn = press(session, turn.replies[-1], "北京")
    assert session.answers["region"] == "beijing" and turn.answered == "北京"


def test_last_region_is_offered_first():
    session, turn = started(last="chengdu")
    first = turn.replies[-1].buttons[0][0]
    assert first.label == "📍 成都（上次）" and first.id.endswith("|chengdu")
    DIALOGUE.step(session, Incoming(choice=first.id))
    assert session.answers["region"] == "chengdu"
    # a new estimate offers it again, and it survives the stored form of the session
    again = Session.from_dict(session.to_dict())
    turn = DIALOGUE.step(again, Incoming(command="start"))
    assert turn.replies[-1].buttons[0][0].label == "📍 成都（上次）"


def test_typed_names():
    for text, region in (("广州", "guangzhou"), ("guangzhou", "guangzhou"), ("穗", "guangzhou"),
                         ("440100", "guangzhou"), ("广东 广州", "guangzhou"), ("成都市", "chengdu")):
        session, _ = started()
        DIALOGUE.step(session, Incoming(text=text))
        assert session.answers.get("region") == region, text


def test_shared_name_is_asked():
    session, _ = started()
    turn = DIALOGUE.step(session, Incoming(text="suzhou"))
    assert "region" not in session.answers
    assert turn.replies[-1].text == t("zh", "picker.which", text="suzhou")
    assert [b.label for b in turn.replies[-1].choices] == ["宿州（安徽）", "苏州（江苏）"]
    press(session, turn.replies[-1], "苏州（江苏）")
    assert session.answers["region"] == "suzhou-jiangsu"


def test_city_named_like_its_province_is_asked():
    session, _ = started()
    turn = DIALOGUE.step(session, Incoming(text="吉林"))
    labels = [b.label for b in turn.replies[-1].choices]
    assert labels == ["吉林（吉林）", "吉林各城市 ▸"]
    turn = press(session, turn.replies[-1], "吉林各城市 ▸")
    assert "长春" in [b.label for b in turn.replies[-1].choices]


def test_typed_province_opens_its_cities():
    session, _ = started()
    turn = DIALOGUE.step(session, Incoming(text="四川省"))
    assert turn.replies[-1].text == t("zh", "picker.province", province="四川")
    assert "成都" in [b.label for b in turn.replies[-1].choices]


def test_unknown_name_gets_a_hint_and_the_provinces():
    session, _ = started("en")
    turn = DIALOGUE.step(session, Incoming(text="Atlantis"))
    reply = turn.replies[-1]
    assert reply.text == t("en", "hints.region_unknown", text="Atlantis") and "Guangdong" in [
        b.label for b in reply.choices]
    assert size(reply) < 2048


def test_old_view_button_is_stale_after_answering():
    session, turn = started()
    old = turn.replies[-1]
    press(session, old, "北京")
    turn = press(session, old, "广东")
    assert turn.replies[0].text == t("zh", "hints.stale")


def test_regions_command_fits_one_message():
    session, _ = started()
    turn = DIALOGUE.step(session, Incoming(command="regions"))
    assert len(turn.replies[0].text) < 1000 and "广东 21" in turn.replies[0].text


def test_policy_command_with_unknown_region_is_short():
    session, _ = started()
    turn = DIALOGUE.step(session, Incoming(command="policy", argument="火星"))
    assert len(turn.replies[0].text) < 200


def test_summary_offers_to_change_the_region():
    session, _ = started()
    answers = {"region": "广州", "plan": "职工", "member": "在职", "visit": "住院", "level": "三级", "where": "本地",
               "total": "20000", "self_pay": "0"}
    for _ in range(12):
        if session.state != "ask":
            break
        if session.question in answers:
            turn = DIALOGUE.step(session, Incoming(text=answers[session.question]))
        else:  # this year's figures so far: skipped
            turn = DIALOGUE.step(session, Incoming(choice=f"{session.q}|~skiprest"))
    assert session.state == "summary"
    edit = next(b for b in turn.replies[-1].choices if b.id.endswith("|~edit:region"))
    turn = DIALOGUE.step(session, Incoming(choice=edit.id))
    assert session.question == "region" and turn.replies[-1].text == t("zh", "prompts.region")
    assert turn.replies[-1].buttons[0][0].label == "📍 广州（上次）"
