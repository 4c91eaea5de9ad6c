"""The bus interface: what every engine offers the service and the hub.

What it carries is written in `notifier.wire.announcement`. The bus owns announcing: an
engine that can announce inside the publishing transaction hands the store a
`TransactionNotify` (`in_transaction`); the service calls `announce` after every commit,
which engines that cannot join the transaction use and the others ignore. The store
imports no bus.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from notifier.wire.announcement import Announcement, TopicAnnouncement, TransactionNotify
from notifier.wire.notification import Notification


@dataclass(frozen=True, slots=True)
class BusHandlers:
    deliver: Callable[[Announcement], None]
    """An announcement from another instance."""
    resync: Callable[[], None]
    """The bus (re)connected: announcements may have been lost meanwhile."""
    deliver_topic: Callable[[TopicAnnouncement], None] | None = None
    """A topic publish of another instance."""


class Bus(abc.ABC):
    name: str = "bus"

    @property
    def healthy(self) -> bool:
        return True

    @abc.abstractmethod
    async def start(self, handlers: BusHandlers) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    async def watch(self, user_id: str) -> None:
        """This instance now holds a socket of `user_id` (returns once subscribed)."""
        return None

    def unwatch(self, user_id: str) -> None:
        """This instance no longer holds a socket of `user_id`."""
        return None

    @property
    def in_transaction(self) -> TransactionNotify | None:
        """Set for engines that announce inside the publishing transaction, exactly at
        commit (PostgreSQL); None for the others, which `announce` after commit."""
        return None

    @abc.abstractmethod
    async def announce(self, notifications: Sequence[Notification]) -> None:
        """Called after every commit with the new notifications, whatever the engine:
        one that announced them in the transaction (`in_transaction`) does nothing."""

    async def announce_topic(self, announcement: TopicAnnouncement) -> None:
        """Called after every topic publish's commit, whatever the engine: one announcement
        for every instance (not one per recipient); engines that announced it in the
        transaction, and the memory bus, do nothing."""
        return None

    async def broadcast(self, announcement: Announcement) -> None:
        """To every instance, whether or not it holds a socket of the user (a revocation).
        The postgres bus announces revocations inside their transaction instead
        (`in_transaction`); the memory bus has no other instance."""
        return None

    async def announce_read(self, user_id: str, frame: str) -> None:
        """A frame outside the seq stream for `user_id`'s sockets: a read-state or
        archive change (`read`, `archived`)."""
        return None
