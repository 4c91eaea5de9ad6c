"""One process: every socket is local, so the hub's own delivery is the whole fan-out."""

from __future__ import annotations

from notifier.bus.base import Bus, BusHandlers


class MemoryBus(Bus):
    name = "memory"

    async def start(self, handlers: BusHandlers) -> None:
        return None

    async def stop(self) -> None:
        return None
