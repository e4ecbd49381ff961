"""Turn an estimate into the reply a person reads on a phone: the two figures that matter first, a
one-line bar of the shares, then the steps, the policy's date and sources, the warnings, and what the
same case would cost at the region's other hospital levels."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from conversations.texts import t
from rules.case import CannotEstimate, Estimate
from rules.citations import cite
from rules.messages import money

BAR_WIDTH = 10


def share_bar(insurance: Decimal, total: Decimal) -> tuple[str, int, int]:
    """A ten-block text bar of the insurance share, and the two shares in whole percent."""
    share = (insurance / total) if total else Decimal(0)
    blocks = int((share * BAR_WIDTH).quantize(Decimal(1), ROUND_HALF_UP))
    percent = int((share * 100).quantize(Decimal(1), ROUND_HALF_UP))
    return "█" * blocks + "░" * (BAR_WIDTH - blocks), percent, 100 - percent


def _parts(estimate: Estimate, lang: str, supplementary_name: str) -> str:
    parts = [t(lang, "result.part_fund", amount=money(estimate.fund))]
    if estimate.supplementary:
        parts.append(t(lang, "result.part_supplementary", name=supplementary_name,
                       amount=money(estimate.supplementary)))
    if estimate.critical_illness:
        parts.append(t(lang, "result.part_critical_illness", amount=money(estimate.critical_illness)))
    return "（" + "，".join(parts) + "）" if lang == "zh" else " (" + ", ".join(parts) + ")"


def estimate_text(estimate: Estimate, context: str, comparisons: list[tuple[str, Decimal]], lang: str,
                  supplementary_name: str) -> str:
    bar, ins_share, own_share = share_bar(estimate.insurance, estimate.total)
    lines = [
        context,
        "",
        t(lang, "result.total", amount=money(estimate.total)),
        t(lang, "result.insurance", amount=money(estimate.insurance)) + _parts(estimate, lang, supplementary_name),
        t(lang, "result.personal", amount=money(estimate.personal)),
        t(lang, "result.bar", bar=bar, insurance_share=ins_share, personal_share=own_share),
    ]
    if estimate.warnings:
        lines += ["", "⚠️ " + t(lang, "result.warnings")] + [f"• {w(lang)}" for w in estimate.warnings]
    lines += ["", t(lang, "result.steps")] + [f"{i}. {s.text(lang)}" for i, s in enumerate(estimate.steps, 1)]
    if comparisons:
        lines += ["", t(lang, "result.compare_title")]
        lines += [t(lang, "result.compare", level=level, amount=money(amount)) for level, amount in comparisons]
    start, end = estimate.insurance_year
    lines += ["", t(lang, "result.policy", effective=estimate.effective or "—", year_start=start, year_end=end),
              t(lang, "result.sources")]
    lines += [f"• {cite(s, lang)}" for s in estimate.sources]  # documents as a person can check them
    return "\n".join(lines)


def cannot_text(result: CannotEstimate, lang: str) -> str:
    return t(lang, "result.cannot", reason=result.reason(lang)) + "\n" + t(lang, "result.cannot_next")
