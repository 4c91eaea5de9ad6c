"""Presence: how many streams (WebSocket and SSE) each user holds over every instance.

A connect or disconnect only marks its user changed here (a set insertion): no database
write per connect. Once a second each instance writes, in one transaction, the counts of
the users that changed since its last flush and extends its own heartbeat
(`presence_instances.expires_at`, TTL seconds ahead). A read sums the counts of the
instances whose heartbeat has not expired, so the streams of an instance killed without
closing them stop counting TTL seconds after its last flush at most, and any instance
collects the rows of instances expired for a while.

The same tables serve PostgreSQL and SQLite and do not depend on the bus. Heartbeats are
compared with the reader's clock: instances' clocks must agree to within a few seconds
(TTL 10 s against the promised 30 s leaves 20 s of slack).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

from notifier import metrics
from notifier.hub import Hub
from notifier.store.users import UserStore

log = logging.getLogger("notifier.presence")

FLUSH_SECONDS = 1.0
TTL_SECONDS = 10.0
COLLECT_SECONDS = 30.0


class Presence:
    def __init__(
        self,
        store: UserStore,
        hub: Hub,
        instance_id: str,
        *,
        interval: float = FLUSH_SECONDS,
        ttl: float = TTL_SECONDS,
    ) -> None:
        self._store = store
        self._hub = hub
        self.instance_id = instance_id
        self._interval = interval
        self._ttl = timedelta(seconds=ttl)
        self._dirty: set[str] = set()
        self._failing = False
        self._collected = time.monotonic()

    def changed(self, user_id: str) -> None:
        """A stream of `user_id` opened or closed on this instance."""
        self._dirty.add(user_id)

    async def run(self) -> None:
        """Flush once a second for the life of the process (after the first flush, which
        start-up makes before serving)."""
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        counts = {user: self._hub.subscribers(user) for user in dirty}
        now = datetime.now(UTC)
        try:
            await self._store.flush_presence(
                self.instance_id, now + self._ttl, counts, self._everything
            )
        except Exception as error:  # the database is down: the next flush writes them
            self._dirty |= dirty
            if not self._failing:
                log.warning("presence flush failed", extra={"error": repr(error)[:300]})
            self._failing = True
            return
        if self._failing:
            log.info("presence flushed again")
        self._failing = False
        metrics.PRESENCE_USERS.set(self._hub.user_count())
        if time.monotonic() - self._collected >= COLLECT_SECONDS:
            self._collected = time.monotonic()
            try:
                dead = await self._store.collect_dead(now - self._ttl)
            except Exception as error:
                log.warning("presence collection failed", extra={"error": repr(error)[:300]})
            else:
                if dead:
                    log.info("forgot the presence of dead instances", extra={"count": dead})

    def _everything(self) -> dict[str, int]:
        return {user: self._hub.subscribers(user) for user in self._hub.users()}

    async def leave(self) -> None:
        """Shutting down: this instance's streams stop counting at once."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._store.leave_presence(self.instance_id), 2)

    async def connections(self, user_ids: list[str]) -> dict[str, int]:
        """Each of `user_ids`' open streams over every live instance (0 for none)."""
        found = await self._store.connections(user_ids, datetime.now(UTC))
        return {user: found.get(user, 0) for user in user_ids}
