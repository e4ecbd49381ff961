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
    """

    text: str | None = None
    choice: str | None = None
    command: str | None = None
    argument: str = ""


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
