"""What a person reads about their insurance year: the one line above an estimate that says which
year-to-date figures came from their ledger, the `/year` overview (visits, what each fund paid,
deductible left, cap left, distance to the 大病 threshold), and what is kept about them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from conversations.texts import t
from conversations.year import Entry, Ledger, Totals, visit_case
from rules.case import ZERO
from rules.limits import year_limits
from rules.messages import money
from rules.policy import UNLIMITED, PolicySet

MAX_SHOWN = 20  # visits listed in the overview (the totals count them all)


def _visits_phrase(ledger: Ledger, lang: str) -> str:
    counts: dict[str, int] = {}
    for entry in ledger.visits():
        kind = str(entry.inputs.get("visit", ""))
        counts[kind] = counts.get(kind, 0) + 1
    sep = "、" if lang == "zh" else ", "
    return sep.join(t(lang, "year.count", n=n, visit=t(lang, f"labels.visits.{kind}"))
                    for kind, n in counts.items())


def _paid_parts(totals: Totals, lang: str, supplementary: str) -> list[str]:
    parts = [t(lang, "year.part_deductible", amount=money(totals.deductible_met)),
             t(lang, "year.part_fund", amount=money(totals.fund_paid))]
    if totals.supplementary_paid:
        parts.append(t(lang, "year.part_named", name=supplementary, amount=money(totals.supplementary_paid)))
    if totals.critical_paid:
        parts.append(t(lang, "year.part_critical", amount=money(totals.critical_paid)))
    return parts


def ledger_line(ledger: Ledger, lang: str, supplementary: str) -> str:
    """"本年度已记 2 次住院：起付线已付 1,500.00 元，统筹已付 32,000.00 元" (or: nothing recorded yet)."""
    start = ledger.start.isoformat()
    if not ledger.entries:
        return t(lang, "year.line_empty", start=start)
    sep = "，" if lang == "zh" else ", "
    parts = sep.join(_paid_parts(ledger.totals(), lang, supplementary))
    visits = _visits_phrase(ledger, lang) or t(lang, "year.no_visits_short")
    return t(lang, "year.line", start=start, visits=visits, parts=parts)


def _entry_text(n: int, entry: Entry, lang: str, supplementary: str) -> str:
    day = entry.date.strftime("%m-%d")
    if entry.kind == "set":
        sep = "，" if lang == "zh" else ", "
        return t(lang, "year.entry_set", n=n, date=day, parts=sep.join(_paid_parts(entry.paid, lang, supplementary)))
    paid = entry.paid
    parts = [t(lang, "year.part_fund", amount=money(paid.fund_paid))]
    if paid.supplementary_paid:
        parts.append(t(lang, "year.part_named", name=supplementary, amount=money(paid.supplementary_paid)))
    if paid.critical_paid:
        parts.append(t(lang, "year.part_critical", amount=money(paid.critical_paid)))
    parts.append(t(lang, "year.part_personal", amount=money(entry.personal)))
    if not entry.exact:
        parts.append(t(lang, "year.inexact"))
    return t(lang, "year.entry_visit", n=n, date=day, visit=t(lang, f"labels.visits.{entry.inputs.get('visit')}"),
             level=t(lang, f"labels.levels.{entry.inputs.get('level')}"), total=money(entry.total),
             parts=" · ".join(parts))


def _limit_lines(ledger: Ledger, totals: Totals, policies: PolicySet, today: dt.date, lang: str) -> list[str]:
    """Deductible left, cap left and the distance to the 大病 threshold, for the latest visit's kind."""
    visits = ledger.visits()
    if not visits:
        return []
    last = visits[-1]
    try:
        case = visit_case(ledger.region, ledger.plan, last.inputs, min(today, ledger.end), totals)
    except (ValueError, TypeError):
        return []
    limits = year_limits(case, policies)
    if limits is None:
        return []
    kind = t(lang, "year.for_kind", visit=t(lang, f"labels.visits.{case.visit}"),
             level=t(lang, f"labels.levels.{case.level}"))
    lines = [kind]
    if limits.deductible is None:
        lines.append(t(lang, "year.deductible_unknown"))
    elif limits.per_admission:
        lines.append(t(lang, "year.deductible_each", amount=money(limits.deductible)))
    else:
        left = max(ZERO, limits.deductible - totals.deductible_met)
        lines.append(t(lang, "year.deductible_left", amount=money(limits.deductible), left=money(left)))
    if limits.fund_cap is None:
        lines.append(t(lang, "year.cap_unknown"))
    elif limits.fund_cap is UNLIMITED:
        lines.append(t(lang, "year.cap_none"))
    else:
        cap: Decimal = limits.fund_cap  # type: ignore[assignment]
        lines.append(t(lang, "year.cap_left", cap=money(cap), left=money(max(ZERO, cap - totals.fund_paid))))
    if limits.critical_threshold is not None:
        gap = limits.critical_threshold - totals.burden
        key = "year.critical_gap" if gap > 0 else "year.critical_over"
        lines.append(t(lang, key, threshold=money(limits.critical_threshold), burden=money(totals.burden),
                       gap=money(max(ZERO, gap))))
    return lines


def overview(ledger: Ledger, title: str, policies: PolicySet, today: dt.date, lang: str,
             supplementary: str) -> str:
    """The `/year` text: the year's entries, its totals and the limits still ahead."""
    lines = [title, t(lang, "year.period", start=ledger.start.isoformat(), end=ledger.end.isoformat()), ""]
    if not ledger.entries:
        return "\n".join(lines + [t(lang, "year.empty")])
    numbered = list(enumerate(ledger.entries, 1))
    if len(numbered) > MAX_SHOWN:
        lines.append(t(lang, "year.earlier", n=len(numbered) - MAX_SHOWN))
    lines += [_entry_text(n, e, lang, supplementary) for n, e in numbered[-MAX_SHOWN:]]
    totals = ledger.totals()
    spent = sum((e.total for e in ledger.visits()), ZERO)
    personal = sum((e.personal for e in ledger.visits()), ZERO)
    sep = "，" if lang == "zh" else ", "
    lines += ["", t(lang, "year.sum", total=money(spent), personal=money(personal)),
              sep.join(_paid_parts(totals, lang, supplementary))]
    limits = _limit_lines(ledger, totals, policies, today, lang)
    if limits:
        lines += [""] + limits
    return "\n".join(lines)
