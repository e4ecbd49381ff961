"""The dialogue's side of a person's insurance year: consent, the profile, the ledger, `/year`.

Nothing is kept until the person taps "记入本年度 / Add to my year" under an estimate; the first time,
what would be kept is shown and must be confirmed. From then on (the person has a profile):

* a new estimate starts from the profile, so only visit type, hospital and amount are asked (one tap
  changes the rest), and goes straight to the result once they are in;
* the year-to-date questions are answered from the ledger of the estimate's region, plan and insurance
  year, shown in one line above the result with a button to type them by hand instead;
* `/year` shows the year, with undo of the last entry and a new amount for any entry.

The session keeps a few flags in `Session.year` ("k" the person has a book, "q" quick returning mode,
"h" year-to-date by hand, "e" the id the shown estimate would be recorded under, "a" the entry whose
amount is being typed). A change to the book is a pure function of the book (`Session.pending`), run by
`commit` with compare-and-set before the session is saved, and idempotent (entry ids), so a turn that
runs twice records once.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import TYPE_CHECKING, Any

from conversations.questions import QUESTIONS
from conversations.replies import Button, Reply, Turn
from conversations.store import SessionKey, SessionStore
from conversations.texts import LANGUAGES, t
from conversations.year import (
    Book,
    Ledger,
)
from conversations.year_edits import PROFILE_ANSWERS, Op, YearEdits
from conversations.year_store import PrefetchingStore, YearStore, update_book
from conversations.year_view import ledger_line, overview

if TYPE_CHECKING:
    from conversations.dialogue import Dialogue, Session

AGE_KEPT_DAYS = 365  # an age older than this is asked again


class YearDesk(YearEdits):
    def __init__(self, dialogue: Dialogue, store: YearStore | None, keep_days: int = 400):
        self.d = dialogue
        self.store = store
        self.keep_days = keep_days

    # -- loading and saving ------------------------------------------------------------------------

    def sessions(self, store: SessionStore) -> SessionStore:
        """The session store a turn runs on: one that reads the book with the session, when kept."""
        return PrefetchingStore(store, self.store) if self.store is not None else store

    def read_suffix(self) -> str | None:
        """The book's key (its suffix under the person's keys), read in the session's round trip."""
        return getattr(self.store, "SUFFIX", None) if self.store is not None else None

    def prefetched(self, sessions: SessionStore, loaded) -> None:
        """A channel's `begin` read the book already (`Loaded.read`): the first attempt uses it."""
        if isinstance(sessions, PrefetchingStore) and loaded is not None and loaded.read is not None:
            sessions.book, sessions.book_version = loaded.read

    def load(self, sessions: SessionStore, s: Session, fresh: bool) -> None:
        """Give the turn the person's book, read with the session (and its language to a new session)."""
        if not isinstance(sessions, PrefetchingStore):
            return
        s.book = Book.from_json(sessions.book, self.d.today())
        s.book_read = (sessions.book, sessions.book_version)
        if s.book.consented:
            s.year["k"] = 1
            lang = s.book.profile.get("lang")  # type: ignore[union-attr]
            if fresh and lang in LANGUAGES:
                s.lang = lang
        else:
            s.year.pop("k", None)

    async def commit(self, key: SessionKey, s: Session, turn: Turn) -> Turn:
        """Run the turn's change to the book (compare-and-set, retried) and put its replies first."""
        op: Op | None = s.pending
        if op is None or self.store is None:
            return turn
        s.pending = None
        today = self.d.today()

        def change(stored: dict | None) -> tuple[dict | None, tuple[Book, list[Reply]]]:
            book = Book.from_json(stored, today)
            changed, replies = op(book)
            return (book.to_json(self.keep_days) if changed else None), (book, replies)

        book, replies = await update_book(self.store, key.platform, key.user, change, self._expire_at,
                                          loaded=s.book_read)
        s.book = book
        if book.consented:
            s.year["k"] = 1
        turn.replies = replies + turn.replies
        return turn

    def _expire_at(self, data: dict) -> int:
        ends = [dt.date.fromisoformat(v["x"]) for v in data.get("l", {}).values()]
        last = max(ends) if ends else self.d.today() + dt.timedelta(days=self.keep_days)
        return int(dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp())

    # -- what the dialogue asks of the year ---------------------------------------------------------

    def consented(self, s: Session) -> bool:
        return s.book is not None and s.book.consented

    def quick(self, s: Session) -> bool:
        return bool(s.year.get("q")) and self.consented(s)

    def ledger(self, s: Session, answers: dict[str, Any] | None = None) -> Ledger | None:
        """The ledger the current answers point at (region, plan, this insurance year), if kept."""
        if not self.consented(s):
            return None
        answers = s.answers if answers is None else answers
        region = self.d.policies.regions.get(answers.get("region") or "")
        if region is None:
            return None
        plan = answers.get("plan") or (next(iter(region.plans)) if len(region.plans) == 1 else None)
        return s.book.ledger(self.d.policies, region.id, plan, self.d.today()) if plan else None  # type: ignore

    def from_ledger(self, s: Session) -> Ledger | None:
        """The ledger whose totals answer the year-to-date questions (not when typed by hand)."""
        return None if s.year.get("h") else self.ledger(s)

    def answers(self, s: Session) -> dict[str, Any]:
        ledger = self.from_ledger(s)
        return {**ledger.totals().answers(), **s.answers} if ledger else s.answers

    def case_extra(self, s: Session) -> dict[str, Any]:
        """Year-to-date case fields no question asks (what the supplementary fund and 大病 paid)."""
        ledger = self.from_ledger(s)
        if ledger is None:
            return {}
        return {k: v for k, v in ledger.case_args().items() if k in ("ytd_supplementary", "ytd_critical")}

    def prefill(self, s: Session) -> list[Reply]:
        """A start for a returning person: the profile's answers, and a greeting saying so."""
        s.year = {"k": 1} if s.year.get("k") else {}
        if not self.consented(s):
            return []
        profile: dict[str, Any] = s.book.profile  # type: ignore[union-attr]
        for name in PROFILE_ANSWERS:
            if name in profile and (name != "age" or self._age_fresh(profile)):
                s.answers[name] = profile[name]
        s.answers.update(self_pay=None, class_b=None, where="local")  # said in the greeting, one tap to change
        s.year["q"] = 1
        ctx = self.d._context(s)
        shown = [QUESTIONS[n].display(ctx, ctx.value(n)) for n in PROFILE_ANSWERS
                 if QUESTIONS[n].applies(ctx) and ctx.value(n) is not None]
        text = t(s.lang, "year.welcome_back", profile=" · ".join(shown))
        return [Reply(text, buttons=((self._button(s, "~y:redo", "year.buttons.redo"),),))]

    def _age_fresh(self, profile: dict[str, Any]) -> bool:
        try:
            return (self.d.today() - dt.date.fromisoformat(profile["age_on"])).days <= AGE_KEPT_DAYS
        except (KeyError, TypeError, ValueError):
            return False

    def on_estimate(self, s: Session, supplementary: str) -> str | None:
        """Called with a successful estimate: the id to record it under, and the ledger line."""
        if self.store is None:
            return None
        s.year["e"] = secrets.token_hex(4)
        ledger = self.from_ledger(s)
        if ledger is not None:
            return ledger_line(ledger, s.lang, supplementary)
        return t(s.lang, "year.line_by_hand") if self.consented(s) else None

    def result_buttons(self, s: Session) -> list[tuple[Button, ...]]:
        if self.store is None or s.state != "done":
            return []
        row = []
        if "e" in s.year:
            row.append(self._button(s, "~y:rec", "year.buttons.record"))
        if "e" in s.year and self.from_ledger(s) is not None:
            row.append(self._button(s, "~y:fix", "year.buttons.fix"))
        rows = [tuple(row)] if row else []
        if self.consented(s):
            rows.append((self._button(s, "~y:show", "year.buttons.show"),))
        return rows

    # -- buttons, commands, typed amounts ---------------------------------------------------------

    def on_button(self, s: Session, counter: str, value: str) -> Turn:
        if self.store is None:
            return self.d._stale(s)
        action, _, arg = value[3:].partition(":")
        if action in ("show", "what", "undo", "amt") or (action, counter) in (("no", str(s.q)),):
            return self._free_action(s, action, arg)
        fresh = counter == str(s.q)
        if not fresh or (action in ("rec", "ok", "fix") and (s.state != "done" or "e" not in s.year)):
            return self.d._stale(s)
        if action == "rec" and not self.consented(s):
            return self._consent(s)
        if action in ("rec", "ok"):
            return self._record(s)
        if action == "fix":
            s.year["h"] = 1
            return Turn(self.d._advance(s))
        if action == "redo":
            s.answers, s.history, s.year = {}, [], {"k": 1}
            return Turn(self.d._advance(s))
        return self.d._stale(s)

    def _free_action(self, s: Session, action: str, arg: str) -> Turn:
        """Buttons that stay valid on older messages: they name what they act on."""
        if action == "show":
            if s.state == "year":  # back from typing a new amount
                s.state, s.back_to = s.back_to or "idle", None
                s.year.pop("a", None)
            return self.show(s, with_current=False)
        if action == "what":
            return Turn([Reply(self._kept_text(s), buttons=((self._button(s, "~y:show", "year.buttons.show"),),))])
        if action == "no":
            s.year.pop("e", None)
            return Turn([Reply(t(s.lang, "year.not_kept"))] + self.d._current(s, renew=True))
        if action == "undo":
            return self._pending(s, self._undo_op(s, arg))
        if action == "amt" and not arg:
            return self._choose_entry(s)
        return self._ask_amount(s, arg)

    def show(self, s: Session, with_current: bool = True) -> Turn:
        """`/year`: the ledger of the current answers' (else the profile's) region and plan."""
        current = self.d._current(s) if with_current else []
        if not self.consented(s):
            return Turn([Reply(t(s.lang, "year.none") + "\n\n" + self._kept_text(s))] + current)
        ledger = self.ledger(s) or self.ledger(s, s.book.profile)  # type: ignore[union-attr, arg-type]
        if ledger is None:
            return Turn([Reply(t(s.lang, "year.none"))] + current)
        return Turn([self._overview(s, ledger)] + current)

    def _overview(self, s: Session, ledger: Ledger) -> Reply:
        region = self.d.policies.regions[ledger.region]
        plan = region.plans[ledger.plan]
        title = t(s.lang, "year.title", region=region.name(s.lang), plan=plan.name(s.lang))
        name = self._supplementary(ledger, s.lang)
        text = overview(ledger, title, self.d.policies, self.d.today(), s.lang, name)
        rows: list[tuple[Button, ...]] = []
        if ledger.entries:
            rows.append((self._button(s, f"~y:undo:{ledger.entries[-1].id}", "year.buttons.undo"),
                         self._button(s, "~y:amt", "year.buttons.amount")))
        rows.append((self._button(s, "~y:what", "year.buttons.what"), self._button(s, "~new", "buttons.new")))
        return Reply(text, title=t(s.lang, "year.menu"), buttons=tuple(rows))

    def _supplementary(self, ledger: Ledger, lang: str) -> str:
        plan = self.d.policies.regions[ledger.region].plans[ledger.plan]
        name = plan.settings.get("supplementary_name")
        return name(lang) if name else t(lang, "result.supplementary_default")

    def _kept_text(self, s: Session) -> str:
        return t(s.lang, "year.kept", days=self.keep_days)

    def _consent(self, s: Session) -> Turn:
        s.q += 1
        row = (self._button(s, "~y:ok", "year.buttons.consent"), self._button(s, "~y:no", "year.buttons.decline"))
        return Turn([Reply(self._kept_text(s), title=t(s.lang, "year.consent_title"), buttons=(row,))])

    def _button(self, s: Session, action: str, label_key: str) -> Button:
        return Button(f"{s.q}|{action}", t(s.lang, label_key))
