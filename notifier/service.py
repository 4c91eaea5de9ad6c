"""The operations a route performs, each a short pipeline across store, hub and bus.

publish: committer (group commit) -> store (commit; the bus's `in_transaction`, if it
has one, announces inside it) -> hub (this instance's sockets, at once) -> bus
(`announce`, whatever the engine: it knows whether it still has anything to send). mark
read, archive: store -> hub -> bus, as `read` and `archived` frames. topic publish: store
(one statement, not through the committer: its counters are locked for as long as
PostgreSQL works on it, and group commit would make unrelated publishes wait with it) ->
fanout (this instance's sockets, read back from the database) -> bus (`announce_topic`:
one announcement for every instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from notifier import metrics, upkeep
from notifier.admission import Admission, streams_for_descriptors
from notifier.auth import ApiKeys, AuthError, TokenVerifier
from notifier.bus import Bus, BusHandlers
from notifier.committer import GroupCommitter
from notifier.config import Settings
from notifier.connection import CLOSE_REVOKED, CLOSE_SERVICE_RESTART
from notifier.core.claims import UserIdentity
from notifier.core.ratelimit import KeyedLimiter, PublishLimiter
from notifier.core.topics import TopicPublish, TopicPublished
from notifier.expiry import Expiries
from notifier.fanout import TopicFanout
from notifier.heads import HeadReader
from notifier.heartbeat import Heartbeats
from notifier.hub import Hub, Subscriber
from notifier.presence import Presence
from notifier.reads import StreamReads
from notifier.revocations import Revocations
from notifier.store import NewNotification, Published, Store
from notifier.store.users import UserStore
from notifier.wire.announcement import Announcement, TopicAnnouncement
from notifier.wire.frames import archived_frames, read_frame_ids, read_frame_up_to

log = logging.getLogger("notifier.service")
_RECONCILE_SLICE = 500
REVOKED_REASON = "tokens revoked: sign in again"
_DRAINING = "server shutting down; reconnect and resume"


class TooManyStreams(Exception):
    """The user already holds NOTIFIER_MAX_SOCKETS_PER_USER streams on this instance."""


@dataclass
class Service:
    settings: Settings
    store: Store
    hub: Hub
    bus: Bus
    verifier: TokenVerifier
    api_keys: ApiKeys
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """This instance in the presence tables (`build_service` passes the bus's origin)."""

    def __post_init__(self) -> None:
        timeout = self.settings.publish_lock_timeout_ms
        self.committer = GroupCommitter(
            self.store, self.bus.in_transaction, busy_after=timeout / 1000 if timeout else None
        )
        self.heads = HeadReader(self.store)
        self.reads = StreamReads(self.store, self.heads)
        """What streams read (heads, replay pages), gathered across streams."""
        self.topic_fanout = TopicFanout(self.store, self.hub)
        self.limiter = PublishLimiter.of(self.settings.publish_rate)
        self.expiries = Expiries()
        self.users = UserStore(self.store.engine)
        self.revocations = Revocations(self.users)
        self.presence = Presence(self.users, self.hub, self.instance_id)
        self.heartbeats = Heartbeats(self.settings.sse_heartbeat_seconds)
        self.draining = False
        """Set by `drain`: the process is stopping, every stream is closed with 1012."""

        self.admission = Admission(
            max_opening=self.settings.max_opening_streams,
            max_streams=self.settings.max_streams or streams_for_descriptors(),
        )
        rate = self.settings.handshake_rate
        self._handshakes = KeyedLimiter(rate, 5 * rate) if rate > 0 else None

    def allow_handshake(self, address: str, now: float) -> bool:
        """Whether a client at `address` may open another stream now
        (NOTIFIER_HANDSHAKE_RATE, per client address, bursts of 5x; `now`: monotonic)."""
        return self._handshakes is None or self._handshakes.allow(address, now)

    async def start(self) -> None:
        self._resync_now = asyncio.Event()
        await self.verifier.keys.start()
        await self.bus.start(
            BusHandlers(
                deliver=self._on_announcement,
                resync=self._resync,
                deliver_topic=self.topic_fanout.deliver,
            )
        )
        self.revocations.bind(lambda: self.bus.healthy)
        await self._load_revocations()
        await self.presence.flush()  # registered before the first stream
        self._tasks = [
            asyncio.create_task(self._reconcile_loop(), name="reconcile"),
            asyncio.create_task(self.expiries.run(), name="expiries"),
            asyncio.create_task(self.presence.run(), name="presence"),
            asyncio.create_task(self.verifier.keys.maintain(), name="token-keys"),
            asyncio.create_task(self.heartbeats.run(), name="heartbeats"),
        ]
        if self.settings.retention_days is not None:
            self._tasks.append(asyncio.create_task(self._retention_loop(), name="retention"))
        engine = self.store.engine
        if engine.dialect.name == "postgresql" and not await upkeep.autovacuum_on(engine):
            log.warning(
                "PostgreSQL's autovacuum is off: notifier will ANALYZE its own tables as they "
                "grow; turn autovacuum on (the default) so that VACUUM runs too"
            )
            self._tasks.append(asyncio.create_task(self._upkeep_loop(), name="upkeep"))

    async def _upkeep_loop(self) -> None:
        """Fresh planner statistics where autovacuum is off (`notifier.upkeep`)."""
        while True:
            await asyncio.sleep(upkeep.INTERVAL_SECONDS)
            try:
                await upkeep.analyze_stale(self.store.engine)
            except Exception as error:  # the database is down: the next round retries
                log.warning("analyze failed", extra={"error": repr(error)[:300]})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.topic_fanout.stop()
        await self.presence.leave()
        await self.bus.stop()

    async def attach(self, user_id: str, subscriber: Subscriber, *, transport: str = "ws") -> None:
        """Subscribe a stream to live delivery; returns once the bus carries its user.
        Raises TooManyStreams, holding nothing, beyond NOTIFIER_MAX_SOCKETS_PER_USER."""
        if not self.hub.add(user_id, subscriber, self.settings.max_sockets_per_user):
            metrics.STREAM_CAP_REFUSED.labels(transport).inc()
            raise TooManyStreams(
                f"too many streams: at most {self.settings.max_sockets_per_user} per user "
                "on one instance"
            )
        self.presence.changed(user_id)
        if self.draining:
            subscriber.request_close(CLOSE_SERVICE_RESTART, _DRAINING)
        await self.bus.watch(user_id)  # also waits for a SUBSCRIBE still in flight

    def drain(self) -> None:
        """The process is stopping (SIGTERM): close every stream with 1012, so that
        clients reconnect (to another instance) and resume; a stream that arrives from
        now on is closed the same way as soon as it is attached.

        Called by `serve` when the signal arrives (`notifier.process`), before uvicorn
        stops listening and waits for open requests: an SSE response would otherwise run
        until the graceful-shutdown timeout and then be cut with no `close` event.
        """
        self.draining = True
        for subscriber in self.hub.all():
            subscriber.request_close(CLOSE_SERVICE_RESTART, _DRAINING)

    def detach(self, user_id: str, subscriber: Subscriber) -> None:
        """The stream ended (also after an `attach` refused with TooManyStreams: then it
        changes nothing)."""
        before = self.hub.subscribers(user_id)
        self.hub.remove(user_id, subscriber)
        left = self.hub.subscribers(user_id)
        if left != before:
            self.presence.changed(user_id)
        if left == 0:
            self.bus.unwatch(user_id)

    # -- users: who may connect, revocation -------------------------------------------

    async def authenticate(self, token: str) -> UserIdentity:
        """A user token, refused (AuthError) when invalid or revoked.

        The revocation check is this instance's copy (a dict look-up); while the copy
        cannot be trusted (the bus is down, or reconnected and the copy is being
        reloaded) the user's revocation is read from the database before the token is
        accepted (`Revocations.confirm`); if the database does not answer either, the
        error propagates and the caller answers 503 (WebSocket: 1011)."""
        identity = self.verifier.verify(token)
        revocations = self.revocations
        if not revocations.trusted:
            cut = await revocations.confirm(identity.user_id)
            if cut is not None:
                self._close_revoked(identity.user_id, cut)
        if revocations.refuses(identity):
            metrics.REVOKED_TOKENS.inc()
            raise AuthError("token revoked")
        return identity

    async def revoke(self, user_id: str) -> datetime:
        """Log `user_id` out everywhere: record the revocation, close the user's streams
        here at once and announce it to every instance; the revocation in force."""
        at = datetime.now(UTC)
        announcement = Announcement(user_id=user_id, revoked_at=at.timestamp())
        notify = self.bus.in_transaction
        in_transaction = (
            (notify.channel, announcement.encode(notify.origin)) if notify is not None else None
        )
        revoked_at = await self.users.revoke(user_id, at, in_transaction)
        metrics.REVOCATIONS.inc()
        self._apply_revocation(user_id, revoked_at.timestamp())
        if notify is None:
            try:
                await self.bus.broadcast(announcement)
            except Exception as error:  # recorded: other instances' reconcile rounds find it
                log.warning("revocation announcement lost", extra={"error": repr(error)})
        return revoked_at

    def _on_announcement(self, announcement: Announcement) -> None:
        if announcement.revoked_at is not None:
            self._apply_revocation(announcement.user_id, announcement.revoked_at)
        else:
            self.hub.on_announcement(announcement)

    def _apply_revocation(self, user_id: str, revoked_at: float) -> None:
        cut = self.revocations.apply(user_id, revoked_at)
        if cut is not None:
            self._close_revoked(user_id, cut)

    def _close_revoked(self, user_id: str, cut: int) -> None:
        closed = self.hub.revoke(user_id, cut, CLOSE_REVOKED, REVOKED_REASON)
        if closed:
            metrics.REVOKED_CLOSES.inc(closed)

    async def _load_revocations(self) -> None:
        """The whole revocations table (at start-up, and after a bus reconnect)."""
        try:
            for user_id, cut in await self.revocations.load():
                self._close_revoked(user_id, cut)
        except Exception as error:  # each handshake reads the database until a reload
            log.warning("revocations not loaded", extra={"error": repr(error)[:300]})

    async def presence_of(self, user_ids: list[str]) -> dict[str, int]:
        """Open streams of each user over every live instance."""
        return await self.presence.connections(user_ids)

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
            metrics.count_tasks()
            reloaded = False
            if not self.revocations.complete and self.bus.healthy:
                await self._load_revocations()
                reloaded = self.revocations.complete
            users = list(self.hub.users())
            try:
                # A slice at a time: offering 10,000 sockets their head in one go would
                # hold the event loop for ~10 ms, a visible stall in delivery latency.
                for start in range(0, len(users), _RECONCILE_SLICE):
                    part = users[start : start + _RECONCILE_SLICE]
                    self.hub.offer_heads(await self.store.heads(part))
                    if not reloaded:
                        # A revocation whose announcement was lost (a bus outage not
                        # noticed yet, a failed PUBLISH) still closes the user's sockets.
                        for user_id, cut in await self.revocations.check_users(part):
                            self._close_revoked(user_id, cut)
            except Exception as error:  # the database is down: the next round retries
                log.warning("reconcile failed", extra={"error": repr(error)[:300]})

    def _resync(self) -> None:
        log.info("bus reconnected: catching every socket up from the database")
        self.revocations.stale()
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

    async def publish_topic(self, request: TopicPublish) -> TopicPublished:
        """Store one notification per subscriber (raises IdempotencyConflict or
        TooManyRecipients, having stored nothing), then deliver them: on this instance
        at once, and one announcement for the others."""
        result = await self.store.publish_topic(request, self.bus.in_transaction)
        if not result.created:
            metrics.IDEMPOTENT_REPEATS.labels(request.publisher).inc()
            return result
        if result.recipients:
            metrics.PUBLISHED.labels(request.publisher).inc(result.recipients)
            announcement = TopicAnnouncement(result.topic, result.created_at, result.recipients)
            self.topic_fanout.deliver(announcement)
            try:
                await self.bus.announce_topic(announcement)
            except Exception as error:  # committed: other instances catch up on reconcile
                log.warning("bus announce failed", extra={"error": repr(error)})
        return result

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

    async def archive_ids(self, user_id: str, ids: Sequence[str]) -> int:
        """Archive (and mark read) the user's own notifications among `ids`; the user's
        sockets on every instance get `archived` frames naming those that changed."""
        changed = set(await self.store.archive_ids(user_id, ids))
        if changed:
            metrics.ARCHIVED.inc(len(changed))
            in_order = [i for i in dict.fromkeys(ids) if i in changed]
            for frame in archived_frames(in_order):
                await self._announce_read(user_id, frame, None)
        return len(changed)

    async def _announce_read(self, user_id: str, frame: str, skip: Subscriber | None) -> None:
        """A frame outside the seq stream (read, archived) to the user's sockets here and,
        through the bus, on the other instances."""
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
