"""Where conversation state lives, seen from the platform-neutral dialogue.

The dialogue never talks to a database: it gets a `SessionStore` and runs each turn through `run_turn`,
which loads the session, lets the turn compute the new session, and saves it with compare-and-set.
Several bot processes may serve the same chat at once (and a process may restart mid-conversation);
the version check makes a turn that raced with another one reload and run again instead of silently
overwriting the other turn's result (no lost updates).

A session is a JSON-compatible `dict` (str keys; str, int, float, bool, None, list and dict values).

The Redis implementation is `bot.store.RedisSessionStore`; this module must not import Redis.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["SessionConflictError", "SessionKey", "SessionStore", "TurnFn", "run_turn"]

#: A turn: gets the stored session (None if there is none) and returns ``(new_session, result)``.
#: ``new_session`` None means "nothing to store" (a read-only turn). May be sync or async.
#: It may run several times (once per attempt), so it must not have side effects outside the session.
TurnFn = Callable[[dict | None], tuple[dict | None, Any] | Awaitable[tuple[dict | None, Any]]]


@dataclass(frozen=True, slots=True)
class SessionKey:
    """One conversation: a user in a chat on a platform (e.g. ``SessionKey("telegram", "-1001", "42")``)."""

    platform: str
    chat: str
    user: str


class SessionConflictError(RuntimeError):
    """`run_turn` lost the compare-and-set race more often than it was allowed to retry."""


@runtime_checkable
class SessionStore(Protocol):
    """Versioned session storage with compare-and-set writes."""

    async def load(self, key: SessionKey) -> tuple[dict | None, int]:
        """The stored session (None if none or expired) and its version (0 if none)."""
        ...

    async def save(self, key: SessionKey, session: dict, version: int) -> bool:
        """Store ``session`` if the stored version is still ``version`` (0: it must not exist).

        On success the version is bumped by one and the expiry refreshed; returns False (and writes
        nothing) when somebody else saved in between — the caller reloads and retries its turn.
        """
        ...

    async def delete_user(self, platform: str, user: str) -> None:
        """Forget the user: their sessions in every chat on ``platform`` and every key registered for them."""
        ...


async def run_turn(
    store: SessionStore,
    key: SessionKey,
    fn: TurnFn,
    retries: int = 5,
    *,
    backoff: float = 0.002,
    max_backoff: float = 0.05,
) -> Any:
    """Run one turn with optimistic concurrency: load → ``fn(session)`` → compare-and-set save.

    On a conflict the session is reloaded and ``fn`` runs again, up to ``retries`` more times, with a
    short randomised exponential back-off so that contending writers spread out. Returns ``fn``'s result
    from the attempt that was saved; raises `SessionConflictError` when every attempt lost.
    """
    if retries < 0:
        raise ValueError("retries must be >= 0")
    for attempt in range(retries + 1):
        session, version = await store.load(key)
        outcome = fn(session)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        new_session, result = outcome
        if new_session is None or await store.save(key, new_session, version):
            return result
        if attempt < retries:
            await asyncio.sleep(random.uniform(0, min(max_backoff, backoff * 2**attempt)))
    raise SessionConflictError(f"{key}: gave up after {retries + 1} conflicting attempts")
