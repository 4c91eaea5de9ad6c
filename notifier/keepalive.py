"""WebSocket protocol pings from one timer per event loop instead of three per socket.

uvicorn pings each socket on its own: a timer for the ping, another for the pong's
deadline (cancelled when the pong comes), a third for the next ping, each a libuv timer
that uvloop allocates, arms and frees, plus a random payload and wsproto framing it, and
every pong parsed by wsproto. At 100,000 sockets and the default 20 s that is 5,000
pings a second, and they were what kept the machine busy with nothing published
(docs/performance.md, "Stop 21": idle server CPU 0.73 against 0.25 cores). Here one
`Keepalive` per event loop visits a slice of the sockets every tick: a socket whose
last ping is still unanswered is closed (1011, as uvicorn does), the others get the same
prepared frame (`PING`); a socket is pinged and judged once an interval, with one
interval to answer. `wsprotocol.LeanWSProtocol` is the socket side.
"""

from __future__ import annotations

import asyncio
import math
from typing import ClassVar, Protocol

import wsproto
from wsproto.connection import ConnectionState
from wsproto.frame_protocol import FrameProtocol


class Pinged(Protocol):
    def keepalive_due(self) -> None:
        """Visited by its `Keepalive`: once an interval."""


class Keepalive:
    """The sockets of one event loop in `slots` rings; every `TICK` seconds one slot is
    visited, so each socket once per `interval`. Started by the first socket and stopped
    with the last, so an idle server runs no timer.

    A visit holds the event loop while it writes its slot's pings, so the tick is short:
    an interval's pings go out in many small visits, and the sockets of a reconnect storm
    are filed apart by the tick in which they came. With a tick of 0.25 s, 18,000 sockets
    pinged every 2 s made visits of 2,250 pings, and publish-to-delivery at 200/s read
    p90 37 ms, p99 67 and 108 ms; with 0.05 s, p99 17 and 19 ms; with 0.02 s (180 pings a
    visit), p90 7 ms, p99 12 ms, at the same CPU (`python -m bench.scale --sockets 18000
    --workers 1 --loadgens 2 --no-kill --seconds 10 --rate 200 --connect-concurrency 300
    --server-env NOTIFIER_WS_PING_SECONDS=2`). Past `MAX_SLOTS` (an interval over 20 s)
    the tick grows instead, so that the ring stays a few hundred KiB.
    """

    TICK: ClassVar[float] = 0.02
    MAX_SLOTS: ClassVar[int] = 1000

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        slots = max(1, min(self.MAX_SLOTS, math.ceil(interval / self.TICK)))
        self.slots: list[set[Pinged]] = [set() for _ in range(slots)]
        self.current = 0
        self.count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    def add(self, protocol: Pinged) -> int:
        """The socket is first visited a whole interval from now: the slot just visited."""
        self.slots[self.current].add(protocol)
        self.count += 1
        if self._timer is None:
            self._due = self.loop.time() + self.interval / len(self.slots)
            self._timer = self.loop.call_at(self._due, self._visit)
        return self.current

    def discard(self, protocol: Pinged, slot: int) -> None:
        members = self.slots[slot]
        if protocol in members:
            members.discard(protocol)
            self.count -= 1
        if self.count == 0:
            self._stop()

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if _KEEPALIVES.get(self.loop) is self:
            del _KEEPALIVES[self.loop]

    def _visit(self) -> None:
        self.current = (self.current + 1) % len(self.slots)
        for protocol in list(self.slots[self.current]):
            protocol.keepalive_due()
        if self.count == 0:
            self._stop()
            return
        # Due times step from the first, not from when this visit ran, so that a busy
        # loop delays a visit without stretching every interval after it.
        self._due = max(self._due + self.interval / len(self.slots), self.loop.time())
        self._timer = self.loop.call_at(self._due, self._visit)


_KEEPALIVES: dict[asyncio.AbstractEventLoop, Keepalive] = {}


PING = bytes(FrameProtocol(client=False, extensions=[]).ping(b""))
"""A server's ping with no payload: unmasked, so the same bytes for every socket."""


EMPTY_PONG = b"\x8a\x80"
"""A client's pong with no payload, as every client answers `PING`: final, masked,
length 0, then the 4-byte mask."""


def between_frames(conn: wsproto.WSConnection) -> bool:
    """Whether wsproto holds no part of a frame, so that bytes that make a whole frame
    are that frame. wsproto has no public word for it: its decoder's state is read,
    and if that is not where it was (another wsproto), the answer is no."""
    connection = conn.connection
    decoder = getattr(getattr(connection, "_proto", None), "_frame_decoder", None)
    return (
        connection is not None
        and connection.state is ConnectionState.OPEN
        and getattr(decoder, "header", True) is None
        and len(getattr(decoder, "buffer", b"?")) == 0
    )


def for_loop(loop: asyncio.AbstractEventLoop, interval: float) -> Keepalive:
    """The loop's `Keepalive` for this interval (made with its first socket)."""
    keepalive = _KEEPALIVES.get(loop)
    if keepalive is None or keepalive.interval != interval:
        keepalive = _KEEPALIVES[loop] = Keepalive(loop, interval)
    return keepalive
