"""Group commit: concurrent publishes share one transaction.

Each publish waits for a commit anyway; while one transaction is in flight, the publishes
that arrive meanwhile queue up and go together in the next one. Under light load a
publish goes alone at once (no added delay); under heavy load one commit (one fsync, one
round of statements) serves many requests. Each request stays atomic on its own: a
conflicting idempotency key fails only its own request, and any other failure of a group
is retried request by request so that one bad request cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from notifier.store import (
    IdempotencyConflict,
    NewNotification,
    Outcome,
    Published,
    PublishRequest,
    Store,
)
from notifier.wire.announcement import TransactionNotify

log = logging.getLogger("notifier.committer")


@dataclass(slots=True)
class _Waiting:
    request: PublishRequest
    future: asyncio.Future[Outcome]


class GroupCommitter:
    def __init__(
        self,
        store: Store,
        notify: TransactionNotify | None,
        *,
        max_items: int = 2000,
        lanes: int = 2,
    ) -> None:
        self._store = store
        self._notify = notify
        self._max_items = max_items
        self._lanes = lanes
        self._queue: deque[_Waiting] = deque()
        self._active = 0
        self._running: set[asyncio.Task[None]] = set()

    async def publish(self, publisher: str, items: Sequence[NewNotification]) -> list[Published]:
        """Store `items` atomically, committed before this returns."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(PublishRequest(publisher, items), future))
        if self._active < self._lanes:
            # Counted here and uncounted by the lane itself in the same step as its
            # last look at the queue, so no request is left behind by a lane that is
            # finishing.
            self._active += 1
            task = asyncio.create_task(self._drain())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        outcome = await future
        if isinstance(outcome, IdempotencyConflict):
            raise outcome
        return outcome

    def _take_group(self) -> list[_Waiting]:
        group = [self._queue.popleft()]
        size = len(group[0].request.items)
        while self._queue and size + len(self._queue[0].request.items) <= self._max_items:
            waiting = self._queue.popleft()
            size += len(waiting.request.items)
            group.append(waiting)
        return group

    async def _drain(self) -> None:
        try:
            await self._drain_queue()
        finally:
            self._active -= 1

    async def _drain_queue(self) -> None:
        while self._queue:
            group = [w for w in self._take_group() if not w.future.done()]
            if not group:
                continue
            try:
                outcomes = await self._store.publish_group([w.request for w in group], self._notify)
            except Exception as error:
                if len(group) == 1:
                    _settle(group[0], error)
                    continue
                log.warning(
                    "group commit failed, retrying its requests one by one",
                    extra={"requests": len(group), "error": repr(error)[:300]},
                )
                for waiting in group:
                    await self._alone(waiting)
                continue
            for waiting, outcome in zip(group, outcomes, strict=True):
                if not waiting.future.done():
                    waiting.future.set_result(outcome)

    async def _alone(self, waiting: _Waiting) -> None:
        try:
            [outcome] = await self._store.publish_group([waiting.request], self._notify)
        except Exception as error:
            _settle(waiting, error)
            return
        if not waiting.future.done():
            waiting.future.set_result(outcome)


def _settle(waiting: _Waiting, error: Exception) -> None:
    if not waiting.future.done():
        waiting.future.set_exception(error)
