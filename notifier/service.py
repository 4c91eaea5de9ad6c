"""The operations a route performs, each a short pipeline across store, hub and bus.

publish: committer (group commit) -> store (commit; the bus's `in_transaction`, if it
has one, announces inside it) -> hub (this instance's sockets, at once) -> bus
(`announce`, whatever the engine: it knows whether it still has anything to send). mark
read: store -> hub -> bus, as `read` frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from notifier import metrics
from notifier.auth import ApiKeys, TokenVerifier
from notifier.bus import Bus, BusHandlers
from notifier.committer import GroupCommitter
from notifier.config import Settings
from notifier.core.ratelimit import KeyedLimiter
from notifier.expiry import Expiries
from notifier.heads import HeadReader
from notifier.hub import Hub, Subscriber
from notifier.store import NewNotification, Published, Store
from notifier.wire.frames import read_frame_ids, read_frame_up_to

log = logging.getLogger("notifier.service")
_RECONCILE_SLICE = 500


@dataclass
class Service:
    settings: Settings
    store: Store
    hub: Hub
    bus: Bus
    verifier: TokenVerifier
    api_keys: ApiKeys

    def __post_init__(self) -> None:
        self.committer = GroupCommitter(self.store, self.bus.in_transaction)
        self.heads = HeadReader(self.store)
        self.expiries = Expiries()
        rate = self.settings.handshake_rate
        self._handshakes = KeyedLimiter(rate, 5 * rate) if rate > 0 else None

    def allow_handshake(self, address: str, now: float) -> bool:
        """Whether a client at `address` may open another stream now
        (NOTIFIER_HANDSHAKE_RATE, per client address, bursts of 5x; `now`: monotonic)."""
        return self._handshakes is None or self._handshakes.allow(address, now)

    async def start(self) -> None:
        self._resync_now = asyncio.Event()
        await self.verifier.keys.start()
        await self.bus.start(BusHandlers(deliver=self.hub.on_announcement, resync=self._resync))
        self._tasks = [
            asyncio.create_task(self._reconcile_loop(), name="reconcile"),
            asyncio.create_task(self.expiries.run(), name="expiries"),
            asyncio.create_task(self.verifier.keys.maintain(), name="token-keys"),
        ]
        if self.settings.retention_days is not None:
            self._tasks.append(asyncio.create_task(self._retention_loop(), name="retention"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.bus.stop()

    async def attach(self, user_id: str, subscriber: Subscriber) -> None:
        """Subscribe a socket to live delivery; returns once the bus carries its user."""
        self.hub.add(user_id, subscriber)
        await self.bus.watch(user_id)  # also waits for a SUBSCRIBE still in flight

    def detach(self, user_id: str, subscriber: Subscriber) -> None:
        self.hub.remove(user_id, subscriber)
        if self.hub.subscribers(user_id) == 0:
            self.bus.unwatch(user_id)

    async def _reconcile_loop(self) -> None:
        """Compare the newest seq of every user this instance holds with what its sockets
        have: one query per round, and only sockets that are behind read more.

        Rounds run about once a second while the bus is down (live delivery degrades to
        polling instead of stopping), at once after a bus reconnect (announcements sent
        meanwhile are lost), and every `reconcile_seconds` otherwise: that last one bounds
        the delay of a notification whose announcement never left its instance (killed
        between commit and a Redis PUBLISH).
        """
        while True:
            interval = 1.0 if not self.bus.healthy else self.settings.reconcile_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resync_now.wait(), interval)
            self._resync_now.clear()
            users = list(self.hub.users())
            try:
                # A slice at a time: offering 10,000 sockets their head in one go would
                # hold the event loop for ~10 ms, a visible stall in delivery latency.
                for start in range(0, len(users), _RECONCILE_SLICE):
                    part = users[start : start + _RECONCILE_SLICE]
                    self.hub.offer_heads(await self.store.heads(part))
            except Exception as error:  # the database is down: the next round retries
                log.warning("reconcile failed", extra={"error": repr(error)[:300]})

    def _resync(self) -> None:
        log.info("bus reconnected: catching every socket up from the database")
        self._resync_now.set()

    async def publish(self, publisher: str, items: Sequence[NewNotification]) -> list[Published]:
        results = await self.committer.publish(publisher, items)
        created = [r.notification for r in results if r.created]
        if created:
            metrics.PUBLISHED.labels(publisher).inc(len(created))
            self.hub.deliver(created)
            try:
                await self.bus.announce(created)
            except Exception as error:  # committed: other instances catch up on reconnect
                log.warning("bus announce failed", extra={"error": repr(error)})
        repeats = len(results) - len(created)
        if repeats:
            metrics.IDEMPOTENT_REPEATS.labels(publisher).inc(repeats)
        return results

    async def mark_read_up_to(
        self, user_id: str, up_to_seq: int, *, skip: Subscriber | None = None
    ) -> int:
        updated = await self.store.mark_read_up_to(user_id, up_to_seq)
        if updated:
            await self._announce_read(user_id, read_frame_up_to(up_to_seq), skip)
        return updated

    async def mark_read_ids(self, user_id: str, ids: Sequence[str]) -> int:
        changed = set(await self.store.mark_read_ids(user_id, ids))
        if changed:
            # In the order the client gave them (the database returns them in any order).
            in_order = [i for i in dict.fromkeys(ids) if i in changed]
            await self._announce_read(user_id, read_frame_ids(in_order), None)
        return len(changed)

    async def _announce_read(self, user_id: str, frame: str, skip: Subscriber | None) -> None:
        self.hub.push_read(user_id, frame, skip=skip)
        await self.bus.announce_read(user_id, frame)

    async def _retention_loop(self) -> None:
        """Delete expired notifications, checking a few times per retention period (at
        most every 10 minutes). Every instance runs it; the deletes are idempotent."""
        assert self.settings.retention_days is not None
        keep = timedelta(days=self.settings.retention_days)
        interval = min(600.0, max(1.0, keep.total_seconds() / 4))
        while True:
            try:
                removed = await self.store.purge_older_than(datetime.now(UTC) - keep)
                if removed:
                    log.info("retention purge", extra={"removed": removed})
            except Exception as error:
                log.warning("retention purge failed", extra={"error": repr(error)})
            await asyncio.sleep(interval)
