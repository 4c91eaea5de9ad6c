"""One process: every socket is local, so the hub's own delivery is the whole fan-out."""

from __future__ import annotations

from collections.abc import Sequence

from notifier.bus.base import Bus, BusHandlers
from notifier.wire.notification import Notification


class MemoryBus(Bus):
    name = "memory"

    async def start(self, handlers: BusHandlers) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def announce(self, notifications: Sequence[Notification]) -> None:
        """Nothing to do: the service has delivered them to this, the only, instance."""
        return None
