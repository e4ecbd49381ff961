"""Plain views of an estimate and of a policy, for the command line and for tools that read JSON.

Chat replies are rendered by `conversations`; this module is what `yibao estimate` and `yibao rules
show` print, and the JSON shape other tools rely on.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from rules.case import CannotEstimate, Estimate
from rules.columns import pad, rpad, table, width
from rules.messages import label, money, name, percent, shown_value
from rules.policy import UNLIMITED, Band, Node, PolicySet, Region


def _amount(value: Decimal) -> str:
    return f"{value:.2f}"


def estimate_json(result: Estimate | CannotEstimate, lang: str = "zh") -> dict[str, Any]:
    if isinstance(result, CannotEstimate):
        return {"error": result.reason(lang), "missing": result.missing, "region": result.region,
                "date": result.date.isoformat()}
    return {
        "region": result.region,
        "date": result.date.isoformat(),
        "insurance_year": [d.isoformat() for d in result.insurance_year],
        "total": _amount(result.total),
        "compliant": _amount(result.compliant),
        "deductible": _amount(result.deductible),
        "fund": _amount(result.fund),
        "supplementary": _amount(result.supplementary),
        "critical_illness": _amount(result.critical_illness),
        "personal": _amount(result.personal),
        "exact": result.exact,
        "ranges": {key: [_amount(low), _amount(high)] for key, (low, high) in result.ranges.items()},
        "unknown": list(result.unknown),
        "stale": [{"parameter": s.parameter, "last_known": s.last_known.isoformat()} for s in result.stale],
        "year_after": _year_json(result),
        "effective": result.effective.isoformat() if result.effective else None,
        "steps": [
            {
                "key": step.key,
                "text": step.text(lang),
                "amount": _amount(step.amount.quantize(Decimal("0.01"))),
                "used": [
                    {"parameter": u.parameter, "effective": u.effective.isoformat(), "source": u.source,
                     "confidence": u.confidence, **({"stale": True} if u.stale else {})}
                    for u in step.used
                ],
            }
            for step in result.steps
        ],
        "warnings": [w(lang) for w in result.warnings],
        "confidence": weakest(_published(u) for step in result.steps for u in step.used),
        "sources": [source_json(s) for s in result.sources],
    }


def _year_json(result: Estimate) -> dict[str, Any] | None:
    """The insurance year's totals after this visit: the next visit's ytd inputs (README, JSON contract)."""
    year = result.year_after
    if year is None:
        return None
    out: dict[str, Any] = {k: _amount(getattr(year, k)) for k in
                           ("deductible_met", "fund_paid", "supplementary_paid", "critical_paid", "compliant",
                            "burden")}
    out["admissions"] = year.admissions
    return out


CONFIDENCE_ORDER = ("confirmed", "secondary", "third-party", "seed-only")  # strongest first
CONFIDENCE_LABELS = {
    "confirmed": {"zh": "官方文件核实", "en": "confirmed from the official text"},
    "secondary": {"zh": "转载或二手来源", "en": "from a repost or secondary source"},
    "third-party": {"zh": "第三方整理，未经官方核实", "en": "compiled by a third party, not officially verified"},
    "seed-only": {"zh": "仅见于未经核实的文章", "en": "only in an unverified article"},
}


def _published(used) -> str:
    """A figure's confidence as its source gives it: a stale figure's was lowered one step in the
    estimate (its staleness is listed under `stale` and warned about)."""
    if not used.stale or used.confidence not in CONFIDENCE_ORDER:
        return used.confidence
    return CONFIDENCE_ORDER[max(0, CONFIDENCE_ORDER.index(used.confidence) - 1)]


def weakest(levels) -> str | None:
    """The weakest confidence among figures (None when there are none)."""
    found = set(levels)
    return next((c for c in reversed(CONFIDENCE_ORDER) if c in found), None)


def source_json(s) -> dict[str, Any]:
    out: dict[str, Any] = {"id": s.id, "title": s.title, "where": s.where}
    for key in ("doc_no", "published", "effective", "quote"):
        value = getattr(s, key)
        if value is not None:
            out[key] = value.isoformat() if isinstance(value, dt.date) else value
    if s.issuer:
        out["issuer"] = list(s.issuer)
    return out


LABELS = {
    "zh": {"total": "总费用", "compliant": "合规费用", "deductible": "起付线（本次）", "fund": "统筹基金",
           "supplementary": "补充/附加基金", "critical_illness": "大病保险", "personal": "个人支付",
           "steps": "计算过程", "warnings": "提示", "sources": "来源", "effective": "政策生效日期",
           "year": "医保年度"},
    "en": {"total": "Total", "compliant": "Compliant cost", "deductible": "Deductible (this time)",
           "fund": "Basic fund", "supplementary": "Supplementary fund", "critical_illness": "Critical illness",
           "personal": "Person pays", "steps": "Steps", "warnings": "Notes", "sources": "Sources",
           "effective": "Policy in force since", "year": "Insurance year"},
}


def estimate_text(result: Estimate | CannotEstimate, policies: PolicySet, lang: str = "zh") -> str:
    if isinstance(result, CannotEstimate):
        return result.reason(lang)
    label = LABELS[lang]
    label = {**label, "supplementary": _supplementary_label(result, policies, lang) or label["supplementary"]}
    keys = ("total", "compliant", "deductible", "fund", "supplementary", "critical_illness", "personal")
    name_width = max(width(label[k]) for k in keys) + 2
    lines = [pad(label[k], name_width) + rpad(_figure(result, k), 16) for k in keys]
    lines.append("")
    lines.append(f"{label['year']}: {result.insurance_year[0]} – {result.insurance_year[1]}")
    if result.effective:
        lines.append(f"{label['effective']}: {result.effective}")
    lines += ["", f"{label['steps']}:"] + [f"  {i}. {s.text(lang)}" for i, s in enumerate(result.steps, 1)]
    if result.warnings:
        lines += ["", f"{label['warnings']}:"] + [f"  ! {w(lang)}" for w in result.warnings]
    lines += ["", f"{label['sources']}:"] + [
        f"  - {s.title}{'〔' + s.doc_no + '〕' if s.doc_no else ''} ({s.where})" for s in result.sources]
    return "\n".join(lines)


def _supplementary_label(result: Estimate, policies: PolicySet, lang: str) -> str | None:
    """The region's own name for the fund above the cap (附加基金, 大额医疗互助)."""
    region = policies.regions.get(result.region)
    plan = region.plans.get(result.case.plan) if region else None
    visit = plan.visits.get(result.case.visit) if plan else None
    for node in (visit, plan):
        text = node.settings.get("supplementary_name") if node else None
        if text:
            return text(lang)
    return None


def _figure(result: Estimate, key: str) -> str:
    """A figure, or its range when the policy leaves part of it unknown."""
    if key in result.ranges:
        low, high = result.ranges[key]
        return f"{money(low)}–{money(high)}"
    return money(getattr(result, key))


RATIO_PARAMETERS = frozenset({"ratio", "later_admission_factor", "class_b_self_ratio", "out_of_area_factor",
                              "supplementary_ratio", "critical_illness_bands"})


def show_value(value: Any, parameter: str) -> str:
    """A parameter's value as one short line: 630,000.00 · 85% · 1: 65%, 2: 60% · >0.00: 90%; >30,000.00: 95%.

    Whether a number is a share or an amount comes from the parameter, never from its size
    (a deductible of 1 yuan is not 100%)."""
    if value is UNLIMITED:
        return "unlimited"
    if isinstance(value, Decimal):
        return percent(value) if parameter in RATIO_PARAMETERS else money(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {show_value(v, parameter)}" for k, v in value.items())
    if isinstance(value, tuple) and value and isinstance(value[0], Band):
        return "; ".join(f">{money(b.above)}: {show_value(b.ratio, 'ratio')}" for b in value)
    return str(value)


def _node_lines(node: Node, day: dt.date, lang: str, indent: str) -> list[str]:
    lines = []
    for key, series in node.params.items():
        entry = series.at(day)
        if entry is None:
            continue
        flag = "" if entry.confidence == "confirmed" else f" [{entry.confidence}]"
        if entry.disputed is not None:
            flag += f" [disputed: {entry.disputed.reason(lang)}]"
        value = shown_value(entry.value, key)[1 if lang == "en" else 0]
        lines.append([f"{indent}{name(key, lang)}", f"since {entry.start}", f"{entry.source}{flag}", value])
    return table(lines).split("\n") if lines else []


def policy_table(region: Region, day: dt.date, lang: str = "zh") -> str:
    """The parameters in force on `day`, plan by plan, visit by visit, row by row."""
    start, end = region.insurance_year(day)
    lines = [f"{region.name(lang)} ({region.id}) — {day} — {LABELS[lang]['year']} {start} – {end}"]
    for plan in region.plans.values():
        lines.append(f"\n{plan.name(lang)} [{plan.id}]")
        lines += _node_lines(plan, day, lang, "  ")
        for visit in plan.visits.values():
            levels = ("、" if lang == "zh" else ", ").join(label("levels", lv, lang) for lv in visit.levels)
            lines.append(f"  {visit.id} — {name('level', lang)}: {levels}")
            lines += _node_lines(visit, day, lang, "    ")
            for row in visit.rows:
                cond = ", ".join(f"{k}={v}" for k, v in row.when.items())
                lines.append(f"    when {cond}:")
                lines += _node_lines(row, day, lang, "      ")
    if region.notes:
        lines.append("")
        lines += [f"* {note(lang)}" for note in region.notes]
    lines.append("")
    lines += [f"[{s.id}] {s.title} — {s.where}" for s in region.sources.values()]
    return "\n".join(lines)
