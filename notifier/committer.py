"""Group commit: concurrent publishes share one transaction.

Each publish waits for a commit anyway; while one transaction is in flight, the publishes
that arrive meanwhile queue up and go together in the next one. Under light load a
publish goes alone at once (no added delay); under heavy load one commit (one fsync, one
round of statements) serves many requests. Each request stays atomic on its own: a
conflicting idempotency key fails only its own request, and any other failure of a group
is retried request by request so that one bad request cannot fail its neighbours.

Lanes never wait for a stream held elsewhere. A user's counter may be held for seconds by
another transaction (a topic publish to 100,000 users, a backend's open transaction that
called notifier_publish()); a lane waiting for it would hold up every publish of the
instance, to any user. So lanes publish with `try_publish_group`: what is free commits at
once, and a request that touches a held stream is moved to the waiting path, with every
later request for any of its users (so requests for one user keep their arrival order
there). The waiting path has a few waiters of its own: each retries what it takes without
waiting, then waits (a blocking publish) for the first request still held, alone; the
database's lock queue wakes it when the holder commits, and its next try commits every
request that holder released. A request held past the lock timeout is answered with
StreamBusy (503), as the lane's wait was before. (How the store tells a held stream
without waiting for it, and at what cost: `PostgresStore._try_publish_once`.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from notifier.store import (
    IdempotencyConflict,
    NewNotification,
    Outcome,
    Published,
    PublishRequest,
    Store,
)
from notifier.store.base import StreamBusy
from notifier.wire.announcement import TransactionNotify

log = logging.getLogger("notifier.committer")


_HELD_LATELY = 1.0
"""Seconds after a request was found held during which lanes test locks first."""


@dataclass(slots=True)
class _Waiting:
    request: PublishRequest
    future: asyncio.Future[Outcome]
    since: float = 0.0
    """When it was first found held (monotonic seconds); 0 while it never was."""

    def users(self) -> set[str]:
        return {item.user_id for item in self.request.items}


class GroupCommitter:
    def __init__(
        self,
        store: Store,
        notify: TransactionNotify | None,
        *,
        max_items: int = 2000,
        lanes: int = 2,
        waiters: int = 4,
        busy_after: float | None = 5.0,
    ) -> None:
        """`waiters` bounds the waiting path's connections (each may sit in a lock wait);
        `busy_after` (seconds, None: never) is the lock timeout: a request held that
        long is answered StreamBusy."""
        self._store = store
        self._notify = notify
        self._max_items = max_items
        self._lanes = lanes
        self._queue: deque[_Waiting] = deque()
        self._active = 0
        self._running: set[asyncio.Task[None]] = set()
        self._waiters = waiters
        self._busy_after = busy_after
        self._held: deque[_Waiting] = deque()
        """The waiting path's queue, in arrival order."""
        self._holding: dict[str, int] = {}
        """User -> requests on the waiting path (queued or being published) with it."""
        self._claimed: set[str] = set()
        """Users of the requests a waiter is publishing."""
        self._waiting = 0
        self._left_at = -_HELD_LATELY
        """When a request was last found held."""

    async def publish(self, publisher: str, items: Sequence[NewNotification]) -> list[Published]:
        """Store `items` atomically, committed before this returns."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        waiting = _Waiting(PublishRequest(publisher, items), future)
        # Checked only while some stream is held: nothing added to the usual path.
        if self._holding and not self._holding.keys().isdisjoint(waiting.users()):
            self._hold(waiting)
        else:
            self._queue.append(waiting)
            if self._active < self._lanes:
                # Counted here and uncounted by the lane itself in the same step as its
                # last look at the queue, so no request is left behind by a lane that
                # is finishing.
                self._active += 1
                self._start(self._drain())
        outcome = await future
        if isinstance(outcome, IdempotencyConflict):
            raise outcome
        return outcome

    def _start(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

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
            await self._try_in_lane(group)

    async def _try(self, group: list[_Waiting], *, held_likely: bool = True) -> list[_Waiting]:
        """Publish `group` without waiting for held streams; returns the requests left
        (held), which the caller places. Settles every other request."""
        try:
            outcomes = await self._store.try_publish_group(
                [w.request for w in group], self._notify, held_likely=held_likely
            )
        except Exception as error:
            if len(group) == 1:
                _settle(group[0], error)
                return []
            log.warning(
                "group commit failed, retrying its requests one by one",
                extra={"requests": len(group), "error": repr(error)[:300]},
            )
            left = []
            for waiting in group:
                left.extend(await self._try([waiting], held_likely=held_likely))
            return left
        left = []
        for waiting, outcome in zip(group, outcomes, strict=True):
            if outcome is None:
                left.append(waiting)
            elif not waiting.future.done():
                waiting.future.set_result(outcome)
        if left:
            self._left_at = time.monotonic()
        return left

    async def _try_in_lane(self, group: list[_Waiting]) -> None:
        # While streams are found held (a topic publish holds thousands), the locks are
        # tested first; otherwise a group waits briefly, like before, at no extra cost.
        held_likely = bool(self._holding) or time.monotonic() - self._left_at < _HELD_LATELY
        for waiting in await self._try(group, held_likely=held_likely):
            self._hold(waiting)

    # -- the waiting path ---------------------------------------------------------------

    def _hold(self, waiting: _Waiting) -> None:
        if not waiting.since:
            waiting.since = time.monotonic()
        self._held.append(waiting)
        for user in waiting.users():
            self._holding[user] = self._holding.get(user, 0) + 1
        if self._waiting < self._waiters:
            self._waiting += 1
            self._start(self._wait())

    def _release(self, waiting: _Waiting) -> None:
        for user in waiting.users():
            count = self._holding[user] - 1
            if count:
                self._holding[user] = count
            else:
                del self._holding[user]

    def _take_held(self) -> list[_Waiting]:
        """The queued requests none of whose users another waiter is publishing or an
        earlier request still queued has (each user's requests go in arrival order), up
        to `max_items`; their users are claimed."""
        taken: list[_Waiting] = []
        kept: deque[_Waiting] = deque()
        passed: set[str] = set()
        mine: set[str] = set()
        size = 0
        while self._held:
            waiting = self._held.popleft()
            users = waiting.users()
            if waiting.future.done():
                self._release(waiting)
                continue
            fits = size + len(waiting.request.items) <= self._max_items or not taken
            if fits and self._claimed.isdisjoint(users - mine) and passed.isdisjoint(users):
                taken.append(waiting)
                size += len(waiting.request.items)
                mine.update(users)
                self._claimed.update(users)
            else:
                kept.append(waiting)
                passed.update(users)
        self._held = kept
        return taken

    async def _wait(self) -> None:
        """A waiter: until nothing it may take is queued. Ends in the same step as its
        last look at the queue (see `publish`). What it leaves is claimed by running
        waiters, directly or behind an earlier request of the same user: each of them
        looks again once its own requests are through, so nothing is left behind, and
        an exiting waiter starts no other (which would find the same and spin)."""
        try:
            while taken := self._take_held():
                try:
                    await self._wait_for(taken)
                finally:
                    for waiting in taken:
                        self._claimed.difference_update(waiting.users())
                        self._release(waiting)
        finally:
            self._waiting -= 1

    async def _wait_for(self, taken: list[_Waiting]) -> None:
        """Try `taken` without waiting; then wait for the first still held, alone, and
        try the rest again once it is through (its holder may have released them too)."""
        left = await self._try(taken)
        while left:
            now = time.monotonic()
            if self._busy_after is not None:
                for waiting in left:
                    if now - waiting.since >= self._busy_after:
                        _settle(waiting, StreamBusy("a user's stream stayed held elsewhere"))
            # Answered meanwhile (busy, or its client gone): not published.
            left = [w for w in left if not w.future.done()]
            if not left:
                return
            first, rest = left[0], left[1:]
            await self._alone(first)
            rest = [w for w in rest if not w.future.done()]
            left = await self._try(rest) if rest else []

    async def _alone(self, waiting: _Waiting) -> None:
        """A publish that waits for held streams (bounded by the lock timeout)."""
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
