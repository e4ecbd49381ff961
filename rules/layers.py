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

from rules.case import FEN, ZERO, YearTotals
from rules.context import ONE, SPENT, WHOLE, Context
from rules.policy import UNLIMITED, Band


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
    supplementary, ytd_supp = _supplementary(ctx, over, room_before)
    critical, ytd_crit, burden = _critical_illness(ctx, compliant, fund, supplementary)
    fund_s, supp_s, crit_s = _shown(case.total, [fund, supplementary, critical])
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


def supplementary_name(ctx: Context) -> tuple[str, str]:
    """The region's own name for the fund above the cap (附加基金, 大额互助), else a plain one."""
    label = ctx.setting("supplementary_name")
    return (label.zh, label.en) if label else ("补充基金", "supplementary fund")


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


@dataclass(frozen=True, slots=True)
class _Piece:
    """A slice of the compliant cost above the deductible, paid at one ratio; `low`–`high` is the slice
    actually paid (None for a flat ratio)."""

    amount: Decimal
    ratio: Decimal
    low: Decimal | None = None
    high: Decimal | None = None


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


def _pieces(ctx: Context, compliant: Decimal, deductible: Decimal) -> tuple[list[_Piece], tuple]:
    entry = ctx.entry("ratio")
    factor, factor_used = _where_factor(ctx)
    used = ctx.used("ratio", entry) + factor_used
    if factor != ONE:
        ctx.step("out_of_area_ratio", factor, used, where=ctx.case.where, level=ctx.case.level, factor=factor)
    if not isinstance(entry.value, tuple):
        ratio = ctx.at_level("ratio", entry.value)
        return [_Piece(compliant - deductible, ratio * factor)], used
    offset = ZERO
    if ctx.setting("bands_over", "admission") == "year":
        offset = ctx.case.ytd_compliant
        if offset == 0:
            ctx.warn("ytd_compliant_assumed")
    return band_pieces(ctx, entry.value, offset + deductible, offset + compliant, factor), used


def band_pieces(ctx: Context, bands: tuple[Band, ...], start: Decimal, end: Decimal,
                factor: Decimal = ONE, name: str = "ratio") -> list[_Piece]:
    """The parts of [start, end] inside each band, each with the band's ratio (times `factor`)."""
    pieces = []
    for i, band in enumerate(bands):
        high = bands[i + 1].above if i + 1 < len(bands) else None
        low = max(start, band.above)
        top = end if high is None else min(end, high)
        if top > low:
            pieces.append(_Piece(top - low, ctx.at_level(name, band.ratio) * factor, low, top))
    return pieces


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


def _supplementary(ctx: Context, over: Decimal, room_before: bool) -> tuple[Decimal, Decimal]:
    """What the fund above the cap pays, and what it had paid this year before this visit."""
    given = ctx.case.ytd_supplementary
    if over <= 0:
        return ZERO, given or ZERO
    name = supplementary_name(ctx)
    ctx.step("over_cap", over)
    entry = ctx.entry("supplementary_ratio")
    paid = over * entry.value
    ctx.step("supplementary", paid, ctx.used("supplementary_ratio", entry), name=name, over=over,
             ratio=entry.value)
    if paid <= 0:
        return ZERO, given or ZERO
    cap_entry = ctx.entry("supplementary_cap")
    cap = cap_entry.value
    if cap is UNLIMITED:
        return paid, given or ZERO
    if cap is SPENT:
        ctx.step("supplementary_cap_unknown", ZERO, name=name)
        return ZERO, given or ZERO
    ytd = given
    if ytd is None:  # nothing can have been paid above a cap that still had room before this visit
        ytd = ZERO if room_before else ctx.extreme("ytd_supplementary")
        ytd = cap if ytd is SPENT else ytd
    left = max(ZERO, cap - ytd)
    if paid > left:
        paid = left
        ctx.step("supplementary_capped", paid, ctx.used("supplementary_cap", cap_entry), name=name, cap=cap,
                 ytd=ytd)
    return paid, ytd


def _critical_illness(ctx: Context, compliant: Decimal, fund: Decimal,
                      supplementary: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """What critical-illness insurance pays on the year's burden, what it had paid before, the burden."""
    case = ctx.case
    burden = max(ZERO, compliant - fund - supplementary)
    ytd = case.ytd_burden
    threshold = ctx.entry("critical_illness_threshold", required=False)
    if threshold is None:
        if not (ctx.has("critical_illness_bands") or ctx.has("critical_illness_cap")):
            if burden > 0 and case.visit != "outpatient":
                ctx.warn("critical_illness_absent")
            return ZERO, case.ytd_critical or ZERO, burden
        threshold = ctx.entry("critical_illness_threshold")  # the layer exists, its threshold is unknown
    ctx.step("burden", burden, compliant=compliant, fund=fund, supplementary=supplementary, ytd=ytd)
    start = threshold.value
    if start is WHOLE or ytd + burden <= start:
        return ZERO, case.ytd_critical or ZERO, burden  # below the threshold the bands do not matter
    bands = ctx.entry("critical_illness_bands")
    used = ctx.used("critical_illness_threshold", threshold) + ctx.used("critical_illness_bands", bands)
    paid = ZERO
    for piece in band_pieces(ctx, bands.value, max(ytd, start), ytd + burden, name="critical_illness_bands"):
        pay = piece.amount * piece.ratio
        paid += pay
        ctx.step("critical_band", pay, used, low=piece.low, high=piece.high, threshold=start,
                 part=piece.amount, ratio=piece.ratio)
    if paid <= 0:
        return ZERO, case.ytd_critical or ZERO, burden
    cap_entry = ctx.entry("critical_illness_cap")
    cap = cap_entry.value
    if cap is UNLIMITED:
        return paid, case.ytd_critical or ZERO, burden
    if cap is SPENT:
        ctx.step("critical_cap_unknown", ZERO)
        return ZERO, case.ytd_critical or ZERO, burden
    before = _critical_before(ctx, start, bands.value, cap, bool(threshold.source and bands.source))
    left = max(ZERO, cap - before)
    if paid > left:
        paid = left
        ctx.step("critical_capped", paid, ctx.used("critical_illness_cap", cap_entry), cap=cap, ytd=before)
    return paid, before, burden


def _critical_before(ctx: Context, threshold: Decimal, bands: tuple[Band, ...], cap: Decimal,
                     known: bool) -> Decimal:
    """What critical-illness insurance paid earlier this year: as given, else worked out from the
    earlier burden when the threshold and bands are known, else unknown (nothing to everything left)."""
    given = ctx.case.ytd_critical
    if given is not None:
        return given
    earlier = ctx.case.ytd_burden
    if earlier <= threshold:
        return ZERO
    if known:
        pieces = band_pieces(ctx, bands, threshold, earlier, name="critical_illness_bands")
        return min(cap, sum((p.amount * p.ratio for p in pieces), ZERO))
    value = ctx.extreme("ytd_critical")
    return cap if value is SPENT else value


def _shown(total: Decimal, parts: list[Decimal]) -> list[Decimal]:
    """Each part rounded half-up to the fen, then nudged by a fen where needed so that they add up to
    their rounded sum (never more than the total). The person's share, total minus that sum, then
    moves with the exact figures (a part rounded up and another rounded down cannot make it jump)."""
    target = min(total, fen(sum(parts, ZERO)))
    shown = [fen(p) for p in parts]
    excess = sum(shown, ZERO) - target
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
