"""The changes a person makes to their insurance year from the dialogue: record the estimate just
shown, undo the latest entry, give an entry a new amount (typed after choosing it on `/year`).

Each change is an `Op`, a pure function of the `Book` returning whether it changed and the replies;
`YearDesk.commit` runs it with compare-and-set, so it may run more than once: entry ids make recording
and undoing idempotent, and a new amount is the same however often it is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from conversations.questions import QUESTIONS, Invalid, read_amount
from conversations.replies import Button, Reply, Turn
from conversations.texts import t
from conversations.year import (
    INPUT_FIELDS,
    QUESTION_TOTALS,
    Book,
    Ledger,
    LedgerError,
    change_total,
    profile_of,
    record,
    undo,
)
from conversations.year_view import ledger_line

if TYPE_CHECKING:
    from conversations.dialogue import Dialogue, Session

PROFILE_ANSWERS = ("region", "plan", "grade", "member", "retired_year", "age")
Op = Callable[[Book], tuple[bool, list[Reply]]]


class YearEdits:
    """The changing half of `YearDesk`, which provides the dialogue `d` and the shared helpers
    (`_button`, `_overview`, `_supplementary`, `consented`, `ledger`, `from_ledger`)."""

    d: Dialogue

    def on_text(self, s: Session, text: str) -> Turn:
        """A new amount typed for the entry chosen on the `/year` screen."""
        entry_id = s.year.get("a")
        try:
            amount = Decimal(read_amount(self.d._context(s), text, allow_zero=False, room=None))
        except Invalid as bad:
            return Turn([Reply(t(s.lang, bad.hint, **bad.values))] + self.current(s))
        s.year.pop("a", None)
        s.state, s.back_to = s.back_to or "idle", None
        s.q += 1
        return self._pending(s, self._change_op(s, str(entry_id), amount))

    def current(self, s: Session) -> list[Reply]:
        s.q += 1
        return [Reply(t(s.lang, "year.amount_prompt"), buttons=((self._button(s, "~y:show", "year.buttons.back"),),))]

    # -- the changes -------------------------------------------------------------------------------

    def _pending(self, s: Session, op: Op) -> Turn:
        s.pending = op
        return Turn([])

    def _record(self, s: Session) -> Turn:
        ctx = self.d._context(s)
        today, policies, lang = self.d.today(), self.d.policies, s.lang
        region, plan = ctx.region.id, ctx.value("plan")  # type: ignore[union-attr]
        inputs = {n: ctx.value(n) for n in INPUT_FIELDS if n in QUESTIONS and ctx.value(n) is not None}
        values = {n: ctx.value(n) for n in PROFILE_ANSWERS}
        profile = profile_of({**values, "region": region, "plan": plan}, lang, today)
        hand = self._hand_totals(s) if self.from_ledger(s) is None else None
        entry_id = s.year.pop("e")
        s.q += 1
        s.state, s.question = "idle", None  # recorded: the conversation is over, a reopened chat starts anew

        def op(book: Book) -> tuple[bool, list[Reply]]:
            ledger = book.ledger(policies, region, plan, today)
            given = replace(ledger.totals(), **hand) if hand else None
            try:
                record(ledger, entry_id, inputs, today, policies, given)
            except LedgerError as bad:
                return False, [Reply(t(lang, bad.hint))]
            book.ledgers[ledger.id] = ledger
            book.profile = profile
            return True, [self._recorded(s, ledger, entry_id)]

        s.year.update(k=1)
        return self._pending(s, op)

    def _hand_totals(self, s: Session) -> dict[str, Any]:
        """The year-to-date figures the person typed (skipped ones keep the ledger's)."""
        out: dict[str, Any] = {QUESTION_TOTALS[q]: Decimal(s.answers[q]) for q in QUESTION_TOTALS
                               if s.answers.get(q) is not None}
        if isinstance(s.answers.get("admission"), int):
            out["admissions"] = s.answers["admission"] - 1
        return out

    def _recorded(self, s: Session, ledger: Ledger, entry_id: str) -> Reply:
        line = ledger_line(ledger, s.lang, self._supplementary(ledger, s.lang))
        text = t(s.lang, "year.recorded", start=ledger.start.isoformat(), n=len(ledger.visits())) + "\n" + line
        rows = ((self._button(s, f"~y:undo:{entry_id}", "year.buttons.undo"),
                 self._button(s, "~y:show", "year.buttons.show")),
                (self._button(s, "~y:what", "year.buttons.what"), self._button(s, "~new", "buttons.new")))
        return Reply(text, buttons=rows)

    def _find(self, book: Book, entry_id: str) -> Ledger | None:
        return next((ledger for ledger in book.ledgers.values() if ledger.index(entry_id) is not None), None)

    def _undo_op(self, s: Session, entry_id: str) -> Op:
        def op(book: Book) -> tuple[bool, list[Reply]]:
            ledger = self._find(book, entry_id)
            if ledger is None or undo(ledger, entry_id) is None:
                return False, [Reply(t(s.lang, "year.undo_gone"))]
            return True, [Reply(t(s.lang, "year.undone")), self._overview(s, ledger)]
        return op

    def _change_op(self, s: Session, entry_id: str, amount: Decimal) -> Op:
        policies = self.d.policies

        def op(book: Book) -> tuple[bool, list[Reply]]:
            ledger = self._find(book, entry_id)
            try:
                if ledger is None:
                    raise LedgerError("year.entry_gone")
                change_total(ledger, entry_id, amount, policies)
            except LedgerError as bad:
                return False, [Reply(t(s.lang, bad.hint))]
            return True, [Reply(t(s.lang, "year.changed")), self._overview(s, ledger)]
        return op

    def _choose_entry(self, s: Session) -> Turn:
        ledger = self.ledger(s) or (self.ledger(s, s.book.profile) if self.consented(s) else None)  # type: ignore
        visits = [(n, e) for n, e in enumerate(ledger.entries, 1) if e.kind == "visit"] if ledger else []
        if not visits:
            return Turn([Reply(t(s.lang, "year.empty"))])
        buttons = [Button(f"{s.q}|~y:amt:{e.id}", t(s.lang, "year.entry_button", n=n, date=e.date.strftime("%m-%d"),
                                                        total=f"{e.total:,.2f}")) for n, e in visits[-8:]]
        rows = tuple(tuple(buttons[i:i + 2]) for i in range(0, len(buttons), 2))
        return Turn([Reply(t(s.lang, "year.choose_entry"), buttons=rows)])

    def _ask_amount(self, s: Session, entry_id: str) -> Turn:
        if not entry_id or len(entry_id) > 16:
            return self.d._stale(s)
        if s.state != "year":
            s.back_to = s.state
        s.state = "year"
        s.year["a"] = entry_id
        return Turn(self.current(s))
