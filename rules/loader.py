"""Load and validate the policy files.

The files are read as YAML *nodes*, not plain data, so that every problem can be reported with its
file, line and field path ("shanghai.yaml:42 plans.employee.visits.inpatient.ratio.values.2024-07-01:
ratio must be between 0 and 1"). All problems of a folder are collected before anything is refused,
so an operator fixes them in one pass. Nothing here raises anything but `PolicyErrors`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from rules.case import LEVELS, MEMBERS, OUT_OF_AREA_KINDS, PLANS, VISITS, Source, Text
from rules.policy import (
    UNLIMITED,
    Band,
    Disputed,
    Entry,
    Node,
    Plan,
    PolicySet,
    Region,
    Row,
    Series,
    Visit,
)

DEFAULT_DIR = Path(__file__).parent / "policies"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: same nodes and marks, faster
CONFIDENCE = ("confirmed", "secondary", "third-party", "seed-only")  # strongest first
ID_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class PolicyError:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f" {self.path}:" if self.path else ""
        return f"{self.file}:{self.line}:{where} {self.message}"


class PolicyErrors(Exception):
    """Raised once per folder with every problem found."""

    def __init__(self, errors: list[PolicyError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class _Invalid(Exception):
    """One problem at one node; caught by the walker, which records it and goes on."""

    def __init__(self, node: yaml.Node, message: str):
        self.node = node
        self.message = message


class _Reader:
    """Walks one file's node tree, converting values and collecting errors."""

    def __init__(self, file: str):
        self.file = file
        self.errors: list[PolicyError] = []
        self.alias_lines: dict[str, tuple[int, str]] = {}
        self.source_refs: list[tuple[yaml.Node, str, str]] = []

    def fail(self, node: yaml.Node, path: str, message: str) -> None:
        self.errors.append(PolicyError(self.file, node.start_mark.line + 1, path, message))

    def guard(self, node: yaml.Node, path: str, fn: Callable[[], Any], default: Any = None) -> Any:
        try:
            return fn()
        except _Invalid as bad:
            self.fail(bad.node, path, bad.message)
            return default

    # -- structure -------------------------------------------------------------------------

    def mapping(
        self, node: yaml.Node, path: str, allowed: set[str] | None, required: tuple[str, ...] = ()
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Key → (key node, value node); unknown and duplicate keys are reported and skipped."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, "expected a mapping (key: value)")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            key = str(knode.value) if isinstance(knode, yaml.ScalarNode) else "?"
            sub = f"{path}.{key}" if path else key
            if key in out:
                self.fail(knode, sub, "appears twice")
            elif allowed is not None and key not in allowed:
                self.fail(knode, sub, f"unknown key (expected one of: {', '.join(sorted(allowed))})")
            else:
                out[key] = (knode, vnode)
        for key in required:
            if key not in out:
                self.fail(node, path, f"missing required key '{key}'")
        return out

    def sequence(self, node: yaml.Node, path: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, "expected a list")
            return []
        return list(node.value)


def _scalar(node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise _Invalid(node, f"expected {what}")
    return str(node.value)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _string(node: yaml.Node) -> str:
    text = _scalar(node, "text")
    if not text.strip():
        raise _Invalid(node, "must not be empty")
    return text


def _ident(node: yaml.Node) -> str:
    text = _scalar(node, "an id")
    if not ID_RE.match(text):
        raise _Invalid(node, f"'{text}' is not an id (lowercase letters, digits, - and _)")
    return text


def _choice(options: tuple[str, ...]) -> Callable[[yaml.Node], str]:
    def convert(node: yaml.Node) -> str:
        text = _scalar(node, "a value")
        if text not in options:
            raise _Invalid(node, f"'{text}' is not one of: {', '.join(options)}")
        return text

    return convert


def _level(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode) and node.value == "out_of_area":
        raise _Invalid(node, "'out_of_area' is no longer a level: out-of-area care keeps the hospital's level "
                             "and takes `out_of_area_factor` (see FORMAT.md, where the care happens)")
    return _choice(LEVELS)(node)


def _number(node: yaml.Node) -> Decimal:
    text = _scalar(node, "a number")
    if text.endswith("%"):
        raise _Invalid(node, "a percentage is not an amount of money")
    try:
        value = Decimal(text.replace("_", ""))
    except InvalidOperation:
        raise _Invalid(node, f"'{text}' is not a number") from None
    if not value.is_finite():
        raise _Invalid(node, f"'{text}' is not a number")
    return value


def _money(node: yaml.Node) -> Decimal:
    value = _number(node)
    if value < 0:
        raise _Invalid(node, "an amount cannot be negative")
    return value


def _money_or_unlimited(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode) and node.value == "unlimited":
        return UNLIMITED
    return _money(node)


def _ratio(node: yaml.Node) -> Decimal:
    text = _scalar(node, "a ratio")
    if text.endswith("%"):
        try:
            value = Decimal(text[:-1].strip()) / 100
        except InvalidOperation:
            raise _Invalid(node, f"'{text}' is not a percentage") from None
    else:
        value = _number(node)
    if not (0 <= value <= 1):
        raise _Invalid(node, f"ratio {text} must be between 0 and 1 (or 0% and 100%)")
    return value


def _date(node: yaml.Node) -> dt.date:
    text = _scalar(node, "a date")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _Invalid(node, f"'{text}' is not a date (YYYY-MM-DD)") from None


def _month_day(node: yaml.Node) -> tuple[int, int]:
    text = _scalar(node, "MM-DD")
    try:
        day = dt.date.fromisoformat(f"2001-{text}")
    except ValueError:
        raise _Invalid(node, f"'{text}' is not a month and day (MM-DD)") from None
    return day.month, day.day


def _year(node: yaml.Node) -> int:
    text = _scalar(node, "a year")
    if not text.isdigit() or not 1900 <= int(text) <= 2200:
        raise _Invalid(node, f"'{text}' is not a year")
    return int(text)


def _flag(node: yaml.Node) -> bool:
    if not (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":bool")):
        raise _Invalid(node, "expected true or false")
    return node.value.lower() in ("true", "yes", "on")


def _whole(node: yaml.Node) -> int:
    text = _scalar(node, "a whole number")
    if not text.isdigit():
        raise _Invalid(node, f"'{text}' is not a whole number")
    return int(text)


# -- parameters ------------------------------------------------------------------------------

# How each parameter's values are read: a converter taking (reader, node, path, levels).
ValueReader = Callable[[_Reader, yaml.Node, str, tuple[str, ...]], Any]


def _plain(convert: Callable[[yaml.Node], Any]) -> ValueReader:
    def read(reader: _Reader, node: yaml.Node, path: str, levels: tuple[str, ...]) -> Any:
        return convert(node)

    return read


def _by_level(convert: Callable[[yaml.Node], Any]) -> ValueReader:
    """A value, or a mapping level → value (levels must be the visit's)."""

    def read(reader: _Reader, node: yaml.Node, path: str, levels: tuple[str, ...]) -> Any:
        if not isinstance(node, yaml.MappingNode):
            return convert(node)
        out: dict[str, Any] = {}
        for key, (knode, vnode) in reader.mapping(node, path, None).items():
            if key not in LEVELS:
                raise _Invalid(knode, f"'{key}' is not a hospital level ({', '.join(LEVELS)})")
            if levels and key not in levels:
                raise _Invalid(knode, f"level '{key}' is not among this visit's levels {list(levels)}")
            out[key] = convert(vnode)
        if not out:
            raise _Invalid(node, "needs at least one level")
        return out

    return read


def _bands(ratio: ValueReader) -> ValueReader:
    def read(reader: _Reader, node: yaml.Node, path: str, levels: tuple[str, ...]) -> tuple[Band, ...]:
        items = reader.sequence(node, path)
        bands: list[Band] = []
        for i, item in enumerate(items):
            sub = f"{path}[{i}]"
            fields = reader.mapping(item, sub, {"above", "ratio"}, ("above", "ratio"))
            if len(fields) < 2:
                raise _Invalid(item, "a band needs 'above' and 'ratio'")
            above = _money(fields["above"][1])
            if bands and above <= bands[-1].above:
                raise _Invalid(fields["above"][1], "bands must rise: 'above' must exceed the previous band's")
            if not bands and above != 0:
                raise _Invalid(fields["above"][1], "the first band must start at 'above: 0'")
            bands.append(Band(above, ratio(reader, fields["ratio"][1], f"{sub}.ratio", levels)))
        if not bands:
            raise _Invalid(node, "needs at least one band")
        return tuple(bands)

    return read


def _by_kind(reader: _Reader, node: yaml.Node, path: str, levels: tuple[str, ...]) -> Any:
    """A ratio for every out-of-area kind, or a mapping kind → ratio (a kind left out is unknown)."""
    if not isinstance(node, yaml.MappingNode):
        return _ratio(node)
    out: dict[str, Any] = {}
    for key, (knode, vnode) in reader.mapping(node, path, None).items():
        if key not in OUT_OF_AREA_KINDS:
            raise _Invalid(knode, f"'{key}' is not an out-of-area kind ({', '.join(OUT_OF_AREA_KINDS)})")
        out[key] = _ratio(vnode)
    if not out:
        raise _Invalid(node, "needs at least one out-of-area kind")
    return out


def _ratio_any(reader: _Reader, node: yaml.Node, path: str, levels: tuple[str, ...]) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return _bands(_by_level(_ratio))(reader, node, path, levels)
    return _by_level(_ratio)(reader, node, path, levels)


PARAMETERS: dict[str, ValueReader] = {
    "deductible": _by_level(_money),
    "later_admission_factor": _plain(_ratio),
    "ratio": _ratio_any,
    "fund_cap": _by_level(_money_or_unlimited),
    "class_b_self_ratio": _plain(_ratio),
    "out_of_area_factor": _by_kind,
    "supplementary_ratio": _plain(_ratio),
    "supplementary_cap": _plain(_money_or_unlimited),
    "critical_illness_threshold": _plain(_money),
    "critical_illness_bands": _bands(_plain(_ratio)),
    "critical_illness_cap": _plain(_money_or_unlimited),
}

SETTINGS: dict[str, Callable[[yaml.Node], Any]] = {
    "deductible_scope": _choice(("annual", "per_admission")),
    "bands_over": _choice(("admission", "year")),
    "supplementary_name": lambda node: node,  # texts: read by `_read_node`
    "assumptions": lambda node: node,
    "current_year_account_first": _flag,
}

ENTRY_KEYS = {"value", "source", "confidence", "quote", "disputed"}
SERIES_KEYS = {"values", "source", "confidence", "quote", "yearly"}


def _read_series(reader: _Reader, name: str, node: yaml.Node, path: str, levels: tuple[str, ...]) -> Series:
    fields = reader.mapping(node, path, SERIES_KEYS, ("values",))
    defaults = {k: reader.guard(v, f"{path}.{k}", lambda v=v: _string(v)) for k, (_, v) in fields.items()
                if k not in ("values", "yearly")}
    yearly = reader.guard(fields["yearly"][1], f"{path}.yearly", lambda: _flag(fields["yearly"][1]), False) \
        if "yearly" in fields else False
    entries: list[Entry] = []
    if "values" in fields:
        values = fields["values"][1]
        for key, (knode, vnode) in reader.mapping(values, f"{path}.values", None).items():
            sub = f"{path}.values.{key}"
            start = reader.guard(knode, sub, lambda knode=knode: _date(knode))
            entry = reader.guard(vnode, sub, lambda vnode=vnode, sub=sub, start=start: _read_entry(
                reader, name, vnode, sub, levels, defaults, start))
            if start is not None and any(e.start == start for e in entries):
                reader.fail(knode, sub, "two values on one date")
            elif start is not None and entry is not None:
                entries.append(entry)
        if isinstance(values, yaml.MappingNode) and not values.value:
            reader.fail(values, f"{path}.values", "needs at least one dated value")
    entries.sort(key=lambda e: e.start)
    return Series(name, tuple(entries), bool(yearly))


def _read_disputed(reader: _Reader, name: str, node: yaml.Node, path: str, levels: tuple[str, ...]) -> Disputed:
    """`disputed: {other: VALUE or null, check: ID, reason: {zh, en}}`: a value a check found in doubt."""
    fields = reader.mapping(node, path, {"other", "check", "reason"}, ("other", "check", "reason"))
    if not {"other", "check", "reason"} <= fields.keys():
        raise _Invalid(node, "a dispute needs 'other', 'check' and 'reason'")
    other_node = fields["other"][1]
    other = None if _is_null(other_node) else PARAMETERS[name](reader, other_node, f"{path}.other", levels)
    reason = _read_text(reader, fields["reason"][1], f"{path}.reason")
    if reason is None:
        raise _Invalid(fields["reason"][1], "a dispute needs a reason in zh and en")
    return Disputed(other, _ident(fields["check"][1]), reason)


def _read_entry(reader: _Reader, name: str, node: yaml.Node, path: str, levels: tuple[str, ...],
                defaults: dict[str, Any], start: dt.date | None) -> Entry:
    long_form = isinstance(node, yaml.MappingNode) and any(
        isinstance(k, yaml.ScalarNode) and k.value == "value" for k, _ in node.value)
    meta = dict(defaults)
    value_node = node
    disputed = None
    if long_form:
        fields = reader.mapping(node, path, ENTRY_KEYS, ("value",))
        value_node = fields["value"][1]
        for key in ("source", "confidence", "quote"):
            if key in fields:
                meta[key] = _string(fields[key][1])
        if "disputed" in fields:
            disputed = _read_disputed(reader, name, fields["disputed"][1], f"{path}.disputed", levels)
    if meta.get("confidence") is None or meta.get("source") is None:
        missing = "source" if meta.get("source") is None else "confidence"
        raise _Invalid(node, f"no {missing}: give it here or once for the parameter")
    if meta["confidence"] not in CONFIDENCE:
        raise _Invalid(node, f"confidence '{meta['confidence']}' is not one of: {', '.join(CONFIDENCE)}")
    reader.source_refs.append((node, path, meta["source"]))
    value = None if _is_null(value_node) else PARAMETERS[name](reader, value_node, path, levels)
    return Entry(start or dt.date.min, value, meta["source"], meta["confidence"], meta.get("quote"), disputed)


def _read_text(reader: _Reader, node: yaml.Node, path: str) -> Text | None:
    if isinstance(node, yaml.ScalarNode):
        text = reader.guard(node, path, lambda: _string(node))
        return Text(text, text) if text else None
    fields = reader.mapping(node, path, {"zh", "en"}, ("zh", "en"))
    zh = reader.guard(fields["zh"][1], f"{path}.zh", lambda: _string(fields["zh"][1])) if "zh" in fields else None
    en = reader.guard(fields["en"][1], f"{path}.en", lambda: _string(fields["en"][1])) if "en" in fields else None
    return Text(zh, en) if zh and en else None


def _read_node(reader: _Reader, fields: dict[str, tuple[yaml.Node, yaml.Node]], path: str,
               levels: tuple[str, ...]) -> Node:
    params: dict[str, Series] = {}
    settings: dict[str, Any] = {}
    for key, (_, vnode) in fields.items():
        sub = f"{path}.{key}" if path else key
        if key in PARAMETERS:
            params[key] = _read_series(reader, key, vnode, sub, levels)
        elif key == "supplementary_name":
            settings[key] = _read_text(reader, vnode, sub)
        elif key == "assumptions":
            texts = [_read_text(reader, n, f"{sub}[{i}]") for i, n in enumerate(reader.sequence(vnode, sub))]
            settings[key] = tuple(t for t in texts if t)
        elif key in SETTINGS:
            value = reader.guard(vnode, sub, lambda vnode=vnode, key=key: SETTINGS[key](vnode))
            if value is not None:
                settings[key] = value
    return Node(params, settings)


NODE_KEYS = set(PARAMETERS) | set(SETTINGS)
WHEN: dict[str, Callable[[yaml.Node], Any]] = {
    "member": _choice(MEMBERS),
    "grade": _whole,
    "age_min": _whole,
    "age_max": _whole,
    "retired_from": _year,
    "retired_until": _year,
}


def _read_visit(reader: _Reader, visit_id: str, node: yaml.Node, path: str) -> Visit:
    fields = reader.mapping(node, path, NODE_KEYS | {"levels", "rows"}, ("levels",))
    levels: tuple[str, ...] = ()
    if "levels" in fields:
        items = reader.sequence(fields["levels"][1], f"{path}.levels")
        levels = tuple(lv for i, n in enumerate(items)
                       if (lv := reader.guard(n, f"{path}.levels[{i}]", lambda n=n: _level(n))))
        if not levels:
            reader.fail(fields["levels"][1], f"{path}.levels", "needs at least one level")
    base = _read_node(reader, {k: v for k, v in fields.items() if k in NODE_KEYS}, path, levels)
    rows: list[Row] = []
    if "rows" in fields:
        for i, rnode in enumerate(reader.sequence(fields["rows"][1], f"{path}.rows")):
            rows.append(_read_row(reader, rnode, f"{path}.rows[{i}]", levels))
    return Visit(base.params, base.settings, visit_id, levels, tuple(rows))


def _read_row(reader: _Reader, node: yaml.Node, path: str, levels: tuple[str, ...]) -> Row:
    fields = reader.mapping(node, path, NODE_KEYS | {"when"}, ("when",))
    when: dict[str, Any] = {}
    if "when" in fields:
        for key, (_, vnode) in reader.mapping(fields["when"][1], f"{path}.when", set(WHEN)).items():
            value = reader.guard(vnode, f"{path}.when.{key}", lambda vnode=vnode, key=key: WHEN[key](vnode))
            if value is not None:
                when[key] = value
    base = _read_node(reader, {k: v for k, v in fields.items() if k != "when"}, path, levels)
    return Row(base.params, base.settings, when)


def _read_plan(reader: _Reader, plan_id: str, node: yaml.Node, path: str) -> Plan:
    keys = NODE_KEYS | {"name", "members", "grades", "visits"}
    fields = reader.mapping(node, path, keys, ("name", "visits"))
    name = _read_text(reader, fields["name"][1], f"{path}.name") if "name" in fields else None
    members: tuple[str, ...] = ()
    if "members" in fields:
        items = reader.sequence(fields["members"][1], f"{path}.members")
        members = tuple(m for i, n in enumerate(items)
                        if (m := reader.guard(n, f"{path}.members[{i}]", lambda n=n: _choice(MEMBERS)(n))))
    grades: dict[int, Text] = {}
    if "grades" in fields:
        for key, (knode, vnode) in reader.mapping(fields["grades"][1], f"{path}.grades", None).items():
            grade = reader.guard(knode, f"{path}.grades.{key}", lambda knode=knode: _whole(knode))
            label = _read_text(reader, vnode, f"{path}.grades.{key}")
            if grade is not None and label is not None:
                grades[grade] = label
    visits: dict[str, Visit] = {}
    if "visits" in fields:
        for key, (_, vnode) in reader.mapping(fields["visits"][1], f"{path}.visits", set(VISITS)).items():
            visits[key] = _read_visit(reader, key, vnode, f"{path}.visits.{key}")
    base = _read_node(reader, {k: v for k, v in fields.items() if k in NODE_KEYS}, path, ())
    return Plan(base.params, base.settings, plan_id, name or Text(plan_id, plan_id), members, grades, visits)


REGION_KEYS = {"region", "name", "aliases", "insurance_year_start", "sources", "notes", "plans", "code", "province",
               "imported", "audit"}


def _read_sources(reader: _Reader, node: yaml.Node) -> dict[str, Source]:
    sources: dict[str, Source] = {}
    for key, (_, vnode) in reader.mapping(node, "sources", None).items():
        path = f"sources.{key}"
        fields = reader.mapping(vnode, path, set(SOURCE_KEYS), ("title",))
        values = {k: reader.guard(v, f"{path}.{k}", lambda v=v, k=k, p=f"{path}.{k}": SOURCE_KEYS[k](reader, v, p))
                  for k, (_, v) in fields.items()}
        if values.get("title"):
            sources[key] = Source(key, **{k: v for k, v in values.items() if v is not None})
    return sources


def _issuers(reader: _Reader, node: yaml.Node, path: str) -> tuple[str, ...]:
    if isinstance(node, yaml.ScalarNode):
        return (_string(node),)
    return tuple(_string(n) for n in reader.sequence(node, path))


SOURCE_KEYS: dict[str, Callable[[_Reader, yaml.Node, str], Any]] = {
    "title": lambda r, n, p: _string(n), "url": lambda r, n, p: _string(n), "file": lambda r, n, p: _string(n),
    "doc_no": lambda r, n, p: _string(n), "issuer": _issuers, "published": lambda r, n, p: _date(n),
    "effective": lambda r, n, p: _date(n), "quote": lambda r, n, p: _string(n),
}
CODE_RE = re.compile(r"^[1-9][0-9]{5}$")


def _read_region(reader: _Reader, root: yaml.Node, stem: str) -> Region | None:
    fields = reader.mapping(root, "", REGION_KEYS, ("region", "name", "sources", "plans"))
    region_id = reader.guard(fields["region"][1], "region", lambda: _ident(fields["region"][1])) \
        if "region" in fields else None
    if region_id and region_id != stem:
        reader.fail(fields["region"][1], "region", f"'{region_id}' must match the file name '{stem}'")
    name = _read_text(reader, fields["name"][1], "name") if "name" in fields else None
    aliases: list[str] = []
    if "aliases" in fields:
        for i, n in enumerate(reader.sequence(fields["aliases"][1], "aliases")):
            alias = reader.guard(n, f"aliases[{i}]", lambda n=n: _string(n))
            if alias:
                aliases.append(alias)
                reader.alias_lines[alias] = (n.start_mark.line + 1, f"aliases[{i}]")
    year_start = (1, 1)
    if "insurance_year_start" in fields:
        node = fields["insurance_year_start"][1]
        year_start = reader.guard(node, "insurance_year_start", lambda: _month_day(node), (1, 1))
    sources = _read_sources(reader, fields["sources"][1]) if "sources" in fields else {}
    notes: list[Text] = []
    if "notes" in fields:
        for i, n in enumerate(reader.sequence(fields["notes"][1], "notes")):
            note = _read_text(reader, n, f"notes[{i}]")
            if note:
                notes.append(note)
    plans: dict[str, Plan] = {}
    if "plans" in fields:
        for key, (_, vnode) in reader.mapping(fields["plans"][1], "plans", set(PLANS)).items():
            plans[key] = _read_plan(reader, key, vnode, f"plans.{key}")
    for node, path, source in reader.source_refs:
        if source not in sources:
            reader.fail(node, path, f"source '{source}' is not listed under 'sources'")
    if not region_id or not name:
        return None
    code = reader.guard(fields["code"][1], "code", lambda: _code(fields["code"][1])) if "code" in fields else None
    province = _read_text(reader, fields["province"][1], "province") if "province" in fields else None
    imported = reader.guard(fields["imported"][1], "imported", lambda: _imported(reader, fields["imported"][1])) \
        if "imported" in fields else None
    return Region(region_id, name, tuple(aliases), year_start, sources, tuple(notes), plans, reader.file,
                  code, province, imported)


def _code(node: yaml.Node) -> str:
    text = _scalar(node, "a 6-digit code")
    if not CODE_RE.match(text):
        raise _Invalid(node, f"'{text}' is not a 6-digit administrative code")
    return text


def _imported(reader: _Reader, node: yaml.Node) -> str:
    """`imported: {dataset: NAME, commit: HASH}` marks a generated file (hand files win over it)."""
    fields = reader.mapping(node, "imported", {"dataset", "commit", "file"}, ("dataset", "commit"))
    if "dataset" not in fields or "commit" not in fields:
        raise _Invalid(node, "needs 'dataset' and 'commit'")
    return f"{_string(fields['dataset'][1])}@{_string(fields['commit'][1])}"


def load_file(path: Path, alias_lines: dict[str, tuple[int, str]] | None = None, shown: str | None = None
              ) -> tuple[Region | None, list[PolicyError]]:
    """One policy file: the region, or the problems found in it (`alias_lines` gets where aliases are).

    `shown` is the name used in messages (the path inside the policy folder); the file name by default."""
    return parse_text(path.read_bytes() if path.exists() else None, path.stem, shown or path.name, alias_lines)


def parse_text(data: bytes | None, stem: str, shown: str, alias_lines: dict[str, tuple[int, str]] | None = None
               ) -> tuple[Region | None, list[PolicyError]]:
    """A policy file's bytes (None: unreadable) checked and converted: the region or its problems."""
    reader = _Reader(shown)
    if alias_lines is not None:
        reader.alias_lines = alias_lines
    try:
        if data is None:
            raise OSError("no such file")
        root = yaml.compose(data.decode("utf-8"), Loader=LOADER)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(err, "problem", None) or str(err)
        return None, [PolicyError(shown, line, "", f"not valid YAML: {problem}")]
    except (OSError, UnicodeDecodeError) as err:
        return None, [PolicyError(shown, 1, "", f"cannot read: {err}")]
    if root is None:
        return None, [PolicyError(shown, 1, "", "the file is empty")]
    region = _read_region(reader, root, stem)
    return (None if reader.errors else region), reader.errors


def policy_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder in use: an explicit one, else $YIBAO_POLICY_DIR, else the policies shipped with us."""
    chosen = explicit or os.environ.get("YIBAO_POLICY_DIR")
    return Path(chosen) if chosen else DEFAULT_DIR


def load_policies(directory: str | os.PathLike[str] | None = None) -> PolicySet:
    """Every `*.yaml` in the folder and its subfolders, validated; raises `PolicyErrors` listing all
    problems. Hand-maintained files win over imported ones for the same region (`rules.folder`)."""
    from rules.folder import load_folder

    return load_folder(policy_dir(directory))


def name_index(regions: dict[str, Region], errors: list[PolicyError],
               alias_lines: dict[str, dict[str, tuple[int, str]]]) -> dict[str, str]:
    """id, names and aliases → region id; a name two regions claim is an error (at the alias's line)."""
    names: dict[str, str] = {}
    for region in regions.values():
        for name in dict.fromkeys((region.id, region.name.zh, region.name.en, *region.aliases)):
            key = name.strip().casefold()
            other = names.setdefault(key, region.id)
            if other != region.id:
                line, path = alias_lines.get(region.path, {}).get(name, (1, "aliases"))
                errors.append(PolicyError(region.path, line, path, f"'{name}' also names region '{other}'"))
    return names
