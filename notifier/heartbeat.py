"""Comments on idle SSE streams: one clock for every stream of the process.

An SSE response that sends nothing for a minute looks dead to proxies (nginx's
`proxy_read_timeout`, 60 s by default) and to clients that watch for silence, so each
stream gets a comment every `interval` seconds (15 by default: under the contract's 20
even when a tick comes late). A timer or a task per stream would cost memory per stream;
one task walks them all instead, a slice at a time so that 100,000 streams never hold the
event loop for long. WebSockets need none of this: uvicorn pings them itself.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from notifier.transport import HEARTBEAT

_SLICE = 1000


class Beating(Protocol):
    def push(self, frame: str) -> None: ...


class Heartbeats:
    def __init__(self, interval: float = 15.0) -> None:
        self.interval = interval
        self._streams: set[Beating] = set()

    def add(self, stream: Beating) -> None:
        self._streams.add(stream)

    def discard(self, stream: Beating) -> None:
        self._streams.discard(stream)

    def __len__(self) -> int:
        return len(self._streams)

    async def beat(self) -> None:
        """One comment to every stream."""
        streams = list(self._streams)
        for start in range(0, len(streams), _SLICE):
            if start:
                await asyncio.sleep(0)
            for stream in streams[start : start + _SLICE]:
                stream.push(HEARTBEAT)

    async def run(self) -> None:
        """For the life of the process."""
        while True:
            await asyncio.sleep(self.interval)
            await self.beat()
