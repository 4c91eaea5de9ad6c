"""`Keepalive` pings in small visits: an interval's pings go out over many short ticks,
so no visit holds the event loop long, and sockets that arrive over a second (a
reconnect storm) are pinged apart, each once an interval."""

from __future__ import annotations

import asyncio
import collections
import itertools

from notifier.keepalive import Keepalive


class Visited:
    """A socket that notes the tick of each visit."""

    def __init__(self, visits: list[tuple[int, Visited]], clock: list[int]) -> None:
        self.visits = visits
        self.clock = clock

    def keepalive_due(self) -> None:
        self.visits.append((self.clock[0], self))


async def test_a_storm_is_pinged_in_small_visits_each_socket_once_an_interval() -> None:
    keepalive = Keepalive(asyncio.get_running_loop(), interval=1.0)
    keepalive._stop()  # the ticks are driven by hand below, not by the wall clock
    ticks = len(keepalive.slots)
    visits: list[tuple[int, Visited]] = []
    clock = [0]
    added: dict[Visited, int] = {}
    # 1,000 sockets arrive over one interval (a storm of 1,000 a second), 20 a tick;
    # then two intervals go by.
    for tick in range(1, 3 * ticks + 1):
        if tick <= ticks:
            for _ in range(1000 // ticks):
                socket = Visited(visits, clock)
                keepalive.add(socket)
                added[socket] = tick - 1  # the last visit before it came
        clock[0] = tick
        keepalive._visit()
        keepalive._timer.cancel()  # type: ignore[union-attr]
    per_tick = collections.Counter(tick for tick, _ in visits)
    # At most 20 pings a visit (a 0.25 s tick made visits of 250).
    assert max(per_tick.values()) <= 20
    by_socket: dict[Visited, list[int]] = collections.defaultdict(list)
    for tick, socket in visits:
        by_socket[socket].append(tick)
    assert set(by_socket) == set(added)
    for socket, seen in by_socket.items():
        # First pinged a whole interval after the visit before it came, then once an
        # interval.
        assert seen[0] == added[socket] + ticks
        assert all(later - earlier == ticks for earlier, later in itertools.pairwise(seen))


async def test_a_long_interval_keeps_the_ring_bounded() -> None:
    keepalive = Keepalive(asyncio.get_running_loop(), interval=300.0)
    assert len(keepalive.slots) == Keepalive.MAX_SLOTS
    keepalive._stop()
