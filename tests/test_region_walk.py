"""Every region a person can pick answers: a walk over every (region, plan, visit, level, member) of the
shipped policies, at a small and a large amount, that fails on any combination that cannot estimate."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from rules.case import CannotEstimate, Case
from rules.engine import default_policies, estimate

DAY = dt.date.today()  # what a person asking today gets


def _cases():
    for region in default_policies():
        for plan in region.plans.values():
            for visit in plan.visits.values():
                for level in visit.levels:
                    for member in plan.members or (None,):
                        for grade in sorted(plan.grades) or (None,):
                            for total in (Decimal(800), Decimal(300000)):
                                yield Case(region=region.id, plan=plan.id, visit=visit.id, level=level, member=member,
                                           grade=grade, age=45, retired_year=2010, total=total, date=DAY)


def test_at_least_330_regions():
    assert len(default_policies().regions) >= 330


def test_every_region_plan_visit_and_level_estimates():
    failing: dict[str, list[str]] = {}
    count = 0
    for case in _cases():
        count += 1
        result = estimate(case)
        if isinstance(result, CannotEstimate):
            failing.setdefault(case.region, []).append(f"{case.plan}/{case.visit}/{case.level}: {result.missing}")
    assert count > 15000
    assert not failing, {r: v[:3] for r, v in failing.items()}
