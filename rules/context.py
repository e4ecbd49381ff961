"""One run of an estimate: the case's place in a region's policy, the values it looks up, and what the
run records (steps, warnings, sources, the parameters it found unknown or stale).

An unknown parameter never stops a run. It takes one of its two extremes, chosen by the run's
scenario: the value with which the insurance pays least (the default, so the point figures are the
most the person pays) or most. `rules.engine` runs the corners of these extremes and reports ranges.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rules.case import Case, Message, Source, Stale, Step, Used
from rules.lookups import Found, Place, find, place, unknown_entry
from rules.policy import UNLIMITED, Band, Entry, Plan, Region, Row, Visit

ONE = Decimal(1)


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


_UNSET = object()  # a setting no node states


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
    _place: Place = field(init=False, repr=False, compare=False)  # lookups shared by the place's runs

    def __post_init__(self) -> None:
        self._place = place(self.region, self.plan, self.visit, self.row, self.day)

    def nodes(self) -> tuple:
        return (self.row, self.visit, self.plan) if self.row else (self.visit, self.plan)

    def lookup(self, name: str) -> Found:
        """Where `name` is stated and its entry in force on the day; nothing is recorded."""
        found = self._place.found
        hit = found.get(name)
        if hit is None:
            hit = found[name] = find(name, self.region, self.nodes(), self.day)
        return hit

    def has(self, name: str) -> bool:
        """Whether the policy states `name` at all on this date (row, visit or plan)."""
        return self.lookup(name).anywhere

    def extreme(self, name: str) -> Any:
        """The unknown `name` at this run's extreme; recorded so the result lists it."""
        if name not in self.unknown:
            self.unknown.append(name)
        return EXTREMES[name][name in self.highs]

    def entry(self, name: str, required: bool = True) -> Entry | None:
        """The value in force on the day of service, from the row, else the visit, else the plan; an
        unknown required value comes back as a sourceless entry holding the run's extreme."""
        hit = self.lookup(name)
        found = hit.entry
        if found is None:
            if required:
                value = self.extreme(name)
                self.step("unknown_parameter", Decimal(0), parameter=[name])
                return unknown_entry(self.day, value)
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
        if hit.stale is not None:
            self.stale.setdefault(name, hit.stale)
            return hit.weaker
        return found

    def at_level(self, name: str, value: Any) -> Any:
        """A by-level value at the hospital's level; a level the policy leaves out is unknown."""
        if not isinstance(value, dict):
            return value
        if self.case.level in value:
            return value[self.case.level]
        self.step("unknown_parameter", Decimal(0), parameter=[name])
        return self.extreme(name)

    def setting(self, name: str, default: Any = None) -> Any:
        """A plain setting from the row, else the visit, else the plan (cached per place)."""
        settings = self._place.settings
        if name not in settings:
            settings[name] = next((node.settings[name] for node in self.nodes() if name in node.settings), _UNSET)
        value = settings[name]
        return default if value is _UNSET else value

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
        if self.record:
            self.steps.append(Step(key, Message(key, (*args.items(), ("amount", amount))), amount, used))

    def warn(self, key: str, **args: Any) -> None:
        if not self.record:
            return
        message = Message(key, tuple(args.items()))
        if message not in self.notices:
            self.notices.append(message)
