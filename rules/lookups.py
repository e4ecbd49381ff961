"""Where a run finds a dated parameter, worked out once per place and day.

Every run of every estimate at the same place (region, plan, visit, row) and day asks the same
questions: which node states a parameter, which dated entry is in force, and whether a yearly figure
is past its own insurance year. The answers do not depend on the case's amounts or on the run's
scenario, so they are cached here; what a run records (sources, warnings, staleness) stays in
`rules.context`, which replays it from the cached answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import lru_cache
from typing import Any, NamedTuple

from rules.case import Stale
from rules.policy import Entry, Plan, Region, Row, Series, Visit

CONFIDENCE_ORDER = ("confirmed", "secondary", "third-party", "seed-only")  # strongest first
CACHE_LIMIT = 100_000  # places × days kept; past it the cache starts afresh (a reload's old objects go)


class Found(NamedTuple):
    """A parameter at one place and day: the series that states it (row, else visit, else plan), its
    entry in force (None: not stated or ended), whether any node states it, and for a yearly figure
    past its own year the staleness record and the entry with its confidence lowered."""

    series: Series | None
    entry: Entry | None
    anywhere: bool
    stale: Stale | None = None
    weaker: Entry | None = None


class Place(NamedTuple):
    """The answers cached for one place and day: parameters by name, settings by name."""

    nodes: tuple  # (region, plan, visit, row): the objects themselves, compared by identity
    found: dict[str, Found]
    settings: dict[str, Any]


# (id(region), id(plan), id(visit), id(row), day) → Place. The Place holds the objects themselves, so
# their ids cannot be reused by other objects while the key is cached. Every level is in the key: a
# policy built by replacing its plan or region may share the visits of another.
_PLACES: dict[tuple, Place] = {}


def place(region: Region, plan: Plan, visit: Visit, row: Row | None, day: dt.date) -> Place:
    """The cache of answers for one place and day."""
    key = (id(region), id(plan), id(visit), id(row), day)
    hit = _PLACES.get(key)
    if hit is None:  # a hit is these very objects: the cached Place keeps them, so no other has their ids
        if len(_PLACES) > CACHE_LIMIT:
            _PLACES.clear()
        hit = _PLACES[key] = Place((region, plan, visit, row), {}, {})
    return hit


def find(name: str, region: Region, nodes: tuple[Plan | Visit | Row, ...], day: dt.date) -> Found:
    """Look `name` up from the nearest node outwards; the first node that has a series decides."""
    series = entry = None
    for node in nodes:
        series = node.params.get(name)
        if series is not None:
            entry = series.at(day)
            break
    # a nearer node may end the parameter while a farther one still states it
    anywhere = any(name in node.params and node.params[name].at(day) is not None for node in nodes)
    if entry is None or not series.yearly:
        return Found(series, entry, anywhere)
    known_start, known_end = region.insurance_year(entry.start)
    if day <= known_end:
        return Found(series, entry, anywhere)
    year = region.insurance_year(day)[0].year
    weaker = dataclasses.replace(entry, confidence=lowered(entry.confidence))
    return Found(series, entry, anywhere, Stale(name, entry.start, known_start.year, year), weaker)


@lru_cache(maxsize=1024)
def unknown_entry(day: dt.date, value: Any) -> Entry:
    """The sourceless entry an unknown parameter takes in a run (shared: entries are immutable)."""
    return Entry(day, value, "", "unknown")


def lowered(confidence: str) -> str:
    """One step weaker: a figure used past its own year is no longer confirmed for this one."""
    if confidence not in CONFIDENCE_ORDER:
        return confidence
    return CONFIDENCE_ORDER[min(CONFIDENCE_ORDER.index(confidence) + 1, len(CONFIDENCE_ORDER) - 1)]
