"""`yibao chat`: the guided estimate in a terminal, on the same dialogue and store as every platform.

Options are numbered (type the number, or the answer itself); other buttons get letters. The
conversation is kept in Redis like any other, so quitting and starting again continues it.
"""

from __future__ import annotations

import asyncio
import getpass
import string
import sys
from typing import TextIO

from conversations.dialogue import Session
from conversations.replies import Button, Incoming, Reply
from conversations.store import SessionKey

QUIT = {"/exit", "/quit", ":q"}


def show(reply: Reply, out: TextIO) -> dict[str, Button]:
    """Print a reply; options are numbered (as the dialogue counts them), other buttons lettered."""
    if reply.title:
        out.write(f"\n== {reply.title} ==\n")
    out.write(reply.full_text.rstrip() + "\n")  # a terminal scrolls: an estimate's details printed below
    keys: dict[str, Button] = {}
    numbers, letters = iter(range(1, 100)), iter(string.ascii_lowercase)
    for row in reply.buttons:
        shown = []
        for button in row:
            key = str(next(letters) if "|~" in button.id else next(numbers))
            keys[key] = button
            shown.append(f"[{key}] {button.label}")
        out.write("   ".join(shown) + "\n")
    return keys


async def run_chat(runtime, user: str | None = None, lang: str | None = None,
                   stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    user = user or getpass.getuser()
    key = SessionKey("terminal", user, user)
    dialogue = runtime.dialogue
    out.write("yibao-bot — 医保报销估算 (Ctrl-D or /exit to quit)\n")
    # A conversation in progress is continued (its current question shown again), not restarted.
    stored, _ = await dialogue.store.load(key)
    resuming = Session.from_dict(stored).state in ("ask", "summary", "forget") if stored else False
    if lang:
        turn = await dialogue.handle(key, Incoming(command="language", argument=lang))
    if not resuming:
        turn = await dialogue.handle(key, Incoming(command="start"))
    elif not lang:
        turn = await dialogue.handle(key, Incoming(command="resume"))
    keys: dict[str, Button] = {}
    for reply in turn.replies:
        keys = show(reply, out) or keys
    loop = asyncio.get_running_loop()
    while True:
        out.write("> ")
        out.flush()
        line = await loop.run_in_executor(None, stdin.readline)
        if not line or line.strip() in QUIT:
            out.write("\n")
            return 0
        text = line.strip()
        pressed = keys.get(text.lower())
        incoming = Incoming(choice=pressed.id) if pressed else Incoming(text=text)
        turn = await dialogue.handle(key, incoming)
        if turn.answered:
            out.write(f"→ {turn.answered}\n")
        new_keys: dict[str, Button] = {}
        for reply in turn.replies:
            new_keys = show(reply, out) or new_keys
        keys = new_keys
