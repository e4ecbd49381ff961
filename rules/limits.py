"""The yearly limits a case runs into: its deductible, the fund's annual cap, the 大病 threshold.

A person's year overview ("deductible left, cap left, how far to the 大病 threshold") needs these
figures without an estimate: `year_limits(case)` looks them up the way the engine does (the first
matching row, else the visit, else the plan; by-level values at the case's level) on the case's date.
A figure the policy does not state is None, so the overview can say it is unknown.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rules.case import Case
from rules.engine import CONDITIONS
from rules.policy import UNLIMITED, Node, PolicySet, Row, Unlimited, Visit


@dataclass(frozen=True, slots=True)
class YearLimits:
    deductible: Decimal | None
    per_admission: bool  # the deductible is paid on every hospital stay, not once a year
    fund_cap: Decimal | Unlimited | None
    critical_threshold: Decimal | None


def _row(visit: Visit, case: Case) -> Row | None:
    for row in visit.rows:
        if all(getattr(case, CONDITIONS[key][0]) is not None and CONDITIONS[key][1](case, want)
               for key, want in row.when.items()):
            return row
    return None


def year_limits(case: Case, policies: PolicySet) -> YearLimits | None:
    """The limits of `case`'s plan, visit and level on its date; None if the policy has no such visit."""
    region = policies.find(case.region)
    plan = region.plans.get(case.plan) if region else None
    visit = plan.visits.get(case.visit) if plan else None
    if visit is None:
        return None
    row = _row(visit, case) if visit.rows else None
    if visit.rows and row is None:
        return None
    nodes: tuple[Node, ...] = (row, visit, plan) if row else (visit, plan)  # type: ignore[assignment]
    day = case.date or dt.date.today()

    def value(name: str) -> Any:
        for node in nodes:
            series = node.params.get(name)
            if series is not None:
                entry = series.at(day)
                found = entry.value if entry is not None else None
                return found.get(case.level) if isinstance(found, dict) else found
        return None

    def setting(name: str, default: Any) -> Any:
        return next((node.settings[name] for node in nodes if name in node.settings), default)

    cap = value("fund_cap")
    threshold = value("critical_illness_threshold")
    deductible = value("deductible")
    return YearLimits(
        deductible=deductible if isinstance(deductible, Decimal) else None,
        per_admission=setting("deductible_scope", "annual") == "per_admission",
        fund_cap=cap if isinstance(cap, Decimal) or cap is UNLIMITED else None,
        critical_threshold=threshold if isinstance(threshold, Decimal) else None,
    )
