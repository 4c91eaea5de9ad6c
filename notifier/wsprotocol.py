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
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from wsproto.events import Event


class _Upgraded:
    """What `WSConnection` asks of its handshake once the connection exists."""

    __slots__ = ()

    def events(self) -> Iterator[Event]:
        return iter(())


_UPGRADED = _Upgraded()


class LeanWSProtocol(WSProtocol):
    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.conn.connection is not None:
            self.conn.handshake = _UPGRADED  # type: ignore[assignment]
            self.scope["headers"] = []
