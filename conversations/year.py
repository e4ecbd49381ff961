"""A person's insurance year, kept only with their consent: the profile (how they are insured) and one
ledger per region, plan and insurance year (the visits they recorded and what each layer paid).

Pure data and arithmetic, no I/O: `conversations.year_store` keeps a `Book` as JSON, the dialogue
(`conversations.year_desk`) reads it and asks for changes. A ledger is a list of entries, replayed in
order: a visit entry adds what that visit counted towards the year (`Totals`), a "set" entry replaces the
running totals with figures the person gave by hand (their year before the first entry, or a
correction). So undoing the last entry restores the totals before it exactly, and changing an earlier
visit's amount replays the visits after it through the engine, each from the totals before it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from rules.case import ZERO, CannotEstimate, Case, Estimate, InvalidCase, YearTotals
from rules.engine import estimate
from rules.policy import PolicySet

#: What the year counts in money: the engine's `YearTotals` fields (it maps them onto the next `Case`).
TOTAL_FIELDS = tuple(f.name for f in dataclasses.fields(YearTotals) if f.name != "admissions")
#: The dialogue's year-to-date questions and the total each answers.
QUESTION_TOTALS = {"ytd_deductible": "deductible_met", "ytd_fund": "fund_paid",
                   "ytd_compliant": "compliant", "ytd_burden": "burden"}
#: What a visit entry keeps of the case, to replay it when an earlier amount changes.
INPUT_FIELDS = ("visit", "level", "total", "self_pay", "class_b", "member", "grade", "age", "retired_year",
                "where")
AMOUNT_INPUTS = ("total", "self_pay", "class_b")
PROFILE_FIELDS = ("region", "plan", "grade", "member", "retired_year", "age", "lang")
CASE_FIELDS = frozenset(f.name for f in dataclasses.fields(Case))


def _dec(value: Any) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"not an amount: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"not an amount: {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class Totals:
    """What the insurance year has counted so far (or what one visit added to it)."""

    deductible_met: Decimal = ZERO
    fund_paid: Decimal = ZERO
    supplementary_paid: Decimal = ZERO
    critical_paid: Decimal = ZERO
    compliant: Decimal = ZERO
    burden: Decimal = ZERO
    admissions: int = 0

    def plus(self, other: Totals) -> Totals:
        return Totals(*(getattr(self, f) + getattr(other, f) for f in TOTAL_FIELDS),
                      admissions=self.admissions + other.admissions)

    def case_args(self) -> dict[str, Any]:
        """The next visit's `Case` keyword arguments, mapped by the engine's own `YearTotals.as_case`."""
        return YearTotals(*(getattr(self, f) for f in TOTAL_FIELDS), admissions=self.admissions).as_case()

    def answers(self) -> dict[str, Any]:
        """The dialogue's year-to-date answers, in the form a typed answer is stored."""
        out: dict[str, Any] = {q: f"{getattr(self, f):.2f}" for q, f in QUESTION_TOTALS.items()}
        out["admission"] = self.admissions + 1
        return out

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {f: f"{getattr(self, f):.2f}" for f in TOTAL_FIELDS if getattr(self, f)}
        if self.admissions:
            data["admissions"] = self.admissions
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Totals:
        admissions = data.get("admissions", 0)
        if not isinstance(admissions, int) or admissions < 0:
            raise ValueError("admissions")
        return cls(*(_dec(data.get(f, 0)) for f in TOTAL_FIELDS), admissions=admissions)


def visit_totals(result: Estimate) -> Totals:
    """What one visit adds to the year: its own figures, and the burden and admission the engine counted
    (`year_after` less the case's year so far). Not `year_after` less what the ledger held: where the
    case left what the supplementary fund or 大病 had paid to the engine to bound, `year_after` carries
    the engine's assumption, not a payment."""
    case, after = result.case, getattr(result, "year_after", None)
    if after is not None:
        burden, admissions = after.burden - case.ytd_burden, after.admissions - (case.admission - 1)
    else:
        burden = max(ZERO, result.compliant - result.fund - result.supplementary)
        admissions = 1 if case.visit == "inpatient" else 0
    return Totals(result.deductible, result.fund, result.supplementary, result.critical_illness,
                  result.compliant, max(ZERO, burden), max(0, admissions))


def year_from_estimate(result: Estimate, before: Totals) -> Totals:
    """The year's totals after this visit, from the totals before it."""
    return before.plus(visit_totals(result))


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a ledger: a recorded visit (`paid` is what it added) or the person's own figures
    for the year so far (`kind` "set": `paid` replaces the running totals)."""

    id: str
    kind: str  # "visit" | "set"
    date: dt.date
    paid: Totals
    inputs: dict[str, Any] = field(default_factory=dict)  # visit: the case without its year-to-date part
    personal: Decimal = ZERO  # visit: what the person paid of it
    exact: bool = True  # visit: False when the policy left a layer unknown (the figures pay least)

    @property
    def total(self) -> Decimal:
        return _dec(self.inputs.get("total", 0))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"i": self.id, "k": self.kind, "d": self.date.isoformat(), "t": self.paid.to_json()}
        if self.inputs:
            data["in"] = self.inputs
        if self.kind == "visit":
            data["p"] = f"{self.personal:.2f}"
        if not self.exact:
            data["x"] = 0
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        if data.get("k") not in ("visit", "set") or not isinstance(data.get("i"), str):
            raise ValueError("entry")
        inputs = data.get("in", {})
        if not isinstance(inputs, dict):
            raise ValueError("inputs")
        return cls(data["i"], data["k"], dt.date.fromisoformat(data["d"]), Totals.from_json(data.get("t", {})),
                   inputs, _dec(data.get("p", 0)), data.get("x", 1) != 0)


@dataclass(slots=True)
class Ledger:
    """One region's, plan's and insurance year's entries, in the order they were recorded."""

    region: str
    plan: str
    start: dt.date
    end: dt.date
    entries: list[Entry] = field(default_factory=list)

    @property
    def id(self) -> str:
        return ledger_id(self.region, self.plan, self.start)

    def totals(self, upto: int | None = None) -> Totals:
        """The year's totals after the first `upto` entries (all of them by default)."""
        running = Totals()
        for entry in self.entries[:upto]:
            running = entry.paid if entry.kind == "set" else running.plus(entry.paid)
        return running

    def case_args(self) -> dict[str, Any]:
        """The next visit's year-to-date case fields. After figures the person typed (a "set" entry last),
        what the supplementary fund and 大病 paid is not known: the engine derives or bounds it."""
        args = self.totals().case_args()
        if self.entries and self.entries[-1].kind == "set":
            args.update({k: None for k in ("ytd_supplementary", "ytd_critical") if k in args})
        return args

    def visits(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == "visit"]

    def index(self, entry_id: str) -> int | None:
        return next((i for i, e in enumerate(self.entries) if e.id == entry_id), None)

    def to_json(self, expires: dt.date) -> dict[str, Any]:
        return {"r": self.region, "pl": self.plan, "s": self.start.isoformat(), "e": self.end.isoformat(),
                "x": expires.isoformat(), "n": [e.to_json() for e in self.entries]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ledger:
        return cls(str(data["r"]), str(data["pl"]), dt.date.fromisoformat(data["s"]), dt.date.fromisoformat(data["e"]),
                   [Entry.from_json(e) for e in data.get("n", [])])


def ledger_id(region: str, plan: str, start: dt.date) -> str:
    return f"{region}:{plan}:{start.isoformat()}"


@dataclass(slots=True)
class Book:
    """Everything kept about one person's insurance years: the profile and the ledgers."""

    profile: dict[str, Any] | None = None
    ledgers: dict[str, Ledger] = field(default_factory=dict)

    @property
    def consented(self) -> bool:
        return self.profile is not None

    def ledger(self, policies: PolicySet, region: str, plan: str, day: dt.date) -> Ledger | None:
        """The ledger of the insurance year `day` falls in (a new, empty one if none is kept yet)."""
        found = policies.regions.get(region)
        if found is None or plan not in found.plans:
            return None
        start, end = found.insurance_year(day)
        return self.ledgers.get(ledger_id(region, plan, start)) or Ledger(region, plan, start, end)

    def keep(self, ledger: Ledger) -> None:
        if ledger.entries:
            self.ledgers[ledger.id] = ledger
        else:
            self.ledgers.pop(ledger.id, None)

    def expires(self, keep_days: int) -> dt.date:
        """The day the book may go: `keep_days` after the end of its latest insurance year."""
        ends = [ledger.end for ledger in self.ledgers.values()]
        return max(ends) + dt.timedelta(days=keep_days) if ends else dt.date.min

    def to_json(self, keep_days: int) -> dict[str, Any]:
        data: dict[str, Any] = {"l": {lid: ledger.to_json(ledger.end + dt.timedelta(days=keep_days))
                                      for lid, ledger in self.ledgers.items()}}
        if self.profile is not None:
            data["p"] = self.profile
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, today: dt.date) -> Book:
        """A stored book without the ledgers past their expiry; an unreadable ledger is left out."""
        if not isinstance(data, dict):
            return cls()
        profile = data.get("p") if isinstance(data.get("p"), dict) else None
        ledgers = {}
        for lid, raw in (data.get("l") or {}).items() if isinstance(data.get("l"), dict) else ():
            try:
                if dt.date.fromisoformat(raw["x"]) < today:
                    continue
                ledgers[lid] = Ledger.from_json(raw)
            except (KeyError, TypeError, ValueError):
                continue
        return cls(profile, ledgers)


# -- changes to a ledger ----------------------------------------------------------------------


class LedgerError(ValueError):
    """A change the ledger cannot take; `hint` is the text key telling the person why."""

    def __init__(self, hint: str, **values: Any):
        super().__init__(hint)
        self.hint = hint
        self.values = values


def visit_case(region: str, plan: str, inputs: dict[str, Any], day: dt.date, before: Totals | dict[str, Any]) -> Case:
    """The engine's case for a recorded visit, starting from the year's totals before it (or from a
    ledger's `case_args`)."""
    ytd = before.case_args() if isinstance(before, Totals) else before
    args: dict[str, Any] = {"region": region, "plan": plan, "date": day, **ytd}
    for name in INPUT_FIELDS:
        value = inputs.get(name)
        if value is None or name not in CASE_FIELDS:
            continue
        args[name] = _dec(value) if name in AMOUNT_INPUTS else int(value) if name == "grade" else value
    args.setdefault("total", ZERO)
    return Case(**args)


def _visit_entry(entry_id: str, ledger: Ledger, inputs: dict[str, Any], day: dt.date,
                 policies: PolicySet) -> tuple[Entry, Estimate]:
    """The visit computed from the ledger's totals so far."""
    try:
        case = visit_case(ledger.region, ledger.plan, inputs, day, ledger.case_args())
    except (InvalidCase, ValueError, TypeError):
        raise LedgerError("year.invalid_amount") from None
    result = estimate(case, policies)
    if isinstance(result, CannotEstimate):
        raise LedgerError("year.cannot_record")
    paid = visit_totals(result)
    return Entry(entry_id, "visit", day, paid, dict(inputs), result.personal, result.exact), result


def record(ledger: Ledger, entry_id: str, inputs: dict[str, Any], day: dt.date, policies: PolicySet,
           given: Totals | None = None) -> Entry:
    """Add a visit (once: a second call with the same id changes nothing and returns the first entry).

    `given` are the person's own figures for the year before this visit; when they differ from the
    ledger's, a "set" entry records them first, so the visit starts from what the person said.
    """
    done = ledger.index(entry_id)
    if done is not None:
        return ledger.entries[done]
    if given is not None and given != ledger.totals():
        ledger.entries.append(Entry(f"{entry_id}s", "set", day, given))
    entry, _ = _visit_entry(entry_id, ledger, inputs, day, policies)
    ledger.entries.append(entry)
    return entry


def undo(ledger: Ledger, entry_id: str) -> Entry | None:
    """Remove the last entry if it is `entry_id` (a second tap of the same undo removes nothing)."""
    if ledger.entries and ledger.entries[-1].id == entry_id:
        return ledger.entries.pop()
    return None


def change_total(ledger: Ledger, entry_id: str, total: Decimal, policies: PolicySet) -> Entry:
    """Give a recorded visit a new total and recompute it and every visit after it, in order."""
    at = ledger.index(entry_id)
    if at is None or ledger.entries[at].kind != "visit":
        raise LedgerError("year.entry_gone")
    old = ledger.entries[at]
    inputs = dict(old.inputs, total=f"{total:.2f}")
    if _dec(inputs.get("self_pay") or 0) + _dec(inputs.get("class_b") or 0) > total:
        raise LedgerError("year.total_below_parts")
    entries = list(ledger.entries)
    entries[at] = dataclasses.replace(old, inputs=inputs)
    replayed = Ledger(ledger.region, ledger.plan, ledger.start, ledger.end, entries[:at])
    for entry in entries[at:]:
        if entry.kind == "visit":
            entry, _ = _visit_entry(entry.id, replayed, entry.inputs, entry.date, policies)
        replayed.entries.append(entry)
    ledger.entries = replayed.entries
    return ledger.entries[at]


def profile_of(answers: dict[str, Any], lang: str, today: dt.date) -> dict[str, Any]:
    """What a profile keeps of a conversation's answers (age with the day it was given)."""
    profile: dict[str, Any] = {k: answers[k] for k in PROFILE_FIELDS if answers.get(k) is not None}
    profile["lang"] = lang
    if "age" in profile:
        profile["age_on"] = today.isoformat()
    return profile
