"""Turn an estimate into the reply a person reads on a phone: the two figures that matter first (as a
range, with its reason in one line, when the policy leaves a part unknown), a one-line bar of the
shares, then the warnings, the steps, the policy's date and sources, and what the same case would cost
at the region's other hospital levels."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from conversations.texts import t
from rules.case import CannotEstimate, Estimate
from rules.citations import cite
from rules.messages import money, name

BAR_WIDTH = 10


def share_bar(insurance: Decimal, total: Decimal) -> tuple[str, int, int]:
    """A ten-block text bar of the insurance share, and the two shares in whole percent."""
    share = (insurance / total) if total else Decimal(0)
    blocks = int((share * BAR_WIDTH).quantize(Decimal(1), ROUND_HALF_UP))
    percent = int((share * 100).quantize(Decimal(1), ROUND_HALF_UP))
    return "█" * blocks + "░" * (BAR_WIDTH - blocks), percent, 100 - percent


def _yuan(value: Decimal) -> str:
    """Money in a range: whole yuan without ".00" (11,000–20,288), fen when there are any."""
    return f"{value:,.0f}" if value == value.to_integral_value() else money(value)


def _amount(estimate: Estimate, key: str) -> str:
    """A figure as money, or "low–high" when it is not exact."""
    if key in estimate.ranges:
        low, high = estimate.ranges[key]
        return f"{_yuan(low)}–{_yuan(high)}"
    return money(getattr(estimate, key))


def _parts(estimate: Estimate, lang: str, supplementary_name: str) -> str:
    parts = [t(lang, "result.part_fund", amount=_amount(estimate, "fund"))]
    if estimate.supplementary or "supplementary" in estimate.ranges:
        parts.append(t(lang, "result.part_supplementary", name=supplementary_name,
                       amount=_amount(estimate, "supplementary")))
    if estimate.critical_illness or "critical_illness" in estimate.ranges:
        parts.append(t(lang, "result.part_critical_illness", amount=_amount(estimate, "critical_illness")))
    return "（" + "，".join(parts) + "）" if lang == "zh" else " (" + ", ".join(parts) + ")"


def _headline(estimate: Estimate, lang: str, supplementary_name: str) -> list[str]:
    """What the insurance and the person pay: points when exact, else ranges and the reason."""
    if "personal" not in estimate.ranges:
        return [t(lang, "result.insurance", amount=money(estimate.insurance)) + _parts(estimate, lang,
                                                                                      supplementary_name),
                t(lang, "result.personal", amount=money(estimate.personal))]
    (ins_low, ins_high), (own_low, own_high) = estimate.ranges["insurance"], estimate.ranges["personal"]
    sep = "、" if lang == "zh" else ", "
    names = sep.join(name(n, lang) for n in estimate.unknown)
    return [t(lang, "result.insurance_range", low=_yuan(ins_low), high=_yuan(ins_high))
            + _parts(estimate, lang, supplementary_name),
            t(lang, "result.personal_range", low=_yuan(own_low), high=_yuan(own_high)),
            t(lang, "result.range_reason", names=names)]


def _compared(amount: Decimal | tuple[Decimal, Decimal]) -> str:
    if isinstance(amount, tuple):
        low, high = amount
        return money(low) if low == high else f"{_yuan(low)}–{_yuan(high)}"
    return money(amount)


def estimate_text(estimate: Estimate, context: str, comparisons: list[tuple[str, Decimal | tuple]], lang: str,
                  supplementary_name: str) -> str:
    bar, ins_share, own_share = share_bar(estimate.insurance, estimate.total)
    lines = [context, "", t(lang, "result.total", amount=money(estimate.total)),
             *_headline(estimate, lang, supplementary_name),
             t(lang, "result.bar", bar=bar, insurance_share=ins_share, personal_share=own_share)]
    warnings = [w for w in estimate.warnings if w.key != "unknown_range"]  # the headline says it
    if warnings:
        lines += ["", "⚠️ " + t(lang, "result.warnings")] + [f"• {w(lang)}" for w in warnings]
    lines += ["", t(lang, "result.steps")] + [f"{i}. {s.text(lang)}" for i, s in enumerate(estimate.steps, 1)]
    if comparisons:
        lines += ["", t(lang, "result.compare_title")]
        lines += [t(lang, "result.compare", level=level, amount=_compared(amount)) for level, amount in comparisons]
    start, end = estimate.insurance_year
    lines += ["", t(lang, "result.policy", effective=estimate.effective or "—", year_start=start, year_end=end),
              t(lang, "result.sources")]
    lines += [f"• {cite(s, lang)}" for s in estimate.sources]  # documents as a person can check them
    return "\n".join(lines)


def cannot_text(result: CannotEstimate, lang: str) -> str:
    return t(lang, "result.cannot", reason=result.reason(lang)) + "\n" + t(lang, "result.cannot_next")
