"""The guided estimate dialogue, the same on every platform.

`Dialogue.handle(key, incoming)` runs one turn: it loads the session from the store, computes the
replies and the new session with the pure `Dialogue.step`, and saves it with compare-and-set, so two
processes (or a double tap) never lose an update and a restarted process continues any conversation.
Nothing about a conversation is kept in process memory.

A session is small JSON (see `Session.to_dict`): language, state, current question, a question
counter that makes buttons of older messages recognisable, the answers, and the order they were given
(for /back).
"""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from conversations import accounting, asking, region_picker
from conversations.parsing import normalise
from conversations.policy_view import policy_view
from conversations.questions import (
    QUESTIONS,
    SMALL_SET,
    Choice,
    Context,
    Invalid,
    Question,
    RegionNotOne,
    answered,
    open_question,
)
from conversations.render import cannot_text, estimate_card
from conversations.replies import Button, Incoming, Reply, Turn
from conversations.store import DUPLICATE, Guard, Loaded, SessionKey, SessionStore, run_turn
from conversations.texts import DEFAULT_LANGUAGE, LANGUAGES, raw, speaking_on, synonyms, t, words
from conversations.year_desk import YearDesk
from conversations.year_store import YearStore
from rules.case import CannotEstimate
from rules.engine import estimate
from rules.policy import PolicySet

MAX_TEXT = 500
STATES = ("idle", "ask", "summary", "done", "forget", "year")
COMMANDS = {"start": "start", "estimate": "start", "new": "start", "back": "back", "cancel": "cancel",
            "help": "help", "language": "language", "lang": "language", "regions": "regions",
            "policy": "policy", "forget": "forget", "resume": "resume", "ask": "ask", "year": "year"}
Effect = Callable[[SessionKey, str, str], Awaitable[None]]
_platform: contextvars.ContextVar[str] = contextvars.ContextVar("platform", default="")


@dataclass
class Session:
    lang: str = DEFAULT_LANGUAGE
    state: str = "idle"
    question: str | None = None
    q: int = 0
    answers: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    back_to: str | None = None
    asking: bool = False  # /ask was sent without a question: the next text is one
    year: dict[str, Any] = field(default_factory=dict)  # flags of the person's year (see year_desk)
    book: Any = field(default=None, repr=False)  # this turn's view of the person's year, never stored
    pending: Any = field(default=None, repr=False)  # a change to the book, run before the session is saved
    book_read: Any = field(default=None, repr=False)  # the book as read with the session, and its version
    last_region: str | None = None  # offered first the next time the region is asked

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"l": self.lang, "s": self.state, "q": self.q}
        if self.question:
            data["c"] = self.question
        if self.answers:
            data["a"] = self.answers
        if self.history:
            data["h"] = self.history
        if self.back_to:
            data["b"] = self.back_to
        if self.asking:
            data["k"] = 1
        if self.year:
            data["y"] = self.year
        if self.last_region:
            data["r"] = self.last_region
        return data

    @classmethod
    def from_dict(cls, data: dict | None) -> Session:
        """A stored session, or a fresh one where anything in it is not what we wrote."""
        if not isinstance(data, dict):
            return cls()
        def known(value: Any, names: Any) -> bool:  # JSON lists and dicts are unhashable: no `in` on them
            return isinstance(value, str) and value in names

        session = cls(
            lang=data["l"] if known(data.get("l"), LANGUAGES) else DEFAULT_LANGUAGE,
            state=data["s"] if known(data.get("s"), STATES) else "idle",
            question=data["c"] if known(data.get("c"), QUESTIONS) else None,
            q=data.get("q") if isinstance(data.get("q"), int) else 0,
            answers={k: v for k, v in (data.get("a") or {}).items() if known(k, QUESTIONS)}
            if isinstance(data.get("a"), dict) else {},
            history=[h for h in data.get("h", []) if known(h, QUESTIONS)] if isinstance(data.get("h"), list) else [],
            back_to=data["b"] if known(data.get("b"), STATES) else None,
            asking=data.get("k") == 1,
            year={k: v for k, v in data["y"].items() if isinstance(v, (str, int))}
            if isinstance(data.get("y"), dict) else {},
            last_region=data["r"] if isinstance(data.get("r"), str) and len(data["r"]) <= 40 else None,
        )
        if session.state == "ask" and session.question is None:
            session.state = "idle"
        return session


class Dialogue:
    """One guided dialogue over a policy set and a session store.

    `effects` are what a turn asks the runtime to do once its session is saved: "subscribe" (a
    region), "forget" (the user's other data). A button is offered only for effects that exist.
    """

    def __init__(self, policies: PolicySet, store: SessionStore, *, effects: dict[str, Effect] | None = None,
                 today: Callable[[], dt.date] = dt.date.today,
                 push_platforms: frozenset[str] = frozenset({"telegram"}),
                 years: YearStore | None = None, year_keep_days: int = 400):
        self.policies = policies
        self.store = store
        self.effects = effects if effects is not None else {}  # the runtime may add effects later
        self.today = today
        self.push_platforms = push_platforms  # platforms that can send a notice later (subscriptions)
        self.year = YearDesk(self, years, year_keep_days)  # the person's insurance year, with consent

    def guard(self, **given: Any) -> Guard:
        """What a channel's `SessionStore.begin` should check and take (lock, flood limit, message id),
        plus what the turn will read beside the session (the person's year book), so that one round
        trip loads everything the turn needs."""
        return Guard(**given, read=self.year.read_suffix())

    async def handle(self, key: SessionKey, incoming: Incoming, *, loaded: Loaded | None = None,
                     opening_lang: str | None = None) -> Turn:
        """One turn. A message with an `update_id` is applied at most once: a redelivery comes back as
        a `Turn` with `duplicate` set, holding only the replies its first delivery still owes.

        ``loaded`` is the channel's own `SessionStore.begin` for this message, made with `guard` (lock,
        flood limit, session and book in one round trip). ``opening_lang``: for a channel that stores a
        conversation only once the person answered something (the web), a missing session is taken to
        be a fresh start in that language, and the turn is stored only if it changed that start (an
        answer, a language, a command that moved the conversation): opening a page, or a script without
        a cookie, stores nothing.
        """
        sessions = self.year.sessions(self.store)
        if incoming.update_id is not None and loaded is None:
            loaded = await sessions.begin(key, self.guard(update_id=incoming.update_id))
        if loaded is not None and loaded.applied:
            return Turn.from_outbox(loaded.outbox)
        self.year.prefetched(sessions, loaded)

        async def turn(stored: dict | None) -> tuple[dict | None, Turn]:
            opening = stored is None and opening_lang is not None
            if opening:
                session, opened = self._opening(opening_lang)
            else:
                session = Session.from_dict(stored)
            self.year.load(sessions, session, fresh=stored is None)
            resume = incoming.command is not None and COMMANDS.get(incoming.command.lower()) == "resume"
            result = opened if opening and resume else self.step(session, incoming)
            result = await self.year.commit(key, session, result)
            result.remembered = bool(session.year.get("k"))
            if opening and session.to_dict() == self._opening(opening_lang)[0].to_dict():
                return None, result  # nothing worth keeping yet: the next turn opens the same way
            return session.to_dict(), result

        token = _platform.set(key.platform)
        try:
            with speaking_on(key.platform):
                result = await run_turn(sessions, key, turn, update_id=incoming.update_id, loaded=loaded,
                                        outbox=Turn.to_outbox)
        finally:
            _platform.reset(token)
        if result == DUPLICATE:
            return Turn(duplicate=True)
        for name, argument in result.effects:  # before a forget, which deletes what effects may read
            await self.effects[name](key, argument, result.lang)
        if result.forgot:
            await self.store.delete_user(key.platform, key.user)
        return result

    def _opening(self, lang: str) -> tuple[Session, Turn]:
        """The session of a conversation just opened in `lang` (what a start leaves) and the start's
        turn, rebuilt the same way every time, so buttons shown before anything was stored still work."""
        session = Session(lang=lang if lang in LANGUAGES else DEFAULT_LANGUAGE)
        opened = self._start(session)
        opened.lang = session.lang
        return session, opened

    def _can_subscribe(self) -> bool:
        return "subscribe" in self.effects and _platform.get() in self.push_platforms

    # -- the pure part: a session and an input → the new session and the replies ----------

    def step(self, s: Session, incoming: Incoming) -> Turn:
        command, argument = self._command(s, incoming)
        explicit, s.asking = s.asking, False
        if command:
            turn = self._on_command(s, command, argument)
        elif incoming.choice is not None:
            turn = self._on_button(s, incoming.choice)
        elif incoming.text is None or not incoming.text.strip():
            turn = self._hint(s, "hints.not_text")
        elif len(incoming.text) > MAX_TEXT:
            turn = self._hint(s, "hints.too_long")
        else:
            text = incoming.text.strip()
            question = explicit or asking.reads_as_question(text)
            turn = (question and self._on_question(s, text, explicit)) or self._on_text(s, text)
        turn.lang = s.lang
        return turn

    def _context(self, s: Session) -> Context:
        return Context(self.policies, self.year.answers(s), s.lang, self.today())

    def _command(self, s: Session, incoming: Incoming) -> tuple[str | None, str]:
        if incoming.command:
            return COMMANDS.get(incoming.command.lower(), "unknown"), incoming.argument.strip()[:MAX_TEXT]
        text = (incoming.text or "").strip()
        if text.startswith("/") and len(text) <= MAX_TEXT:
            name, _, argument = text[1:].partition(" ")
            return COMMANDS.get(name.split("@")[0].lower(), "unknown"), argument.strip()
        folded = text.casefold()
        for word_key in ("back", "cancel", "help", "language", "ask"):
            if folded in words(word_key):
                return word_key, ""
        if folded in words("start") and s.state in ("idle", "done"):
            return "start", ""
        if self._match_language(text):  # a language's name ("English", "中文"), as after /language
            return "language", text
        return None, ""

    # -- commands -----------------------------------------------------------------------------

    def _on_command(self, s: Session, command: str, argument: str) -> Turn:
        handler = {
            "start": self._start, "back": self._back, "cancel": self._cancel, "help": self._help,
            "regions": self._regions, "forget": self._forget_ask, "resume": self._resume, "year": self.year.show,
        }.get(command)
        if handler:
            return handler(s)
        if command == "language":
            return self._language(s, argument)
        if command == "policy":
            return self._policy(s, argument)
        if command == "ask":
            return self._on_question(s, argument, True) if argument else self._ask_prompt(s)
        return self._hint(s, "hints.unknown_command")

    def _start(self, s: Session) -> Turn:
        s.answers, s.history, s.back_to = {}, [], None
        greeting = self.year.prefill(s) or [Reply(t(s.lang, "welcome"))]
        return Turn(greeting + self._advance(s))

    def _back(self, s: Session) -> Turn:
        if s.state in ("idle", "forget") or not s.history:
            return self._hint(s, "hints.no_back")
        last = s.history.pop()
        s.answers.pop(last, None)
        return Turn(self._advance(s))

    def _cancel(self, s: Session) -> Turn:
        s.answers, s.history, s.state, s.question, s.back_to = {}, [], "idle", None, None
        s.q += 1
        return Turn([Reply(t(s.lang, "commands.cancelled"), buttons=((self._button(s, "~new", "buttons.restart"),),))])

    def _resume(self, s: Session) -> Turn:
        """Where the conversation stands, shown again (a reopened page or terminal): the current
        question, the summary, or the estimate recomputed from the kept answers; a start if none."""
        if s.state == "idle":
            return self._start(s)
        if s.state == "done":
            return self._calculate(s)
        recap = self._recap(s) if s.state == "ask" else []  # the summary lists the answers itself
        return Turn(recap + self._current(s))  # the same buttons: those already shown keep working

    def _recap(self, s: Session) -> list[Reply]:
        """The answers given so far, for someone coming back to a conversation (a reloaded page)."""
        ctx = self._context(s)
        lines = [f"• {t(s.lang, f'labels.fields.{q.id}')}: {q.display(ctx, ctx.value(q.id))}"
                 for q in answered(ctx) if q.id in s.answers and q.id != s.question]
        return [Reply(t(s.lang, "commands.recap") + "\n" + "\n".join(lines))] if lines else []

    def _help(self, s: Session) -> Turn:
        return Turn([Reply(t(s.lang, "commands.help"))] + self._current(s))

    def _regions(self, s: Session) -> Turn:
        sep = ", " if s.lang == "en" else "、"
        if len(self.policies.regions) > SMALL_SET:  # by province: a list of 350 names is no answer
            provinces = region_picker.region_index(self.policies).provinces.values()
            counts = sep.join(f"{p.name(s.lang)} {len(p.regions)}" for p in provinces)
            text = t(s.lang, "commands.regions_large", count=len(self.policies.regions), provinces=counts)
            return Turn([Reply(text)] + self._current(s))
        lines = [f"• {r.name(s.lang)}（{sep.join(r.aliases[:4])}）" if r.aliases else f"• {r.name(s.lang)}"
                 for r in sorted(self.policies, key=lambda r: r.id)]
        return Turn([Reply(t(s.lang, "commands.regions", regions="\n".join(lines)))] + self._current(s))

    def _policy(self, s: Session, argument: str) -> Turn:
        names = (", " if s.lang == "en" else "、").join(r.name(s.lang) for r in self.policies) \
            if len(self.policies.regions) <= SMALL_SET else t(s.lang, "commands.regions_hint")
        if not argument:
            return Turn([Reply(t(s.lang, "commands.policy_usage"))] + self._current(s))
        region = self.policies.find(argument) or self.policies.regions.get(
            QUESTIONS["region"].match(self._context(s), argument) or "")
        if region is None:
            return Turn([Reply(t(s.lang, "commands.policy_unknown", region=argument[:40], regions=names))]
                        + self._current(s))
        return Turn([Reply(policy_view(region, self.today(), s.lang))] + self._current(s))

    def _language(self, s: Session, argument: str) -> Turn:
        chosen = self._match_language(argument)
        if chosen is None:
            s.q += 1
            row = tuple(Button(f"{s.q}|~lang:{lang}", raw(lang, "labels.language_name")) for lang in LANGUAGES)
            return Turn([Reply(t(s.lang, "commands.choose_language"), buttons=(row,))])
        s.lang = chosen
        return Turn([Reply(t(s.lang, "commands.language"))] + self._current(s, renew=True))

    @staticmethod
    def _match_language(text: str) -> str | None:
        folded = normalise(text).strip(" .!。！")
        for lang, names in synonyms()["languages"].items():
            if folded == lang or folded in (normalise(n) for n in names):
                return lang
        return None

    def _forget_ask(self, s: Session) -> Turn:
        if s.state != "forget":
            s.back_to = s.state
        s.state = "forget"
        s.q += 1
        row = (self._button(s, "~forget:yes", "buttons.forget_yes"), self._button(s, "~forget:no", "buttons.forget_no"))
        return Turn([Reply(t(s.lang, "commands.forget_confirm"), buttons=(row,))])

    def _forget_answer(self, s: Session, yes: bool) -> Turn:
        if yes:
            lang = s.lang
            s.__init__()  # the store deletes it all once this turn is saved
            s.lang = lang
            restart = ((self._button(s, "~new", "buttons.restart"),),)
            turn = Turn([Reply(t(lang, "commands.forgotten"), buttons=restart)], forgot=True)
            if "forget" in self.effects:
                turn.effects.append(("forget", ""))
            return turn
        s.state, s.back_to = s.back_to or "idle", None
        return Turn([Reply(t(s.lang, "commands.forget_kept"))] + self._current(s, renew=True))

    # -- questions answered from the knowledge base (conversations/asking.py) ------------------

    def _on_question(self, s: Session, text: str, explicit: bool) -> Turn | None:
        """A typed question: its answer and sources, then where the conversation was. None reads
        the text as an answer instead ("上海？" at the region question)."""
        found = asking.find(text)
        if found is None and not explicit and asking.answers(self._context(s), s.state, s.question, text):
            return None
        if s.state != "idle":
            return Turn([asking.reply(found, s.lang, self.policies)] + self._current(s))
        if found is None:
            return Turn([asking.reply(None, s.lang, self.policies)] + self._start(s).replies)
        row = (self._button(s, "~new", "buttons.estimate"), self._button(s, "~ask", "buttons.ask"))
        return Turn([asking.reply(found, s.lang, self.policies, buttons=(row,))])

    def _ask_prompt(self, s: Session) -> Turn:
        s.asking = True
        return Turn([Reply(t(s.lang, "ask.prompt"))])

    # -- buttons ------------------------------------------------------------------------------

    def _on_button(self, s: Session, data: str) -> Turn:
        counter, _, value = data.partition("|")
        if value.startswith("~lang:") and value[6:] in LANGUAGES:
            return self._language(s, value[6:])
        if value == "~new":
            return self._start(s)
        if value == "~ask":
            return self._ask_prompt(s)
        if value.startswith("~sub:") and self._can_subscribe() and value[5:] in self.policies.regions:
            turn = Turn([])
            turn.effects.append(("subscribe", value[5:]))
            return turn
        if value.startswith("~y:"):
            return self.year.on_button(s, counter, value)
        if counter != str(s.q):
            return self._stale(s)
        if region_picker.is_view(value) and s.state == "ask" and s.question == "region":
            only = region_picker.only_region(self.policies, value)  # 北京: the province is the city
            if only is not None:
                turn = self._answer(s, QUESTIONS["region"], only)
                turn.answered = QUESTIONS["region"].display(self._context(s), only)
                return turn
            s.q += 1
            return Turn([region_picker.view(self.policies, value, s.q, s.lang, s.last_region, self._controls(s))])
        actions: dict[str, Callable[[], Turn]] = {
            "~back": lambda: self._back(s),
            "~skip": lambda: self._skip(s),
            "~skiprest": lambda: self._skip(s, rest=True),
            "~calc": lambda: self._calculate(s),
            "~change": lambda: self._summary_turn(s),
            "~account": lambda: self._want_account(s),
            "~details": lambda: self._unfold(s),
            "~forget:yes": lambda: self._forget_answer(s, True),
            "~forget:no": lambda: self._forget_answer(s, False),
        }
        if value in actions:
            return actions[value]()
        if value.startswith("~edit:") and s.state in ("summary", "done"):
            return self._edit(s, value[6:])
        if s.state == "ask" and s.question and QUESTIONS[s.question].kind == "choice":
            question = QUESTIONS[s.question]
            ctx = self._context(s)
            option = next((o for o in question.options(ctx) if o.id == value), None)
            if option is None and question.id == "region" and value in self.policies.regions:
                option = Choice(value, question.display(ctx, value), ())
            if option is not None:
                turn = self._answer(s, question, value)
                turn.answered = option.label
                return turn
        return self._stale(s)

    # -- typed text ---------------------------------------------------------------------------

    def _on_text(self, s: Session, text: str) -> Turn:
        if s.state == "idle":
            return self._on_idle_text(s, text)
        if s.state == "ask" and s.question:
            question = QUESTIONS[s.question]
            if text.casefold() in words("skip"):
                return self._skip(s) if question.skippable else self._hint(s, "hints.cannot_skip")
            try:
                value = question.answer(self._context(s), text)
            except RegionNotOne as bad:
                return Turn([region_picker.found_reply(self.policies, bad.found, bad.typed, s.q, s.lang,
                                                       self._controls(s))])
            except Invalid as bad:
                return self._hint(s, bad.hint, **bad.values)
            return self._answer(s, question, value)
        if s.state == "summary":
            return self._on_summary_text(s, text)
        if s.state == "forget":
            return self._hint(s, "hints.choice")
        if s.state == "year":
            return self.year.on_text(s, text)
        return Turn([Reply(t(s.lang, "commands.done_hint"), buttons=self._result_buttons(s))])

    def _on_idle_text(self, s: Session, text: str) -> Turn:
        region = QUESTIONS["region"].match(self._context(s), text)
        turn = self._start(s)
        if region is None:
            return turn
        return self._answer(s, QUESTIONS["region"], region)

    def _on_summary_text(self, s: Session, text: str) -> Turn:
        folded = text.casefold()
        if folded in {"ok", "好", "好的", "确认", "计算", "开始计算", "yes", "calculate", "go"}:
            return self._calculate(s)
        ctx = self._context(s)
        for question in answered(ctx):
            names = {raw(lang, f"labels.fields.{question.id}").casefold() for lang in LANGUAGES}
            if folded in names or folded.removeprefix("改").removeprefix("change ") in names:
                return self._edit(s, question.id)
        return self._hint(s, "hints.choice")

    # -- moving through the questions ----------------------------------------------------------

    def _answer(self, s: Session, question: Question, value: Any) -> Turn:
        s.answers[question.id] = value
        if question.id == "region":
            s.last_region = value
        if question.id in s.history:
            s.history.remove(question.id)
        s.history.append(question.id)
        if question.id == "family_pool":  # the last of the account's questions: the split at once
            return self._calculate(s)
        replies = self._advance(s)
        return self._calculate(s) if s.state == "summary" and self.year.quick(s) else Turn(replies)

    def _skip(self, s: Session, rest: bool = False) -> Turn:
        if s.state != "ask" or not s.question or not QUESTIONS[s.question].skippable:
            return self._hint(s, "hints.cannot_skip")
        question = QUESTIONS[s.question]
        if not rest:
            return self._answer(s, question, question.skip_value)
        ctx = self._context(s)
        for later in (q for q in answered(ctx) if q.ytd and q.id not in s.answers):
            s.answers[later.id] = later.skip_value
        return self._answer(s, question, question.skip_value)  # the current question is skipped too

    def _want_account(self, s: Session) -> Turn:
        accounting.want_account(s.answers)
        return Turn(self._advance(s))

    def _edit(self, s: Session, qid: str) -> Turn:
        if qid not in QUESTIONS:
            return self._stale(s)
        s.answers.pop(qid, None)
        if QUESTIONS[qid].ytd:
            s.year["h"] = 1  # typed by hand from now on, not taken from the ledger
        if qid in s.history:
            s.history.remove(qid)
        return Turn(self._advance(s))

    def _advance(self, s: Session) -> list[Reply]:
        """Ask the next open question, or show the summary when every answer is in."""
        ctx = self._context(s)
        question = open_question(ctx)
        s.q += 1
        if question is None:
            s.state, s.question = "summary", None
            return [self._summary(s, ctx)]
        s.state, s.question = "ask", question.id
        return [self._question(s, ctx, question)]

    def _current(self, s: Session, renew: bool = False) -> list[Reply]:
        """The message the person should be looking at now (asked again after a hint or a command)."""
        if renew:
            s.q += 1
        ctx = self._context(s)
        if s.state == "ask" and s.question:
            return [self._question(s, ctx, QUESTIONS[s.question])]
        if s.state == "summary":
            return [self._summary(s, ctx)]
        if s.state == "done":
            return [Reply(t(s.lang, "commands.done_hint"), buttons=self._result_buttons(s))]
        if s.state == "forget":
            return self._forget_ask(s).replies
        if s.state == "year":
            return self.year.current(s)
        return []


    def _stale(self, s: Session) -> Turn:
        """An old message's button: say so and show the current question (none when idle: start again)."""
        current = self._current(s) if s.state != "idle" else self._start(s).replies
        return Turn([Reply(t(s.lang, "hints.stale"))] + current)

    def _hint(self, s: Session, key: str, **values: Any) -> Turn:
        if s.state == "idle":
            return self._start(s)
        return Turn([Reply(t(s.lang, key, **values))] + self._current(s))

    # -- what the person sees ------------------------------------------------------------------

    def _button(self, s: Session, action: str, label_key: str, **values: Any) -> Button:
        return Button(f"{s.q}|{action}", t(s.lang, label_key, **values))

    def _controls(self, s: Session) -> list[Button]:
        return [self._button(s, "~back", "buttons.back")] if s.history else []

    def _question(self, s: Session, ctx: Context, question: Question) -> Reply:
        if question.id == "region" and len(self.policies.regions) > SMALL_SET:
            return region_picker.view(self.policies, "", s.q, s.lang, s.last_region, self._controls(s))
        year_start = ctx.region.insurance_year(self.today())[0] if ctx.region else ""
        text = t(s.lang, f"prompts.{question.id}", year_start=year_start)
        per_row = 3 if question.id in ("region", "level") else 2
        options = [Button(f"{s.q}|{o.id}", o.label) for o in question.options(ctx)]
        rows = [tuple(options[i:i + per_row]) for i in range(0, len(options), per_row)]
        controls = []
        if s.history:
            controls.append(self._button(s, "~back", "buttons.back"))
        if question.skippable:
            controls.append(self._button(s, "~skip", "buttons.skip"))
        if controls:
            rows.append(tuple(controls))
        if question.ytd:
            rows.append((self._button(s, "~skiprest", "buttons.skip_rest"),))
        return Reply(text, buttons=tuple(rows))

    def _summary(self, s: Session, ctx: Context) -> Reply:
        lines, edits = [], []
        for question in answered(ctx):
            value = ctx.value(question.id)
            shown = question.display(ctx, value)
            lines.append(f"• {t(s.lang, f'labels.fields.{question.id}')}: {shown}")
            if question.kind != "choice" or len(question.options(ctx)) > 1 or (
                    question.id == "region" and len(self.policies.regions) > 1):  # the picker has no options
                field_name = t(s.lang, f"labels.fields.{question.id}")
                edits.append(Button(f"{s.q}|~edit:{question.id}", t(s.lang, "summary.edit", field=field_name)))
        rows = [tuple(edits[i:i + 2]) for i in range(0, len(edits), 2)]
        rows.append((self._button(s, "~calc", "buttons.calculate"),))
        rows.append((self._button(s, "~back", "buttons.back"),))
        text = "\n".join(lines) + "\n\n" + t(s.lang, "summary.edit_hint")
        return Reply(text, title=t(s.lang, "summary.title"), buttons=tuple(rows))

    def _summary_turn(self, s: Session) -> Turn:
        if not s.answers:
            return self._start(s)
        s.state = "summary"
        return Turn(self._current(s, renew=True))

    def _result_buttons(self, s: Session) -> tuple[tuple[Button, ...], ...]:
        rows: list[tuple[Button, ...]] = [(self._button(s, "~new", "buttons.new"),
                                          self._button(s, "~change", "buttons.change"))]
        if accounting.offers_account(self._context(s)):
            rows.append((self._button(s, "~account", "buttons.account"),))
        region = self.policies.regions.get(s.answers.get("region", ""))
        if region and self._can_subscribe():
            rows.append((self._button(s, f"~sub:{region.id}", "buttons.subscribe", region=region.name(s.lang)),))
        return tuple(rows + self.year.result_buttons(s))

    def _calculate(self, s: Session) -> Turn:
        ctx = self._context(s)
        if open_question(ctx) is not None:
            return Turn(self._advance(s))
        s.state, s.question = "done", None
        s.q += 1
        s.year.pop("e", None)
        return self._result(s, ctx)

    def _unfold(self, s: Session) -> Turn:
        """The last estimate with its details, for the platform to put in place of the card."""
        if s.state != "done":
            return self._stale(s)
        return self._result(s, self._context(s), unfolded=True)

    def _result(self, s: Session, ctx: Context, unfolded: bool = False) -> Turn:
        """The estimate as a card with its details folded behind a button; unfolded, the card and the
        details in one text (kind "details": it replaces the card, with the same buttons)."""
        case = ctx.case(**self.year.case_extra(s))
        result = estimate(case, self.policies)
        if isinstance(result, CannotEstimate):
            return Turn([Reply(cannot_text(result, s.lang), buttons=self._result_buttons(s))])
        comparisons = self._comparisons(ctx, case.level, self.year.case_extra(s))
        supplementary = ctx.plan.settings.get("supplementary_name") if ctx.plan else None
        name = supplementary(s.lang) if supplementary else t(s.lang, "result.supplementary_default")
        kept = s.year.get("e")
        year_line = self.year.on_estimate(s, name)
        if unfolded:  # the same estimate shown again: it keeps the id it may be recorded under (or none)
            s.year.pop("e", None)
            s.year.update({"e": kept} if kept else {})
        context = self._context_line(ctx) + (f"\n{year_line}" if year_line else "")
        shown = estimate_card(result, context, comparisons, s.lang, name)
        card = accounting.with_account(shown.card, result, ctx)
        title, buttons = t(s.lang, "result.title"), self._result_buttons(s)
        if unfolded:
            return Turn([Reply(f"{card}\n\n{shown.details}", title, buttons)], kind="details")
        unfold = self._button(s, "~details", "buttons.details")
        return Turn([Reply(card, title, buttons, shown.details, unfold)], kind="estimate")

    def _comparisons(self, ctx: Context, level: str, extra: dict[str, Any]
                     ) -> list[tuple[str, tuple[Decimal, Decimal]]]:
        out = []
        for option in QUESTIONS["level"].options(ctx):
            if option.id == level:
                continue
            other = estimate(ctx.case(level=option.id, **extra), self.policies)
            if not isinstance(other, CannotEstimate):
                out.append((option.label, other.ranges.get("personal", (other.personal, other.personal))))
        return out

    def _context_line(self, ctx: Context) -> str:
        member = ctx.value("member")
        member_text = ""
        if member:
            member_text = f"（{QUESTIONS['member'].display(ctx, member)}）" if ctx.lang == "zh" \
                else f" ({QUESTIONS['member'].display(ctx, member)})"
        return t(ctx.lang, "result.context", region=ctx.region.name(ctx.lang) if ctx.region else "",
                 plan=QUESTIONS["plan"].display(ctx, ctx.value("plan")), member=member_text,
                 visit=QUESTIONS["visit"].display(ctx, ctx.value("visit")),
                 level=QUESTIONS["level"].display(ctx, ctx.value("level"))
                 + (f" · {QUESTIONS['where'].display(ctx, ctx.value('where'))}" if ctx.value("where") else ""))
