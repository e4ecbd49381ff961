"""What goes into a dialogue turn and what comes out, independent of any messaging platform.

A platform adapter turns its updates into an `Incoming` and each `Reply` into its own messages;
a `Button.id` comes back as `Incoming.choice` when pressed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Incoming:
    """One thing the person did: typed text, pressed a button, or sent a command (with its argument).

    `text` None with no choice and no command means something the bot cannot read (a sticker, a photo).
    `update_id` is the platform's id of the message (Telegram's update_id, WeChat's MsgId), when it has
    one: a message whose id was already applied in this conversation is a redelivery and is not applied
    again (see `conversations.store`). A chat's ids must grow; decimal ids are compared as numbers.
    """

    text: str | None = None
    choice: str | None = None
    command: str | None = None
    argument: str = ""
    update_id: str | None = None


@dataclass(frozen=True, slots=True)
class Button:
    id: str
    label: str


@dataclass(frozen=True, slots=True)
class Reply:
    """One message: plain text (no markup), an optional title, and rows of buttons.

    `details` is what unfolds on request below the text (an estimate's steps, comparisons and
    sources): each platform shows it its own way — Telegram behind the `unfold` button (the message
    is edited in place), the web chat in a <details> element, the terminal printed below. `unfold` is
    that button, for platforms that fold with a button; the others ignore it.
    """

    text: str
    title: str | None = None
    buttons: tuple[tuple[Button, ...], ...] = ()
    details: str = ""
    unfold: Button | None = None

    @property
    def full_text(self) -> str:
        """The text with its details below: for platforms that show everything at once."""
        return f"{self.text.rstrip()}\n\n{self.details}" if self.details else self.text

    @property
    def choices(self) -> list[Button]:
        return [b for row in self.buttons for b in row]


@dataclass(slots=True)
class Turn:
    """The replies to send, and for a pressed button the label to show on the question it answered
    (platforms that can edit messages keep the chat a clean record of questions and answers)."""

    replies: list[Reply] = field(default_factory=list)
    answered: str | None = None
    forgot: bool = False
    kind: str = "turn"  # "estimate" when an estimate was produced (counted in metrics); "details": the
    # same estimate unfolded, to replace the message whose `unfold` button was pressed
    effects: list[tuple[str, str]] = field(default_factory=list)  # run by the runtime once saved
    lang: str = "zh"  # the session's language after the turn
    remembered: bool = False  # the person keeps a year (profile, ledger): a channel may keep its id longer
    duplicate: bool = False  # a redelivered message, not applied again; `replies` are those still owed

    def to_outbox(self) -> dict:
        """What a channel still owes the person once the turn is saved: kept with the session until the
        channel says it was delivered, so a redelivery after a crash sends it instead of applying twice."""
        return {"r": [[r.text, r.title, [[[b.id, b.label] for b in row] for row in r.buttons]] for r in self.replies],
                "a": self.answered, "k": self.kind, "l": self.lang}

    @classmethod
    def from_outbox(cls, data: dict | None, lang: str = "zh") -> Turn:
        """The turn a redelivery owes (`to_outbox`), or an empty one; never raises on odd data."""
        turn = cls(duplicate=True, lang=lang)
        if not isinstance(data, dict):
            return turn
        try:
            turn.replies = [Reply(str(text), title if isinstance(title, str) else None,
                                  tuple(tuple(Button(str(i), str(label)) for i, label in row) for row in rows))
                            for text, title, rows in data.get("r", [])]
        except (TypeError, ValueError):
            turn.replies = []
        turn.answered = data.get("a") if isinstance(data.get("a"), str) else None
        turn.kind = "turn"  # an estimate is counted once, when it was made
        turn.lang = data.get("l") if isinstance(data.get("l"), str) else lang
        return turn
