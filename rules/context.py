"""One run of an estimate: the case's place in a region's policy, the values it looks up, and what the
run records (steps, warnings, sources, the parameters it found unknown or stale).

An unknown parameter never stops a run. It takes one of its two extremes, chosen by the run's
scenario: the value with which the insurance pays least (the default, so the point figures are the
most the person pays) or most. `rules.engine` runs the corners of these extremes and reports ranges.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rules.case import Case, Message, Source, Stale, Step, Used
from rules.policy import UNLIMITED, Band, Entry, Plan, Region, Row, Series, Visit

ONE = Decimal(1)
CONFIDENCE_ORDER = ("confirmed", "secondary", "third-party", "seed-only")  # strongest first


class Spent:
    """An unknown cap at its low extreme: whatever the cap is, nothing of it is left this year."""

    _instance: Spent | None = None

    def __new__(cls) -> Spent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "spent"


SPENT = Spent()
WHOLE = object()  # an unknown deductible or threshold at its low extreme: it swallows the whole amount

# (insurance pays least, insurance pays most) for each parameter the policy may leave unknown
EXTREMES: dict[str, tuple[Any, Any]] = {
    "deductible": (WHOLE, Decimal(0)),
    "later_admission_factor": (ONE, Decimal(0)),
    "ratio": (Decimal(0), ONE),
    "fund_cap": (SPENT, UNLIMITED),
    "class_b_self_ratio": (ONE, Decimal(0)),
    "out_of_area_factor": (Decimal(0), ONE),
    "supplementary_ratio": (Decimal(0), ONE),
    "supplementary_cap": (SPENT, UNLIMITED),
    "critical_illness_threshold": (WHOLE, Decimal(0)),
    "critical_illness_bands": ((Band(Decimal(0), Decimal(0)),), (Band(Decimal(0), ONE),)),
    "critical_illness_cap": (SPENT, UNLIMITED),
    # what a layer already paid this year, when the case does not say and the policy cannot tell
    "ytd_supplementary": (SPENT, Decimal(0)),
    "ytd_critical": (SPENT, Decimal(0)),
}


class Missing(Exception):
    """Nothing useful can be said (region, plan, visit, level, rule or a person detail): a refusal."""

    def __init__(self, missing: list[str], reason: str = "cannot_estimate"):
        self.missing = missing
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Shown:
    """A parameter's value for a message, put in words only when the message is read."""

    value: Any
    parameter: str

    def text(self, lang: str) -> str:
        from rules.messages import shown_value

        return shown_value(self.value, self.parameter)[1 if lang == "en" else 0]


_YEARS: dict[int, tuple[Entry, Region, tuple[dt.date, dt.date, Entry]]] = {}
# (id(visit), id(row), day) → (visit, row, {name: (series, entry in force, stated anywhere)}): the node
# walk and the date search of each parameter, done once per place and day instead of once per lookup
# and corner run. The value holds the visit and row themselves, so their ids cannot be reused while
# the key is cached.
_LOOKUPS: dict[tuple, tuple] = {}
CACHE_LIMIT = 100_000


def _year_of(region: Region, entry: Entry) -> tuple[dt.date, dt.date, Entry]:
    """The insurance year an entry took effect in, and the entry with its confidence lowered; worked
    out once per entry (the cache holds the entry itself, so a reused id never matches)."""
    hit = _YEARS.get(id(entry))
    if hit is not None and hit[0] is entry and hit[1] is region:
        return hit[2]
    start, end = region.insurance_year(entry.start)
    found = (start, end, dataclasses.replace(entry, confidence=lowered(entry.confidence)))
    if len(_YEARS) > CACHE_LIMIT:
        _YEARS.clear()
    _YEARS[id(entry)] = (entry, region, found)
    return found


def lowered(confidence: str) -> str:
    """One step weaker: a figure used past its own year is no longer confirmed for this one."""
    if confidence not in CONFIDENCE_ORDER:
        return confidence
    return CONFIDENCE_ORDER[min(CONFIDENCE_ORDER.index(confidence) + 1, len(CONFIDENCE_ORDER) - 1)]


@dataclass(slots=True)
class Context:
    """The case's place in one region's policy, the run's scenario, and what the run has recorded."""

    case: Case
    region: Region
    plan: Plan
    visit: Visit
    row: Row | None
    day: dt.date
    highs: frozenset[str] = frozenset()  # unknowns taken at their "insurance pays most" extreme
    steps: list[Step] = field(default_factory=list)
    warnings: list[Message] = field(default_factory=list)
    notices: list[Message] = field(default_factory=list)
    sources: dict[str, Source] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    stale: dict[str, Stale] = field(default_factory=dict)
    record: bool = True  # steps and warnings are kept for the point run only (the others give figures)
    _table: dict[str, tuple] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = (id(self.visit), id(self.row), self.day)
        hit = _LOOKUPS.get(key)
        if hit is None or hit[0] is not self.visit or hit[1] is not self.row:
            if len(_LOOKUPS) > CACHE_LIMIT:
                _LOOKUPS.clear()
            hit = _LOOKUPS[key] = (self.visit, self.row, {})
        self._table = hit[2]

    def nodes(self) -> tuple:
        return (self.row, self.visit, self.plan) if self.row else (self.visit, self.plan)

    def lookup(self, name: str) -> tuple[Series | None, Entry | None, bool]:
        """The series that states `name` (row, else visit, else plan), its entry in force on the day,
        and whether any node states it on the day; nothing is recorded. Worked out once per place and
        day (`_LOOKUPS`): every run of every estimate there asks the same."""
        hit = self._table.get(name)
        if hit is None:
            hit = self._table[name] = self._find(name)
        return hit

    def _find(self, name: str) -> tuple[Series | None, Entry | None, bool]:
        series = found = None
        for node in self.nodes():
            series = node.params.get(name)
            if series is not None:
                found = series.at(self.day)
                break
        # a nearer node may end the parameter while a farther one still states it
        anywhere = any(name in node.params and node.params[name].at(self.day) is not None
                       for node in self.nodes())
        return series, found, anywhere

    def has(self, name: str) -> bool:
        """Whether the policy states `name` at all on this date (row, visit or plan)."""
        return self.lookup(name)[2]

    def extreme(self, name: str) -> Any:
        """The unknown `name` at this run's extreme; recorded so the result lists it."""
        if name not in self.unknown:
            self.unknown.append(name)
        return EXTREMES[name][name in self.highs]

    def entry(self, name: str, required: bool = True) -> Entry | None:
        """The value in force on the day of service, from the row, else the visit, else the plan; an
        unknown required value comes back as a sourceless entry holding the run's extreme."""
        series, found, _ = self.lookup(name)
        if found is None:
            if required:
                value = self.extreme(name)
                self.step("unknown_parameter", Decimal(0), parameter=[name])
                return Entry(self.day, value, "", "unknown")
            return None
        if self.record:
            if found.source not in self.sources:
                self.sources[found.source] = self.region.sources[found.source]
            if found.confidence == "seed-only":
                self._unverified(name, found)
            elif found.confidence == "third-party":
                self.warn("third_party")
            if found.disputed is not None:
                self._disputed(name, found)
        if series.yearly:
            found = self._check_stale(name, found)
        return found

    def _check_stale(self, name: str, entry: Entry) -> Entry:
        known_start, known_end, weaker = _year_of(self.region, entry)
        if self.day <= known_end:
            return entry
        year = self.region.insurance_year(self.day)[0].year
        self.stale.setdefault(name, Stale(name, entry.start, known_start.year, year))
        return weaker

    def at_level(self, name: str, value: Any) -> Any:
        """A by-level value at the hospital's level; a level the policy leaves out is unknown."""
        if not isinstance(value, dict):
            return value
        if self.case.level in value:
            return value[self.case.level]
        self.step("unknown_parameter", Decimal(0), parameter=[name])
        return self.extreme(name)

    def setting(self, name: str, default: Any = None) -> Any:
        for node in self.nodes():
            if name in node.settings:
                return node.settings[name]
        return default

    def _disputed(self, name: str, entry: Entry) -> None:
        """A figure an audit found in doubt is named, with the other value and the reason."""
        other = "—" if entry.disputed.other is None else Shown(entry.disputed.other, name)
        reason = (entry.disputed.reason.zh, entry.disputed.reason.en)
        message = Message("disputed", (("parameter", [name]), ("value", Shown(entry.value, name)),
                                       ("other", other), ("reason", reason)))
        if message not in self.warnings:
            self.warnings.append(message)

    def _unverified(self, name: str, entry: Entry) -> None:
        source = self.region.sources[entry.source].title
        message = Message("unverified", (("parameter", [name]), ("value", Shown(entry.value, name)),
                                         ("source", source)))
        if message not in self.warnings:
            self.warnings.append(message)

    def used(self, name: str, entry: Entry) -> tuple[Used, ...]:
        """Where a value came from, for a step; nothing for an unknown (it has no source)."""
        if not entry.source or not self.record:
            return ()
        return (Used(name, entry.start, entry.source, entry.confidence, entry.quote, name in self.stale),)

    def step(self, key: str, amount: Decimal, used: tuple[Used, ...] = (), **args: Any) -> None:
        if not self.record:
            return
        self.steps.append(Step(key, Message(key, (*tuple(args.items()), ("amount", amount))), amount, used))

    def warn(self, key: str, **args: Any) -> None:
        if not self.record:
            return
        message = Message(key, tuple(args.items()))
        if message not in self.notices:
            self.notices.append(message)
