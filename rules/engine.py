"""estimate(case) → Estimate | CannotEstimate: what the funds and the person pay for one visit or stay.

Follows the reference semantics of `shared/policy-facts.md`; the layers themselves are computed in
`rules.layers`, one run at a time (`rules.context`). This module picks the rule, and when the policy
leaves a parameter unknown it runs every corner of the unknowns' extremes (insurance pays least / most)
and reports the range of each figure instead of refusing: each figure is monotone in each parameter, so
the corners bound every value the unknowns could take. The point figures are the corner where every
unknown pays least (the most the person pays). Pure and synchronous: no I/O after the policies load.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from itertools import combinations

from rules.above_fund import supplementary_name
from rules.case import CannotEstimate, Case, Estimate, Message
from rules.context import Context, Missing
from rules.layers import Outcome, compute
from rules.loader import load_policies
from rules.policy import UNLIMITED, Plan, PolicySet, Region, Row, Visit

FUND_RULE = ("deductible", "ratio")  # with both unknown nothing useful can be said: a refusal
PERSON_DETAILS = ("member", "grade", "age", "retired_year")
MAX_UNKNOWN = 10  # 2**10 corner runs at most; no policy leaves that many parameters of one case unknown
FIGURES = ("compliant", "deductible", "fund", "supplementary", "critical_illness", "personal", "insurance")
YEAR_FIGURES = ("deductible_met", "fund_paid", "supplementary_paid", "critical_paid", "compliant", "burden")


# -- choosing the rule ---------------------------------------------------------------------

CONDITIONS = {
    "member": ("member", lambda case, want: case.member == want),
    "grade": ("grade", lambda case, want: case.grade == want),
    "age_min": ("age", lambda case, want: case.age >= want),
    "age_max": ("age", lambda case, want: case.age <= want),
    "retired_from": ("retired_year", lambda case, want: case.retired_year >= want),
    "retired_until": ("retired_year", lambda case, want: case.retired_year <= want),
}


def _row_verdict(row: Row, case: Case) -> tuple[bool, set[str]]:
    """Whether the row applies, and which details of the person were needed but not given."""
    unknown: set[str] = set()
    for key, want in row.when.items():
        attr, test = CONDITIONS[key]
        if getattr(case, attr) is None:
            unknown.add(attr)
        elif not test(case, want):
            return False, set()
    return not unknown, unknown


def _choose_row(visit: Visit, case: Case) -> Row | None:
    if not visit.rows:
        return None
    for row in visit.rows:
        applies, unknown = _row_verdict(row, case)
        if unknown:
            raise Missing(sorted(unknown), "needs_detail")
        if applies:
            return row
    raise Missing(["rule"], "no_row")


def _locate(case: Case, policies: PolicySet) -> tuple[Region, Plan, Visit]:
    region = policies.find(case.region)
    if region is None:
        raise Missing(["region"], "unknown_region")
    plan = region.plans.get(case.plan)
    if plan is None:
        raise Missing(["plan"])
    visit = plan.visits.get(case.visit)
    if visit is None:
        raise Missing(["visit"])
    if case.level not in visit.levels:
        raise Missing(["level"])
    return region, plan, visit


# -- the entry point --------------------------------------------------------------------------


@cache
def default_policies() -> PolicySet:
    """The policy set of $YIBAO_POLICY_DIR or the shipped folder, loaded once per process."""
    return load_policies()


def estimate(case: Case, policies: PolicySet | None = None) -> Estimate | CannotEstimate:
    """What the insurance and the person pay for `case` under the policy in force on its date."""
    policies = policies or default_policies()
    day = case.date or dt.date.today()
    try:
        region, plan, visit = _locate(case, policies)
        row = _choose_row(visit, case)
    except Missing as missing:
        found = policies.find(case.region)
        name = (found.name.zh, found.name.en) if found else (case.region, case.region)
        return CannotEstimate(case, found.id if found else case.region, day, missing.missing,
                              Message(missing.reason, (("region", name), ("missing", missing.missing))))
    point = compute(Context(case, region, plan, visit, row, day))
    if set(FUND_RULE) <= set(point.ctx.unknown):
        # neither the deductible nor the ratio: the fund could pay anything from 0 to all, say so plainly
        return CannotEstimate(case, region.id, day, list(FUND_RULE),
                              Message("cannot_estimate", (("region", (region.name.zh, region.name.en)),
                                                          ("missing", list(FUND_RULE)))))
    corners = _explore(point, lambda highs: compute(Context(case, region, plan, visit, row, day, highs,
                                                            record=False)))
    worst = max(corners, key=lambda c: (c.personal, -len(c.ctx.highs)))
    if worst.personal > point.personal:
        # an unknown fund cap below a supplementary fund that pays a larger share than the fund: the
        # person pays most with the cap not reached. The point is always the most the person pays.
        point = compute(Context(case, region, plan, visit, row, day, worst.ctx.highs))
    return _result(point, corners)


def _explore(point: Outcome, run) -> list[Outcome]:
    """The point run and every corner of the unknowns found (a corner may reveal another unknown:
    the supplementary ratio matters only once the fund's cap is reached)."""
    names = list(point.ctx.unknown)
    done = {frozenset(): point}
    grew = bool(names)
    while grew:
        grew = False
        for size in range(1, len(names) + 1):
            for highs in map(frozenset, combinations(names, size)):
                if highs in done:
                    continue
                done[highs] = outcome = run(highs)
                for name in outcome.ctx.unknown:
                    if name not in names and len(names) < MAX_UNKNOWN:
                        names.append(name)
                        grew = True
    return list(done.values())


def _ranges(corners: list[Outcome]) -> dict[str, tuple[Decimal, Decimal]]:
    """The lowest and highest value of every figure that differs between the corners."""
    ranges: dict[str, tuple[Decimal, Decimal]] = {}
    for key in FIGURES:
        values = [getattr(c, key) for c in corners]
        if min(values) != max(values):
            ranges[key] = (min(values), max(values))
    for key in YEAR_FIGURES:
        values = [getattr(c.year_after, key) for c in corners]
        if min(values) != max(values):
            ranges[f"year_after.{key}"] = (min(values), max(values))
    return ranges


def _result(point: Outcome, corners: list[Outcome]) -> Estimate:
    ctx = point.ctx
    unknown = list(dict.fromkeys(name for c in corners for name in c.ctx.unknown))
    ranges = _ranges(corners) if len(corners) > 1 else {}
    warnings = ctx.warnings + ctx.notices
    if unknown:
        low, high = ranges.get("personal", (point.personal, point.personal))
        key = "unknown_range" if "personal" in ranges else "unknown_no_effect"
        warnings.insert(0, Message(key, (("parameter", unknown), ("low", low), ("high", high),
                                         ("name", supplementary_name(ctx)))))
    stale = list(ctx.stale.values())
    for year, known in dict.fromkeys((s.year, s.known_year) for s in stale):
        names = [s.parameter for s in stale if (s.year, s.known_year) == (year, known)]
        warnings.insert(0, Message("stale", (("year", str(year)), ("known", str(known)), ("parameter", names))))
    case = ctx.case
    return Estimate(
        case=case, region=ctx.region.id, date=ctx.day, insurance_year=ctx.region.insurance_year(ctx.day),
        total=case.total, compliant=point.compliant, deductible=point.deductible, fund=point.fund,
        supplementary=point.supplementary, critical_illness=point.critical_illness, personal=point.personal,
        steps=ctx.steps, warnings=warnings, sources=list(ctx.sources.values()), year_after=point.year_after,
        unknown=unknown, ranges=ranges, stale=stale,
    )


# -- what a case needs -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Needs:
    """Which answers a case needs under its policy, so a dialogue asks only those.

    `details` are person details that pick the rule (age, retired_year) still unknown; the flags say
    whether the policy uses each optional input for this plan, visit and level on that date; `where`
    whether the policy tells the kinds of out-of-area care apart (so the dialogue asks where).
    """

    details: tuple[str, ...] = ()
    class_b: bool = False
    ytd_deductible: bool = False
    admission: bool = False
    ytd_fund: bool = False
    ytd_compliant: bool = False
    ytd_burden: bool = False
    where: bool = False
    current_year_account: bool = False


def needs(case: Case, policies: PolicySet | None = None) -> Needs:
    """What else `case` should say: its `total` and amounts are ignored (give 0)."""
    policies = policies or default_policies()
    day = case.date or dt.date.today()
    try:
        region, plan, visit = _locate(case, policies)
        row = _choose_row(visit, case)
    except Missing as missing:
        return Needs(details=tuple(m for m in missing.missing if m in PERSON_DETAILS))
    ctx = Context(case, region, plan, visit, row, day)
    has = ctx.has
    kinds = ctx.entry("out_of_area_factor", required=False)

    cap = ctx.entry("fund_cap", required=False)
    capped = cap is not None and ctx.at_level("fund_cap", cap.value) not in (UNLIMITED, ctx.extreme("fund_cap"))
    per_admission = ctx.setting("deductible_scope", "annual") == "per_admission"
    return Needs(
        class_b=has("class_b_self_ratio"),
        ytd_deductible=has("deductible") and not per_admission,
        admission=per_admission and has("later_admission_factor"),
        ytd_fund=capped,
        ytd_compliant=ctx.setting("bands_over", "admission") == "year",
        ytd_burden=has("critical_illness_threshold"),
        where=kinds is not None and isinstance(kinds.value, dict),
        current_year_account=bool(ctx.setting("current_year_account_first", False)),
    )
