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

And one limit on WebSocket handshakes that only the kernel can see: how long the request
waited before the process got to it. In a reconnect storm, connections queue in the
listen backlog, where no admission limit counts them; a client gives up after its
connect timeout (the browser client's is 10 s) and retries, and the process then spends
a handshake, a token check and a replay on a client that is gone, while the one waiting
behind it gives up too (`bench.scale`: 94,868 of 122,661 attempts after a worker's kill
timed out so). Before the upgrade, the kernel's TCP_INFO says whether the client already
closed (the handshake is dropped) and how long ago its request arrived: past
`stale_handshake_seconds` it is answered `503` with `Retry-After`, which costs a write,
and counted in `notifier_streams_shed_total` (reasons `gone` and `stale`).

An SSE stream (`GET /v1/sse`) is an ordinary request with no upgrade to stop at, so for
the paths in `stream_paths` the same verdict travels with the request, in its scope's
`extensions` (`SHED`), and the endpoint refuses it first thing, with the same `503`
(`shed_reason`). Other requests pay nothing: the kernel is asked only for those paths.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from asyncio import TimerHandle
from collections.abc import Iterable, Mapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from notifier import metrics
from notifier.admission import BUSY_BODY
from notifier.wsprotocol import LeanWSProtocol

MAX_HEAD_BYTES = 32 * 1024
"""nginx's default (`large_client_header_buffers 4 8k`) admits up to 32 KiB in all."""


STALE_HANDSHAKE_SECONDS = 5.0
"""A WebSocket handshake whose request arrived this long ago is refused with 503: half
the browser client's connect timeout, so that what is still served is mostly what a
client still waits for."""

_TCP_CLOSE_WAIT = 8
_TCP_INFO = getattr(socket, "TCP_INFO", None)  # Linux
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
    % (len(BUSY_BODY), BUSY_BODY)
)

SHED = "notifier.shed"
"""The key, in a stream request's scope `extensions`, of why it is to be refused
(`{"reason": "stale" | "gone"}`); absent when it is to be served."""


def queued(transport: asyncio.BaseTransport) -> tuple[bool, float] | None:
    """(the client has closed its side, seconds since its last data arrived) of a TCP
    connection, from the kernel (`TCP_INFO`); None where that cannot be read."""
    sock = transport.get_extra_info("socket")
    if _TCP_INFO is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < 56:
        return None
    # struct tcp_info: u8 tcpi_state first; u32 tcpi_last_data_recv (ms) at byte 52.
    return info[0] == _TCP_CLOSE_WAIT, struct.unpack_from("I", info, 52)[0] / 1000


def verdict(found: tuple[bool, float] | None, stale_after: float) -> str | None:
    """`gone` (the client has closed), `stale` (its request waited `stale_after` seconds
    or more) or None (serve it) for a `queued()` reading."""
    if found is None:
        return None
    gone, waited = found
    if gone:
        return "gone"
    return "stale" if waited >= stale_after else None


def shed_reason(scope: Mapping[str, Any]) -> str | None:
    """Why a stream request must be refused before any work (the `verdict` the protocol
    left in its scope), or None."""
    shed: dict[str, str] | None = (scope.get("extensions") or {}).get(SHED)
    return None if shed is None else shed["reason"]


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops parsing, uvicorn answers."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size and a time limit on request heads."""

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout = 20.0
    body_timeout = 60.0
    stale_handshake_seconds = STALE_HANDSHAKE_SECONDS
    stream_paths: frozenset[str] = frozenset()
    """Paths of requests that open a stream without an upgrade (SSE): measured as they
    arrive, for their endpoint to refuse when stale (`shed_reason`)."""

    @classmethod
    def configure(
        cls,
        *,
        head_timeout: float,
        body_timeout: float,
        max_head_bytes: int = MAX_HEAD_BYTES,
        stream_paths: Iterable[str] = (),
    ) -> None:
        """Set the limits for the connections this process serves (`serve` calls it in
        each worker process, from `process.worker_app`)."""
        cls.head_timeout = head_timeout
        cls.body_timeout = body_timeout
        cls.max_head_bytes = max_head_bytes
        cls.stream_paths = frozenset(stream_paths)

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
        # uvicorn set the path of this request's scope (not of an upgrade's), and its
        # task, which holds the same scope, has not started yet.
        if self.scope.get("path") in self.stream_paths:
            reason = verdict(queued(self.transport), self.stale_handshake_seconds)
            if reason is not None:  # an ASGI extension's value is a dict
                self.scope.setdefault("extensions", {})[SHED] = {"reason": reason}

    def handle_websocket_upgrade(self) -> None:
        """The upgrade, unless its client is gone or waited past `stale_handshake_seconds`."""
        reason = verdict(queued(self.transport), self.stale_handshake_seconds)
        if reason is not None:
            metrics.STREAMS_SHED.labels("ws", reason).inc()
            if reason == "stale":
                self.transport.write(_BUSY_RESPONSE)
            self.transport.close()
            return
        ws_class = self.ws_protocol_class
        if ws_class is None or not issubclass(ws_class, LeanWSProtocol):
            super().handle_websocket_upgrade()
            return
        # uvicorn's upgrade, but handing over the request as httptools parsed it.
        self.connections.discard(self)
        protocol = ws_class(
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        protocol.connection_made(self.transport)
        protocol.upgrade(self.scope, self.url)
        self.transport.set_protocol(protocol)

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
