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
Level = Literal["community", "1", "2", "3", "3a"]
Where = Literal["local", "filed", "referral", "emergency", "unfiled"]

PLANS: tuple[str, ...] = ("employee", "resident")
MEMBERS: tuple[str, ...] = ("in_service", "retired")
VISITS: tuple[str, ...] = ("outpatient", "inpatient", "special_outpatient")
LEVELS: tuple[str, ...] = ("community", "1", "2", "3", "3a")  # 3a: 三级甲等 where it differs from 3
# Where the care happens: at home, or out of the insured area as a filed long-term stay (异地长期居住/工作备案),
# a referral (转诊), an emergency (急诊抢救) or a temporary stay not filed (临时外出未备案).
WHERE: tuple[str, ...] = ("local", "filed", "referral", "emergency", "unfiled")
OUT_OF_AREA_KINDS: tuple[str, ...] = WHERE[1:]
MAX_AMOUNT = Decimal(100_000_000)  # no plausible bill or year's total is larger: anything above is a typo
ZERO = Decimal(0)
FEN = Decimal("0.01")


class InvalidCase(ValueError):
    """The case itself is impossible (a negative amount, parts larger than the total)."""


@dataclass(frozen=True, slots=True)
class Case:
    """One visit or one hospital stay, with what the person already used this insurance year.

    `self_pay` and `class_b` are None when the person does not know them: the engine then treats the
    whole total as compliant and warns that the result is an upper bound of the insurance share.
    The `ytd_*` amounts are what each layer already counted this insurance year (an estimate's
    `year_after` gives them for the next visit); `ytd_supplementary` and `ytd_critical` are None when
    not given, and the engine derives them where the policy allows (see rules/FORMAT.md).
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
    where: str = "local"
    ytd_supplementary: Decimal | None = None
    ytd_critical: Decimal | None = None
    current_year_account: Decimal | None = None  # 当年账户 balance, where a visit spends it first (上海 门急诊)

    def __post_init__(self) -> None:
        amounts = {
            "total": self.total,
            "self_pay": self.self_pay,
            "class_b": self.class_b,
            "ytd_deductible": self.ytd_deductible,
            "ytd_fund": self.ytd_fund,
            "ytd_compliant": self.ytd_compliant,
            "ytd_burden": self.ytd_burden,
            "ytd_supplementary": self.ytd_supplementary,
            "ytd_critical": self.ytd_critical,
            "current_year_account": self.current_year_account,
        }
        for name, value in amounts.items():
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value < 0):
                raise InvalidCase(f"{name} must be a non-negative amount")
            if value is not None and value > MAX_AMOUNT:
                raise InvalidCase(f"{name} is beyond any plausible bill (at most {MAX_AMOUNT:,})")
        for name, value in amounts.items():
            if value is not None and value != value.quantize(FEN):
                raise InvalidCase(f"{name} has more than two decimals")
        if (self.self_pay or ZERO) + (self.class_b or ZERO) > self.total:
            raise InvalidCase("self_pay + class_b cannot exceed total")
        if self.admission < 1 or self.admission > 1000:
            raise InvalidCase("admission must be a whole number from 1 to 1000")
        if self.where not in WHERE:
            raise InvalidCase(f"where must be one of: {', '.join(WHERE)}")


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
    stale: bool = False  # a yearly figure used past its own insurance year (confidence already lowered)


@dataclass(frozen=True, slots=True)
class Source:
    """A document a figure comes from: a notice, a repost, a seed article.

    The optional fields describe an official document as its header reads: 文号 (`doc_no`), issuing
    bodies, publish and effective dates, and the clause the figures were taken from (`quote`). A source
    with neither issuer nor 文号 is web material (an article, a repost of unknown origin); `file` is
    where maintainers keep a copy, never shown to users."""

    id: str
    title: str
    url: str | None = None
    file: str | None = None
    doc_no: str | None = None
    issuer: tuple[str, ...] = ()
    published: dt.date | None = None
    effective: dt.date | None = None
    quote: str | None = None

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


@dataclass(frozen=True, slots=True)
class YearTotals:
    """What each layer has counted in the insurance year once this visit is included: the next visit's
    `ytd_*` inputs (`admissions` is the number of hospital admissions so far, so the next stay is
    `admissions + 1`)."""

    deductible_met: Decimal
    fund_paid: Decimal
    supplementary_paid: Decimal
    critical_paid: Decimal
    compliant: Decimal
    burden: Decimal
    admissions: int

    def as_case(self) -> dict[str, object]:
        """The keyword arguments of the next visit's `Case` that carry the year so far."""
        return {"ytd_deductible": self.deductible_met, "ytd_fund": self.fund_paid,
                "ytd_supplementary": self.supplementary_paid, "ytd_critical": self.critical_paid,
                "ytd_compliant": self.compliant, "ytd_burden": self.burden, "admission": self.admissions + 1}


@dataclass(frozen=True, slots=True)
class Stale:
    """A yearly figure used past the end of the insurance year it was published for."""

    parameter: str
    last_known: dt.date
    known_year: int  # the insurance year (by its first day's year) the figure belongs to
    year: int  # the insurance year of the service date


@dataclass(slots=True)
class Estimate:
    """What the insurance and the person pay. Shown amounts are rounded half-up to the fen and
    `fund + supplementary + critical_illness + personal == total` holds exactly.

    When a parameter is unknown (`unknown` names it), the point figures count every unknown part as
    paying nothing, so `personal` is the most the person pays; `ranges` gives the lowest and highest
    value of every figure that is not exact (keys as the fields, and `insurance`, and
    `year_after.<field>`), each end an allowed value of the unknowns, and `exact` is False."""

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
    year_after: YearTotals | None = None
    unknown: list[str] = field(default_factory=list)
    ranges: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    stale: list[Stale] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Whether every figure is certain (an unknown parameter may not matter for this case)."""
        return not self.ranges

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
    """Nothing useful can be said: the region, plan, visit type or level is not in the policy, no rule
    applies to this person, or the case lacks a person detail that picks the rule (`missing` names it;
    the reason key `needs_detail` tells a missing detail of the case from a gap in the policy)."""

    case: Case
    region: str
    date: dt.date
    missing: list[str]
    reason: Message
