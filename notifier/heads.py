"""Handshakes' head reads, gathered: many users' newest seq in one query.

A socket that connects without `after` starts at its user's head, read after it is
subscribed. Read one by one, a burst of reconnects (a deploy, a network blip) costs a
database round trip per socket; gathered like the committer gathers publishes, the
handshakes that arrive while one query runs share the next, so the cost per socket falls
as the rate rises. A head read late is still a correct starting point: the socket is
already subscribed, and anything committed meanwhile is either in the head or announced.
"""

from __future__ import annotations

import asyncio

from notifier.store import Store

MAX_BATCH = 1000
GATHER_SECONDS = 0.008
"""How long a query waits for company when another has just run. A query costs about
200 µs of CPU whatever its size: taken as soon as the previous one returned, queries
averaged 2 handshakes during a connect storm; waiting 8 ms makes that about 30, which
took 10,000 connects from about 2,400 to 3,000-3,400/s (`python -m bench.run
--scenarios connect`). The first query of a quiet period goes at once."""


class HeadReader:
    def __init__(self, store: Store, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max_batch = max_batch
        self._waiting: dict[str, list[asyncio.Future[int]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def head(self, user_id: str) -> int:
        """The user's newest seq (0 before the first notification)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._waiting.setdefault(user_id, []).append(future)
        if self._reader is None or self._reader.done():
            self._reader = loop.create_task(self._read())  # kept: not collected mid-read
        return await future

    async def _read(self) -> None:
        """Until no handshake waits: it ends in the same step as its last look at
        `_waiting`, so a request is never left behind by a reader that is finishing."""
        while self._waiting:
            batch = self._take()
            try:
                heads = await self._store.heads(list(batch))
            except Exception as error:  # each handshake decides what to tell its client
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)
            else:
                for user_id, futures in batch.items():
                    head = heads.get(user_id, 0)
                    for future in futures:
                        if not future.done():  # a handshake cancelled meanwhile
                            future.set_result(head)
            if self._waiting:  # a burst: let the handshakes on their way join the next
                await asyncio.sleep(GATHER_SECONDS)

    def _take(self) -> dict[str, list[asyncio.Future[int]]]:
        if len(self._waiting) <= self._max_batch:
            batch, self._waiting = self._waiting, {}
            return batch
        users = list(self._waiting)[: self._max_batch]
        return {user_id: self._waiting.pop(user_id) for user_id in users}
