"""Where conversation state lives, seen from the platform-neutral dialogue.

The dialogue never talks to a database: it gets a `SessionStore` and runs each turn through `run_turn`,
which loads the session, lets the turn compute the new session, and saves it with compare-and-set.
Several bot processes may serve the same chat at once (and a process may restart mid-conversation);
the version check makes a turn that raced with another one reload and run again instead of silently
overwriting the other turn's result (no lost updates).

A session is a JSON-compatible `dict` (str keys; str, int, float, bool, None, list and dict values).

Idempotent turns: a message with an id (`Incoming.update_id`) is applied at most once. The store keeps,
with the session, the last id applied in the conversation and checks and sets it atomically in the same
save that stores the turn (a chat's messages are ordered, so "this id or an older one" means "applied").
A redelivery is then acknowledged, not applied: `Loaded.applied` says so before the turn runs, and a
save that raced with another delivery of the same message reports `DUPLICATE` instead of writing.
The replies of a saved turn are kept beside it (the outbox) until the channel says they were delivered
(`finish`), so a message redelivered after a crash between saving and sending gets the replies it is
owed, still without being applied twice.

`begin` is the one load a channel needs before a turn: with a `Guard` it also takes the conversation's
lock for a holder (a short lease, renewed while the turn runs, so it dies with a crashed holder) and
charges the flood limit, all in the same round trip.

The Redis implementation is `bot.store.RedisSessionStore`; this module must not import Redis.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["DUPLICATE", "Guard", "Loaded", "SessionConflictError", "SessionKey", "SessionStore", "TurnFn",
           "run_turn"]

#: What `save` returns when the message's id was applied already (nothing was written).
DUPLICATE = "duplicate"

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


@dataclass(frozen=True, slots=True)
class Guard:
    """What `SessionStore.begin` checks and takes besides loading the session (all optional)."""

    update_id: str | None = None  # the message's id: is it applied already?
    holder: str | None = None  # take the conversation's lock for this holder (None: no lock)
    lock_ms: int = 5000  # the lock's lease; renewed by `renew` while the turn runs
    flood: tuple[float, int] | None = None  # charge the person's flood limit: (rate a second, burst)
    read: str | None = None  # a key of the person's (its suffix) to read beside the session: a hash of v, d


@dataclass(slots=True)
class Loaded:
    """What `begin` found. Only when `locked` and `verdict` is 1 and not `applied` may the turn run."""

    session: dict | None = None
    version: int = 0
    locked: bool = True  # False: another holder has the conversation; wait and begin again
    applied: bool = False  # the message was applied already (a redelivery)
    outbox: dict | None = None  # for a redelivery: the replies its turn still owes (`Turn.to_outbox`)
    verdict: int = 1  # the flood limit: 1 go, 0 over the limit (say so once), -1 over it (drop silently)
    read: tuple[dict | None, int] | None = None  # what `Guard.read` named: its data and version


class SessionConflictError(RuntimeError):
    """`run_turn` lost the compare-and-set race more often than it was allowed to retry."""


@runtime_checkable
class SessionStore(Protocol):
    """Versioned session storage with compare-and-set writes."""

    async def load(self, key: SessionKey) -> tuple[dict | None, int]:
        """The stored session (None if none or expired) and its version (0 if none)."""
        ...

    async def save(self, key: SessionKey, session: dict, version: int, *, update_id: str | None = None,
                   outbox: dict | None = None) -> bool | str:
        """Store ``session`` if the stored version is still ``version`` (0: it must not exist).

        On success the version is bumped by one and the expiry refreshed; returns False (and writes
        nothing) when somebody else saved in between — the caller reloads and retries its turn. With
        ``update_id``, returns `DUPLICATE` (and writes nothing) when that id was applied already, and
        otherwise records it with the session, and ``outbox`` until `finish`.
        """
        ...

    async def begin(self, key: SessionKey, guard: Guard) -> Loaded:
        """Load the session, and what ``guard`` asks: the lock, whether the message was applied, the flood
        limit. Nothing is taken unless the turn may run (a lock already held, a flood: nothing changes)."""
        ...

    async def finish(self, key: SessionKey, holder: str | None, update_id: str | None) -> None:
        """The turn's replies were delivered: drop its outbox, and release the lock if ``holder`` has it."""
        ...

    async def renew(self, key: SessionKey, holder: str, lock_ms: int) -> bool:
        """Extend the lock's lease while the turn runs; False if ``holder`` no longer has it."""
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
    update_id: str | None = None,
    loaded: Loaded | None = None,
    outbox: Callable[[Any], dict | None] | None = None,
) -> Any:
    """Run one turn with optimistic concurrency: load → ``fn(session)`` → compare-and-set save.

    On a conflict the session is reloaded and ``fn`` runs again, up to ``retries`` more times, with a
    short randomised exponential back-off so that contending writers spread out. Returns ``fn``'s result
    from the attempt that was saved; raises `SessionConflictError` when every attempt lost.

    With ``update_id`` the turn is applied at most once: returns `DUPLICATE` instead of running or
    saving when the id was applied already. ``loaded`` is a `begin` the caller made already (its session
    is used for the first attempt: no second load); ``outbox(result)`` is what to keep until `finish`.
    """
    if retries < 0:
        raise ValueError("retries must be >= 0")
    for attempt in range(retries + 1):
        if loaded is None:
            if update_id is None:
                loaded = Loaded(*await store.load(key))
            else:
                loaded = await store.begin(key, Guard(update_id=update_id))
        if loaded.applied:
            return DUPLICATE
        session, version, loaded = loaded.session, loaded.version, None
        outcome = fn(session)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        new_session, result = outcome
        if new_session is None:
            return result
        if update_id is None:
            saved = await store.save(key, new_session, version)
        else:
            saved = await store.save(key, new_session, version, update_id=update_id,
                                     outbox=outbox(result) if outbox else None)
        if saved == DUPLICATE:
            return DUPLICATE
        if saved:
            return result
        if attempt < retries:
            await asyncio.sleep(random.uniform(0, min(max_backoff, backoff * 2**attempt)))
    raise SessionConflictError(f"{key}: gave up after {retries + 1} conflicting attempts")
