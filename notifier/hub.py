"""The sockets this instance holds, by user, and the fan-out to them.

Delivery never waits: each socket takes a frame into its own bounded queue (or notes that
it must read the database), so one slow socket cannot slow the publisher or any other
socket. A notification's frame is built once and shared by every socket.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from notifier.core.revocation import refuses
from notifier.wire.announcement import Announcement
from notifier.wire.notification import Notification


class Subscriber(Protocol):
    """One stream of a user, whatever its transport (WebSocket, SSE)."""

    issued_at: float | None
    """The `iat` of the token the stream was opened or last renewed with (None: none)."""

    @property
    def known_seq(self) -> int:
        """The highest seq of its user this stream knows to exist: every seq up to it is
        sent, queued or being read from the database, so an offer of one is dropped."""

    def offer(self, seq: int, frame: str | None, created_at: float | None) -> None:
        """A notification of this user: queue it, drop it, or fetch the gap."""

    def push(self, frame: str) -> None:
        """A frame outside the seq stream (read and archive state)."""

    def request_close(self, code: int, reason: str) -> None:
        """End the stream with `code` after the write in flight, whatever its transport
        (see `notifier.transport`: a WebSocket close code, or SSE's `close` event)."""


class Hub:
    def __init__(self) -> None:
        # A tuple per user, not a set: a user has a few sockets at most, a 1-tuple is a
        # quarter of an empty set's memory, and fan-out iterates it without a copy.
        self._by_user: dict[str, tuple[Subscriber, ...]] = {}

    def add(self, user_id: str, subscriber: Subscriber, limit: int | None = None) -> bool:
        """Hold `subscriber`; False, holding nothing, when its user has `limit` already.

        The count and the insertion happen in one step of the event loop, so concurrent
        handshakes of one user can never pass the limit together."""
        held = self._by_user.get(user_id, ())
        if limit is not None and len(held) >= limit:
            return False
        self._by_user[user_id] = (*held, subscriber)
        return True

    def remove(self, user_id: str, subscriber: Subscriber) -> None:
        subscribers = self._by_user.get(user_id)
        if subscribers is not None:
            rest = tuple(s for s in subscribers if s is not subscriber)
            if rest:
                self._by_user[user_id] = rest
            else:
                del self._by_user[user_id]

    def users(self) -> Iterable[str]:
        return self._by_user.keys()

    def subscribers(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def positions(self) -> list[tuple[str, int]]:
        """(user_id, the lowest `known_seq` of its streams) for every user held: all the
        user's streams have, or are reading, every seq up to it."""
        return [
            (user, min(subscriber.known_seq for subscriber in subscribers))
            for user, subscribers in self._by_user.items()
        ]

    def user_count(self) -> int:
        """Users holding at least one stream here."""
        return len(self._by_user)

    def revoke(self, user_id: str, cut: int, code: int, reason: str) -> int:
        """Close, with `code`, every stream of `user_id` whose token a revocation up to the
        whole second `cut` refuses; how many."""
        closed = 0
        for subscriber in self._by_user.get(user_id, ()):
            if refuses(cut, subscriber.issued_at):
                subscriber.request_close(code, reason)
                closed += 1
        return closed

    def all(self) -> Iterator[Subscriber]:
        """Every stream this instance holds (a snapshot: closing them while iterating is
        safe)."""
        for subscribers in list(self._by_user.values()):
            yield from subscribers

    def deliver(self, notifications: Iterable[Notification]) -> None:
        """Notifications committed by this instance."""
        for notification in notifications:
            subscribers = self._by_user.get(notification.user_id)
            if subscribers:
                frame = notification.frame
                created = notification.created_at.timestamp()
                for subscriber in subscribers:
                    subscriber.offer(notification.seq, frame, created)

    def on_announcement(self, announcement: Announcement) -> None:
        """An announcement from another instance, through the bus."""
        subscribers = self._by_user.get(announcement.user_id)
        if not subscribers:
            return
        for subscriber in subscribers:
            if announcement.seq is not None:
                subscriber.offer(announcement.seq, announcement.frame, announcement.created_at)
            if announcement.read_frame is not None:
                subscriber.push(announcement.read_frame)

    def offer(self, user_id: str, seq: int, frame: str, created_at: float) -> None:
        """A notification read from the database (a topic publish's fan-out): no
        announcement object per recipient."""
        for subscriber in self._by_user.get(user_id, ()):
            subscriber.offer(seq, frame, created_at)

    def push_read(self, user_id: str, frame: str, *, skip: Subscriber | None = None) -> None:
        for subscriber in self._by_user.get(user_id, ()):
            if subscriber is not skip:
                subscriber.push(frame)

    def offer_heads(self, heads: dict[str, int]) -> None:
        """Each user's newest seq, from the database: sockets behind it fetch the rest."""
        for user_id, head in heads.items():
            for subscriber in self._by_user.get(user_id, ()):
                subscriber.offer(head, None, None)
