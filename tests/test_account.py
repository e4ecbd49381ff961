"""The personal account (个人账户) split of an estimate: rules/account.py, its data, the CLI and the chat.

Worked figures come from the shipped policies, computed by hand in the comments."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.texts import t
from rules.account import PARTS, account_json, account_rules, personal_parts, rule_for, split
from rules.case import CannotEstimate, Case, Estimate
from rules.engine import estimate
from rules.loader import PolicyErrors, load_policies
from tests.test_cli import AMOUNT_RE, bot
from tests.test_dialogue import Chat, asks

D = Decimal
POLICIES = load_policies()
DAY = dt.date(2025, 3, 1)


def shanghai_stay(total: str = "20000", self_pay: str | None = "1000", class_b: str | None = None) -> Estimate:
    case = Case(region="shanghai", plan="employee", member="in_service", visit="inpatient", level="3",
                total=D(total), self_pay=D(self_pay) if self_pay else None, class_b=D(class_b) if class_b else None,
                date=DAY)
    result = estimate(case, POLICIES)
    assert isinstance(result, Estimate)
    return result


def test_parts_of_the_personal_share():
    # 20,000 with 1,000 self-paid: compliant 19,000, deductible 1,500, fund (19,000 − 1,500) × 85% = 14,875,
    # personal 5,125 = deductible 1,500 + co-pay 2,625 + self-paid 1,000
    parts = personal_parts(shanghai_stay())
    assert parts == {"current_year": D(0), "deductible": D("1500.00"), "copay": D("2625.00"), "class_b": D(0),
                     "self_pay": D("1000")}


def test_the_balance_pays_what_it_may_the_rest_is_cash():
    result = split(shanghai_stay(), D("3000"))
    assert (result.account, result.cash, result.may_pay, result.family) == (D(3000), D(2125), D(5125), D(0))
    rich = split(shanghai_stay(), D("100000"))
    assert (rich.account, rich.cash) == (D(5125), D(0))


def test_family_pooling_may_pay_what_the_own_account_cannot():
    result = split(shanghai_stay(), D("3000"), family_pool=True)
    assert result.family == D(2125) and result.account + result.cash == result.balance + D(2125)


def test_a_region_that_narrows_the_rule_pays_less():
    rules = dict(account_rules())
    national = rules[""]
    rules["shanghai"] = type(national)(national.plans, frozenset({"deductible", "copay"}), False,
                                       national.sources, national.quote)
    result = split(shanghai_stay(), D("100000"), family_pool=True, rules=rules)
    assert (result.account, result.cash, result.family) == (D(4125), D(1000), D(0))  # the 自费 1,000 is cash


def test_resident_insurance_has_no_account():
    case = Case(region="zigong", plan="resident", visit="inpatient", level="3", total=D(40000), date=DAY)
    result = estimate(case, POLICIES)
    assert isinstance(result, Estimate)
    shares = split(result, D(5000), family_pool=True)
    assert not shares.has_account and shares.account == 0 and shares.cash == result.personal


def shanghai_clinic(current_year: str | None) -> Estimate:
    case = Case(region="shanghai", plan="employee", member="in_service", age=30, visit="outpatient", level="3",
                total=D(3000), self_pay=D(0), class_b=D(0), date=DAY,
                current_year_account=D(current_year) if current_year is not None else None)
    result = estimate(case, POLICIES)
    assert isinstance(result, Estimate)
    return result


def test_shanghai_outpatient_spends_the_current_year_account_before_the_deductible():
    # in service aged 30, 三级: 自负段 1,500, then 50%. Without the balance the account is taken as spent:
    # fund (3,000 − 1,500) × 50% = 750. With 500 left: 500 first, 2,500 meets the 自负段, fund 1,000 × 50% = 500.
    # With 5,000 left: the whole 3,000 from the account, nothing toward the 自负段, fund 0.
    spent = shanghai_clinic(None)
    assert (spent.deductible, spent.fund, spent.personal) == (D(1500), D(750), D(2250))
    assert any(w.key == "current_year_account_assumed" for w in spent.warnings)
    some = shanghai_clinic("500")
    assert (some.deductible, some.fund, some.personal) == (D(1500), D(500), D(2500))
    assert not any(w.key == "current_year_account_assumed" for w in some.warnings)
    plenty = shanghai_clinic("5000")
    assert (plenty.deductible, plenty.fund, plenty.personal) == (D(0), D(0), D(3000))


def test_the_current_year_account_is_part_of_the_account_share():
    shares = split(shanghai_clinic("500"), D(100))
    assert shares.parts["current_year"] == D(500) and shares.parts["deductible"] == D(1500)
    assert (shares.account, shares.cash) == (D(600), D(1900)) and shares.notes == ()
    assert split(shanghai_clinic(None), D(100)).notes == ("current_year_first",)
    assert split(shanghai_stay(), D(100)).notes == ()
    assert account_json(shares)["current_year_account_paid"] == "500.00"


def test_other_regions_ignore_the_current_year_account():
    case = Case(region="beijing", plan="employee", member="in_service", visit="outpatient", level="3",
                total=D(3000), self_pay=D(0), class_b=D(0), date=DAY)
    with_balance = estimate(case, POLICIES), estimate(Case(**{**{f: getattr(case, f) for f in case.__slots__},
                                                               "current_year_account": D(900)}), POLICIES)
    assert with_balance[0].fund == with_balance[1].fund and with_balance[0].personal == with_balance[1].personal


def test_the_national_default_cites_its_document():
    national = rule_for("beijing")
    assert national == account_rules()[""]
    assert national.pays == frozenset(PARTS) and national.family_pool
    (source, confidence), = national.sources
    assert "国办发〔2021〕14号" in source["title"] and confidence == "secondary"


def test_negative_balance_is_refused():
    with pytest.raises(ValueError):
        split(shanghai_stay(), D(-1))


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REGION_CASES = [("shanghai", "employee", "in_service", "inpatient", "2"), ("beijing", "employee", "retired",
                "inpatient", "1"), ("shenzhen", "employee", "in_service", "inpatient", "3"),
                ("zigong", "resident", None, "inpatient", "3")]


@PROPS
@given(where=st.sampled_from(REGION_CASES), total=st.integers(1, 5_000_000), self_share=st.integers(0, 100),
       b_share=st.integers(0, 100), balance=st.integers(0, 2_000_000), family=st.booleans())
def test_account_and_cash_always_add_up_to_personal(where, total, self_share, b_share, balance, family):
    region, plan, member, visit, level = where
    total_d = D(total) / 100
    self_pay = (total_d * self_share / 100).quantize(D("0.01"))
    class_b = ((total_d - self_pay) * b_share / 100).quantize(D("0.01"))
    grade = 1 if region == "shenzhen" else None
    case = Case(region=region, plan=plan, member=member, grade=grade, visit=visit, level=level, total=total_d,
                self_pay=self_pay, class_b=class_b, date=DAY)
    result = estimate(case, POLICIES)
    if isinstance(result, CannotEstimate):
        return
    parts = personal_parts(result)
    assert sum(parts.values()) == result.personal and all(v >= 0 for v in parts.values())
    shares = split(result, D(balance) / 100, family)
    assert shares.account + shares.cash == result.personal
    assert 0 <= shares.account <= min(shares.balance, shares.may_pay) and shares.cash >= 0
    assert 0 <= shares.family <= shares.cash
    shown = account_json(shares)
    assert all(AMOUNT_RE.match(shown[k]) for k in ("account", "cash", "account_may_pay", "family_may_pay"))


# -- the rule file is validated with file, line and field --------------------------------------


def test_invalid_rule_file(tmp_path: Path):
    path = tmp_path / "accounts.yaml"
    path.write_text("national:\n  plans: [employee]\n  pays: [deductible, lunch]\n  family_pool: maybe\n"
                    "  source: {title: X}\n  confidence: secondary\nregions:\n  shanghai:\n    colour: red\n",
                    encoding="utf-8")
    with pytest.raises(PolicyErrors) as caught:
        account_rules.__wrapped__(path)
    errors = [str(e) for e in caught.value.errors]
    assert "accounts.yaml:3: national.pays: a list of: deductible, copay, class_b, self_pay" in errors
    assert "accounts.yaml:4: national.family_pool: true or false" in errors


def test_region_errors_are_reported_at_their_line(tmp_path: Path):
    good = Path(account_rules.__wrapped__.__defaults__[0]).read_text(encoding="utf-8")
    path = tmp_path / "accounts.yaml"
    path.write_text(good + "  beijing:\n    colour: red\n    confidence: sure\n", encoding="utf-8")
    with pytest.raises(PolicyErrors) as caught:
        account_rules.__wrapped__(path)
    lines = (good + "  beijing:\n").count("\n")
    assert [str(e) for e in caught.value.errors] == [
        f"accounts.yaml:{lines + 1}: regions.beijing.colour: unknown field",
        f"accounts.yaml:{lines + 2}: regions.beijing.confidence: one of confirmed, secondary, seed-only"]


# -- the command line ----------------------------------------------------------------------------

def test_cli_current_year_account():
    clinic = ["estimate", "--region", "上海", "--plan", "employee", "--member", "in_service", "--age", "30",
              "--visit", "outpatient", "--level", "3", "--total", "3000", "--self-pay", "0", "--class-b", "0",
              "--date", "2025-03-01"]
    data = json.loads(bot(*clinic, "--current-year-account", "500", "--account-balance", "100", "--json").stdout)
    assert (data["fund"], data["personal"], data["account"], data["cash"], data["current_year_account_paid"]) == \
        ("500.00", "2500.00", "600.00", "1900.00", "500.00")


SHANGHAI = ["estimate", "--region", "上海", "--plan", "employee", "--member", "in_service", "--visit",
            "inpatient", "--level", "3", "--total", "20000", "--self-pay", "1000", "--date", "2025-03-01"]


def test_cli_json_has_account_and_cash():
    done = bot(*SHANGHAI, "--account-balance", "3000", "--family-pool", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["personal"], data["account"], data["cash"], data["family_may_pay"]) == \
        ("5125.00", "3000.00", "2125.00", "2125.00")
    assert D(data["account"]) + D(data["cash"]) == D(data["personal"])
    assert data["account_rule"]["pays"] == list(PARTS)


def test_cli_without_a_balance_has_no_account_fields():
    data = json.loads(bot(*SHANGHAI, "--json").stdout)
    assert "account" not in data and "cash" not in data


def test_cli_text_and_errors():
    done = bot(*SHANGHAI, "--account-balance", "10000", "--lang", "en")
    assert done.returncode == 0 and "the personal account pays 5,125.00 and cash 0.00" in done.stdout
    for bad in (["--account-balance", "-5"], ["--account-balance", "abc"], ["--family-pool"]):
        done = bot(*SHANGHAI, *bad)
        assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


# -- the chat --------------------------------------------------------------------------------


@pytest.fixture
def chat(redis) -> Chat:
    from bot.store import RedisSessionStore
    from conversations.dialogue import Dialogue

    return Chat(Dialogue(POLICIES, RedisSessionStore(redis, ttl_seconds=3600), today=lambda: DAY))


async def to_result(chat: Chat, *answers: str) -> None:
    await chat.command("start")
    for answer in answers:
        await chat.say(answer)
    while (await chat.session()).state == "ask":  # the questions of this year so far: none
        await chat.press("~skiprest" if "~skiprest" in chat.actions else "~skip")
    await chat.press("~calc")
    assert chat.turn.kind == "estimate"


async def test_the_account_is_asked_only_when_wanted(chat):
    await to_result(chat, "上海", "职工", "在职", "住院", "三级", "20000", "1000")
    assert "~account" in chat.actions and "💳" not in chat.text
    await chat.press("~account")
    assert asks(chat, "account")
    await chat.say("3000")
    assert asks(chat, "family_pool")
    await chat.say("开通了")
    assert chat.turn.kind == "estimate"
    assert "💳 其中个人账户可付 3,000.00 元，现金 2,125.00 元" in chat.text
    assert "最多 2,125.00 元可由家人的个人账户支付" in chat.text and "国办发〔2021〕14号" in chat.text
    assert "~account" not in chat.actions
    personal_line = t("zh", "result.personal", amount="5,125.00")
    lines = chat.turn.replies[0].text.splitlines()
    assert lines[lines.index(personal_line) + 1].startswith("💳")


async def test_skipping_the_balance_gives_the_plain_estimate(chat):
    await to_result(chat, "上海", "职工", "在职", "住院", "三级", "20000", "1000")
    await chat.press("~account")
    await chat.say("跳过")
    assert (await chat.session()).state == "summary"
    await chat.press("~calc")
    assert "💳" not in chat.text and "~account" in chat.actions


async def test_no_account_button_for_resident_insurance(chat):
    await to_result(chat, "自贡", "住院", "三级", "40000", "跳过")
    assert "~account" not in chat.actions
