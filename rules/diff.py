"""What changed between two policy sets, and the notices an operator approves before telling users.

`diff_policies(old, new)` compares every dated parameter series region by region, plan by plan, visit by
visit and row by row (rows are matched by their `when` conditions). `draft_notices` turns the changes into
one ready-to-approve text per region; `format_changes` is the table `yibao rules diff` prints.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rules.case import Text
from rules.columns import table
from rules.messages import money, name, percent
from rules.policy import UNLIMITED, Band, Node, Plan, PolicySet, Region, Row, Series, Visit
from rules.report import show_value

# Every text of the notices and of the table, by language. {where} is "上海 职工医保 住院（在职）",
# {param} a parameter's display name (rules/texts/messages.yaml `names`).
TEXTS: dict[str, dict[str, str]] = {
    "zh": {
        "header": "{region}医保政策更新：",
        "closing": "如需按新政策重新估算，请发送 /start。",
        "bullet": "• {line}",
        "where": "{region} {plan}",
        "where_visit": "{region} {plan} {visit}",
        "where_row": "{where}（{row}）",
        "row_sep": "，",
        "changed": "{where} {param} {old} → {new}，自 {date} 起",
        "set": "{where} {param} 定为 {new}，自 {date} 起",
        "ended": "{where} {param} {old} 自 {date} 起不再适用",
        "withdrawn": "{where} {param} 原定自 {date} 起的 {old} 已撤销",
        "region_added": "新增地区：{region}",
        "region_removed": "{region} 不再提供估算",
        "plan_added": "新增 {where}",
        "plan_removed": "{where} 不再提供估算",
        "list_sep": "、",
        "unlimited": "不设上限",
        "unknown": "未知",
        "band": "{above}以上 {ratio}",
        "band_sep": "；",
        "level": "{level} {value}",
        "no_changes": "无变化",
        "columns": "类型|地区|参保类型/就诊/条件|参数|原值 → 新值|生效日期",
        "added": "新增",
        "changed_kind": "修改",
        "removed": "删除",
    },
    "en": {
        "header": "{region} insurance policy update:",
        "closing": "Send /start for a new estimate under the new rules.",
        "bullet": "• {line}",
        "where": "{region} {plan}",
        "where_visit": "{region} {plan}, {visit}",
        "where_row": "{where} ({row})",
        "row_sep": ", ",
        "changed": "{where}: {param} {old} → {new}, from {date}",
        "set": "{where}: {param} set at {new}, from {date}",
        "ended": "{where}: {param} {old} no longer applies from {date}",
        "withdrawn": "{where}: {param} {old} planned from {date} is withdrawn",
        "region_added": "New region: {region}",
        "region_removed": "{region} is no longer covered",
        "plan_added": "New: {where}",
        "plan_removed": "{where} is no longer covered",
        "list_sep": ", ",
        "unlimited": "unlimited",
        "unknown": "unknown",
        "band": "above {above}: {ratio}",
        "band_sep": "; ",
        "level": "{level}: {value}",
        "no_changes": "no changes",
        "columns": "kind|region|plan/visit/row|parameter|old → new|effective",
        "added": "added",
        "changed_kind": "changed",
        "removed": "removed",
    },
}

# Display names of visits, hospital levels and row conditions in notices.
LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "outpatient": "门诊", "inpatient": "住院", "special_outpatient": "门诊特殊病",
        "community": "社区/基层", "1": "一级", "2": "二级", "3": "三级", "3a": "三甲", "out_of_area": "异地",
        "in_service": "在职", "retired": "退休",
        "numerals": "一二三四五六七八九", "grade": "{value}档",
        "age_min": "{value}岁及以上", "age_max": "{value}岁及以下",
        "retired_from": "{value}年及以后退休", "retired_until": "{value}年及以前退休",
    },
    "en": {
        "outpatient": "outpatient", "inpatient": "inpatient", "special_outpatient": "special outpatient",
        "community": "community", "1": "level 1", "2": "level 2", "3": "level 3", "3a": "level 3A",
        "out_of_area": "out of area",
        "in_service": "in service", "retired": "retired",
        "grade": "grade {value}", "age_min": "age {value}+", "age_max": "age ≤ {value}",
        "retired_from": "retired {value} or later", "retired_until": "retired by {value}",
    },
}

# Parameters whose plain values are shares (shown as 85%), not amounts of money.
RATIO_PARAMETERS = frozenset({"ratio", "later_admission_factor", "class_b_self_ratio", "out_of_area_factor",
                              "supplementary_ratio", "critical_illness_bands"})
WAN = Decimal(10000)

ANY = "*"  # the parameter of a whole region, plan or visit added or removed


@dataclass(frozen=True, slots=True)
class Change:
    """One difference. `old`/`new` are parameter values (None: none, or unknown); for a whole region, plan
    or visit added or removed, `parameter` is "*" (and `plan` None for a region). `entry_date` is the date
    of the entry concerned: `effective` for additions and changes, the dropped entry's for removals.
    `plan_name` is the plan's display name (from the new policy, else the old)."""

    region: str
    region_name: Text
    plan: str | None
    visit: str | None
    row: str | None
    parameter: str
    old: Any
    new: Any
    effective: dt.date | None
    kind: str  # added | changed | removed
    source: str | None
    entry_date: dt.date | None = None
    plan_name: Text | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "region_name": {"zh": self.region_name.zh, "en": self.region_name.en},
            "plan": self.plan,
            "visit": self.visit,
            "row": self.row,
            "parameter": self.parameter,
            "old": None if self.old is None else show_value(self.old, self.parameter),
            "new": None if self.new is None else show_value(self.new, self.parameter),
            "effective": self.effective.isoformat() if self.effective else None,
            "entry_date": self.entry_date.isoformat() if self.entry_date else None,
            "kind": self.kind,
            "source": self.source,
        }


# -- comparing --------------------------------------------------------------------------------------


def _keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The new order, then what only the old one has."""
    return list(new) + [k for k in old if k not in new]


def row_label(row: Row) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.when.items())


def _rows(visit: Visit | None) -> dict[tuple, tuple[str, Row]]:
    """Rows by their conditions (order-free), with the readable label; a repeated condition gets #2, #3."""
    out: dict[tuple, tuple[str, Row]] = {}
    for row in visit.rows if visit else ():
        key: tuple = tuple(sorted((k, str(v)) for k, v in row.when.items()))
        label, n = row_label(row), 1
        while key + (n,) in out:
            n += 1
        out[key + (n,)] = (label if n == 1 else f"{label} #{n}", row)
    return out


def _before(series: Series | None, day: dt.date) -> Any:
    """The value of `series` in force just before `day` (None: none or unknown)."""
    found = None
    for entry in series.entries if series else ():
        if entry.start < day:
            found = entry.value
    return found


def _series_changes(old: Series | None, new: Series | None) -> Iterable[tuple]:
    """(kind, old value, new value, effective, source, entry date) per differing dated entry."""
    old_entries = {e.start: e for e in old.entries} if old else {}
    new_entries = {e.start: e for e in new.entries} if new else {}
    for day in sorted(set(old_entries) | set(new_entries)):
        before, after = old_entries.get(day), new_entries.get(day)
        if after is None:
            yield "removed", before.value, None, None, None, day
        elif before is None:
            yield "added", _before(old, day), after.value, day, after.source, day
        elif before.value != after.value:
            yield "changed", before.value, after.value, day, after.source, day


def _node_changes(old: Node | None, new: Node | None, base: dict[str, Any]) -> Iterable[Change]:
    old_params = old.params if old else {}
    new_params = new.params if new else {}
    for param in _keys(old_params, new_params):
        for kind, before, after, effective, source, day in _series_changes(old_params.get(param),
                                                                            new_params.get(param)):
            yield Change(**base, parameter=param, old=before, new=after, effective=effective, kind=kind,
                         source=source, entry_date=day)


def _whole(base: dict[str, Any], kind: str) -> Change:
    return Change(**base, parameter=ANY, old=None, new=None, effective=None, kind=kind, source=None)


def _visit_changes(old: Visit | None, new: Visit | None, base: dict[str, Any]) -> Iterable[Change]:
    yield from _node_changes(old, new, {**base, "row": None})
    old_rows, new_rows = _rows(old), _rows(new)
    for key in _keys(old_rows, new_rows):
        label = (new_rows.get(key) or old_rows[key])[0]
        before = old_rows.get(key, ("", None))[1]
        after = new_rows.get(key, ("", None))[1]
        yield from _node_changes(before, after, {**base, "row": label})


def _plan_changes(old: Plan, new: Plan, base: dict[str, Any]) -> Iterable[Change]:
    yield from _node_changes(old, new, {**base, "visit": None, "row": None})
    for visit_id in _keys(old.visits, new.visits):
        here = {**base, "visit": visit_id}
        if visit_id not in old.visits:
            yield _whole({**here, "row": None}, "added")
        elif visit_id not in new.visits:
            yield _whole({**here, "row": None}, "removed")
        else:
            yield from _visit_changes(old.visits[visit_id], new.visits[visit_id], here)


def _region_changes(old: Region, new: Region) -> Iterable[Change]:
    for plan_id in _keys(old.plans, new.plans):
        plan = new.plans.get(plan_id) or old.plans[plan_id]
        base = {"region": new.id, "region_name": new.name, "plan": plan_id, "plan_name": plan.name}
        if plan_id not in old.plans:
            yield _whole({**base, "visit": None, "row": None}, "added")
        elif plan_id not in new.plans:
            yield _whole({**base, "visit": None, "row": None}, "removed")
        else:
            yield from _plan_changes(old.plans[plan_id], new.plans[plan_id], base)


def diff_policies(old: PolicySet, new: PolicySet) -> list[Change]:
    """Every difference in the dated parameters, region by region (added and removed regions included)."""
    changes: list[Change] = []
    for region_id in sorted(set(old.regions) | set(new.regions)):
        before, after = old.regions.get(region_id), new.regions.get(region_id)
        if before is None or after is None:
            region = after or before
            assert region is not None
            base = {"region": region.id, "region_name": region.name, "plan": None, "visit": None, "row": None}
            changes.append(_whole(base, "added" if before is None else "removed"))
        else:
            changes.extend(_region_changes(before, after))
    return changes


# -- showing ----------------------------------------------------------------------------------------


def _amount(value: Decimal, lang: str) -> str:
    """630000 → 63万 (zh, when exact to 0.01万), 630,000 (en); 10478.40 → 10,478.40; 1500 → 1,500."""
    if lang == "zh" and value >= WAN:
        wan = value / WAN
        if wan == wan.quantize(Decimal("0.01")):
            return f"{wan.normalize():f}万"
    text = money(value)
    return text[:-3] if text.endswith(".00") else text


def _value(param: str, value: Any, lang: str) -> str:
    texts = TEXTS[lang]
    if value is None:
        return texts["unknown"]
    if value is UNLIMITED:
        return texts["unlimited"]
    if isinstance(value, Decimal):
        return percent(value) if param in RATIO_PARAMETERS else _amount(value, lang)
    if isinstance(value, dict):
        return TEXTS[lang]["list_sep"].join(
            texts["level"].format(level=LABELS[lang].get(k, k), value=_value(param, v, lang))
            for k, v in value.items())
    if isinstance(value, tuple) and value and isinstance(value[0], Band):
        return texts["band_sep"].join(
            texts["band"].format(above=_amount(b.above, lang), ratio=_value("ratio", b.ratio, lang))
            for b in value)
    return show_value(value, param)


def _row_text(row: str, lang: str) -> str:
    """"member=retired, age_max=69" → "退休，69岁及以下" / "retired, age ≤ 69"."""
    labels, parts = LABELS[lang], []
    conditions = [part.partition("=")[::2] for part in row.split(" #")[0].split(", ")]
    said_retired = any(key in ("retired_from", "retired_until") for key, _ in conditions)
    for key, value in conditions:
        if key == "member" and value == "retired" and said_retired:
            continue  # "2001年及以后退休" says it
        if key == "grade" and value.isdigit() and 0 < int(value) <= len(labels.get("numerals", "")):
            value = labels["numerals"][int(value) - 1]
        template = labels.get(key)
        parts.append(labels.get(value, value) if key == "member" else
                     template.format(value=value) if template else f"{key}={value}")
    return TEXTS[lang]["row_sep"].join(parts)


def _where(change: Change, lang: str) -> str:
    texts = TEXTS[lang]
    plan = change.plan_name(lang) if change.plan_name else change.plan
    fields = {"region": change.region_name(lang), "plan": plan}
    if change.visit is None:
        where = texts["where"].format(**fields)
    else:
        where = texts["where_visit"].format(**fields, visit=LABELS[lang].get(change.visit, change.visit))
    if change.row:
        where = texts["where_row"].format(where=where, row=_row_text(change.row, lang))
    return where


def notice_line(change: Change, lang: str) -> str:
    """One change as one sentence of a notice."""
    texts = TEXTS[lang]
    if change.plan is None:
        return texts[f"region_{change.kind}"].format(region=change.region_name(lang))
    where = _where(change, lang)
    if change.parameter == ANY:
        return texts["plan_added" if change.kind == "added" else "plan_removed"].format(where=where)
    fields = {"where": where, "param": name(change.parameter, lang), "old": _value(change.parameter, change.old, lang),
              "new": _value(change.parameter, change.new, lang)}
    if change.kind == "removed":
        return texts["withdrawn"].format(**fields, date=change.entry_date)
    if change.new is None:
        return texts["ended"].format(**fields, date=change.effective)
    if change.old is None:
        return texts["set"].format(**fields, date=change.effective)
    return texts["changed"].format(**fields, date=change.effective)


def draft_notices(changes: list[Change], lang: str) -> dict[str, str]:
    """Region id → one notice in `lang`: a header, one line per change, a closing line suggesting /start."""
    texts = TEXTS[lang]
    by_region: dict[str, list[Change]] = {}
    for change in changes:
        by_region.setdefault(change.region, []).append(change)
    notices: dict[str, str] = {}
    for region_id, items in by_region.items():
        lines = [texts["header"].format(region=items[0].region_name(lang))]
        lines += [texts["bullet"].format(line=notice_line(c, lang)) for c in items]
        lines.append(texts["closing"])
        notices[region_id] = "\n".join(lines)
    return notices


def format_changes(changes: list[Change], lang: str = "zh") -> str:
    """A plain table: kind, region, plan/visit/row, parameter, old → new, effective date."""
    texts = TEXTS[lang]
    if not changes:
        return texts["no_changes"]
    rows = [texts["columns"].split("|")]
    for c in changes:
        where = "/".join(p for p in (c.plan, c.visit, c.row) if p) or ANY
        old = "—" if c.old is None else show_value(c.old, c.parameter)
        new = "—" if c.new is None else show_value(c.new, c.parameter)
        values = "" if c.parameter == ANY else f"{old} → {new}"
        date = c.effective or (f"({c.entry_date})" if c.entry_date else "")
        kind = texts["changed_kind" if c.kind == "changed" else c.kind]
        param = ANY if c.parameter == ANY else name(c.parameter, lang)
        rows.append([kind, f"{c.region_name(lang)} ({c.region})", where, param, values, str(date)])
    return table(rows)
