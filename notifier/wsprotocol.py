"""uvicorn's wsproto WebSocket protocol, keeping less for each open socket.

What an idle socket costs is mostly memory (issue: 100,000 of them on one machine at
most 18 KiB each), and much of it is what the handshake left behind. tracemalloc over
3,000 idle sockets of one `serve` (18.7 KB of Python objects each) put about 2.5 KB in
wsproto's handshake state, kept for the socket's life although wsproto reads it only
until the upgrade: its h11 connection, its event queue (a deque, 760 B even when
empty) and the request. And 0.75 KB in the request headers of the ASGI scope, which
the endpoint reads before it accepts (Origin, Authorization) and never after.

Once the accept is written, this protocol drops both. wsproto's `WSConnection` then
asks its handshake for nothing but left-over events, of which there are none after the
upgrade (the request was its last, and the data following it went to the connection);
uvicorn's own log lines about the socket use the client's address and the path.

And it pings from one timer per process instead of three per socket. uvicorn pings
each socket on its own: a timer for the ping, another for the pong's deadline
(cancelled when the pong comes), a third for the next ping, each a libuv timer that
uvloop allocates, arms and frees, plus a random payload and wsproto framing it. At
100,000 sockets and the default 20 s that is 5,000 pings a second, and they were what
kept the machine busy with nothing published (see docs/performance.md). Here one
`Keepalive` per event loop visits a slice of the sockets every tick: a socket whose
last ping is still unanswered is closed (1011, as uvicorn does), the others get the
same prepared ping frame. A socket is pinged and judged every interval, with one
interval to answer, which is uvicorn's behaviour when the pong timeout equals the
interval, as `serve` sets it; other settings keep uvicorn's own timers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import wsproto.events
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from wsproto.events import Event
from wsproto.frame_protocol import FrameProtocol


class _Upgraded:
    """What `WSConnection` asks of its handshake once the connection exists."""

    __slots__ = ()

    def events(self) -> Iterator[Event]:
        return iter(())


_UPGRADED = _Upgraded()


class Keepalive:
    """The sockets of one event loop in `slots` rings; every `tick` seconds one slot is
    visited, so each socket once per `interval`. Started by the first socket and stopped
    with the last, so an idle server runs no timer."""

    TICK: ClassVar[float] = 0.25

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.slots: list[set[LeanWSProtocol]] = [
            set() for _ in range(max(1, math.ceil(interval / self.TICK)))
        ]
        self.current = 0
        self.count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    def add(self, protocol: LeanWSProtocol) -> int:
        """The socket is first visited a whole interval from now: the slot just visited."""
        self.slots[self.current].add(protocol)
        self.count += 1
        if self._timer is None:
            self._due = self.loop.time() + self.interval / len(self.slots)
            self._timer = self.loop.call_at(self._due, self._visit)
        return self.current

    def discard(self, protocol: LeanWSProtocol, slot: int) -> None:
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
            self._timer = None
            self._stop()
            return
        # Due times step from the first, not from when this visit ran, so that a busy
        # loop delays a visit without stretching every interval after it.
        self._due = max(self._due + self.interval / len(self.slots), self.loop.time())
        self._timer = self.loop.call_at(self._due, self._visit)


_KEEPALIVES: dict[asyncio.AbstractEventLoop, Keepalive] = {}
_PING = bytes(FrameProtocol(client=False, extensions=[]).ping(b""))
"""A server's ping with no payload: unmasked, so the same bytes for every socket."""


def _keepalive(loop: asyncio.AbstractEventLoop, interval: float) -> Keepalive:
    keepalive = _KEEPALIVES.get(loop)
    if keepalive is None or keepalive.interval != interval:
        keepalive = _KEEPALIVES[loop] = Keepalive(loop, interval)
    return keepalive


class LeanWSProtocol(WSProtocol):
    _keepalive: Keepalive | None = None
    _slot = 0
    _unanswered = False

    def start_keepalive(self) -> None:
        interval = self.ping_interval
        if interval is None or interval <= 0:
            return
        if self.ping_timeout not in (None, interval):
            super().start_keepalive()
            return
        self._keepalive = _keepalive(self.loop, interval)
        self._slot = self._keepalive.add(self)

    def stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.discard(self, self._slot)
            self._keepalive = None
        super().stop_keepalive()

    def keepalive_due(self) -> None:
        """Visited by the `Keepalive`: once an interval."""
        if self.close_sent or self.transport.is_closing():
            self.stop_keepalive()
        elif self._unanswered and self.ping_timeout is not None:
            self.stop_keepalive()
            self.keepalive_timeout()
        else:
            self._unanswered = True
            self.transport.write(_PING)

    def handle_pong(self, event: wsproto.events.Pong) -> None:
        if self._keepalive is None:
            super().handle_pong(event)
        else:
            self._unanswered = False

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.conn.connection is not None:
            self.conn.handshake = _UPGRADED  # type: ignore[assignment]
            self.scope["headers"] = []
