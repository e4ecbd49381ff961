"""estimate(case) → Estimate | CannotEstimate: what the funds and the person pay for one visit or stay.

Follows the reference semantics of `shared/policy-facts.md`, one function per quantity:
compliant cost → deductible → fund (flat or marginal bands, then the annual cap) → supplementary fund
above the cap → critical-illness insurance on the remaining burden → personal share. Every figure is
kept at full precision and rounded half-up to the fen only in the result; every step records the
parameter, its effective date and its source. Pure and synchronous: no I/O after the policies load.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import cache

from rules.case import FEN, ZERO, CannotEstimate, Case, Estimate, Message, Source, Step, Used
from rules.loader import load_policies
from rules.messages import money
from rules.policy import UNLIMITED, Band, Entry, Plan, PolicySet, Region, Row, Visit
from rules.report import show_value

ONE = Decimal(1)


def fen(value: Decimal) -> Decimal:
    return value.quantize(FEN, ROUND_HALF_UP)


class _Missing(Exception):
    """The policy lacks what the case needs: becomes a `CannotEstimate`, never escapes."""

    def __init__(self, missing: list[str], reason: str = "cannot_estimate"):
        self.missing = missing
        self.reason = reason


@dataclass(slots=True)
class _Context:
    """The case's place in one region's policy, and what the estimate has recorded so far."""

    case: Case
    region: Region
    plan: Plan
    visit: Visit
    row: Row | None
    day: dt.date
    steps: list[Step] = field(default_factory=list)
    warnings: list[Message] = field(default_factory=list)
    notices: list[Message] = field(default_factory=list)
    sources: dict[str, Source] = field(default_factory=dict)

    def _nodes(self) -> tuple:
        return (self.row, self.visit, self.plan) if self.row else (self.visit, self.plan)

    def entry(self, name: str, required: bool = True) -> Entry | None:
        """The value in force on the day of service, from the row, else the visit, else the plan."""
        for node in self._nodes():
            series = node.params.get(name)
            if series is not None:
                found = series.at(self.day)
                break
        else:
            found = None
        if found is None:
            if required:
                raise _Missing([name])
            return None
        if found.source not in self.sources:
            self.sources[found.source] = self.region.sources[found.source]
        if found.confidence == "seed-only":
            self._unverified(name, found)
        return found

    def setting(self, name: str, default=None):
        for node in self._nodes():
            if name in node.settings:
                return node.settings[name]
        return default

    def _unverified(self, name: str, entry: Entry) -> None:
        source = self.region.sources[entry.source].title
        value = show_value(entry.value, name)
        message = Message("unverified", (("parameter", [name]), ("value", value), ("source", source)))
        if message not in self.warnings:
            self.warnings.append(message)

    def used(self, name: str, entry: Entry) -> Used:
        return Used(name, entry.start, entry.source, entry.confidence, entry.quote)

    def step(self, key: str, amount: Decimal, used: tuple[Used, ...] = (), **args) -> None:
        self.steps.append(Step(key, Message(key, (*tuple(args.items()), ("amount", amount))), amount, used))

    def warn(self, key: str, **args) -> None:
        message = Message(key, tuple(args.items()))
        if message not in self.notices:
            self.notices.append(message)

    def at_level(self, name: str, value):
        """A by-level value at the case's level; out of area falls back to the reference level."""
        if not isinstance(value, dict):
            return value
        level = self.case.level
        if level in value:
            return value[level]
        if level == "out_of_area":
            base = self.setting("out_of_area_base_level")
            if base is None:
                raise _Missing(["out_of_area_base_level"])
            if base in value:
                return value[base]
        raise _Missing([name])


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
            raise _Missing(sorted(unknown))
        if applies:
            return row
    raise _Missing(["rule"], "no_row")


def _locate(case: Case, policies: PolicySet) -> tuple[Region, Plan, Visit]:
    region = policies.find(case.region)
    if region is None:
        raise _Missing(["region"], "unknown_region")
    plan = region.plans.get(case.plan)
    if plan is None:
        raise _Missing(["plan"])
    visit = plan.visits.get(case.visit)
    if visit is None:
        raise _Missing(["visit"])
    if case.level not in visit.levels:
        raise _Missing(["level"])
    return region, plan, visit


# -- the quantities --------------------------------------------------------------------------


def _compliant(ctx: _Context) -> Decimal:
    case = ctx.case
    total, self_pay, class_b = case.total, case.self_pay or ZERO, case.class_b or ZERO
    if case.self_pay is None and case.class_b is None:
        ctx.warn("split_unknown")
        ctx.step("compliant_unknown", total)
        return total
    b_entry = ctx.entry("class_b_self_ratio", required=class_b > 0)
    if b_entry is None:
        amount = max(ZERO, total - self_pay)
        ctx.step("compliant_no_class_b", amount, total=total, self_pay=self_pay)
        return amount
    if case.class_b is None:
        ctx.warn("class_b_unknown", class_b_ratio=b_entry.value)
    amount = max(ZERO, total - self_pay - class_b * b_entry.value)
    ctx.step("compliant", amount, (ctx.used("class_b_self_ratio", b_entry),), total=total,
             self_pay=self_pay, class_b=class_b, class_b_ratio=b_entry.value)
    return amount


def _deductible(ctx: _Context, compliant: Decimal) -> Decimal:
    """The part of the deductible this visit pays: never more than the compliant cost."""
    case = ctx.case
    entry = ctx.entry("deductible")
    if case.level == "out_of_area" and isinstance(entry.value, dict) and "out_of_area" not in entry.value:
        ctx.warn("out_of_area_deductible", base_level=ctx.setting("out_of_area_base_level"))
    full = ctx.at_level("deductible", entry.value)
    used = [ctx.used("deductible", entry)]
    if ctx.setting("deductible_scope", "annual") == "per_admission":
        met = ZERO
        if case.admission > 1 and full > 0:
            factor = ctx.entry("later_admission_factor", required=False)
            if factor is None:
                ctx.warn("later_admission_unknown")
            else:
                base, full = full, full * factor.value
                used.append(ctx.used("later_admission_factor", factor))
                ctx.step("deductible_later", full, tuple(used), admission=case.admission, base=base,
                         factor=factor.value)
    else:
        met = case.ytd_deductible
    due = min(compliant, max(ZERO, full - met))
    ctx.step("deductible", due, tuple(used), deductible=full, met=met)
    return due


@dataclass(frozen=True, slots=True)
class _Piece:
    """A slice of the compliant cost above the deductible, paid at one ratio."""

    amount: Decimal
    ratio: Decimal
    low: Decimal | None = None
    high: Decimal | None = None


def _ratio_factor(ctx: _Context, value) -> tuple[Decimal, tuple[Used, ...]]:
    """1, or the out-of-area factor when the policy gives no ratio for out-of-area visits itself."""
    if ctx.case.level != "out_of_area":
        return ONE, ()
    has_own = isinstance(value, dict) and "out_of_area" in value
    if isinstance(value, tuple):
        has_own = all(isinstance(b.ratio, dict) and "out_of_area" in b.ratio for b in value)
    if has_own:
        return ONE, ()
    entry = ctx.entry("out_of_area_factor")
    ctx.warn("out_of_area", factor=entry.value)
    return entry.value, (ctx.used("out_of_area_factor", entry),)


def _pieces(ctx: _Context, compliant: Decimal, deductible: Decimal) -> tuple[list[_Piece], tuple[Used, ...]]:
    entry = ctx.entry("ratio")
    factor, factor_used = _ratio_factor(ctx, entry.value)
    used = (ctx.used("ratio", entry), *factor_used)
    if not isinstance(entry.value, tuple):
        ratio = ctx.at_level("ratio", entry.value)
        if factor != ONE:
            ctx.step("out_of_area_ratio", ratio * factor, used, base_level=ctx.setting("out_of_area_base_level"),
                     base_ratio=ratio, factor=factor, ratio=ratio * factor)
        return [_Piece(compliant - deductible, ratio * factor)], used
    offset = ZERO
    if ctx.setting("bands_over", "admission") == "year":
        offset = ctx.case.ytd_compliant
        if offset == 0:
            ctx.warn("ytd_compliant_assumed")
    return _band_pieces(ctx, entry.value, offset + deductible, offset + compliant, factor), used


def _band_pieces(ctx: _Context, bands: tuple[Band, ...], start: Decimal, end: Decimal,
                 factor: Decimal = ONE) -> list[_Piece]:
    """The parts of [start, end] inside each band, each with the band's ratio (times `factor`)."""
    pieces = []
    for i, band in enumerate(bands):
        high = bands[i + 1].above if i + 1 < len(bands) else None
        low = max(start, band.above)
        top = end if high is None else min(end, high)
        if top > low:
            ratio = ctx.at_level("ratio", band.ratio) * factor
            pieces.append(_Piece(top - low, ratio, band.above, high))
    return pieces


def _fund(ctx: _Context, compliant: Decimal, deductible: Decimal) -> tuple[Decimal, Decimal]:
    """The fund's payment after its annual cap, and the compliant cost left above the cap."""
    pieces, used = _pieces(ctx, compliant, deductible)
    raw = ZERO
    for piece in pieces:
        pay = piece.amount * piece.ratio
        raw += pay
        if piece.low is None:
            ctx.step("fund_flat", pay, used, compliant=compliant, deductible=deductible, ratio=piece.ratio)
        else:
            high = "∞" if piece.high is None else money(piece.high)
            ctx.step("fund_band", pay, used, low=money(piece.low), high=high, part=piece.amount,
                     ratio=piece.ratio)
    cap_entry = ctx.entry("fund_cap", required=False)
    if cap_entry is None:
        ctx.warn("cap_unknown")
        return raw, ZERO
    cap = ctx.at_level("fund_cap", cap_entry.value)
    cap_used = (ctx.used("fund_cap", cap_entry),)
    if cap is UNLIMITED:
        ctx.step("fund_cap_unlimited", raw, cap_used)
        return raw, ZERO
    left = max(ZERO, cap - ctx.case.ytd_fund)
    fund = min(raw, left)
    ctx.step("fund_cap", fund, cap_used, cap=cap, ytd=ctx.case.ytd_fund, left=left)
    return fund, _above_cap(pieces, left) if raw > left else ZERO


def _above_cap(pieces: list[_Piece], left: Decimal) -> Decimal:
    """The compliant cost left once the fund's running payment meets the cap, band by band."""
    over = ZERO
    for piece in pieces:
        if piece.ratio == 0:
            continue  # not covered by the fund at all, so not "above its cap" either
        pay = piece.amount * piece.ratio
        if left > 0 and pay <= left:
            left -= pay
            continue
        covered = left / piece.ratio if left > 0 else ZERO
        over += piece.amount - covered
        left = ZERO
    return over


def _supplementary(ctx: _Context, over: Decimal) -> Decimal:
    if over <= 0:
        return ZERO
    ctx.step("over_cap", over)
    entry = ctx.entry("supplementary_ratio", required=False)
    if entry is None:
        return ZERO
    label = ctx.setting("supplementary_name")
    name = (label.zh, label.en) if label else ("补充基金", "supplementary fund")
    paid = over * entry.value
    ctx.step("supplementary", paid, (ctx.used("supplementary_ratio", entry),), name=name, over=over,
             ratio=entry.value)
    cap_entry = ctx.entry("supplementary_cap", required=False)
    if cap_entry is None:
        ctx.warn("supplementary_cap_unknown", name=name)
    elif cap_entry.value is not UNLIMITED and paid > cap_entry.value:
        paid = cap_entry.value
        ctx.step("supplementary_capped", paid, (ctx.used("supplementary_cap", cap_entry),), name=name,
                 cap=cap_entry.value)
    return paid


def _critical_illness(ctx: _Context, compliant: Decimal, fund: Decimal, supplementary: Decimal) -> Decimal:
    threshold = ctx.entry("critical_illness_threshold", required=False)
    if threshold is None:
        return ZERO
    burden = max(ZERO, compliant - fund - supplementary)
    ytd = ctx.case.ytd_burden
    ctx.step("burden", burden, compliant=compliant, fund=fund, supplementary=supplementary, ytd=ytd)
    if ytd + burden <= threshold.value:
        return ZERO  # below the threshold the bands do not matter (and may be unknown)
    bands = ctx.entry("critical_illness_bands")
    used = (ctx.used("critical_illness_threshold", threshold), ctx.used("critical_illness_bands", bands))
    paid = ZERO
    start = max(ytd, threshold.value)
    for piece in _band_pieces(ctx, bands.value, start, ytd + burden):
        pay = piece.amount * piece.ratio
        paid += pay
        high = "∞" if piece.high is None else money(piece.high)
        ctx.step("critical_band", pay, used, low=money(max(piece.low, threshold.value)), high=high,
                 threshold=threshold.value, part=piece.amount, ratio=piece.ratio)
    cap = ctx.entry("critical_illness_cap", required=False)
    if paid and cap is not None and cap.value is not UNLIMITED and paid > cap.value:
        paid = cap.value
        ctx.step("critical_capped", paid, (ctx.used("critical_illness_cap", cap),), cap=cap.value)
    return paid


def _shown(total: Decimal, parts: list[Decimal]) -> list[Decimal]:
    """Each part rounded half-up to the fen; if rounding pushed their sum past the total (by a fen
    or two), the last parts give the difference back, so the person's share is never negative."""
    shown = [fen(p) for p in parts]
    excess = sum(shown) - total
    for i in reversed(range(len(shown))):
        if excess <= 0:
            break
        take = min(excess, shown[i])
        shown[i] -= take
        excess -= take
    return shown


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
        ctx = _Context(case, region, plan, visit, _choose_row(visit, case), day)
        return _compute(ctx)
    except _Missing as missing:
        found = policies.find(case.region)
        name = (found.name.zh, found.name.en) if found else (case.region, case.region)
        return CannotEstimate(case, found.id if found else case.region, day, missing.missing,
                              Message(missing.reason, (("region", name), ("missing", missing.missing))))


def _compute(ctx: _Context) -> Estimate:
    case = ctx.case
    compliant = _compliant(ctx)
    deductible = _deductible(ctx, compliant)
    fund, over = _fund(ctx, compliant, deductible)
    supplementary = _supplementary(ctx, over)
    critical = _critical_illness(ctx, compliant, fund, supplementary)
    fund_s, supp_s, crit_s = _shown(case.total, [fund, supplementary, critical])
    personal = case.total - fund_s - supp_s - crit_s
    ctx.step("personal", personal, total=case.total, fund=fund_s, supplementary=supp_s,
             critical_illness=crit_s)
    for node in (ctx.plan, ctx.visit, ctx.row):
        for text in (node.settings.get("assumptions", ()) if node else ()):
            ctx.warn("assumption", text=(text.zh, text.en))
    return Estimate(
        case=case,
        region=ctx.region.id,
        date=ctx.day,
        insurance_year=ctx.region.insurance_year(ctx.day),
        total=case.total,
        compliant=fen(compliant),
        deductible=fen(deductible),
        fund=fund_s,
        supplementary=supp_s,
        critical_illness=crit_s,
        personal=personal,
        steps=ctx.steps,
        warnings=ctx.warnings + ctx.notices,
        sources=list(ctx.sources.values()),
    )


# -- what a case needs -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Needs:
    """Which answers a case needs under its policy, so a dialogue asks only those.

    `details` are person details that pick the rule (age, retired_year) still unknown; the flags say
    whether the policy uses each optional input for this plan, visit and level on that date.
    """

    details: tuple[str, ...] = ()
    class_b: bool = False
    ytd_deductible: bool = False
    admission: bool = False
    ytd_fund: bool = False
    ytd_compliant: bool = False
    ytd_burden: bool = False


def needs(case: Case, policies: PolicySet | None = None) -> Needs:
    """What else `case` should say: its `total` and amounts are ignored (give 0)."""
    policies = policies or default_policies()
    day = case.date or dt.date.today()
    try:
        region, plan, visit = _locate(case, policies)
        row = _choose_row(visit, case)
    except _Missing as missing:
        return Needs(details=tuple(m for m in missing.missing if m in ("age", "retired_year", "member", "grade")))
    ctx = _Context(case, region, plan, visit, row, day)

    def has(name: str) -> bool:
        return any(name in node.params and node.params[name].at(day) is not None for node in ctx._nodes())

    cap = ctx.entry("fund_cap", required=False) if has("fund_cap") else None
    capped = cap is not None and ctx.at_level("fund_cap", cap.value) is not UNLIMITED
    per_admission = ctx.setting("deductible_scope", "annual") == "per_admission"
    return Needs(
        class_b=has("class_b_self_ratio"),
        ytd_deductible=has("deductible") and not per_admission,
        admission=per_admission and has("later_admission_factor"),
        ytd_fund=capped,
        ytd_compliant=ctx.setting("bands_over", "admission") == "year",
        ytd_burden=has("critical_illness_threshold"),
    )
