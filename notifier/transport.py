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

from collections.abc import MutableMapping
from typing import Any, Final, Protocol

from notifier.wire import sse

Message = MutableMapping[str, Any]

HEARTBEAT: Final = ""
"""The frame a stream is offered to show it is alive: a comment on SSE, nothing on a
WebSocket (uvicorn pings those at the protocol level)."""


class Transport(Protocol):
    def frame(self, text: str, seq: int | None) -> Message | None:
        """The message that carries the server frame `text` (`seq`: the notification's),
        or None when this transport sends nothing for it."""

    def close(self, code: int, reason: str) -> Message:
        """The message that ends the stream with `code`."""


class WebSocketTransport:
    __slots__ = ()

    def frame(self, text: str, seq: int | None) -> Message | None:
        if text is HEARTBEAT or not text:
            return None
        return {"type": "websocket.send", "text": text}

    def close(self, code: int, reason: str) -> Message:
        return {"type": "websocket.close", "code": code, "reason": reason}


class SseTransport:
    __slots__ = ()

    def frame(self, text: str, seq: int | None) -> Message | None:
        body = sse.HEARTBEAT if not text else sse.event(text, seq)
        return {"type": "http.response.body", "body": body, "more_body": True}

    def close(self, code: int, reason: str) -> Message:
        return {"type": "http.response.body", "body": sse.close_event(code, reason)}


WEBSOCKET: Final = WebSocketTransport()
SSE: Final = SseTransport()
