"""Load shedding for streams being opened: refuse early and cheaply what the process
cannot serve soon, so that clients back off instead of piling up.

In a reconnect storm (an instance restarted, a deploy, a network blip) thousands of
clients come back at once. Admitted all together, every handshake waits behind the
others: at 10,000 resumes the handshake p99 reached the clients' 10-second timeout, they
gave up and came back, and the storm fed itself (bench.storm). So a stream counts as
*opening* from its first byte until it is live (accepted, and for a resume, its replay
done), and while `max_opening` are opening, a new one is refused before its token is
even verified: a WebSocket is accepted and closed with 1013 (Try Again Later: a browser
sees close codes only after accept), an SSE request gets 503 with `Retry-After`. Clients
retry with jittered backoff, so the refused spread out over the next seconds while the
admitted finish fast.

The same refusal keeps a process below its descriptor limit (`max_streams`, derived from
RLIMIT_NOFILE): with `serve --workers N` the kernel hands connections to any worker, and
a worker at its limit could not even accept, while its siblings have room; refused
clients retry and land on another.
"""

from __future__ import annotations

import resource
from collections.abc import Callable

import orjson

from notifier import metrics

BUSY = "server busy, retry later"
"""The `detail` of every shed stream's `503` (WebSocket handshake, SSE request)."""
BUSY_BODY = orjson.dumps({"detail": BUSY})

DESCRIPTORS_KEPT = 200
"""Descriptors left for everything but streams: database and bus connections, the
listening sockets, files, refused connections on their way out."""


def streams_for_descriptors() -> int:
    """Streams the process may hold under its soft descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1_000_000
    return max(100, int(soft * 0.95) - DESCRIPTORS_KEPT)


class Opening:
    """One admitted stream's places: among the opening ones until `done`, among the open
    ones until `end`. Both are idempotent: the endpoint's `finally` may repeat them."""

    __slots__ = ("_gate", "_opening")

    def __init__(self, gate: Admission) -> None:
        self._gate: Admission | None = gate
        self._opening = True

    def done(self) -> None:
        """The stream is live (a resume: its first page is read)."""
        if self._opening and self._gate is not None:
            self._opening = False
            self._gate.opening -= 1

    def end(self) -> None:
        """The stream ended, live or not."""
        self.done()
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.open -= 1
            if gate.full and gate.open <= gate.room_at:
                gate.full = False
                if gate.on_full is not None:
                    gate.on_full(False)


class Admission:
    def __init__(self, *, max_opening: int, max_streams: int) -> None:
        self.max_opening = max_opening
        """0: no bound on streams opening at once."""
        self.max_streams = max_streams
        self.opening = 0
        self.open = 0
        """Streams admitted and not yet ended (`Opening.end`)."""
        self.full = False
        """Set when `open` reaches `max_streams`, cleared when it is back at `room_at`:
        a margin, so that one stream ending and the next opening do not flap it."""
        self.room_at = max_streams - max(1, max_streams // 100)
        self.on_full: Callable[[bool], None] | None = None
        """Told when `full` changes (`notifier.listening`, with `serve --workers N`)."""

    def admit(self, transport: str) -> Opening | None:
        """A place for a new stream, or None (and a count of the refusal) when the
        process is busy opening others or holds as many streams as it may."""
        if self.open >= self.max_streams:
            metrics.STREAMS_SHED.labels(transport, "streams").inc()
            return None
        if self.max_opening and self.opening >= self.max_opening:
            metrics.STREAMS_SHED.labels(transport, "opening").inc()
            return None
        self.opening += 1
        self.open += 1
        if self.open >= self.max_streams and not self.full:
            self.full = True
            if self.on_full is not None:
                self.on_full(True)
        return Opening(self)
