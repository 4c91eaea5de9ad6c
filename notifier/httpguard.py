"""Limits on request heads that uvicorn's httptools protocol does not set itself.

uvicorn bounds neither the size of a request head (its `h11_max_incomplete_event_size`
applies only to the slower pure-Python h11 protocol) nor the time a client may take to
send one: a client that connects and trickles a header byte at a time holds a
connection, and the memory of its head, for as long as it likes. `serve` runs uvicorn
with `GuardedHttpToolsProtocol` instead, which is httptools (the fast parser) plus:

- a head (request line and headers) over `max_head_bytes` is answered `431` and the
  connection closed, as nginx (`large_client_header_buffers`), Node and h11 do at
  8-32 KiB;
- a head not complete `head_timeout` seconds after the connection opened, or after the
  first byte of the next request on a kept-alive connection, is answered `408` and the
  connection closed (nginx's `client_header_timeout`). Between requests uvicorn's own
  keep-alive timeout (5 s) closes an idle connection;
- a body not complete `body_timeout` seconds after its head is answered `408` (or, if
  the app already answered, for instance 401 before reading it, the connection is just
  closed): a client trickling a body holds nothing for longer than that.

Both timers are one `call_later` a request, armed and cancelled by the parser's
callbacks: nothing is added to the app's receive path. Body sizes are
`api.body.BodyLimit`'s.
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 32 * 1024
"""nginx's default (`large_client_header_buffers 4 8k`) admits up to 32 KiB in all."""


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops parsing, uvicorn answers."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size and a time limit on request heads."""

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout = 20.0
    body_timeout = 60.0

    @classmethod
    def configure(
        cls, *, head_timeout: float, body_timeout: float, max_head_bytes: int = MAX_HEAD_BYTES
    ) -> None:
        """Set the limits for the connections this process serves (`serve` calls it in
        each worker process, from `process.worker_app`)."""
        cls.head_timeout = head_timeout
        cls.body_timeout = body_timeout
        cls.max_head_bytes = max_head_bytes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = False
        self._head_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None
        self._refusal: int | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._begin_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._stop_body_timer()
        super().connection_lost(exc)

    def _begin_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._refusal = 431
            raise HeadTooLarge

    # httptools callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begin_head()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()
        if self._body_timer is None and not self.parser.should_upgrade():
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_expired)

    def on_message_complete(self) -> None:
        self._stop_body_timer()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error; ours when a callback refused the head."""
        if self._refusal == 431:
            self._send_and_close(431, "Request Header Fields Too Large")
        else:
            super().send_400_response(msg)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._send_and_close(408, "Request Timeout")

    def _body_expired(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The app is still waiting for the body: it sees a disconnect.
            self._send_and_close(408, "Request Timeout")
        else:
            self.transport.close()

    def _send_and_close(self, status: int, reason: str) -> None:
        body = f'{{"detail": "{reason.lower()}"}}'.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason.encode(), len(body), body)
        )
        self.transport.close()
