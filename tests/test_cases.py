"""Policy cases as data (tests/cases/*.yaml): input → expected figures, worked out by hand.

Each case names its region's shipped policy (or `policy_dir` for the small test-only policies of
the corrected seed examples) and the figures the reference semantics give; `why` shows the arithmetic.
A case whose policy leaves a parameter unknown also expects `unknown` (the parameters' names) and
`ranges` (low and high of every figure that is not exact, as in the JSON); a case without them expects
an exact estimate. `year_after` expects the year's totals after the visit.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from rules.case import CannotEstimate, Case
from rules.engine import estimate
from rules.loader import load_policies

ROOT = Path(__file__).resolve().parent.parent
CASES = sorted((ROOT / "tests" / "cases").glob("*.yaml"))
AMOUNTS = {"total", "self_pay", "class_b", "ytd_deductible", "ytd_fund", "ytd_compliant", "ytd_burden",
           "ytd_supplementary", "ytd_critical"}
SPECIAL = ("unknown", "ranges", "year_after", "stale")


def _load_cases():
    for file in CASES:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        policy_dir = None
        if isinstance(data, dict):
            policy_dir, data = data.get("policy_dir"), data["cases"]
        for case in data:
            yield pytest.param(case, policy_dir, id=f"{file.stem}: {case['name']}")


_policy_sets: dict[str | None, object] = {}


def _policies(policy_dir: str | None):
    if policy_dir not in _policy_sets:
        _policy_sets[policy_dir] = load_policies(ROOT / policy_dir if policy_dir else None)
    return _policy_sets[policy_dir]


def _case(raw: dict) -> Case:
    values = dict(raw)
    for key in AMOUNTS & values.keys():
        values[key] = Decimal(str(values[key]))
    if "level" in values:
        values["level"] = str(values["level"])
    if isinstance(values.get("date"), str):
        values["date"] = dt.date.fromisoformat(values["date"])
    return Case(**values)


@pytest.mark.parametrize(("case", "policy_dir"), list(_load_cases()))
def test_case(case: dict, policy_dir: str | None) -> None:
    result = estimate(_case(case["input"]), _policies(case.get("policy_dir", policy_dir)))
    expected = case["expected"]
    if expected.get("error") == "cannot_estimate":
        assert isinstance(result, CannotEstimate), f"expected cannot_estimate, got {result}"
        assert result.missing == expected["missing"]
        return
    assert not isinstance(result, CannotEstimate), f"cannot estimate: missing {result.missing}"
    points = {k: v for k, v in expected.items() if k not in SPECIAL}
    got = {key: f"{getattr(result, key):.2f}" for key in points}
    assert got == {k: str(v) for k, v in points.items()}, case.get("why")
    assert result.fund + result.supplementary + result.critical_illness + result.personal == result.total
    assert result.unknown == expected.get("unknown", []), case.get("why")
    ranges = {k: [f"{lo:.2f}", f"{hi:.2f}"] for k, (lo, hi) in result.ranges.items()
              if not k.startswith("year_after.")}
    assert ranges == {k: [str(x) for x in v] for k, v in expected.get("ranges", {}).items()}, case.get("why")
    for key, value in expected.get("year_after", {}).items():
        assert str(getattr(result.year_after, key)) == str(value), (key, case.get("why"))
    assert [s.parameter for s in result.stale] == expected.get("stale", []), case.get("why")
