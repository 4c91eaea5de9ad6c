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

And it pings from one timer per process instead of three per socket (`keepalive`);
with a pong timeout other than the interval uvicorn's own timers run.

And the handshake is parsed once: uvicorn's httptools protocol parses the request,
writes it out again and hands the bytes to wsproto, which parses them again with h11
for the same scope and the same 101 (136 µs against 6 µs on the test machine).
`httpguard.GuardedHttpToolsProtocol` calls `upgrade` instead, with the request as
httptools parsed it; a plain handshake becomes the scope directly, and anything else is
given to wsproto, which answers it as before. The 101 then waits up to
`HANDSHAKE_HOLD_SECONDS` to leave with the socket's first frame (`_Held`).

And a socket taken that way takes many text messages in one ASGI message
(`transport.SEND_MANY`, named in its scope's extensions), framed here and written at
once: a replay page of a thousand frames is one write instead of a thousand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

import wsproto.events
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_path_with_query_string,
)
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import Event
from wsproto.utilities import LocalProtocolError, generate_accept_token, split_comma_header

from notifier import keepalive
from notifier.logs import drops_accept_lines
from notifier.transport import SEND_MANY


class _Upgraded:
    """What `WSConnection` asks of its handshake once the connection exists."""

    __slots__ = ()

    def events(self) -> Iterator[Event]:
        return iter(())


_UPGRADED = _Upgraded()


HANDSHAKE_HOLD_SECONDS = 0.02
"""How long a 101 may wait to leave with the socket's first frame (see `_Held`)."""


class _Held:
    """The transport of a socket whose 101 is not written yet: the first write of any
    kind takes the 101 along in one segment, and `Holds` writes it alone if nothing
    comes within `HANDSHAKE_HOLD_SECONDS`.

    A resume's first frame (`replayed`, or the page before it) follows the accept by one
    database read. Written apart, the 101 was a loopback send of its own: 14% of a
    worker's CPU while 18,000 sockets connected (py-spy), as much as the rest of the
    handshake's writes together, and a wake-up more for the client.
    """

    __slots__ = ("protocol", "response", "transport")

    def __init__(
        self, protocol: LeanWSProtocol, transport: asyncio.Transport, response: bytes
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.response = response

    def release(self, data: bytes = b"") -> None:
        current: object = self.protocol.transport
        if current is self:
            self.protocol.transport = self.transport
        response, self.response = self.response, b""
        if not self.transport.is_closing():
            self.transport.write(response + data)

    def write(self, data: bytes) -> None:
        self.release(data)

    def close(self) -> None:
        self.release()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class Holds:
    """The held 101s of one event loop, released together by one timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.held: list[_Held] = []

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Holds:
        """The loop's holds (made with its first held 101, dropped once none is held)."""
        holds = _HOLDS.get(loop)
        if holds is None:
            holds = _HOLDS[loop] = cls(loop)
        return holds

    def add(self, held: _Held) -> None:
        if not self.held:
            self.loop.call_later(HANDSHAKE_HOLD_SECONDS, self._release)
        self.held.append(held)

    def _release(self) -> None:
        held, self.held = self.held, []
        for one in held:
            if one.response:
                one.release()
        if not self.held and _HOLDS.get(self.loop) is self:
            del _HOLDS[self.loop]


_HOLDS: dict[asyncio.AbstractEventLoop, Holds] = {}


def text_frame(text: str) -> bytes:
    """A server's text message as one final, unmasked frame without extensions (RFC 6455,
    5.2): the bytes wsproto writes for it."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return b"\x81" + bytes((size,)) + payload
    if size < 65536:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


_NOT_FORWARDED = frozenset((b"host", b"sec-websocket-extensions", b"sec-websocket-protocol"))
"""Request headers wsproto keeps out of the scope's `headers` (uvicorn's `handle_connect`):
the host goes first, the subprotocols are `subprotocols`, extensions are not offered."""


def request_bytes(http_scope: Mapping[str, Any], target: bytes) -> bytes:
    """The request as uvicorn hands it to a WebSocket protocol: written out again from
    what httptools parsed, for wsproto to parse a second time."""
    output = [http_scope["method"].encode(), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in http_scope["headers"]:
        output += [name, b": ", value, b"\r\n"]
    output.append(b"\r\n")
    return b"".join(output)


_REQUIRED = frozenset((b"host", b"sec-websocket-key", b"sec-websocket-version"))


def plain_handshake(http_scope: Mapping[str, Any], target: bytes) -> dict[bytes, bytes] | None:
    """The handshake's headers, when it is one wsproto accepts without a question: a GET
    over HTTP/1.1 with one Host, one Sec-WebSocket-Key, one Sec-WebSocket-Version of 13,
    ASCII throughout (uvicorn has checked `Upgrade` and `Connection`). None sends the
    request through wsproto, which answers anything else as it always has."""
    if http_scope["method"] != "GET" or http_scope["http_version"] != "1.1":
        return None
    if not target.isascii():
        return None
    seen: dict[bytes, bytes] = {}
    for name, value in http_scope["headers"]:
        if name in _REQUIRED:
            if name in seen or not value.isascii():
                return None
            seen[name] = value
        elif name == b"sec-websocket-protocol":
            seen[name] = seen[name] + b"," + value if name in seen else value
    if seen.get(b"sec-websocket-version") != b"13" or not seen.keys() >= _REQUIRED:
        return None
    if b"sec-websocket-protocol" in seen and not seen[b"sec-websocket-protocol"].isascii():
        return None
    return seen


def _valid_header(name: bytes, value: bytes) -> bool:
    return not any(c in name or c in value for c in (b"\r", b"\n", b"\0")) and b":" not in name


class LeanWSProtocol(WSProtocol):
    _keepalive: keepalive.Keepalive | None = None
    _slot = 0
    _unanswered = False
    _request: tuple[Mapping[str, Any], bytes] | None = None
    """The request (httptools' scope, the target) of a handshake taken without wsproto,
    until it is accepted: written out for wsproto only to answer anything but a plain
    accept (`_through_wsproto`), which few handshakes need."""
    _key = b""
    _early = b""
    """What the client sent before its accept was written (the peer should not, but
    wsproto would keep it for the connection)."""

    # -- the handshake, parsed once --------------------------------------------------------

    def upgrade(self, http_scope: Mapping[str, Any], target: bytes) -> None:
        """Called instead of `data_received(request)` by `GuardedHttpToolsProtocol`: a
        plain handshake becomes the ASGI scope straight from what httptools parsed.
        wsproto would parse the request again with h11 (about 130 µs of the connect's
        CPU on this machine) for the same scope and the same 101."""
        handshake = plain_handshake(http_scope, target)
        if handshake is None or self.config.ws_per_message_deflate:
            self.data_received(request_bytes(http_scope, target))
            return
        self._request = (http_scope, target)
        self._key = handshake[b"sec-websocket-key"]
        protocols = handshake.get(b"sec-websocket-protocol")
        headers = [(b"host", handshake[b"host"])]
        headers += [pair for pair in http_scope["headers"] if pair[0] not in _NOT_FORWARDED]
        raw_path, _, query_string = target.partition(b"?")
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path.decode("ascii")),
            "raw_path": self.root_path.encode("ascii") + raw_path,
            "query_string": query_string,
            "headers": headers,
            "subprotocols": split_comma_header(protocols) if protocols else [],
            "state": http_scope["state"],
            "extensions": {"websocket.http.response": {}, SEND_MANY: {}},
        }
        self.queue.put_nowait({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.on_task_complete)
        self.tasks.add(task)

    def handle_connect(self, event: wsproto.events.Request) -> None:
        """uvicorn's, with `SEND_MANY` among the scope's extensions, as `upgrade` has it
        (the app has not run yet: its task starts on the loop's next turn)."""
        super().handle_connect(event)
        self.scope["extensions"][SEND_MANY] = {}

    def _through_wsproto(self) -> None:
        """Hands wsproto the request after all, for an answer other than a plain accept
        (a rejection, a 500): from then on uvicorn's own code runs unchanged."""
        request, self._request = self._request, None
        if request is not None:
            early, self._early = self._early, b""
            self.conn.receive_data(request_bytes(*request) + early)
            for _ in self.conn.events():  # the Request, already answered by `upgrade`
                pass

    def data_received(self, data: bytes) -> None:
        if self._request is not None:
            self._early += data
            if len(self._early) > self.config.ws_max_size:
                self.transport.close()
            return
        if (
            len(data) == 6
            and data[:2] == keepalive.EMPTY_PONG
            and self._keepalive is not None
            and keepalive.between_frames(self.conn)
        ):
            # The answer to `keepalive.PING`, alone in its read, as nearly every one arrives:
            # taken without wsproto's parse, which was most of a ping's cost left.
            self._unanswered = False
            return
        super().data_received(data)

    def send_500_response(self) -> None:
        self._through_wsproto()
        super().send_500_response()

    async def _send_many(self, texts: list[str]) -> None:
        """`websocket.send` of each text, in one write. A socket that negotiated no
        extension (every one `serve` accepts: it offers none) gets plain unmasked text
        frames, the bytes wsproto would write, built here for a fraction of wsproto's
        cost; otherwise wsproto frames each (compressed, say) and the write is still one."""
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        if not self.handshake_complete or self.close_sent or self.response_started:
            raise RuntimeError(f"Unexpected ASGI message '{SEND_MANY}' in this state.")
        connection = self.conn.connection
        if connection is None or connection.state is not ConnectionState.OPEN:
            raise ClientDisconnected()  # what wsproto's refusal becomes in uvicorn's send
        if getattr(getattr(connection, "_proto", None), "extensions", True):
            output = b"".join(self.conn.send(wsproto.events.Message(data=text)) for text in texts)
        else:
            output = b"".join(text_frame(text) for text in texts)
        if output and not self.transport.is_closing():
            self.transport.write(output)

    async def _accept(self, message: Any, extra_headers: list[tuple[bytes, bytes]]) -> None:
        """uvicorn's accept for a handshake taken by `upgrade`: the same log line, the
        same 101 byte for byte as wsproto writes it."""
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        if not drops_accept_lines(self.logger):
            self.logger.info(
                '%s - "WebSocket %s" [accepted]',
                get_client_addr(self.scope),
                get_path_with_query_string(self.scope),
            )
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
            raise LocalProtocolError(f"unexpected subprotocol {subprotocol}")
        if self.transport.is_closing():
            return
        self._request = None
        self.handshake_complete = True
        response = [
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: ",
            generate_accept_token(self._key),
            b"\r\n",
        ]
        if subprotocol is not None:
            response += [b"Sec-WebSocket-Protocol: ", subprotocol.encode("ascii"), b"\r\n"]
        for name, value in extra_headers:
            response += [name, b": ", value, b"\r\n"]
        response.append(b"\r\n")
        held = _Held(self, self.transport, b"".join(response))
        self.transport = held  # type: ignore[assignment]
        Holds.of(self.loop).add(held)
        self.conn.connection = Connection(ConnectionType.SERVER, [])
        self.start_keepalive()
        early, self._early = self._early, b""
        if early:
            super().data_received(early)

    def start_keepalive(self) -> None:
        interval = self.ping_interval
        if interval is None or interval <= 0:
            return
        if self.ping_timeout not in (None, interval):
            super().start_keepalive()
            return
        self._keepalive = keepalive.for_loop(self.loop, interval)
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
            self.transport.write(keepalive.PING)

    def handle_pong(self, event: wsproto.events.Pong) -> None:
        if self._keepalive is None:
            super().handle_pong(event)
        else:
            self._unanswered = False

    async def send(self, message: Any) -> None:
        if message["type"] == SEND_MANY:
            await self._send_many(message["texts"])
            return
        if self._request is not None:
            # The server's own headers (date, server) are uvicorn's; the app's are checked
            # as h11 would refuse them, and any doubt goes through wsproto.
            given = list(message.get("headers", []))
            if message["type"] == "websocket.accept" and all(_valid_header(*h) for h in given):
                await self._accept(message, [*self.default_headers, *given])
            else:
                self._through_wsproto()
                await super().send(message)
        else:
            await super().send(message)
        if message["type"] == "websocket.accept" and self.conn.connection is not None:
            self.conn.handshake = _UPGRADED  # type: ignore[assignment]
            self.scope["headers"] = []
