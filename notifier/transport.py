"""What a stream's frames become on the wire: WebSocket messages or Server-Sent Events.

A `Connection` (replay, live, gaps, pacing, the slow-client bound, closes) is the same
for every stream; only its last step differs. It hands each frame, and the close it
ends with, to its transport, which turns them into the ASGI message to send: a
`websocket.send` / `websocket.close`, or a chunk of an `http.response.body` whose last
chunk is the `close` event (`wire.sse`). Closing a connection with a code (expiry 4401,
revocation 4403, shutdown 1012, slow client 1013, ...) therefore does the right thing on
either transport, whoever asks for it.

Transports hold no state: one instance of each serves every stream of the process, so a
connection pays one reference for its transport.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any, Final, Protocol

from notifier.wire import sse

Message = MutableMapping[str, Any]

HEARTBEAT: Final = ""
"""The frame a stream is offered to show it is alive: a comment on SSE, nothing on a
WebSocket (uvicorn pings those at the protocol level)."""


SEND_MANY = "notifier.websocket.send_many"
"""An ASGI extension of `wsprotocol.LeanWSProtocol`, named in the scope's `extensions`:
a message of this type with `texts` sends each as a WebSocket text message, in order,
in one write. A replay page is a thousand frames; written one by one, each was a
loopback `send` of its own, which was most of a replay's time."""


class Transport(Protocol):
    def frame(self, text: str, seq: int | None) -> Message | None:
        """The message that carries the server frame `text` (`seq`: the notification's),
        or None when this transport sends nothing for it."""

    def frames(self, frames: Sequence[tuple[str, int]]) -> Message | None:
        """One message that carries notification frames (text, seq) in order, or None
        when this transport sends them one by one."""

    def close(self, code: int, reason: str) -> Message:
        """The message that ends the stream with `code`."""


class WebSocketTransport:
    __slots__ = ()

    def frame(self, text: str, seq: int | None) -> Message | None:
        if text is HEARTBEAT or not text:
            return None
        return {"type": "websocket.send", "text": text}

    def frames(self, frames: Sequence[tuple[str, int]]) -> Message | None:
        return None  # ASGI has no message for many WebSocket messages

    def close(self, code: int, reason: str) -> Message:
        return {"type": "websocket.close", "code": code, "reason": reason}


class ManyWebSocketTransport(WebSocketTransport):
    """A WebSocket whose server takes `SEND_MANY` (see `for_websocket`)."""

    __slots__ = ()

    def frames(self, frames: Sequence[tuple[str, int]]) -> Message | None:
        return {"type": SEND_MANY, "texts": [text for text, _ in frames]}


class SseTransport:
    __slots__ = ()

    def frame(self, text: str, seq: int | None) -> Message | None:
        body = sse.HEARTBEAT if not text else sse.event(text, seq)
        return {"type": "http.response.body", "body": body, "more_body": True}

    def frames(self, frames: Sequence[tuple[str, int]]) -> Message | None:
        body = b"".join(sse.event(text, seq) for text, seq in frames)
        return {"type": "http.response.body", "body": body, "more_body": True}

    def close(self, code: int, reason: str) -> Message:
        return {"type": "http.response.body", "body": sse.close_event(code, reason)}


WEBSOCKET: Final = WebSocketTransport()
MANY_WEBSOCKET: Final = ManyWebSocketTransport()
SSE: Final = SseTransport()


def for_websocket(scope: MutableMapping[str, Any]) -> WebSocketTransport:
    """The transport of a WebSocket with this ASGI scope: many frames in one message
    where its server says it takes them."""
    return MANY_WEBSOCKET if SEND_MANY in scope.get("extensions", {}) else WEBSOCKET
