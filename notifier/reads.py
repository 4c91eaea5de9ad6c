"""The database reads of opening streams, gathered: heads and replay pages.

A stream reads its user's head (where a socket without `after` starts, or where a
replay's completeness is judged) and pages of frames (replay and gap fill). One by one,
a reconnect storm of 10,000 resumes is 20,000 queries or more, each holding a pool
connection: the pool ran dry, resumes waited `pool_timeout` and were closed with 1011,
and their clients came back to try again. Gathered, the streams that ask while a query
runs share the next one (one query per burst, as `heads.HeadReader` does for
handshakes), so a storm holds one pool connection for heads and one for pages, and a
resume waits its turn in a queue of its own instead of failing. A read in a quiet moment
goes at once.

`StreamReads` is what `Connection` reads through: the two methods of the store it uses,
with the same meaning.
"""

from __future__ import annotations

from typing import Protocol

from notifier.gather import Gathered
from notifier.heads import HeadReader
from notifier.store import Store


class Reads(Protocol):
    """What a `Connection` reads: a `Store` has it, `StreamReads` gathers it."""

    async def head(self, user_id: str) -> int: ...

    async def frames_after(self, user_id: str, after: int, limit: int) -> list[tuple[int, str]]: ...


MAX_PAGES = 100
"""Pairs per page query: a query's rows are at most this many pages (100 times the replay
page size), so one long replay cannot make a storm's first pages wait long."""


class StreamReads:
    def __init__(self, store: Store, heads: HeadReader, *, max_pages: int = MAX_PAGES) -> None:
        self._store = store
        self._heads = heads
        self._pages: dict[int, Gathered[tuple[str, int], list[tuple[int, str]]]] = {}
        self._max_pages = max_pages

    async def head(self, user_id: str) -> int:
        """The user's newest seq (0 before the first notification)."""
        return await self._heads.head(user_id)

    async def frames_after(self, user_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        """(seq, frame) of the user's notifications with seq > `after`, ascending, at
        most `limit`."""
        pages = self._pages.get(limit)
        if pages is None:  # one per page size: in practice one per process

            async def fetch(
                pairs: list[tuple[str, int]],
            ) -> dict[tuple[str, int], list[tuple[int, str]]]:
                return await self._store.frames_after_many(pairs, limit)

            pages = self._pages[limit] = Gathered(fetch, max_batch=self._max_pages)
        return await pages.get((user_id, after)) or []
