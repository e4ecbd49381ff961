"""The questions of the guided estimate, in the order they are asked, as a table.

Each question says when it applies (only what the chosen policy needs is asked), what its options are
or how its answer is read, and whether it may be skipped. The dialogue walks this table: the next
question is always the first one that applies and has no valid answer yet, so editing an earlier
answer re-asks exactly the later ones it invalidated.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache, cached_property
from typing import Any

from conversations.parsing import AmountError, Option, match_choice, normalise, parse_amount
from conversations.texts import raw, synonyms, t
from rules.account import rule_for
from rules.case import WHERE, ZERO, Case
from rules.engine import Needs, needs
from rules.policy import Plan, PolicySet, Region, Visit
from rules.regions import Found, region_index


class Invalid(Exception):
    """An answer the question cannot use; `hint` is the text key shown before asking again."""

    def __init__(self, hint: str, **values: Any):
        self.hint = hint
        self.values = values


@dataclass(frozen=True, slots=True)
class Choice:
    id: str
    label: str
    words: tuple[str, ...]


@dataclass
class Context:
    """The answers so far, seen through the policy: which region, plan, visit they point at."""

    policies: PolicySet
    answers: dict[str, Any]  # read only: a new Context is made after answers change
    lang: str
    today: dt.date
    _values: dict[str, Any] = field(default_factory=dict, repr=False)

    def value(self, qid: str) -> Any:
        """A valid answer, the only option of a one-option question, or None (worked out once)."""
        if qid not in self._values:
            self._values[qid] = self._value(qid)
        return self._values[qid]

    def _value(self, qid: str) -> Any:
        question = QUESTIONS[qid]
        if qid in self.answers and question.is_valid(self, self.answers[qid]):
            return self.answers[qid]
        if question.kind == "choice" and question.applies(self):
            options = question.options(self)
            if len(options) == 1:
                return options[0].id
        return None

    @cached_property
    def region(self) -> Region | None:
        rid = self.answers.get("region")
        return self.policies.regions.get(rid) if isinstance(rid, str) else None

    @cached_property
    def plan(self) -> Plan | None:
        return self.region.plans.get(self.value("plan") or "") if self.region else None

    @cached_property
    def visit(self) -> Visit | None:
        return self.plan.visits.get(self.value("visit") or "") if self.plan else None

    def case(self, **override: Any) -> Case:
        """The case the answers describe (amounts not yet given count as 0)."""
        def amount(qid: str) -> Decimal | None:
            v = self.value(qid)
            return Decimal(v) if v is not None else None

        grade = self.value("grade")
        values: dict[str, Any] = dict(
            region=self.region.id if self.region else "", plan=self.value("plan") or "",
            visit=self.value("visit") or "", level=self.value("level") or "",
            member=self.value("member"), grade=int(grade) if grade is not None else None,
            age=self.value("age"), retired_year=self.value("retired_year"),
            total=amount("total") or ZERO, self_pay=amount("self_pay"), class_b=amount("class_b"),
            ytd_deductible=amount("ytd_deductible") or ZERO, ytd_fund=amount("ytd_fund") or ZERO,
            ytd_compliant=amount("ytd_compliant") or ZERO, ytd_burden=amount("ytd_burden") or ZERO,
            admission=self.value("admission") or 1, date=self.today,
            current_year_account=amount("current_year_account"),
        )
        if "where" not in override:  # `needs` passes it: whether "where" is asked depends on `needs`
            values["where"] = self.value("where") or "local"
        values.update(override)
        return Case(**values)

    @cached_property
    def needs(self) -> Needs:
        if not (self.visit and self.value("level")):
            return Needs()
        return needs(self.case(total=ZERO, self_pay=None, class_b=None, where="local"), self.policies)


# -- options -----------------------------------------------------------------------------------


def _labelled(group: str, ids: list[str], lang: str) -> list[Choice]:
    return list(_labelled_choices(group, tuple(ids), lang))


@cache
def _labelled_choices(group: str, ids: tuple[str, ...], lang: str) -> tuple[Choice, ...]:
    extra = synonyms().get(group, {})
    return tuple(
        Choice(i, t(lang, f"labels.{group}.{i}"),
               (t("zh", f"labels.{group}.{i}"), t("en", f"labels.{group}.{i}"), *extra.get(i, ())))
        for i in ids
    )


@cache
def known_words() -> frozenset[str]:
    """Every word of synonyms.yaml: a word people use for one answer is never read as a misspelling of
    another ("employee", a plan, is not "employed", a member type)."""
    return frozenset(normalise(w) for group in synonyms().values() for words in group.values() for w in words)


SMALL_SET = 18  # up to this many regions the question shows them all as buttons; beyond, a picker


def region_options(ctx: Context) -> list[Choice]:
    """Every region as a button, for a small policy set only: a large one is searched and picked
    through provinces (`conversations.region_picker`), so no turn walks every region."""
    if len(ctx.policies.regions) > SMALL_SET:
        return []
    return [Choice(r.id, r.name(ctx.lang), (r.id, r.name.zh, r.name.en, *r.aliases))
            for r in sorted(ctx.policies, key=lambda r: r.id)]


def plan_options(ctx: Context) -> list[Choice]:
    if not ctx.region:
        return []
    return [Choice(p.id, p.name(ctx.lang), (p.name.zh, p.name.en, *synonyms()["plans"].get(p.id, ())))
            for p in ctx.region.plans.values()]


def grade_options(ctx: Context) -> list[Choice]:
    grades = ctx.plan.grades if ctx.plan else {}
    return [Choice(str(g), label(ctx.lang), (label.zh, label.en, *synonyms()["grades"].get(str(g), ())))
            for g, label in sorted(grades.items())]


def member_options(ctx: Context) -> list[Choice]:
    return _labelled("members", list(ctx.plan.members), ctx.lang) if ctx.plan else []


def visit_options(ctx: Context) -> list[Choice]:
    return _labelled("visits", list(ctx.plan.visits), ctx.lang) if ctx.plan else []


def level_options(ctx: Context) -> list[Choice]:
    return _labelled("levels", list(ctx.visit.levels), ctx.lang) if ctx.visit else []


def family_pool_options(ctx: Context) -> list[Choice]:
    return _labelled("family_pool", ["yes", "no"], ctx.lang)


def _wants_account(ctx: Context) -> bool:
    """Asked only after the person asked for it (a result button), and only where a plan has an account."""
    return "account" in ctx.answers and ctx.region is not None and \
        ctx.value("plan") in rule_for(ctx.region.id).plans


def where_options(ctx: Context) -> list[Choice]:
    return _labelled("where", list(WHERE), ctx.lang) if ctx.needs.where else []


# -- answers that are read, not chosen -------------------------------------------------------


def read_amount(ctx: Context, text: str, *, allow_zero: bool, room: Decimal | None) -> str:
    try:
        value = parse_amount(text, allow_zero=allow_zero)
    except AmountError as bad:
        raise Invalid(f"hints.amount_{bad.code}") from None
    if room is not None and value > room:
        raise Invalid("hints.amount_exceeds", limit=f"{room:,.2f}")
    return f"{value:.2f}"


def read_whole(text: str, low: int, high: int, hint: str, **values: Any) -> int:
    try:
        value = parse_amount(text, allow_zero=True)
    except AmountError:
        raise Invalid(hint, **values) from None
    if value != value.to_integral() or not low <= value <= high:
        raise Invalid(hint, **values)
    return int(value)


def _room(ctx: Context, *parts: str) -> Decimal | None:
    """What is left of the total for a part of it (self-paid, class B)."""
    total = ctx.value("total")
    if total is None:
        return None
    used = sum((Decimal(ctx.value(p) or 0) for p in parts), ZERO)
    return Decimal(total) - used


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    kind: str  # choice | amount | whole
    applies: Callable[[Context], bool]
    options: Callable[[Context], list[Choice]] = lambda ctx: []
    read: Callable[[Context, str], Any] | None = None
    skippable: bool = False
    skip_value: Any = None
    ytd: bool = False  # one of the "this year so far" questions: offers "skip all of these"
    show: str = "yuan"  # how an answer is shown in the summary: a key under labels

    def match(self, ctx: Context, text: str) -> str | None:
        options = self.options(ctx)
        found = match_choice(text, [Option(o.id, o.words) for o in options], by_number=True, known=known_words())
        if found is None and self.id == "region":
            region = ctx.policies.find(text)
            found = region.id if region else None
        return found

    def answer(self, ctx: Context, text: str) -> Any:
        """The stored form of a typed answer; raises `Invalid` with a hint."""
        if self.kind == "choice":
            found = self.match(ctx, text)
            if found is None:
                regions = "、" if ctx.lang == "zh" else ", "
                names = regions.join(o.label for o in region_options(ctx))
                raise Invalid("hints.region" if self.id == "region" else "hints.choice", regions=names)
            return found
        assert self.read is not None
        return self.read(ctx, text)

    def is_valid(self, ctx: Context, value: Any) -> bool:
        """Whether a stored answer still fits (an earlier answer may have changed)."""
        if value is None:
            return self.skippable
        if self.kind == "choice":
            return any(o.id == value for o in self.options(ctx))
        try:
            return self.read is None or self.read(ctx, str(value)) == value
        except Invalid:
            return False

    def display(self, ctx: Context, value: Any) -> str:
        if value is None:
            return raw(ctx.lang, "labels.skipped")
        if self.kind == "choice":
            return next((o.label for o in self.options(ctx) if o.id == value), str(value))
        shown = f"{Decimal(value):,.2f}" if self.kind == "amount" else value
        return t(ctx.lang, f"labels.{self.show}", value=shown)


class RegionNotOne(Invalid):
    """A typed region that names several places, a province, or nothing: the dialogue shows `found`."""

    def __init__(self, found: Found, typed: str):
        super().__init__("hints.region_unknown", text=typed[:40])
        self.found = found
        self.typed = typed


@dataclass(frozen=True)
class RegionQuestion(Question):
    """The region: found by `rules.regions` in constant time, whatever the number of regions."""

    def match(self, ctx: Context, text: str) -> str | None:
        found = region_index(ctx.policies).lookup(text)
        if found.region is None and not found.regions and len(ctx.policies.regions) <= SMALL_SET:
            return super().match(ctx, text)  # a few regions: a looser match over their names
        return found.region

    def answer(self, ctx: Context, text: str) -> Any:
        found = region_index(ctx.policies).lookup(text)
        if found.region is not None:
            return found.region
        if not found.regions and not found.province and len(ctx.policies.regions) <= SMALL_SET:
            return super().answer(ctx, text)  # the hint lists the few regions there are
        raise RegionNotOne(found, text)

    def is_valid(self, ctx: Context, value: Any) -> bool:
        return isinstance(value, str) and value in ctx.policies.regions

    def display(self, ctx: Context, value: Any) -> str:
        region = ctx.policies.regions.get(value) if isinstance(value, str) else None
        return region.name(ctx.lang) if region else str(value)


def _has_choice(ctx: Context, qid: str) -> bool:
    return bool(QUESTIONS[qid].options(ctx))


def _need(flag: str) -> Callable[[Context], bool]:
    return lambda ctx: getattr(ctx.needs, flag)


def _detail(name: str) -> Callable[[Context], bool]:
    return lambda ctx: name in ctx.needs.details or (name in ctx.answers and ctx.answers[name] is not None
                                                     and _detail_used(ctx, name))


def _detail_used(ctx: Context, name: str) -> bool:
    """A detail answered earlier still matters if dropping it would make the rule unknown again."""
    without = {k: v for k, v in ctx.answers.items() if k != name}
    probe = Context(ctx.policies, without, ctx.lang, ctx.today)
    return name in probe.needs.details


YEAR_START = "ytd"

QUESTION_LIST: list[Question] = [
    RegionQuestion("region", "choice", lambda ctx: True, region_options),
    Question("plan", "choice", lambda ctx: ctx.region is not None, plan_options),
    Question("grade", "choice", lambda ctx: _has_choice(ctx, "grade"), grade_options),
    Question("member", "choice", lambda ctx: _has_choice(ctx, "member"), member_options),
    Question("visit", "choice", lambda ctx: ctx.plan is not None, visit_options),
    Question("level", "choice", lambda ctx: ctx.visit is not None, level_options),
    # asked only where the policy tells the kinds of out-of-area care apart (its factor is by kind)
    Question("where", "choice", _need("where"), where_options),
    Question("age", "whole", _detail("age"), read=lambda ctx, s: read_whole(s, 0, 120, "hints.age"),
             show="years"),
    Question("retired_year", "whole", _detail("retired_year"),
             read=lambda ctx, s: read_whole(s, 1950, ctx.today.year, "hints.retired_year", year=ctx.today.year),
             show="year"),
    Question("total", "amount", lambda ctx: ctx.visit is not None,
             read=lambda ctx, s: read_amount(ctx, s, allow_zero=False, room=None)),
    # self_pay is bounded by the total only and class_b by what self_pay leaves: checking each against
    # the other would recurse forever (value → is_valid → _room → value …). An edited self_pay that no
    # longer leaves room for class_b makes class_b invalid, so it is asked again.
    Question("self_pay", "amount", lambda ctx: ctx.visit is not None, skippable=True,
             read=lambda ctx, s: read_amount(ctx, s, allow_zero=True, room=_room(ctx))),
    Question("class_b", "amount", _need("class_b"), skippable=True,
             read=lambda ctx, s: read_amount(ctx, s, allow_zero=True, room=_room(ctx, "self_pay"))),
    Question("admission", "whole", _need("admission"), skippable=True, skip_value=None, ytd=True,
             read=lambda ctx, s: read_whole(s, 1, 50, "hints.admission"), show="nth"),
    Question("ytd_deductible", "amount", _need("ytd_deductible"), skippable=True, ytd=True,
             read=lambda ctx, s: read_amount(ctx, s, allow_zero=True, room=None)),
    Question("ytd_fund", "amount", _need("ytd_fund"), skippable=True, ytd=True,
             read=lambda ctx, s: read_amount(ctx, s, allow_zero=True, room=None)),
    Question("ytd_compliant", "amount", _need("ytd_compliant"), skippable=True, ytd=True,
             read=lambda ctx, s: read_amount(ctx, s, allow_zero=True, room=None)),
    Question("ytd_burden", "amount", _need("ytd_burden"), skippable=True, ytd=True,
             read=lambda ctx, s: read_amount(ctx, s, allow_zero=True, room=None)),
    Question("current_year_account", "amount", _need("current_year_account"), skippable=True, ytd=True,
             read=lambda ctx, s: read_amount(ctx, s, allow_zero=True, room=None)),
    # The personal account (rules/account.py): only when the person asks for the split.
    Question("account", "amount", _wants_account, skippable=True,
             read=lambda ctx, s: read_amount(ctx, s, allow_zero=True, room=None)),
    Question("family_pool", "choice", lambda ctx: _wants_account(ctx) and ctx.value("account") is not None,
             family_pool_options, skippable=True, skip_value="no"),
]
QUESTIONS: dict[str, Question] = {q.id: q for q in QUESTION_LIST}


def open_question(ctx: Context) -> Question | None:
    """The first question that applies and lacks a valid answer; None when all are answered."""
    for question in QUESTION_LIST:
        if not question.applies(ctx):
            continue
        if question.id in ctx.answers and question.is_valid(ctx, ctx.answers[question.id]):
            continue
        if ctx.value(question.id) is not None:  # a one-option choice answers itself
            continue
        return question
    return None


def answered(ctx: Context) -> list[Question]:
    """The questions that apply, in order, for the summary."""
    return [q for q in QUESTION_LIST if q.applies(ctx)]
