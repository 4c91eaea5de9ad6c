"""`SqlFeed` (bus/sqlfeed.py) without I/O: the bus does everything, the listener only
adds its life and health; an interface method added to `Bus` later is the bus's too."""

from __future__ import annotations

from collections.abc import Sequence

from notifier.bus.base import Bus, BusHandlers
from notifier.bus.sqlfeed import SqlFeed
from notifier.wire.notification import Notification


class Fake(Bus):
    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.calls: list[str] = []

    @property
    def healthy(self) -> bool:
        return self.up

    async def start(self, handlers: BusHandlers) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")

    async def announce(self, notifications: Sequence[Notification]) -> None:
        self.calls.append("announce")


def test_every_public_method_of_the_interface_is_the_buss_own() -> None:
    bus, listener = Fake("redis"), Fake("postgres")
    feed = SqlFeed(bus, listener)
    delegated = [
        name
        for name in dir(Bus)
        if not name.startswith("_")
        and callable(getattr(Bus, name))
        and name not in {"start", "stop"}
    ]
    assert {"announce", "announce_read", "watch", "unwatch"} <= set(delegated)
    for name in delegated:
        assert getattr(feed, name) == getattr(bus, name), name
    assert feed.name == "redis" and feed.in_transaction is bus.in_transaction


async def test_both_start_and_stop_and_either_down_is_unhealthy() -> None:
    bus, listener = Fake("memory"), Fake("postgres")
    feed = SqlFeed(bus, listener)
    await feed.start(BusHandlers(deliver=lambda _a: None, resync=lambda: None))
    await feed.announce([])
    await feed.stop()
    assert bus.calls == ["start", "announce", "stop"] and listener.calls == ["start", "stop"]
    assert feed.healthy
    listener.up = False
    assert not feed.healthy
    listener.up, bus.up = True, False
    assert not feed.healthy
