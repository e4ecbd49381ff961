"""The question put to the engine (`Case`) and its answers (`Estimate`, `CannotEstimate`).

Kept free of policy details so that the conversation layer and the command line can build cases and
read results without knowing how policies are stored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

Plan = Literal["employee", "resident"]
Member = Literal["in_service", "retired"]
Visit = Literal["outpatient", "inpatient", "special_outpatient"]
Level = Literal["community", "1", "2", "3", "out_of_area"]

PLANS: tuple[str, ...] = ("employee", "resident")
MEMBERS: tuple[str, ...] = ("in_service", "retired")
VISITS: tuple[str, ...] = ("outpatient", "inpatient", "special_outpatient")
LEVELS: tuple[str, ...] = ("community", "1", "2", "3", "out_of_area")
ZERO = Decimal(0)
FEN = Decimal("0.01")


class InvalidCase(ValueError):
    """The case itself is impossible (a negative amount, parts larger than the total)."""


@dataclass(frozen=True, slots=True)
class Case:
    """One visit or one hospital stay, with what the person already used this insurance year.

    `self_pay` and `class_b` are None when the person does not know them: the engine then treats the
    whole total as compliant and warns that the result is an upper bound of the insurance share.
    """

    region: str
    plan: str
    visit: str
    level: str
    total: Decimal
    member: str | None = None
    grade: int | None = None
    age: int | None = None
    retired_year: int | None = None
    self_pay: Decimal | None = None
    class_b: Decimal | None = None
    date: dt.date | None = None
    ytd_deductible: Decimal = ZERO
    ytd_fund: Decimal = ZERO
    ytd_compliant: Decimal = ZERO
    ytd_burden: Decimal = ZERO
    admission: int = 1

    def __post_init__(self) -> None:
        amounts = {
            "total": self.total,
            "self_pay": self.self_pay,
            "class_b": self.class_b,
            "ytd_deductible": self.ytd_deductible,
            "ytd_fund": self.ytd_fund,
            "ytd_compliant": self.ytd_compliant,
            "ytd_burden": self.ytd_burden,
        }
        for name, value in amounts.items():
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value < 0):
                raise InvalidCase(f"{name} must be a non-negative amount")
        for name, value in amounts.items():
            if value is not None and value != value.quantize(FEN):
                raise InvalidCase(f"{name} has more than two decimals")
        if (self.self_pay or ZERO) + (self.class_b or ZERO) > self.total:
            raise InvalidCase("self_pay + class_b cannot exceed total")
        if self.admission < 1:
            raise InvalidCase("admission must be 1 or more")


@dataclass(frozen=True, slots=True)
class Text:
    """A message in both languages; templates are filled in when the step is made."""

    zh: str
    en: str

    def __call__(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


@dataclass(frozen=True, slots=True)
class Message:
    """A step, warning or reason: a template key from `rules/texts/messages.yaml` and its values.

    Rendered only when shown, in the language asked for, so an estimate costs no formatting.
    """

    key: str
    args: tuple[tuple[str, object], ...] = ()

    def __call__(self, lang: str) -> str:
        from rules.messages import render

        return render(self.key, dict(self.args), lang)


@dataclass(frozen=True, slots=True)
class Used:
    """Where a figure came from: the parameter, the date its value took effect, its source."""

    parameter: str
    effective: dt.date
    source: str
    confidence: str
    quote: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """A document a figure comes from: a notice, a repost, a seed article."""

    id: str
    title: str
    url: str | None = None
    file: str | None = None

    @property
    def where(self) -> str:
        return self.url or self.file or ""


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the calculation: what was computed, the formula with its numbers, the result."""

    key: str
    text: Message
    amount: Decimal
    used: tuple[Used, ...] = ()


@dataclass(slots=True)
class Estimate:
    """What the insurance and the person pay. Shown amounts are rounded half-up to the fen and
    `fund + supplementary + critical_illness + personal == total` holds exactly."""

    case: Case
    region: str
    date: dt.date
    insurance_year: tuple[dt.date, dt.date]
    total: Decimal
    compliant: Decimal
    deductible: Decimal
    fund: Decimal
    supplementary: Decimal
    critical_illness: Decimal
    personal: Decimal
    steps: list[Step] = field(default_factory=list)
    warnings: list[Message] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)

    @property
    def insurance(self) -> Decimal:
        return self.fund + self.supplementary + self.critical_illness

    @property
    def effective(self) -> dt.date | None:
        """The newest effective date among the values used: the policy state this estimate reflects."""
        dates = [u.effective for step in self.steps for u in step.used]
        return max(dates) if dates else None


@dataclass(slots=True)
class CannotEstimate:
    """The policy lacks what the case needs; `missing` names the parameters (or breakdowns)."""

    case: Case
    region: str
    date: dt.date
    missing: list[str]
    reason: Message
