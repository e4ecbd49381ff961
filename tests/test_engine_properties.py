"""Properties of `rules.engine.estimate` on the test policies of `tests/policies_props`, and worked
examples computed by hand from those files (never by calling the engine).

propland (insurance year from 07-01): employee inpatient with per-admission deductibles by level
(1: 300, 2: 600, 3: 1,000; halved from the 2nd admission), banded ratios by level for in-service members,
flat ratios for retirees (rows by year of retirement), fund cap 100,000 from 2020-01-01 and 200,000 from
2024-07-01, supplementary 80% up to 50,000, class B pay-first 10%, out of area 80% of the 3级 ratio;
outpatient rows by member and age with an annual deductible and a 5,000 cap; special outpatient with
plain bands over the year (60% to 10,000, 80% above), no cap; 大病 on the plan: threshold 20,000,
50% to 50,000, 60% above, cap 30,000. Resident inpatient: seed-only deductible, rows by age, no cap.
calmland (calendar year): resident outpatient 100 deductible, 85%, no cap; inpatient yearly bands
50% / 70% from 20,000 / 0% from 50,000, fund cap 30,000, supplementary 50% without a cap.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.case import LEVELS, MEMBERS, PLANS, VISITS, WHERE, CannotEstimate, Case, Estimate
from rules.engine import estimate
from rules.loader import load_policies
from rules.report import estimate_json, estimate_text

POLICY_DIR = Path(__file__).parent / "policies_props"
POLICIES = load_policies(POLICY_DIR)
D = Decimal
AMOUNT_RE = re.compile(r"^\d+\.\d{2}$")
SHOWN = ("compliant", "deductible", "fund", "supplementary", "critical_illness", "personal")

# YIBAO_PROPERTY_EXAMPLES=20000 for a long hunt; 200 keeps the suite fast
PROPS = settings(max_examples=int(os.environ.get("YIBAO_PROPERTY_EXAMPLES", "200")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


def run(**kw) -> Estimate | CannotEstimate:
    """propland, employee, 2024-09-01 unless told; amounts given as text."""
    kw.setdefault("region", "propland")
    kw.setdefault("plan", "employee")
    kw.setdefault("date", dt.date(2024, 9, 1))
    for key in ("total", "self_pay", "class_b", "ytd_deductible", "ytd_fund", "ytd_compliant", "ytd_burden",
                "ytd_supplementary", "ytd_critical"):
        if isinstance(kw.get(key), str):
            kw[key] = D(kw[key])
    return estimate(Case(**kw), POLICIES)


def figures(result: Estimate) -> dict[str, str]:
    return {k: f"{getattr(result, k)}" for k in SHOWN}


def keys(result: Estimate) -> list[str]:
    return [w.key for w in result.warnings]


# -- strategies --------------------------------------------------------------------------------

def _cents(draw, low: int, high: int) -> Decimal:
    cents = draw(st.integers(low, high))
    if cents % 100 == 0 and draw(st.booleans()):
        return Decimal(cents // 100)  # "100" as well as "100.00": both are valid case amounts
    return Decimal(cents).scaleb(-2)


@st.composite
def amounts(draw, high: int = 40_000_000) -> Decimal:
    """0 to 400,000 yuan in fen, biased towards small amounts and round figures."""
    which = draw(st.sampled_from(("small", "any", "round")))
    if which == "small":
        return _cents(draw, 0, 300_000)
    if which == "round":
        return Decimal(draw(st.integers(0, high // 100_000)) * 1000)
    return _cents(draw, 0, high)


@st.composite
def splits(draw, total: Decimal, class_b_allowed: bool = True) -> tuple[Decimal | None, Decimal | None]:
    """(self_pay, class_b) with self_pay + class_b <= total; either may be unknown."""
    shape = draw(st.sampled_from(("unknown", "zero", "self_only", "both")))
    cents = int(total * 100)
    if shape == "unknown":
        return None, None
    if shape == "zero":
        return D("0.00"), (D("0.00") if class_b_allowed else None)
    self_pay = Decimal(draw(st.integers(0, cents))).scaleb(-2)
    if shape == "self_only" or not class_b_allowed:
        return self_pay, None
    class_b = Decimal(draw(st.integers(0, cents - int(self_pay * 100)))).scaleb(-2)
    return self_pay, class_b


# Estimable profiles: (region, plan, visit, levels, person details strategy, dates, class B allowed).
_DATES = st.dates(dt.date(2020, 1, 1), dt.date(2027, 12, 31))
_EMPLOYEE = st.one_of(
    st.fixed_dictionaries({"member": st.just("in_service"), "age": st.integers(16, 70)}),
    st.fixed_dictionaries({"member": st.just("retired"), "age": st.integers(50, 100),
                           "retired_year": st.integers(1980, 2027)}),
)
PROFILES = [
    ("propland", "employee", "inpatient", ("1", "2", "3"), _EMPLOYEE, _DATES, True),
    ("propland", "employee", "outpatient", ("community", "1", "2", "3"), _EMPLOYEE, _DATES, True),
    ("propland", "employee", "special_outpatient", ("2", "3"), _EMPLOYEE, _DATES, True),
    ("propland", "resident", "inpatient", ("1", "2", "3"),
     st.fixed_dictionaries({"age": st.integers(0, 100)}), st.dates(dt.date(2020, 1, 1), dt.date(2025, 12, 31)),
     False),
    ("calmland", "resident", "outpatient", ("community", "1", "2", "3"), st.just({}), _DATES, False),
    ("calmland", "resident", "inpatient", ("1", "2", "3"), st.just({}), _DATES, False),
]


@st.composite
def estimable_cases(draw) -> Case:
    region, plan, visit, levels, person, dates, class_b_ok = draw(st.sampled_from(PROFILES))
    total = draw(amounts())
    self_pay, class_b = draw(splits(total, class_b_ok))
    return Case(
        region=region, plan=plan, visit=visit, level=draw(st.sampled_from(levels)), total=total,
        self_pay=self_pay, class_b=class_b, date=draw(dates), **draw(person),
        ytd_deductible=draw(st.one_of(st.just(D(0)), amounts(300_000))),
        ytd_fund=draw(st.one_of(st.just(D(0)), amounts(30_000_000))),
        ytd_compliant=draw(st.one_of(st.just(D(0)), amounts(10_000_000))),
        ytd_burden=draw(st.one_of(st.just(D(0)), amounts(20_000_000))),
        ytd_supplementary=draw(st.one_of(st.none(), st.just(D(0)), amounts(10_000_000))),
        ytd_critical=draw(st.one_of(st.none(), st.just(D(0)), amounts(5_000_000))),
        admission=draw(st.integers(1, 4)),
        where=draw(st.sampled_from(WHERE)),
    )


@st.composite
def any_cases(draw) -> Case:
    """Any combination of region, plan, visit, level and person details, present or absent."""
    total = draw(amounts())
    self_pay, class_b = draw(splits(total))
    return Case(
        region=draw(st.sampled_from(("propland", "calmland", "pl", "平原", "PROPLAND", "nowhere", ""))),
        plan=draw(st.sampled_from(PLANS)),
        visit=draw(st.sampled_from(VISITS)),
        level=draw(st.sampled_from(LEVELS)),
        member=draw(st.one_of(st.none(), st.sampled_from(MEMBERS))),
        grade=draw(st.one_of(st.none(), st.integers(1, 3))),
        age=draw(st.one_of(st.none(), st.integers(0, 120))),
        retired_year=draw(st.one_of(st.none(), st.integers(1950, 2030))),
        total=total, self_pay=self_pay, class_b=class_b,
        date=draw(st.one_of(st.none(), st.dates(dt.date(2015, 1, 1), dt.date(2030, 12, 31)))),
        ytd_deductible=draw(st.one_of(st.just(D(0)), amounts(300_000))),
        ytd_fund=draw(st.one_of(st.just(D(0)), amounts())),
        ytd_compliant=draw(st.one_of(st.just(D(0)), amounts())),
        ytd_burden=draw(st.one_of(st.just(D(0)), amounts())),
        ytd_supplementary=draw(st.one_of(st.none(), amounts())),
        ytd_critical=draw(st.one_of(st.none(), amounts())),
        admission=draw(st.integers(1, 5)),
        where=draw(st.sampled_from(WHERE)),
    )


def check_invariants(result: Estimate) -> None:
    total = result.case.total
    parts = (result.fund, result.supplementary, result.critical_illness, result.personal)
    assert sum(parts) == total, f"parts {parts} do not add up to {total}"
    for key in (*SHOWN, "total"):
        assert getattr(result, key) >= 0, f"{key} is negative: {getattr(result, key)}"
    for key in SHOWN:
        value = getattr(result, key)
        assert value.as_tuple().exponent == -2, f"{key} = {value!r} is not shown with two decimals"
    assert result.compliant <= total
    assert result.deductible <= result.compliant
    # the insurance never pays more than the compliant cost (a fen of rounding per part at most)
    assert result.insurance <= result.compliant + D("0.02")
    data = estimate_json(result, "en")
    for key in (*SHOWN, "total"):
        assert AMOUNT_RE.match(data[key]), f"{key} = {data[key]!r}"
    for step in data["steps"]:
        assert re.match(r"^-?\d+\.\d{2}$", step["amount"]), step
    check_ranges(result)
    assert data["exact"] is result.exact and data["unknown"] == result.unknown
    for key, (low, high) in data["ranges"].items():
        assert AMOUNT_RE.match(low) and AMOUNT_RE.match(high), (key, low, high)
    assert set(data["year_after"]) == {"deductible_met", "fund_paid", "supplementary_paid", "critical_paid",
                                       "compliant", "burden", "admissions"}


def check_ranges(result: Estimate) -> None:
    """Every range holds its point figure, nothing is negative, and the insurance and the person's share
    add up to the total at both ends (the person pays least where the insurance pays most)."""
    total = result.case.total
    assert result.exact == (not result.ranges)
    if result.ranges:
        assert result.unknown, "a range with no unknown parameter"
    for key, (low, high) in result.ranges.items():
        assert D(0) <= low < high, (key, low, high)
        if not key.startswith("year_after."):
            point = result.insurance if key == "insurance" else getattr(result, key)
            assert low <= point <= high, (key, low, point, high)
            assert high <= total, (key, high, total)
    personal = result.ranges.get("personal", (result.personal, result.personal))
    insurance = result.ranges.get("insurance", (result.insurance, result.insurance))
    assert insurance[0] + personal[1] == total and insurance[1] + personal[0] == total
    assert personal[1] == result.personal, "the point figure is the most the person pays"


# -- properties --------------------------------------------------------------------------------


@PROPS
@given(any_cases())
def test_any_case_gives_a_result_never_an_exception(case: Case) -> None:
    result = estimate(case, POLICIES)
    assert isinstance(result, Estimate | CannotEstimate)
    for lang in ("zh", "en"):
        data = estimate_json(result, lang)
        estimate_text(result, POLICIES, lang)
        if isinstance(result, CannotEstimate):
            assert data["missing"] and isinstance(data["error"], str)
    if isinstance(result, Estimate):
        check_invariants(result)


@PROPS
@given(estimable_cases())
def test_parts_add_up_to_total_nothing_negative_two_decimals(case: Case) -> None:
    result = estimate(case, POLICIES)
    assert isinstance(result, Estimate), getattr(result, "missing", None)
    check_invariants(result)


@PROPS
@given(estimable_cases(), st.integers(2, 6))
def test_more_cost_of_the_same_shape_never_lowers_the_fund(case: Case, k: int) -> None:
    bigger = Case(**{**_fields(case), "total": case.total * k,
                     "self_pay": None if case.self_pay is None else case.self_pay * k,
                     "class_b": None if case.class_b is None else case.class_b * k})
    small, large = estimate(case, POLICIES), estimate(bigger, POLICIES)
    assert isinstance(small, Estimate) and isinstance(large, Estimate)
    assert large.fund >= small.fund, (case, small.fund, large.fund)


@PROPS
@given(estimable_cases(), amounts())
def test_more_compliant_cost_never_lowers_the_fund(case: Case, extra: Decimal) -> None:
    bigger = Case(**{**_fields(case), "total": case.total + extra})
    small, large = estimate(case, POLICIES), estimate(bigger, POLICIES)
    assert large.fund >= small.fund, (case, extra, small.fund, large.fund)


@PROPS
@given(estimable_cases(), amounts())
def test_more_already_paid_this_year_never_raises_the_fund(case: Case, more: Decimal) -> None:
    later = Case(**{**_fields(case), "ytd_fund": case.ytd_fund + more})
    before, after = estimate(case, POLICIES), estimate(later, POLICIES)
    assert after.fund <= before.fund, (case, more, before.fund, after.fund)


CAP_CHANGE = dt.date(2024, 7, 1)


@PROPS
@given(estimable_cases(), st.dates(dt.date(2020, 1, 1), dt.date(2027, 12, 31)))
def test_a_cap_change_applies_only_from_its_date(case: Case, day: dt.date) -> None:
    inpatient = Case(**{**_fields(case), "region": "propland", "plan": "employee", "visit": "inpatient",
                        "level": "3", "member": "in_service", "date": day})
    result = estimate(inpatient, POLICIES)
    cap_steps = [s for s in result.steps if s.key == "fund_cap"]
    assert len(cap_steps) == 1
    args = dict(cap_steps[0].text.args)
    assert args["cap"] == (D(200000) if day >= CAP_CHANGE else D(100000))
    assert cap_steps[0].used[0].effective == (CAP_CHANGE if day >= CAP_CHANGE else dt.date(2020, 1, 1))
    # the day before the change and the day of it, everything else equal
    before = estimate(Case(**{**_fields(inpatient), "date": CAP_CHANGE - dt.timedelta(days=1)}), POLICIES)
    on = estimate(Case(**{**_fields(inpatient), "date": CAP_CHANGE}), POLICIES)
    assert on.fund >= before.fund
    if inpatient.ytd_fund >= 100000:
        assert before.fund == 0
    assert before.fund <= max(D(0), D(100000) - inpatient.ytd_fund)
    assert on.fund <= max(D(0), D(200000) - inpatient.ytd_fund)


def _fields(case: Case) -> dict:
    return {name: getattr(case, name) for name in Case.__dataclass_fields__}


# -- worked examples (by hand from the policy files) -------------------------------------------


def test_bands_crossing_every_boundary():
    # in-service, inpatient 二级, 1st admission, 120,000 all compliant (class B 0 → compliant 120,000)
    # deductible 600; bands on [600, 120,000]:
    #   600–30,000 at 85%:      29,400 × 0.85 = 24,990
    #   30,000–100,000 at 90%:  70,000 × 0.90 = 63,000
    #   100,000+ at 95%:        20,000 × 0.95 = 19,000   → fund 106,990 (cap 200,000 from 2024-07-01)
    # 大病: burden 120,000 − 106,990 = 13,010 < threshold 20,000 → 0; personal 13,010
    r = run(member="in_service", visit="inpatient", level="2", total="120000", self_pay="0", class_b="0")
    assert figures(r) == {"compliant": "120000.00", "deductible": "600.00", "fund": "106990.00",
                          "supplementary": "0.00", "critical_illness": "0.00", "personal": "13010.00"}
    assert [s.key for s in r.steps].count("fund_band") == 3


def test_year_bands_start_at_the_accumulated_cost_and_stop_at_the_uncovered_band():
    # calmland inpatient 二级, deductible 300 already met; bands count the year: [15,000, 55,000]
    #   15,000–20,000 at 50%: 5,000 × 0.5 = 2,500
    #   20,000–50,000 at 70%: 30,000 × 0.7 = 21,000
    #   50,000–55,000 at 0%:  0                    → fund 23,500 (cap 30,000 not reached)
    # personal 40,000 − 23,500 = 16,500
    r = run(region="calmland", plan="resident", visit="inpatient", level="2", total="40000", self_pay="0",
            ytd_deductible="300", ytd_compliant="15000")
    assert figures(r) == {"compliant": "40000.00", "deductible": "0.00", "fund": "23500.00",
                          "supplementary": "0.00", "critical_illness": "0.00", "personal": "16500.00"}


def test_cap_reached_mid_band_then_supplementary():
    # in-service, inpatient 三级, 2024-03-01 (cap 100,000), fund already paid 60,000 → 40,000 left
    # deductible 1,000; bands: 1,000–30,000 at 80% = 23,200; 30,000–80,000 at 85% = 42,500 → raw 65,700
    # fund = min(65,700, 40,000) = 40,000. The cap is met in the 2nd band: 40,000 − 23,200 = 16,800 left
    # there, which covers 16,800 / 0.85 = 19,764.70588… of its 50,000; above the cap: 30,235.29412…
    # supplementary 80%: 24,188.235294… → 24,188.24 (its cap 50,000 not reached)
    # 大病: burden 80,000 − 40,000 − 24,188.24 = 15,811.76 < 20,000 → 0
    # personal 80,000 − 40,000 − 24,188.24 = 15,811.76
    r = run(member="in_service", visit="inpatient", level="3", total="80000", self_pay="0", class_b="0",
            ytd_fund="60000", date=dt.date(2024, 3, 1))
    assert figures(r) == {"compliant": "80000.00", "deductible": "1000.00", "fund": "40000.00",
                          "supplementary": "24188.24", "critical_illness": "0.00", "personal": "15811.76"}


def test_cap_exhausted_supplementary_capped_then_critical_illness():
    # as above but the fund already paid its 100,000: fund 0; above the cap: all 79,000
    # supplementary 79,000 × 0.8 = 63,200 → capped at 50,000
    # 大病: burden 80,000 − 0 − 50,000 = 30,000; [20,000, 30,000] at 50% = 5,000
    # personal 80,000 − 50,000 − 5,000 = 25,000
    kw = dict(member="in_service", visit="inpatient", level="3", total="80000", self_pay="0", class_b="0",
              ytd_fund="100000", date=dt.date(2024, 3, 1))
    r = run(**kw, ytd_supplementary="0")
    assert figures(r) == {"compliant": "80000.00", "deductible": "1000.00", "fund": "0.00",
                          "supplementary": "50000.00", "critical_illness": "5000.00", "personal": "25000.00"}
    assert r.exact
    # not told what the supplementary fund paid earlier, although the fund's cap was reached before this
    # stay: it may have spent its 50,000 already. Then the burden is 80,000: 大病 [20,000, 50,000] × 50%
    # = 15,000 + [50,000, 80,000] × 60% = 18,000 → 33,000, capped at 30,000; personal 50,000.
    r = run(**kw)
    assert (r.supplementary, r.critical_illness, r.personal) == (D("0.00"), D("30000.00"), D("50000.00"))
    assert r.unknown == ["ytd_supplementary"]
    assert r.ranges["supplementary"] == (D("0.00"), D("50000.00"))
    assert r.ranges["personal"] == (D("25000.00"), D("50000.00"))


def test_critical_illness_bands_above_threshold_with_ytd_burden():
    # retired by 2000, inpatient 一级: deductible 500 (row), ratio 95%
    # fund = (100,000 − 500) × 0.95 = 94,525 (cap 200,000)
    # burden 100,000 − 94,525 = 5,475 on top of 45,000 borne earlier: [45,000, 50,475]
    #   45,000–50,000 at 50%: 2,500;  50,000–50,475 at 60%: 475 × 0.6 = 285  → 2,785
    # personal 100,000 − 94,525 − 2,785 = 2,690
    r = run(member="retired", retired_year=1999, visit="inpatient", level="1", total="100000", self_pay="0",
            class_b="0", ytd_burden="45000")
    assert figures(r) == {"compliant": "100000.00", "deductible": "500.00", "fund": "94525.00",
                          "supplementary": "0.00", "critical_illness": "2785.00", "personal": "2690.00"}


def test_critical_illness_threshold_crossed_by_this_visit():
    # in-service aged 50, outpatient 三级: deductible 1,500 (none met), 60%; raw (12,000 − 1,500) × 0.6
    # = 6,300 → outpatient cap 5,000; no supplementary for outpatient visits
    # burden 12,000 − 5,000 = 7,000 on top of 15,000: [15,000, 22,000], threshold 20,000 →
    # 2,000 × 0.5 = 1,000; personal 12,000 − 5,000 − 1,000 = 6,000
    r = run(member="in_service", age=50, visit="outpatient", level="3", total="12000", self_pay="0",
            class_b="0", ytd_burden="15000")
    assert figures(r) == {"compliant": "12000.00", "deductible": "1500.00", "fund": "5000.00",
                          "supplementary": "0.00", "critical_illness": "1000.00", "personal": "6000.00"}


def test_critical_illness_cap():
    # The 大病 cap (30,000) counts the whole insurance year, like the fund's.
    # in-service aged 30, outpatient 三级, deductible met: raw 70,000 × 0.5 = 35,000 → outpatient cap 5,000
    # burden 70,000 − 5,000 = 65,000 above 100,000 borne earlier.
    # What 大病 paid earlier, worked out from the earlier burden: [20,000, 50,000] × 50% = 15,000 and
    # [50,000, 100,000] × 60% = 30,000 → 45,000, capped at 30,000: the cap is spent, this visit gets 0;
    # personal 70,000 − 5,000 = 65,000
    kw = dict(member="in_service", age=30, visit="outpatient", level="3", total="70000", self_pay="0",
              class_b="0", ytd_deductible="1500", ytd_burden="100000")
    r = run(**kw)
    assert figures(r) == {"compliant": "70000.00", "deductible": "0.00", "fund": "5000.00",
                          "supplementary": "0.00", "critical_illness": "0.00", "personal": "65000.00"}
    assert r.year_after.critical_paid == D(30000)
    # told that it paid 10,000 so far: 20,000 left; this visit's 65,000 × 0.6 = 39,000 → 20,000
    # personal 70,000 − 5,000 − 20,000 = 45,000
    r = run(**kw, ytd_critical="10000")
    assert figures(r) == {"compliant": "70000.00", "deductible": "0.00", "fund": "5000.00",
                          "supplementary": "0.00", "critical_illness": "20000.00", "personal": "45000.00"}
    assert r.year_after.critical_paid == D(30000) and r.exact
    # a second visit of the same year gets nothing more
    again = run(**{**kw, **r.year_after.as_case(), "admission": 1})
    assert again.critical_illness == 0


def test_rounding_is_half_up():
    # calmland outpatient: (1,100.10 − 100) × 0.85 = 850.085 → 850.09 (half-even would give 850.08)
    # personal 1,100.10 − 850.09 = 250.01
    r = run(region="calmland", plan="resident", visit="outpatient", level="1", total="1100.10", self_pay="0")
    assert figures(r) == {"compliant": "1100.10", "deductible": "100.00", "fund": "850.09",
                          "supplementary": "0.00", "critical_illness": "0.00", "personal": "250.01"}
    # calmland inpatient 一级 (no deductible): 100.01 × 0.5 = 50.005 → 50.01; personal 50.00
    r = run(region="calmland", plan="resident", visit="inpatient", level="1", total="100.01", self_pay="0")
    assert (str(r.fund), str(r.personal)) == ("50.01", "50.00")


def test_out_of_area_keeps_the_hospital_level_and_applies_the_factor():
    # in-service, a 三级 hospital out of the area, not filed (plain factor 80% for every kind):
    # deductible 1,000 (三级); ratio 80% × 80% = 64%: (20,000 − 1,000) × 0.64 = 12,160; personal 7,840
    r = run(member="in_service", visit="inpatient", level="3", where="unfiled", total="20000", self_pay="0",
            class_b="0")
    assert figures(r) == {"compliant": "20000.00", "deductible": "1000.00", "fund": "12160.00",
                          "supplementary": "0.00", "critical_illness": "0.00", "personal": "7840.00"}
    assert "out_of_area_ratio" in [s.key for s in r.steps] and r.exact
    # the same stay at a 一级 hospital out of the area: deductible 300; 90% × 80% = 72%:
    # (20,000 − 300) × 0.72 = 14,184; personal 5,816 (the tier is not lost)
    r = run(member="in_service", visit="inpatient", level="1", where="filed", total="20000", self_pay="0",
            class_b="0")
    assert figures(r) == {"compliant": "20000.00", "deductible": "300.00", "fund": "14184.00",
                          "supplementary": "0.00", "critical_illness": "0.00", "personal": "5816.00"}


def test_out_of_area_factor_on_a_flat_ratio():
    # retired by 2000, referred: plain deductible 500, flat 95% × 80% = 76%: 19,500 × 0.76 = 14,820;
    # personal 5,180
    r = run(member="retired", retired_year=2000, visit="inpatient", level="3", where="referral", total="20000",
            self_pay="0", class_b="0")
    assert figures(r) == {"compliant": "20000.00", "deductible": "500.00", "fund": "14820.00",
                          "supplementary": "0.00", "critical_illness": "0.00", "personal": "5180.00"}


def test_out_of_area_factor_on_plain_bands():
    # special outpatient in an emergency out of the area: plain bands (no levels) take the factor too:
    # 5,000 × 60% × 80% = 2,400; personal 2,600. (deductible 0, no cap)
    r = run(member="in_service", visit="special_outpatient", level="2", where="emergency", total="5000",
            self_pay="0", class_b="0")
    assert figures(r) == {"compliant": "5000.00", "deductible": "0.00", "fund": "2400.00",
                          "supplementary": "0.00", "critical_illness": "0.00", "personal": "2600.00"}


def test_second_admission_halves_the_deductible():
    # in-service 二级: 1st admission: deductible 600, (10,000 − 600) × 0.85 = 7,990; personal 2,010
    # 2nd admission: 600 × 0.5 = 300, (10,000 − 300) × 0.85 = 8,245; personal 1,755
    first = run(member="in_service", visit="inpatient", level="2", total="10000", self_pay="0", class_b="0")
    second = run(member="in_service", visit="inpatient", level="2", total="10000", self_pay="0", class_b="0",
                 admission=2)
    assert (str(first.deductible), str(first.fund), str(first.personal)) == ("600.00", "7990.00", "2010.00")
    assert (str(second.deductible), str(second.fund), str(second.personal)) == ("300.00", "8245.00", "1755.00")
    assert "deductible_later" in [s.key for s in second.steps]
    # the per-admission deductible ignores what was met earlier in the year
    again = run(member="in_service", visit="inpatient", level="2", total="10000", self_pay="0", class_b="0",
                admission=2, ytd_deductible="600")
    assert str(again.deductible) == "300.00"


def test_class_b_pay_first():
    # in-service 一级: compliant = 10,000 − 1,000 self-paid − 3,000 × 10% = 8,700
    # deductible 300; (8,700 − 300) × 0.9 = 7,560; personal 10,000 − 7,560 = 2,440
    r = run(member="in_service", visit="inpatient", level="1", total="10000", self_pay="1000", class_b="3000")
    assert figures(r) == {"compliant": "8700.00", "deductible": "300.00", "fund": "7560.00",
                          "supplementary": "0.00", "critical_illness": "0.00", "personal": "2440.00"}


def test_unknown_split_warns_and_takes_the_whole_total_as_compliant():
    # in-service 一级, 5,000, no self-paid or class B amounts: compliant = 5,000
    # (5,000 − 300) × 0.9 = 4,230; personal 770
    r = run(member="in_service", visit="inpatient", level="1", total="5000")
    assert r.compliant == r.total == D(5000)
    assert figures(r)["fund"] == "4230.00" and figures(r)["personal"] == "770.00"
    assert "split_unknown" in keys(r)


def test_seed_only_value_warns_unverified():
    # resident aged 65, inpatient 二级: deductible 400 (seed-only), 70%: (10,000 − 400) × 0.7 = 6,720 below
    # the cap, which is not on record: the point counts it as spent (fund 0, the most the person pays)
    # and the range bounds the fund by 6,720. Warnings: the unknowns with the range first, then unverified.
    r = run(plan="resident", age=65, visit="inpatient", level="2", total="10000")
    assert figures(r)["deductible"] == "400.00" and figures(r)["fund"] == "0.00"
    assert r.ranges["fund"] == (D("0.00"), D("6720.00"))
    assert keys(r)[:2] == ["unknown_range", "unverified"]
    assert "split_unknown" in keys(r)
    assert "Propland 种子文章" in r.warnings[1]("en")
    # a confirmed-only estimate carries no such warning
    assert "unverified" not in keys(run(member="in_service", visit="inpatient", level="1", total="5000"))


def test_cap_change_day_before_and_on_the_date():
    # in-service 三级, fund already paid 95,000; raw (20,000 − 1,000) × 0.8 = 15,200
    # 2024-06-30 (cap 100,000): fund 5,000; the cap is met after 5,000 / 0.8 = 6,250 of the 19,000, so
    #   12,750 is above it → supplementary 80% = 10,200; personal 20,000 − 5,000 − 10,200 = 4,800
    # 2024-07-01 (cap 200,000): fund 15,200; personal 4,800
    kw = dict(member="in_service", visit="inpatient", level="3", total="20000", self_pay="0", class_b="0",
              ytd_fund="95000")
    before = run(date=dt.date(2024, 6, 30), **kw)
    on = run(date=dt.date(2024, 7, 1), **kw)
    assert (str(before.fund), str(before.supplementary), str(before.personal)) == ("5000.00", "10200.00",
                                                                                   "4800.00")
    assert (str(on.fund), str(on.supplementary), str(on.personal)) == ("15200.00", "0.00", "4800.00")
    # the insurance year starts 07-01
    assert before.insurance_year == (dt.date(2023, 7, 1), dt.date(2024, 6, 30))
    assert on.insurance_year == (dt.date(2024, 7, 1), dt.date(2025, 6, 30))


@pytest.mark.parametrize(("kw", "missing"), [
    (dict(member="in_service", visit="outpatient", level="3", total="100"), ["age"]),
    (dict(visit="outpatient", level="3", total="100", age=30), ["member"]),
    (dict(member="retired", visit="inpatient", level="3", total="100"), ["retired_year"]),
    (dict(member="in_service", visit="inpatient", level="3", total="100", self_pay="0",
          date=dt.date(2019, 12, 31)), ["deductible", "ratio"]),
    (dict(member="in_service", visit="outpatient", level="out_of_area", total="100", age=30), ["level"]),
    (dict(region="calmland", plan="employee", visit="outpatient", level="1", total="100"), ["plan"]),
    (dict(region="nowhere", visit="outpatient", level="1", total="100"), ["region"]),
])
def test_cannot_estimate_names_what_is_missing(kw, missing):
    r = run(**kw)
    assert isinstance(r, CannotEstimate)
    assert r.missing == missing


def test_unverified_warning_shows_an_amount_as_money(tmp_path):
    # a seed-only "no deductible" (0) must read as an amount (0.00), not as a ratio (0%)
    text = (POLICY_DIR / "propland.yaml").read_text(encoding="utf-8")
    old = "2020-01-01: {1: 200, 2: 400, 3: 800}"
    assert text.count(old) == 1
    (tmp_path / "propland.yaml").write_text(text.replace(old, "2020-01-01: 0"), encoding="utf-8")
    policies = load_policies(tmp_path)
    case = Case(region="propland", plan="resident", age=65, visit="inpatient", level="2", total=D("100.00"),
                date=dt.date(2024, 9, 1))
    r = estimate(case, policies)
    unverified = next(w for w in r.warnings if w.key == "unverified")
    assert unverified("en").startswith("deductible (0.00)"), unverified("en")
    assert unverified("zh").startswith("起付线（0.00）"), unverified("zh")
