"""What the policy set holds, for people and tools: `yibao rules list` and `yibao rules audit`.

The audit is recomputed from the loaded files, so it always describes what the bot actually uses: how
many figures each region has, how confident they are, which are disputed and why, and how many of the
imported figures appear among the numbers of the clause their document quotes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from rules.importers.audit import quote_numbers
from rules.policy import UNLIMITED, Band, Entry, Node, PolicySet, Region
from rules.report import CONFIDENCE_LABELS, weakest


def entries(region: Region) -> Iterator[tuple[str, Entry]]:
    """Every dated value of a region: (parameter, entry)."""
    for plan in region.plans.values():
        nodes: list[Node] = [plan]
        for visit in plan.visits.values():
            nodes += [visit, *visit.rows]
        for node in nodes:
            for name, series in node.params.items():
                for entry in series.entries:
                    yield name, entry


def numbers(value: Any) -> list[Decimal]:
    """The numbers inside a value: one, one per level or kind, one per band."""
    if isinstance(value, Decimal):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, tuple):
        return [n for b in value if isinstance(b, Band) for n in numbers(b.ratio)]
    return []


def region_row(region: Region) -> dict[str, Any]:
    plans = {p.id: sorted(p.visits) for p in region.plans.values()}
    return {
        "id": region.id,
        "name": {"zh": region.name.zh, "en": region.name.en},
        "aliases": list(region.aliases),
        "province": {"zh": region.province.zh, "en": region.province.en} if region.province else None,
        "code": region.code,
        "plans": plans,
        "visits": sorted({v for vs in plans.values() for v in vs}),
        "confidence": weakest(e.confidence for _, e in entries(region) if e.value is not None),
        "origin": region.imported or "hand-maintained",
        "file": region.path,
    }


def region_list(policies: PolicySet) -> list[dict[str, Any]]:
    rows = [region_row(r) for r in policies]
    return sorted(rows, key=lambda r: ((r["province"] or {}).get("en", ""), r["id"]))


def list_text(policies: PolicySet, lang: str = "zh") -> str:
    lines = []
    for row in region_list(policies):
        province = (row["province"] or {}).get(lang, "—")
        plans = "; ".join(f"{p}: {', '.join(v)}" for p, v in row["plans"].items())
        confidence = CONFIDENCE_LABELS.get(row["confidence"] or "", {}).get(lang, "—")
        lines.append(f"{row['id']:<22} {row['name'][lang]:<8} {province:<6} {row['code'] or '—':<7} "
                     f"{plans}  [{confidence}]")
    lines.append(f"{len(policies.regions)} regions")
    return "\n".join(lines)


def audit(policies: PolicySet) -> dict[str, Any]:
    """Counts over every region, imported ones apart."""
    imported = [r for r in policies if r.imported]
    confidence: Counter[str] = Counter()
    disputed: Counter[str] = Counter()
    figures = in_quote = no_cap = 0
    for region in imported:
        for _, entry in entries(region):
            values = numbers(entry.value)
            figures += len(values) + (entry.value is UNLIMITED)
            no_cap += entry.value is UNLIMITED
            confidence[entry.confidence] += len(values)
            if entry.disputed is not None:
                disputed[entry.disputed.check] += 1
            quote = region.sources[entry.source].quote
            stated = quote_numbers(quote)
            in_quote += sum(1 for v in values if v.normalize() in stated)
    return {
        "regions": len(policies.regions),
        "imported": len(imported),
        "hand_maintained": len(policies.regions) - len(imported),
        "shadowed": dict(sorted(policies.shadowed.items())),
        "figures": figures,
        "figures_in_quote": in_quote,
        "no_cap": no_cap,
        "confidence": dict(sorted(confidence.items())),
        "disputed": sum(disputed.values()),
        "disputed_by_check": dict(sorted(disputed.items())),
    }


def audit_text(report: dict[str, Any]) -> str:
    lines = [
        f"regions: {report['regions']} ({report['imported']} imported, {report['hand_maintained']} hand-maintained)",
        f"imported files shadowed by a hand-maintained file: {len(report['shadowed'])}",
        *[f"  {imp} <- {hand}" for imp, hand in report["shadowed"].items()],
        f"figures in imported files: {report['figures']} ({report['no_cap']} caps meaning 'no cap')",
        f"figures found among the numbers of their document's quoted clause: {report['figures_in_quote']}",
        f"disputed values: {report['disputed']}",
        *[f"  {check}: {n}" for check, n in report["disputed_by_check"].items()],
    ]
    return "\n".join(lines)
