"""SQL publishes for instances whose bus does not run on PostgreSQL.

`notifier_publish()` (migration 0003) announces with NOTIFY on the postgres bus's
channel, in its format, at the caller's commit. An instance on the postgres bus hears it
like any other instance's publish. One on the memory or the redis bus with a PostgreSQL
database listens to that channel too, through `SqlFeed`: its bus, plus a postgres bus
used only to receive. The listener is supervised like the bus itself (reconnect with
backoff, then a resync that catches every socket up from the database), and while it is
down the instance counts its bus as unhealthy, so the reconcile round polls the database
every second: a SQL publish is never lost, at worst delivered by the poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from notifier.bus.base import Bus, BusHandlers
from notifier.wire.announcement import TransactionNotify
from notifier.wire.notification import Notification

_OWN = frozenset({"healthy", "start", "stop", "in_transaction"})
"""What `SqlFeed` does itself: the listener's life and health beside the bus's."""


class SqlFeed(Bus):
    """`bus` for everything, and `listener` (a PostgresBus) for what SQL publishes."""

    def __init__(self, bus: Bus, listener: Bus) -> None:
        self._bus = bus
        self._listener = listener
        self.name = bus.name
        # Every other public method of the interface, present or added later (with a
        # default in `Bus` that this class would otherwise inherit), is the bus's own.
        for name in dir(Bus):
            if not name.startswith("_") and name not in _OWN and callable(getattr(Bus, name)):
                setattr(self, name, getattr(bus, name))

    @property
    def healthy(self) -> bool:
        return self._bus.healthy and self._listener.healthy

    async def start(self, handlers: BusHandlers) -> None:
        await asyncio.gather(self._bus.start(handlers), self._listener.start(handlers))

    async def stop(self) -> None:
        await asyncio.gather(self._listener.stop(), self._bus.stop())

    @property
    def in_transaction(self) -> TransactionNotify | None:
        return self._bus.in_transaction

    async def announce(self, notifications: Sequence[Notification]) -> None:
        """Replaced by the bus's own in `__init__` (abstract in `Bus`)."""
        await self._bus.announce(notifications)
