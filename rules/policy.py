"""The in-memory form of a policy file: dated parameter series, rows of conditions, plans, regions.

Built only by `rules.loader`, which validates the YAML first; the engine reads these objects and never
the YAML. Everything here is immutable so a loaded policy set can be shared by every request.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from rules.case import Source, Text


class Unlimited:
    """The value of a cap the source states as "none" (different from an unknown cap)."""

    _instance: Unlimited | None = None

    def __new__(cls) -> Unlimited:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "unlimited"


UNLIMITED = Unlimited()


@dataclass(frozen=True, slots=True)
class Band:
    """A marginal band: `ratio` applies to the part of an amount above `above` (up to the next band)."""

    above: Decimal
    ratio: Decimal | dict[str, Decimal]


@dataclass(frozen=True, slots=True)
class Disputed:
    """Why a value is in doubt: the other value a check found (None when there is none) and the reason."""

    other: Any
    check: str
    reason: Text


@dataclass(frozen=True, slots=True)
class Entry:
    """One dated value of a parameter. `value is None` ends the parameter: unknown from `start`."""

    start: dt.date
    value: Any
    source: str
    confidence: str
    quote: str | None = None
    disputed: Disputed | None = None


@dataclass(frozen=True, slots=True)
class Series:
    """A parameter's values over time; the one in force is the latest entry on or before a date."""

    name: str
    entries: tuple[Entry, ...]
    yearly: bool = False  # re-set every insurance year: a value past its own year is stale
    starts: tuple[dt.date, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "starts", tuple(e.start for e in self.entries))

    def at(self, day: dt.date) -> Entry | None:
        i = bisect.bisect_right(self.starts, day)
        if i == 0:
            return None
        entry = self.entries[i - 1]
        return None if entry.value is None else entry


@dataclass(frozen=True, slots=True)
class Node:
    """What plans, visits and rows share: dated parameters and plain settings."""

    params: dict[str, Series]
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Row(Node):
    when: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Visit(Node):
    id: str
    levels: tuple[str, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class Plan(Node):
    id: str
    name: Text
    members: tuple[str, ...]
    grades: dict[int, Text]
    visits: dict[str, Visit]


@dataclass(frozen=True, slots=True)
class Region:
    id: str
    name: Text
    aliases: tuple[str, ...]
    year_start: tuple[int, int]
    sources: dict[str, Source]
    notes: tuple[Text, ...]
    plans: dict[str, Plan]
    path: str
    code: str | None = None          # 6-digit administrative code
    province: Text | None = None
    imported: str | None = None      # the dataset a generated file came from; None when hand-maintained

    def insurance_year(self, day: dt.date) -> tuple[dt.date, dt.date]:
        """The insurance year (医保年度) containing `day`: first and last day."""
        return _insurance_year(self.year_start, day)

    def conditions(self, plan: str) -> set[str]:
        """The person details that pick a row in this plan (`age`, `retired_year`, `grade`, `member`)."""
        found: set[str] = set()
        p = self.plans.get(plan)
        if p is None:
            return found
        if p.members:
            found.add("member")
        if p.grades:
            found.add("grade")
        for visit in p.visits.values():
            for row in visit.rows:
                for key in row.when:
                    found.add(WHEN_NEEDS[key])
        return found


@lru_cache(maxsize=4096)
def _insurance_year(year_start: tuple[int, int], day: dt.date) -> tuple[dt.date, dt.date]:
    """Cached: every estimate asks it for its day (and staleness for each yearly figure's start), and
    building the dates costs more than the rest of a lookup."""
    month, dom = year_start
    start = dt.date(day.year, month, dom)
    if day < start:
        start = dt.date(day.year - 1, month, dom)
    end = dt.date(start.year + 1, month, dom) - dt.timedelta(days=1)
    return start, end


WHEN_NEEDS = {
    "member": "member",
    "grade": "grade",
    "age_min": "age",
    "age_max": "age",
    "retired_from": "retired_year",
    "retired_until": "retired_year",
}


@dataclass(frozen=True, slots=True)
class RegionHead:
    """What names and groups a region, without its plans: enough to find it, list it and pick it."""

    id: str
    name: Text
    aliases: tuple[str, ...]
    code: str | None
    province: Text | None
    imported: str | None
    path: str

    @classmethod
    def of(cls, region: Region) -> RegionHead:
        return cls(region.id, region.name, region.aliases, region.code, region.province, region.imported,
                   region.path)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Every region, found by id, name or alias. `regions` may build each region on first use (see
    `rules.folder`); `heads` has every region's names and province at once."""

    regions: Mapping[str, Region]
    names: dict[str, str]
    directory: str
    shadowed: dict[str, str] = field(default_factory=dict)  # imported file → the hand file that wins
    heads: dict[str, RegionHead] = field(default_factory=dict)

    def find(self, text: str) -> Region | None:
        key = text.strip().casefold()
        region_id = self.names.get(key)
        return self.regions.get(region_id) if region_id else None

    def __iter__(self):
        return iter(self.regions.values())
