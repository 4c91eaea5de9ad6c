"""Topic publishes delivered on this instance: from one announcement to each socket.

A topic announcement names a publish, not its recipients (up to 100,000 of them, far
more than a bus payload holds). Each instance, the publishing one included, reads the
frames the publish made for the users it holds sockets of (`Store.topic_frames`: the
database keeps the publish's rows to those users, so only their frames cross the wire)
and offers them to the hub like any announcement: the sockets' sequencers put them in
order with everything else.

The users held are looked up after the commit (the announcement comes after it), so a
socket subscribed before it read its starting point is either counted here or started
after this publish: none is missed. Announcements are resolved one at a time in one
task, so a burst of topic publishes never floods the database with reads; a failed read
is left to the reconcile loop, which finds every socket behind its user's head.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from notifier.hub import Hub
from notifier.store import Store
from notifier.wire.announcement import Announcement, TopicAnnouncement

log = logging.getLogger("notifier.fanout")

HELD_CHUNK = 20_000
"""Users held here asked about in one read: each read passes over the publish's rows once
(about 35 ms for 100,000), and returns only the frames of these users."""
OFFER_STEP = 1000
"""Frames offered to the hub in one step of the event loop."""


class TopicFanout:
    def __init__(self, store: Store, hub: Hub) -> None:
        self._store = store
        self._hub = hub
        self._pending: deque[TopicAnnouncement] = deque()
        self._task: asyncio.Task[None] | None = None

    def deliver(self, announcement: TopicAnnouncement) -> None:
        """A topic publish committed (here or on another instance); never blocks."""
        self._pending.append(announcement)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="topic-fanout")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        """Until nothing is pending: it ends in the same step as its last look at the
        queue, so no announcement is left behind by a task that is finishing."""
        while self._pending:
            announcement = self._pending.popleft()
            try:
                await self.resolve(announcement)
            except Exception as error:  # the reconcile loop catches the sockets up
                log.warning(
                    "topic delivery failed",
                    extra={"topic": announcement.topic, "error": repr(error)[:300]},
                )

    async def resolve(self, announcement: TopicAnnouncement) -> int:
        """Offer the publish's notifications to this instance's sockets; how many users
        here were among its recipients."""
        hub = self._hub
        users = list(hub.users())
        stamp = announcement.created_at.timestamp()
        delivered = 0
        for start in range(0, len(users), HELD_CHUNK):
            frames = await self._store.topic_frames(
                announcement.topic, announcement.created_at, users[start : start + HELD_CHUNK]
            )
            delivered += len(frames)
            for step in range(0, len(frames), OFFER_STEP):
                if step:
                    await asyncio.sleep(0)  # a bounded step of the event loop at a time
                for user, seq, frame in frames[step : step + OFFER_STEP]:
                    hub.on_announcement(
                        Announcement(user_id=user, seq=seq, frame=frame, created_at=stamp)
                    )
        return delivered
