"""What pays after the fund: the supplementary fund on the cost above the fund's cap (附加基金, 大额互助),
then critical-illness insurance (大病保险) on the year's personal burden. Each has its own annual cap,
counted over the insurance year against what it already paid (given, or worked out where the policy
allows, else unknown).
"""

from __future__ import annotations

from decimal import Decimal

from rules.bands import band_pieces
from rules.case import ZERO
from rules.context import SPENT, WHOLE, Context
from rules.policy import UNLIMITED, Band


def supplementary_name(ctx: Context) -> tuple[str, str]:
    """The region's own name for the fund above the cap (附加基金, 大额互助), else a plain one."""
    label = ctx.setting("supplementary_name")
    return (label.zh, label.en) if label else ("补充基金", "supplementary fund")


def supplementary(ctx: Context, over: Decimal, room_before: bool) -> tuple[Decimal, Decimal]:
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


def critical_illness(ctx: Context, compliant: Decimal, fund: Decimal,
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
