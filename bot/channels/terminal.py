"""`yibao chat`: the guided estimate in a terminal, on the same dialogue and store as every platform.

Options are numbered (type the number, or the answer itself); other buttons get letters. The
conversation is kept in Redis like any other, so quitting and starting again continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import string
import sys
import threading
from typing import TextIO

from redis.exceptions import RedisError

from conversations.dialogue import Session
from conversations.replies import Button, Incoming, Reply
from conversations.store import SessionKey
from conversations.texts import DEFAULT_LANGUAGE, t

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
    out.write("yibao-bot — 医保报销估算 (Ctrl-D, Ctrl-C or /exit to quit)\n")
    lines = _lines(stdin)
    keys: dict[str, Button] = {}
    # A conversation in progress is continued (its current question shown again), not restarted.
    opened = await _busy_guard(lambda: _open(dialogue, key, lang), out)
    while opened is None:  # Redis does not answer: try again on Enter
        if await _prompt(lines, out) is None:
            return 0
        opened = await _busy_guard(lambda: _open(dialogue, key, lang), out)
    for reply in opened.replies:
        keys = show(reply, out) or keys
    while True:
        line = await _prompt(lines, out)
        if line is None or line.strip() in QUIT:
            out.write("\n")
            return 0
        text = line.strip()
        pressed = keys.get(text.lower())
        incoming = Incoming(choice=pressed.id) if pressed else Incoming(text=text)
        turn = await _busy_guard(lambda incoming=incoming: dialogue.handle(key, incoming), out)
        if turn is None:
            continue  # not applied: the person sends it again when Redis is back
        if turn.answered:
            out.write(f"→ {turn.answered}\n")
        new_keys: dict[str, Button] = {}
        for reply in turn.replies:
            new_keys = show(reply, out) or new_keys
        keys = new_keys


async def _open(dialogue, key: SessionKey, lang: str | None):
    stored, _ = await dialogue.store.load(key)
    resuming = Session.from_dict(stored).state in ("ask", "summary", "forget") if stored else False
    turn = None
    if lang:
        turn = await dialogue.handle(key, Incoming(command="language", argument=lang))
    if not resuming:
        turn = await dialogue.handle(key, Incoming(command="start"))
    elif not lang:
        turn = await dialogue.handle(key, Incoming(command="resume"))
    return turn


async def _busy_guard(work, out: TextIO):
    """The turn's result, or None after telling the person Redis does not answer (nothing applied)."""
    try:
        return await work()
    except (RedisError, OSError):
        out.write(t(DEFAULT_LANGUAGE, "errors.busy") + " (Redis)\n")
        return None


async def _prompt(lines: asyncio.Queue, out: TextIO) -> str | None:
    out.write("> ")
    out.flush()
    return await lines.get()


def _lines(stdin: TextIO) -> asyncio.Queue:
    """Lines of `stdin` (None at the end), read by a daemon thread: a blocked read must not keep the
    process alive after Ctrl-C (the default executor's threads are waited for at exit)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def read() -> None:
        while True:
            try:
                line = stdin.readline()
            except (OSError, ValueError):
                line = ""
            with contextlib.suppress(RuntimeError):  # the loop is closed: we are exiting
                loop.call_soon_threadsafe(queue.put_nowait, line or None)
            if not line:
                return

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return queue
