"""The layers of one estimate run, one function per quantity, in the order they are paid:
compliant cost → deductible → fund (flat or marginal bands, then its annual cap) → supplementary fund
above the cap (its own annual cap) → critical-illness insurance on the year's personal burden (its own
annual cap) → the person's share.

Every annual limit counts the whole insurance year: the case says what each layer already paid, and
the run returns the year's totals after this visit (`YearTotals`), the next visit's starting point.
Figures stay at full precision until `Outcome` rounds them half-up to the fen.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from rules.above_fund import critical_illness, supplementary, supplementary_name
from rules.bands import Piece, band_pieces
from rules.case import FEN, ZERO, YearTotals
from rules.context import ONE, SPENT, WHOLE, Context
from rules.policy import UNLIMITED


def fen(value: Decimal) -> Decimal:
    return value.quantize(FEN, ROUND_HALF_UP)


@dataclass(slots=True)
class Outcome:
    """One run's figures, rounded to the fen, and the run that made them."""

    compliant: Decimal
    deductible: Decimal
    fund: Decimal
    supplementary: Decimal
    critical_illness: Decimal
    personal: Decimal
    year_after: YearTotals
    ctx: Context

    @property
    def insurance(self) -> Decimal:
        return self.fund + self.supplementary + self.critical_illness


def compute(ctx: Context) -> Outcome:
    case = ctx.case
    compliant = _compliant(ctx)
    first = _current_year_account(ctx, compliant)
    deductible = _deductible(ctx, compliant - first)
    fund, over, room_before = _fund(ctx, compliant - first, deductible)
    supplementary_paid, ytd_supp = supplementary(ctx, over, room_before)
    critical, ytd_crit, burden = critical_illness(ctx, compliant, fund, supplementary_paid)
    fund_s, supp_s, crit_s = _shown(case.total, [fund, supplementary_paid, critical])
    personal = case.total - fund_s - supp_s - crit_s
    if ctx.record:
        ctx.step("personal", personal, total=case.total, fund=fund_s, supplementary=supp_s,
                 name=supplementary_name(ctx), critical_illness=crit_s)
        for node in (ctx.plan, ctx.visit, ctx.row):
            for text in (node.settings.get("assumptions", ()) if node else ()):
                ctx.warn("assumption", text=(text.zh, text.en))
    compliant_s, deductible_s = fen(compliant), fen(deductible)
    year = YearTotals(
        deductible_met=case.ytd_deductible + deductible_s,
        fund_paid=case.ytd_fund + fund_s,
        supplementary_paid=ytd_supp + supp_s,
        critical_paid=ytd_crit + crit_s,
        compliant=case.ytd_compliant + compliant_s,
        burden=case.ytd_burden + max(ZERO, fen(burden)),
        admissions=case.admission if case.visit == "inpatient" else case.admission - 1,
    )
    return Outcome(compliant_s, deductible_s, fund_s, supp_s, crit_s, personal, year, ctx)


def _compliant(ctx: Context) -> Decimal:
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
    ctx.step("compliant", amount, ctx.used("class_b_self_ratio", b_entry), total=total,
             self_pay=self_pay, class_b=class_b, class_b_ratio=b_entry.value)
    return amount


def _current_year_account(ctx: Context, compliant: Decimal) -> Decimal:
    """What this year's account credit pays before the deductible, where the visit spends it first
    (上海 门急诊: it does not count toward the 自负段, so the deductible and the fund start after it)."""
    if not ctx.setting("current_year_account_first", False):
        return ZERO
    balance = ctx.case.current_year_account
    if balance is None:
        ctx.warn("current_year_account_assumed")
        return ZERO
    first = min(balance, compliant)
    ctx.step("current_year_account", first, balance=balance, rest=compliant - first)
    return first


def _deductible(ctx: Context, compliant: Decimal) -> Decimal:
    """The part of the deductible this visit pays: never more than the compliant cost."""
    case = ctx.case
    entry = ctx.entry("deductible")
    full = ctx.at_level("deductible", entry.value)
    used = ctx.used("deductible", entry)
    per_admission = ctx.setting("deductible_scope", "annual") == "per_admission"
    met = ZERO if per_admission else case.ytd_deductible
    if full is WHOLE:
        full = met + compliant
    elif per_admission and case.admission > 1 and full > 0:
        factor = ctx.entry("later_admission_factor")
        base, full = full, full * factor.value
        used += ctx.used("later_admission_factor", factor)
        ctx.step("deductible_later", full, used, admission=case.admission, base=base, factor=factor.value)
    due = min(compliant, max(ZERO, full - met))
    ctx.step("deductible", due, used, deductible=full, met=met)
    return due


def _where_factor(ctx: Context) -> tuple[Decimal, tuple]:
    """1 at home; out of the area, the policy's factor for the kind of stay (the tier still applies)."""
    kind = ctx.case.where
    if kind == "local":
        return ONE, ()
    entry = ctx.entry("out_of_area_factor")
    value = entry.value
    if isinstance(value, dict):
        value = value[kind] if kind in value else ctx.extreme("out_of_area_factor")
    return value, ctx.used("out_of_area_factor", entry)


def _pieces(ctx: Context, compliant: Decimal, deductible: Decimal) -> tuple[list[Piece], tuple]:
    entry = ctx.entry("ratio")
    factor, factor_used = _where_factor(ctx)
    used = ctx.used("ratio", entry) + factor_used
    if factor != ONE:
        ctx.step("out_of_area_ratio", factor, used, where=ctx.case.where, level=ctx.case.level, factor=factor)
    if not isinstance(entry.value, tuple):
        ratio = ctx.at_level("ratio", entry.value)
        return [Piece(compliant - deductible, ratio * factor)], used
    offset = ZERO
    if ctx.setting("bands_over", "admission") == "year":
        offset = ctx.case.ytd_compliant
        if offset == 0:
            ctx.warn("ytd_compliant_assumed")
    return band_pieces(ctx, entry.value, offset + deductible, offset + compliant, factor), used


def _fund(ctx: Context, compliant: Decimal, deductible: Decimal) -> tuple[Decimal, Decimal, bool]:
    """The fund's payment after its annual cap, the compliant cost left above the cap, and whether the
    cap had room before this visit."""
    pieces, used = _pieces(ctx, compliant, deductible)
    raw = ZERO
    for piece in pieces:
        pay = piece.amount * piece.ratio
        raw += pay
        if piece.low is None:
            ctx.step("fund_flat", pay, used, compliant=compliant, deductible=deductible, ratio=piece.ratio)
        else:
            ctx.step("fund_band", pay, used, low=piece.low, high=piece.high, part=piece.amount,
                     ratio=piece.ratio)
    cap_entry = ctx.entry("fund_cap")
    cap = ctx.at_level("fund_cap", cap_entry.value)
    cap_used = ctx.used("fund_cap", cap_entry)
    if cap is UNLIMITED:
        ctx.step("fund_cap_unlimited", raw, cap_used)
        return raw, ZERO, True
    ytd = ctx.case.ytd_fund
    left = ZERO if cap is SPENT else max(ZERO, cap - ytd)
    fund = min(raw, left)
    if cap is SPENT:
        ctx.step("fund_cap_unknown", fund, ytd=ytd)
    else:
        ctx.step("fund_cap", fund, cap_used, cap=cap, ytd=ytd, left=left)
    return fund, _above_cap(pieces, left) if raw > left else ZERO, left > 0


def _above_cap(pieces: list[Piece], left: Decimal) -> Decimal:
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


def _shown(total: Decimal, parts: list[Decimal]) -> list[Decimal]:
    """Each part rounded half-up to the fen, then nudged by a fen where needed so that they add up to
    their rounded sum (never more than the total). The person's share, total minus that sum, then
    moves with the exact figures (a part rounded up and another rounded down cannot make it jump)."""
    target = min(total, fen(sum(parts, ZERO)))
    shown = [fen(p) for p in parts]
    excess = sum(shown, ZERO) - target
    if not excess:
        return shown  # the usual case: the rounded parts already add up
    for i in reversed(range(len(shown))):
        if excess <= 0:
            break
        take = min(excess, shown[i])
        shown[i] -= take
        excess -= take
    if excess < 0:
        i = max(range(len(shown)), key=lambda k: parts[k] - shown[k])  # the part rounded down the most
        shown[i] -= excess
    return shown
