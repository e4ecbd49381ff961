"""Turn an estimate into what a person reads on a phone: a card first, the details on request.

The card: what the estimate is for (region · plan · visit · hospital, the total), the two figures that
matter (医保支付 and 个人支付, or their ranges with the reason in one line when the policy leaves a part
unknown), a one-line bar of the shares, one line on what the figures rest on (the weakest confidence
among them and the policy's date), and a line for each figure carried past its own year.

The details (`Rendered.details`, folded by each platform its own way): how the insurance share is made
up, the other notes, the steps with a badge where a step's figures are less (or more) certain than the
card's line says, the other hospital levels, and the documents cited as a person can check them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from conversations.texts import t
from rules.case import CannotEstimate, Estimate, Step
from rules.citations import cite, is_document
from rules.messages import money, name

BAR_WIDTH = 10
CONFIDENCE = ("confirmed", "secondary", "third-party", "seed-only")  # strongest first
ON_THE_CARD = ("stale",)  # warnings the card shows itself; "unknown_range" is the range's reason line


@dataclass(frozen=True, slots=True)
class Rendered:
    card: str
    details: str


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
    return t(lang, "result.parts", parts=("，" if lang == "zh" else ", ").join(parts))


def _headline(estimate: Estimate, lang: str) -> list[str]:
    """What the insurance and the person pay: points when exact, else ranges and the reason."""
    if "personal" not in estimate.ranges:
        return [t(lang, "result.insurance", amount=money(estimate.insurance)),
                t(lang, "result.personal", amount=money(estimate.personal))]
    (ins_low, ins_high), (own_low, own_high) = estimate.ranges["insurance"], estimate.ranges["personal"]
    return [t(lang, "result.insurance_range", low=_yuan(ins_low), high=_yuan(ins_high)),
            t(lang, "result.personal_range", low=_yuan(own_low), high=_yuan(own_high))]


def _weakest(levels) -> str | None:
    found = set(levels)
    return next((c for c in reversed(CONFIDENCE) if c in found), None)


def _step_level(step: Step) -> str | None:
    return _weakest(u.confidence for u in step.used)


def card_level(estimate: Estimate) -> str | None:
    """What the card says the figures rest on: the weakest confidence among every figure used."""
    return _weakest(u.confidence for step in estimate.steps for u in step.used)


def _data_line(estimate: Estimate, lang: str) -> str:
    level = card_level(estimate)
    if level is None:
        return ""
    effective = estimate.effective.isoformat() if estimate.effective else "—"
    return t(lang, "result.data_line", level=t(lang, f"confidence.{level}"), effective=effective)


def _badge(step: Step, card: str | None, stale: dict[str, int], lang: str) -> str:
    """A step's own confidence where it differs from the card's line, and "carried over" for a figure
    used past its year."""
    marks = []
    level = _step_level(step)
    if level and level != card:
        marks.append(t(lang, f"confidence.{level}"))
    years = sorted({stale[u.parameter] for u in step.used if u.stale and u.parameter in stale})
    marks += [t(lang, "result.badge_stale", year=year) for year in years]
    return "".join(t(lang, "result.badge", text=mark) for mark in marks)


def _source_lines(estimate: Estimate, lang: str) -> list[str]:
    """Each document once, as a person can check it, with how far the figures taken from it go."""
    levels: dict[str, list[str]] = {}
    for step in estimate.steps:
        for used in step.used:
            levels.setdefault(used.source, []).append(used.confidence)
    lines = []
    for source in estimate.sources:
        level = _weakest(levels.get(source.id, ()))
        shown = level and is_document(source)  # web material says "not verified" already
        suffix = t(lang, "result.source_level", level=t(lang, f"confidence.{level}")) if shown else ""
        lines.append(f"• {cite(source, lang)}{suffix}")
    return lines


def _compared(amount: Decimal | tuple[Decimal, Decimal]) -> str:
    if isinstance(amount, tuple):
        low, high = amount
        return money(low) if low == high else f"{_yuan(low)}–{_yuan(high)}"
    return money(amount)


def _card(estimate: Estimate, context: str, lang: str, notes: int) -> str:
    bar, ins_share, own_share = share_bar(estimate.insurance, estimate.total)
    lines = [context, t(lang, "result.total", amount=money(estimate.total)), "", *_headline(estimate, lang),
             t(lang, "result.bar", bar=bar, insurance_share=ins_share, personal_share=own_share)]
    if "personal" in estimate.ranges:
        sep = "、" if lang == "zh" else ", "
        lines.append(t(lang, "result.range_reason", names=sep.join(name(n, lang) for n in estimate.unknown)))
    lines.append("")
    lines += [line for line in (_data_line(estimate, lang),) if line]
    lines += [t(lang, "result.mark", text=w(lang)) for w in estimate.warnings if w.key in ON_THE_CARD]
    if notes:
        lines.append(t(lang, "result.more_notes", count=notes))
    return "\n".join(lines).rstrip()


def estimate_card(estimate: Estimate, context: str, comparisons: list[tuple[str, Decimal | tuple]], lang: str,
                  supplementary_name: str) -> Rendered:
    """The card and the details of one estimate."""
    notes = [w for w in estimate.warnings if w.key not in ON_THE_CARD and w.key != "unknown_range"]
    level = card_level(estimate)
    stale = {s.parameter: s.known_year for s in estimate.stale}
    details = [_parts(estimate, lang, supplementary_name)]
    if notes:
        details += ["", t(lang, "result.warnings")] + [f"• {w(lang)}" for w in notes]
    details += ["", t(lang, "result.steps")]
    details += [f"{i}. {s.text(lang)}{_badge(s, level, stale, lang)}" for i, s in enumerate(estimate.steps, 1)]
    if comparisons:
        details += ["", t(lang, "result.compare_title")]
        details += [t(lang, "result.compare", level=lvl, amount=_compared(amount)) for lvl, amount in comparisons]
    start, end = estimate.insurance_year
    details += ["", t(lang, "result.policy", effective=estimate.effective or "—", year_start=start, year_end=end),
                t(lang, "result.sources"), *_source_lines(estimate, lang)]
    return Rendered(_card(estimate, context, lang, len(notes)), "\n".join(details))


def cannot_text(result: CannotEstimate, lang: str) -> str:
    return t(lang, "result.cannot", reason=result.reason(lang)) + "\n" + t(lang, "result.cannot_next")
