"""`/policy 深圳`: the figures in force in a region, as a person reads them in one chat message.

Plan by plan and visit by visit, each figure in words with a footnote number; the footnotes cite the
documents (title, 文号, issuer, effective date, link; web material marked unverified) and how far
each figure is confirmed. No internal ids, file names or research notes: those are for maintainers
(`yibao rules show`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from conversations.texts import raw, t
from rules.citations import cite, is_document
from rules.messages import name, shown_value
from rules.policy import Node, Plan, Region

_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"


def _mark(number: int) -> str:
    return "".join(_SUPERSCRIPTS[int(d)] for d in str(number))


class _Notes:
    """The footnotes: one per document and confidence (web material: one per article), numbered in the
    order first used."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []

    def mark(self, source: str, confidence: str) -> str:
        key = (source, confidence)
        if key not in self.keys:
            self.keys.append(key)
        return _mark(self.keys.index(key) + 1)


def _condition(key: str, value: Any, plan: Plan, lang: str) -> str:
    if key == "member":
        return t(lang, f"labels.members.{value}")
    if key == "grade":
        grade = plan.grades.get(value)
        return grade(lang) if grade else t(lang, "policy.when.grade", value=value)
    return t(lang, f"policy.when.{key}", value=value)


def _since(yearly: bool, start: dt.date, day: dt.date, region: Region, lang: str) -> str:
    """For a figure re-set every year: the date it is from, and whether this year's is still missing."""
    if not yearly:
        return ""
    this_year = region.insurance_year(day)[0]
    if region.insurance_year(start)[1] < this_year:
        return t(lang, "policy.stale", date=start.isoformat(), year=this_year.year)
    return t(lang, "policy.since", date=start.isoformat())


def _lines(node: Node, day: dt.date, lang: str, notes: _Notes, region: Region, prefix: str = "") -> list[str]:
    sources = region.sources
    lines = []
    for key, series in node.params.items():
        entry = series.at(day)
        if entry is None or entry.value is None:
            continue
        value = shown_value(entry.value, key)[1 if lang == "en" else 0]
        document = sources.get(entry.source)
        mark = notes.mark(entry.source, entry.confidence if is_document(document) else "") if document else ""
        since = _since(series.yearly, entry.start, day, region, lang)
        lines.append(f"· {prefix}{name(key, lang)}：{value}{since}{mark}" if lang == "zh"
                     else f"· {prefix}{name(key, lang)}: {value}{since}{mark}")
    return lines


def policy_view(region: Region, day: dt.date, lang: str) -> str:
    """The region's figures in force on `day`, with their documents."""
    start, end = region.insurance_year(day)
    notes = _Notes()
    out = [t(lang, "policy.title", region=region.name(lang), day=day.isoformat()),
           t(lang, "policy.year", start=start.isoformat(), end=end.isoformat())]
    colon = "：" if lang == "zh" else ": "
    for plan in region.plans.values():
        out += ["", f"【{plan.name(lang)}】"]
        out += _lines(plan, day, lang, notes, region)
        for visit in plan.visits.values():
            out.append(t(lang, f"labels.visits.{visit.id}"))
            out += _lines(visit, day, lang, notes, region)
            for row in visit.rows:
                sep = " · "
                who = sep.join(_condition(k, v, plan, lang) for k, v in row.when.items())
                out += _lines(row, day, lang, notes, region, prefix=f"{who}{colon}" if who else "")
    if notes.keys:
        out += ["", t(lang, "policy.sources")]
        for i, (source, confidence) in enumerate(notes.keys, 1):
            document = region.sources[source]
            level = t(lang, "result.source_level", level=raw(lang, f"confidence.{confidence}")) if confidence else ""
            out.append(f"{_mark(i)} {cite(document, lang)}{level}")  # web material says "not verified" itself
    out += ["", t(lang, "policy.disclaimer")]
    return "\n".join(out)
