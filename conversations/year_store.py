"""Where a person's insurance year (`conversations.year.Book`) is kept, seen from the dialogue.

One document a person, written with compare-and-set like a session: `update_book` loads it, lets a
pure function change it and saves it only if nobody saved in between, else reloads and runs the
function again. Two processes recording a visit for the same person at once therefore both land, the
second computed from the totals the first left (a visit's figures depend on the year before it).

The Redis implementation is `bot.year_store.RedisYearStore`; this module must not import Redis.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

from conversations.store import Guard, Loaded, SessionConflictError, SessionKey, SessionStore

__all__ = ["BookFn", "PrefetchingStore", "YearStore", "update_book"]

#: Gets the stored book (None if none) and returns ``(new_book or None to write nothing, result)``.
#: Must be pure: it may run once per attempt.
BookFn = Callable[[dict | None], tuple[dict | None, Any]]


@runtime_checkable
class YearStore(Protocol):
    """Versioned storage of one JSON document a person, with compare-and-set writes and an expiry."""

    async def load_book(self, platform: str, user: str) -> tuple[dict | None, int]:
        """The stored book (None if none or expired) and its version (0 if none)."""
        ...

    async def load_turn(self, key: SessionKey) -> tuple[dict | None, int, dict | None, int]:
        """The session of `key` and its version, and the person's book and its version, read together
        (one round trip: a turn needs both)."""
        ...

    async def save_book(self, platform: str, user: str, book: dict, version: int, expire_at: int) -> bool:
        """Store ``book`` if the stored version is still ``version``; it expires at ``expire_at`` (Unix
        seconds; one in the past deletes it). The book is registered as the person's data, so that
        `SessionStore.delete_user` removes it. False (nothing written) when somebody saved in between."""
        ...


class PrefetchingStore:
    """The session store as `run_turn` sees it, reading the person's book with each session load, so
    that a turn costs no extra round trip; `book` and `book_version` hold what the last load read."""

    def __init__(self, sessions: SessionStore, years: YearStore) -> None:
        self.sessions = sessions
        self.years = years
        self.book: dict | None = None
        self.book_version = 0

    async def load(self, key: SessionKey) -> tuple[dict | None, int]:
        session, version, self.book, self.book_version = await self.years.load_turn(key)
        return session, version

    async def save(self, key: SessionKey, session: dict, version: int, **options: Any) -> bool | str:
        return await self.sessions.save(key, session, version, **options)

    async def begin(self, key: SessionKey, guard: Guard) -> Loaded:
        """The session store's `begin` (lock, message id, flood limit), the book read with it."""
        loaded = await self.sessions.begin(key, replace(guard, read=guard.read or getattr(self.years, "SUFFIX", None)))
        if loaded.read is not None:
            self.book, self.book_version = loaded.read
        return loaded

    async def delete_user(self, platform: str, user: str) -> None:
        await self.sessions.delete_user(platform, user)


async def update_book(store: YearStore, platform: str, user: str, fn: BookFn,
                      expire_at: Callable[[dict], int], retries: int = 8,
                      loaded: tuple[dict | None, int] | None = None) -> Any:
    """Load → ``fn`` → compare-and-set save, retried with a short random back-off on conflicts.
    ``loaded`` is a book just read with its version: the first attempt starts from it."""
    for attempt in range(retries + 1):
        stored, version = loaded if loaded is not None and attempt == 0 else await store.load_book(platform, user)
        new, result = fn(stored)
        if new is None or await store.save_book(platform, user, new, version, expire_at(new)):
            return result
        await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))
    raise SessionConflictError(f"year book of {platform}: gave up after {retries + 1} conflicting attempts")
