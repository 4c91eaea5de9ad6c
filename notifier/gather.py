"""Per-key reads gathered into one query, like `heads.HeadReader` does for heads.

Callers that ask while a query runs share the next one, so a burst of handshakes costs a
query per burst rather than per handshake. Used for the revocation look-ups a handshake
makes while the bus is down (`notifier.revocations`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

GATHER_SECONDS = 0.008


class Gathered(Generic[K, V]):
    def __init__(
        self,
        fetch: Callable[[list[K]], Awaitable[dict[K, V]]],
        *,
        max_batch: int = 1000,
    ) -> None:
        self._fetch = fetch
        self._max_batch = max_batch
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        """`key`'s value as the next query finds it; None when it has none. A failed
        query raises its error in every caller it served."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._reader is None or self._reader.done():
            self._reader = loop.create_task(self._read())
        return await future

    async def _read(self) -> None:
        while self._waiting:
            batch = self._take()
            try:
                found = await self._fetch(list(batch))
            except Exception as error:
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)
            else:
                for key, futures in batch.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(found.get(key))
            if self._waiting:
                await asyncio.sleep(GATHER_SECONDS)

    def _take(self) -> dict[K, list[asyncio.Future[V | None]]]:
        if len(self._waiting) <= self._max_batch:
            batch, self._waiting = self._waiting, {}
            return batch
        keys = list(self._waiting)[: self._max_batch]
        return {key: self._waiting.pop(key) for key in keys}
