"""Ranges for unknown parameters, the insurance year as a ledger, stale yearly figures.

The properties run on made-up policies written for each example (`_policy` below): every parameter is
either given a value or left out. A range must contain the exact answer of the same policy with the
unknown parameters filled in by any allowed value; a year's visits must give the same year totals in
any order where the policy is additive; insurance and person add up to the total at both ends.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rules.engine as engine
from rules.case import CannotEstimate, Case, Estimate
from rules.engine import estimate
from rules.loader import load_policies
from rules.report import estimate_json

D = Decimal
DAY = dt.date(2025, 5, 1)
# YIBAO_PROPERTY_EXAMPLES=5000 for a long hunt
PROPS = settings(max_examples=int(os.environ.get("YIBAO_PROPERTY_EXAMPLES", "120")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
CRITICAL = ("critical_illness_threshold", "critical_illness_bands", "critical_illness_cap")
FIGURES = ("compliant", "deductible", "fund", "supplementary", "critical_illness", "personal")

HEAD = """region: testland
name: {zh: 测试区, en: Testland}
sources:
  n: {title: 测试通知, url: "https://example.org/n"}
plans:
  employee:
    name: {zh: 职工医保, en: Employee insurance}
    members: [in_service]
"""


def _series(name: str, value: str, indent: str) -> str:
    return (f"{indent}{name}:\n{indent}  source: n\n{indent}  confidence: confirmed\n"
            f"{indent}  values:\n{indent}    2020-01-01: {value}\n")


def _policy(values: dict[str, str], scope: str = "annual") -> str:
    """A one-visit policy with the given parameters (YAML values as text); the others are left out."""
    plan = "".join(_series(k, v, "    ") for k, v in values.items() if k.startswith("critical_"))
    visit = "".join(_series(k, v, "        ") for k, v in values.items() if not k.startswith("critical_"))
    return (HEAD + plan + "    visits:\n      inpatient:\n        levels: [1, 2, 3]\n"
            f"        deductible_scope: {scope}\n" + visit)


def _load(text: str):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "testland.yaml").write_text(text, encoding="utf-8")
        return load_policies(folder)


def _ratio(draw) -> str:
    return str(D(draw(st.integers(0, 100))) / 100)


def _money(draw, high: int) -> str:
    return str(draw(st.integers(0, high // 100)) * 100)


@st.composite
def parameters(draw) -> dict[str, str]:
    """A value for every parameter the engine can leave unknown."""
    flat = draw(st.booleans())
    if flat:
        ratio = _ratio(draw)
    else:  # rising band ratios (the fund pays more of larger costs), all at least the supplementary's
        low = draw(st.integers(0, 100))
        high = D(draw(st.integers(low, 100))) / 100
        ratio = f"[{{above: 0, ratio: {D(low) / 100}}}, {{above: 30000, ratio: {high}}}]"
    cap = draw(st.one_of(st.just("unlimited"), st.integers(1, 3000).map(lambda n: str(n * 100))))
    bands = f"[{{above: 0, ratio: {_ratio(draw)}}}, {{above: 50000, ratio: {_ratio(draw)}}}]"
    values = {
        "deductible": f"{{1: {_money(draw, 2000)}, 2: {_money(draw, 2000)}, 3: {_money(draw, 2000)}}}",
        "later_admission_factor": _ratio(draw),
        "ratio": ratio,
        "fund_cap": cap,
        "class_b_self_ratio": _ratio(draw),
        "out_of_area_factor": f"{{filed: 1.0, referral: {_ratio(draw)}, emergency: {_ratio(draw)}, "
                              f"unfiled: {_ratio(draw)}}}",
        "supplementary_cap": draw(st.one_of(st.just("unlimited"), st.integers(0, 2000).map(lambda n: str(n * 100)))),
        "critical_illness_threshold": _money(draw, 30000),
        "critical_illness_bands": bands,
        "critical_illness_cap": draw(st.one_of(st.just("unlimited"), st.integers(0, 3000).map(lambda n: str(n * 100)))),
    }
    # the supplementary ratio stays at or below the fund's bands: with an unknown fund cap the burden
    # then moves one way as the cap moves (FORMAT.md, "Unknown figures": the one case not bounded exactly)
    fund_low = D(ratio) if flat else D(ratio.split("ratio: ")[1].split("}")[0])
    values["supplementary_ratio"] = str(D(draw(st.integers(0, int(fund_low * 100)))) / 100)
    if not flat:  # out of the area the bands are scaled: keep them all at or above the supplementary's
        values["out_of_area_factor"] = "1.0"
    return values


@st.composite
def cases(draw) -> Case:
    total = D(draw(st.integers(0, 4_000_000))) / 100
    class_b = D(draw(st.integers(0, int(total * 100)))) / 100
    return Case(region="testland", plan="employee", member="in_service", visit="inpatient",
                level=draw(st.sampled_from(("1", "2", "3"))), total=total, self_pay=D(0), class_b=class_b,
                date=DAY, where=draw(st.sampled_from(("local", "filed", "referral", "emergency", "unfiled"))),
                admission=draw(st.integers(1, 3)),
                ytd_deductible=D(draw(st.integers(0, 3000))), ytd_fund=D(draw(st.integers(0, 300_000))),
                ytd_burden=D(draw(st.integers(0, 100_000))),
                ytd_supplementary=draw(st.one_of(st.none(), st.integers(0, 100_000).map(D))),
                ytd_critical=draw(st.one_of(st.none(), st.integers(0, 100_000).map(D))))


def check_ends(result: Estimate) -> None:
    """Insurance and person add up to the total at both ends; nothing negative; points inside."""
    total = result.total
    own = result.ranges.get("personal", (result.personal, result.personal))
    ins = result.ranges.get("insurance", (result.insurance, result.insurance))
    assert ins[0] + own[1] == total == ins[1] + own[0]
    assert own[1] == result.personal  # the point is the most the person pays
    for key, (low, high) in result.ranges.items():
        assert D(0) <= low < high, key
    for key in FIGURES:
        low, high = result.ranges.get(key, (getattr(result, key),) * 2)
        assert low <= getattr(result, key) <= high


@PROPS
@given(parameters(), st.data(), cases(), st.sampled_from(("annual", "per_admission")))
def test_every_range_contains_the_answer_for_any_value_of_the_unknowns(values, data, case, scope):
    names = sorted(values)
    unknown = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True), label="unknown")
    if {"deductible", "ratio"} <= set(unknown):
        unknown.remove("ratio")  # both unknown is a refusal, tested below
    if all(name in unknown for name in CRITICAL):
        unknown.remove("critical_illness_cap")  # none of the three: 大病 is not encoded (FORMAT.md)
    partial = estimate(case, _load(_policy({k: v for k, v in values.items() if k not in unknown}, scope)))
    full = estimate(case, _load(_policy(values, scope)))
    assert isinstance(partial, Estimate) and isinstance(full, Estimate)
    check_ends(partial)
    check_ends(full)
    inputs = {"ytd_supplementary", "ytd_critical"}  # what a layer paid earlier, when the case does not say
    assert set(full.unknown) <= inputs
    assert set(partial.unknown) <= set(unknown) | inputs
    # each part is rounded to the fen on its own, so a part may sit a fen outside its range; the
    # person's share (and so the insurance's) is rounded once and never does
    for key in (*FIGURES, "insurance"):
        point = full.insurance if key == "insurance" else getattr(full, key)
        low, high = full.ranges.get(key, (point, point))
        p_point = partial.insurance if key == "insurance" else getattr(partial, key)
        p_low, p_high = partial.ranges.get(key, (p_point, p_point))
        fen = D(0) if key in ("personal", "insurance") else D("0.01")
        assert p_low - fen <= low and high <= p_high + fen, (key, p_low, low, high, p_high, unknown)


def test_deductible_and_ratio_both_unknown_is_a_refusal():
    policies = _load(_policy({"fund_cap": "unlimited"}))
    case = Case(region="testland", plan="employee", member="in_service", visit="inpatient", level="2",
                total=D(1000), self_pay=D(0), date=DAY)
    result = estimate(case, policies)
    assert isinstance(result, CannotEstimate) and result.missing == ["deductible", "ratio"]


def test_more_information_never_gives_less_answer():
    # 乙类 given while its pay-first share is unknown: a range, not a refusal. Deductible 1,000, 80%, no cap:
    # compliant 10,000 − 4,000 × (0 … 100%) = 6,000 … 10,000; fund (6,000 − 1,000) × 80% = 4,000 …
    # (10,000 − 1,000) × 80% = 7,200; the person pays 2,800 … 6,000.
    policies = _load(_policy({"deductible": "1000", "ratio": "0.8", "fund_cap": "unlimited",
                              "critical_illness_threshold": "1000000", "critical_illness_cap": "unlimited",
                              "critical_illness_bands": "[{above: 0, ratio: 0.5}]"}))
    base = dict(region="testland", plan="employee", member="in_service", visit="inpatient", level="2",
                total=D(10000), self_pay=D(0), date=DAY)
    without = estimate(Case(**base), policies)
    with_b = estimate(Case(**base, class_b=D(4000)), policies)
    assert without.exact and (without.fund, without.personal) == (D("7200.00"), D("2800.00"))
    assert with_b.unknown == ["class_b_self_ratio"]
    assert with_b.ranges["fund"] == (D("4000.00"), D("7200.00"))
    assert with_b.ranges["personal"] == (D("2800.00"), D("6000.00"))
    assert with_b.personal == D("6000.00")


# -- the ledger --------------------------------------------------------------------------------------

LEDGER = {  # additive: annual deductible, flat ratio, caps and 大病 over the year
    "deductible": "{1: 500, 2: 1000, 3: 1500}", "ratio": "0.8", "fund_cap": "100000",
    "supplementary_ratio": "0.5", "supplementary_cap": "40000", "critical_illness_threshold": "20000",
    "critical_illness_bands": "[{above: 0, ratio: 0.5}, {above: 60000, ratio: 0.6}]",
    "critical_illness_cap": "50000",
}
LEDGER_POLICIES = _load(_policy(LEDGER))


def _year(totals: list[int], level: str = "2"):
    """Visit after visit, each starting from the year the one before returned."""
    carried: dict = {}
    paid = {key: D(0) for key in FIGURES}
    for total in totals:
        case = Case(region="testland", plan="employee", member="in_service", visit="inpatient", level=level,
                    total=D(total), self_pay=D(0), date=DAY, **carried)
        result = estimate(case, LEDGER_POLICIES)
        assert isinstance(result, Estimate) and result.exact, result
        for key in FIGURES:
            paid[key] += getattr(result, key)
        carried = result.year_after.as_case()
    return result.year_after, paid


@PROPS
@given(st.lists(st.integers(0, 300).map(lambda n: n * 1000), min_size=2, max_size=4), st.randoms())
def test_a_years_visits_give_the_same_year_totals_in_any_order(totals, rnd):
    shuffled = list(totals)
    rnd.shuffle(shuffled)
    first, paid_first = _year(totals)
    for order in (shuffled, list(reversed(totals))):
        again, paid_again = _year(order)
        assert (again.deductible_met, again.fund_paid, again.supplementary_paid, again.critical_paid,
                again.compliant, again.burden) == (first.deductible_met, first.fund_paid,
                                                   first.supplementary_paid, first.critical_paid,
                                                   first.compliant, first.burden)
        assert paid_again == paid_first
    assert first.fund_paid <= 100000 and first.supplementary_paid <= 40000 and first.critical_paid <= 50000


def test_every_annual_cap_holds_over_the_year_not_per_visit():
    # Three stays of 300,000 at 二级 (deductible 1,000 once a year, 80%, cap 100,000; 50% above it up to
    # 40,000; 大病 over 20,000 of the year's burden, 50% to 60,000 and 60% above, cap 50,000).
    # 1st: fund 100,000 (reached after 125,000 of the 299,000 above the deductible); above the cap
    #      174,000 × 50% = 87,000 → 40,000; burden 300,000 − 140,000 = 160,000: 大病 (20,000…60,000)
    #      × 50% = 20,000 + (60,000…160,000) × 60% = 60,000 → 80,000 → cap 50,000. Person 110,000.
    # 2nd and 3rd: every cap spent: the person pays the whole 300,000.
    year, paid = _year([300000, 300000, 300000])
    assert (paid["fund"], paid["supplementary"], paid["critical_illness"]) == (D(100000), D(40000), D(50000))
    assert paid["personal"] == D(110000) + 2 * D(300000)
    assert (year.fund_paid, year.supplementary_paid, year.critical_paid) == (D(100000), D(40000), D(50000))
    assert year.admissions == 3 and year.deductible_met == D(1000)


def test_year_after_in_the_json_is_the_next_visits_input():
    case = Case(region="testland", plan="employee", member="in_service", visit="inpatient", level="2",
                total=D(50000), self_pay=D(0), date=DAY, admission=2)
    data = estimate_json(estimate(case, LEDGER_POLICIES))
    # (50,000 − 1,000) × 80% = 39,200; burden 10,800 < 20,000
    assert data["year_after"] == {"deductible_met": "1000.00", "fund_paid": "39200.00",
                                  "supplementary_paid": "0.00", "critical_paid": "0.00",
                                  "compliant": "50000.00", "burden": "10800.00", "admissions": 2}


def test_what_supplementary_paid_is_derived_only_while_the_cap_had_room():
    base = dict(region="testland", plan="employee", member="in_service", visit="inpatient", level="2",
                total=D(20000), self_pay=D(0), date=DAY, ytd_deductible=D(1000))
    # the cap had room: nothing can have been paid above it; 20,000 × 80% = 16,000 > 10,000 left →
    # 10,000, reached after 12,500; 7,500 above × 50% = 3,750
    room = estimate(Case(**base, ytd_fund=D(90000)), LEDGER_POLICIES)
    assert room.exact and room.supplementary == D("3750.00")
    # the cap was spent before: what the supplementary fund paid is unknown (0 … its 40,000)
    spent = estimate(Case(**base, ytd_fund=D(100000)), LEDGER_POLICIES)
    assert spent.unknown == ["ytd_supplementary"]
    assert spent.ranges["supplementary"] == (D("0.00"), D("10000.00"))


# -- stale yearly figures ------------------------------------------------------------------------------


@pytest.mark.parametrize(("day", "year"), [(dt.date(2025, 6, 30), None), (dt.date(2025, 7, 1), "2025"),
                                           (dt.date(2026, 8, 1), "2026")])
def test_a_yearly_figure_past_its_year_is_used_flagged_and_weaker(day, year):
    # 上海's fund cap is `yearly`, last known for the insurance year from 2024-07-01
    case = Case(region="shanghai", plan="employee", member="in_service", visit="inpatient", level="3",
                total=D(20000), self_pay=D(0), date=day)
    result = estimate(case)
    cap = next(u for s in result.steps for u in s.used if u.parameter == "fund_cap")
    data = estimate_json(result)
    if year is None:
        assert result.stale == [] and cap.confidence == "confirmed" and not cap.stale
        assert data["stale"] == []
        return
    assert data["stale"] == [{"parameter": "fund_cap", "last_known": "2024-07-01"}]
    assert cap.confidence == "secondary" and cap.stale
    assert f"{year} 年度数据尚未收录，按 2024 年度估算" in data["warnings"][0]
    assert result.fund == D("15725.00")  # still estimated with the last known figures


def test_yearly_must_be_true_or_false(tmp_path):
    text = _policy({"deductible": "0", "ratio": "0.5"}).replace(
        "        ratio:\n          source: n\n", "        ratio:\n          yearly: sometimes\n          source: n\n")
    (tmp_path / "testland.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(Exception) as failed:
        load_policies(tmp_path)
    assert "ratio.yearly: expected true or false" in str(failed.value)


# -- where the care happens ------------------------------------------------------------------------------


def test_an_out_of_area_kind_missing_from_the_mapping_gives_a_range():
    values = {"deductible": "{1: 0, 2: 0, 3: 0}", "ratio": "0.9", "fund_cap": "unlimited",
              "out_of_area_factor": "{filed: 1.0, emergency: 0.9}", "critical_illness_threshold": "1000000",
              "critical_illness_bands": "[{above: 0, ratio: 0.5}]", "critical_illness_cap": "unlimited"}
    policies = _load(_policy(values))
    base = dict(region="testland", plan="employee", member="in_service", visit="inpatient", level="3",
                total=D(10000), self_pay=D(0), date=DAY)
    results = {where: estimate(Case(**base, where=where), policies)
               for where in ("local", "filed", "emergency", "unfiled")}
    assert [results[w].fund for w in ("local", "filed", "emergency")] == [D("9000.00"), D("9000.00"),
                                                                          D("8100.00")]
    assert results["unfiled"].unknown == ["out_of_area_factor"]
    assert results["unfiled"].ranges["fund"] == (D("0.00"), D("9000.00"))


def test_the_loader_rejects_the_old_out_of_area_level_with_a_hint(tmp_path):
    text = _policy({"deductible": "0", "ratio": "0.5"}).replace("levels: [1, 2, 3]", "levels: [1, 2, out_of_area]")
    (tmp_path / "testland.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(Exception) as failed:
        load_policies(tmp_path)
    assert "'out_of_area' is no longer a level" in str(failed.value)


def test_corners_are_few_for_few_unknowns(monkeypatch):
    # luoyang: two unknowns (大病 bands and cap) → the point and three more corners at most
    calls = []
    original = engine.compute

    def counting(ctx):
        calls.append(ctx.highs)
        return original(ctx)

    monkeypatch.setattr(engine, "compute", counting)
    result = estimate(Case(region="luoyang", plan="employee", member="in_service", visit="inpatient",
                           level="2", total=D(50000), date=dt.date(2025, 6, 1)))
    assert result.ranges["personal"] == (D("11000.00"), D("20288.00"))
    assert len(calls) == len(set(calls)) <= 4 and calls[0] == frozenset()
