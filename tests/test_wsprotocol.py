"""`LeanWSProtocol`: once a socket is accepted, the handshake's leftovers are dropped
(wsproto's handshake state, the request headers in the scope) and the socket works on:
messages both ways, pings answered, a clean close. Its pings come from one timer per
event loop: every socket is pinged once an interval, one that answers stays, one that
does not is closed with 1011 an interval later, and the timer stops with the last
socket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import struct
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.asyncio.client import connect
from wsproto.connection import Connection

from notifier import keepalive
from notifier.httpguard import GuardedHttpToolsProtocol
from notifier.transport import SEND_MANY
from notifier.wsprotocol import LeanWSProtocol, text_frame
from tests.support import in_process_uvicorn, timeout

seen: dict[str, Any] = {}


async def echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    seen["before"] = list(scope["headers"])
    await send({"type": "websocket.accept"})
    seen["after"] = list(scope["headers"])
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            seen["close"] = message["code"]
            return
        await send({"type": "websocket.send", "text": message["text"].upper()})


async def test_an_accepted_socket_keeps_no_handshake_and_works_on() -> None:
    async with in_process_uvicorn(echo, ws=LeanWSProtocol) as server:
        port = server.config.port
        async with connect(f"ws://127.0.0.1:{port}/", additional_headers={"X-A": "b"}) as ws:
            await ws.send("hello")
            assert await ws.recv() == "HELLO"
            await asyncio.wait_for(await ws.ping(), 5)  # answered after the upgrade
            await ws.send("again")
            assert await ws.recv() == "AGAIN"
            (protocol,) = server.server_state.connections
            assert isinstance(protocol, LeanWSProtocol)
            assert not hasattr(protocol.conn.handshake, "_h11_connection")
        assert (b"x-a", b"b") in seen["before"]
        assert seen["after"] == []
        for _ in range(100):
            if "close" in seen:
                break
            await asyncio.sleep(0.01)
        assert seen["close"] == 1000


@contextlib.asynccontextmanager
async def serving(ping: float | None, ping_timeout: float | None) -> AsyncIterator[int]:
    async with in_process_uvicorn(
        echo, ws=LeanWSProtocol, ws_ping_interval=ping, ws_ping_timeout=ping_timeout
    ) as server:
        yield server.config.port


class RawSocket:
    """A client that answers pings only when told to, and notes when each came."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pings: list[float] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, port: int) -> AsyncIterator[RawSocket]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            key = base64.b64encode(os.urandom(16))
            writer.write(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
            yield cls(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        assert not second & 0x80, "a server's frames are not masked"
        return first & 0x0F, await self.reader.readexactly(second & 0x7F)

    async def until_closed(self, answer: bool) -> int:
        """Reads until the server closes; pongs each ping when `answer`. The close code."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x9:
                self.pings.append(time.monotonic())
                if answer:
                    mask = os.urandom(4)
                    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                    self.writer.write(bytes([0x8A, 0x80 | len(payload)]) + mask + body)
            elif opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])


async def test_every_socket_is_pinged_once_an_interval_and_one_that_answers_stays() -> None:
    async with serving(ping=0.3, ping_timeout=0.3) as port:
        async with RawSocket.open(port) as answering, RawSocket.open(port) as silent:
            answered = asyncio.create_task(answering.until_closed(answer=True))
            started = time.monotonic()
            assert await asyncio.wait_for(silent.until_closed(answer=False), timeout(5)) == 1011
            # Pinged once, then closed an interval later: one ping unanswered is enough.
            assert len(silent.pings) == 1
            assert 0.5 <= time.monotonic() - started <= timeout(2)
            await asyncio.sleep(1.2)
            assert not answered.done()
            pings = answering.pings
            gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
            assert len(pings) >= 4
            assert all(0.15 <= gap <= 0.45 for gap in gaps), gaps
            answered.cancel()
        for _ in range(200):
            if not keepalive._KEEPALIVES:
                break
            await asyncio.sleep(0.01)
        # The last socket gone, the loop runs no keepalive timer.
        assert not keepalive._KEEPALIVES


async def test_a_pong_timeout_unlike_the_interval_keeps_uvicorns_own_timers() -> None:
    async with serving(ping=0.3, ping_timeout=0.9) as port, RawSocket.open(port) as silent:
        started = time.monotonic()
        reading = asyncio.create_task(silent.until_closed(answer=False))
        await asyncio.sleep(0.6)
        assert not keepalive._KEEPALIVES
        assert await asyncio.wait_for(reading, timeout(5)) == 1011
        # uvicorn's deadline: a ping after 0.3 s, then 0.9 s to answer it.
        assert time.monotonic() - started >= 1.1
        assert len(silent.pings) == 1


async def test_a_pong_alone_skips_wsproto_and_bytes_that_only_look_like_one_do_not() -> None:
    parsed: list[bytes] = []
    parse = Connection.receive_data

    def counting(self: Connection, data: bytes | None) -> None:
        if data:  # (the handshake hands the connection its leftover, none here)
            parsed.append(bytes(data))
        parse(self, data)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Connection, "receive_data", counting)
        async with serving(ping=60, ping_timeout=60) as port, RawSocket.open(port) as client:
            # A pong alone in its read: no parse.
            client.writer.write(b"\x8a\x80" + os.urandom(4))
            await client.writer.drain()
            await asyncio.sleep(0.1)
            assert parsed == []
            # A text frame cut so that its second read starts like an empty pong: the
            # first part is inside wsproto, so the second goes there too.
            mask = b"\xc0\x01\x02\x8a"
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(b"@abcd"))
            frame = b"\x81\x85" + mask + masked
            client.writer.write(frame[:5])
            await client.writer.drain()
            await asyncio.sleep(0.1)
            assert frame[5:7] == b"\x8a\x80"
            client.writer.write(frame[5:])
            assert await asyncio.wait_for(client.frame(), timeout(5)) == (0x1, b"@ABCD")
            assert b"".join(parsed) == frame


TEXTS = ["a", "é" * 200, "x" * 70_000, '{"type":"notification"}']
"""Each length encoding of a frame: 7 bits, 16 bits, 64 bits."""


async def sending_many(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    seen["extensions"] = dict(scope["extensions"])
    await send({"type": "websocket.accept"})
    await send({"type": SEND_MANY, "texts": TEXTS})
    await send({"type": "websocket.send", "text": "after"})
    await receive()


class CountingWrites(LeanWSProtocol):
    """Notes every write to the socket (the held 101's included)."""

    writes: ClassVar[list[bytes]] = []

    def connection_made(self, transport: Any) -> None:
        protocol = self

        class Counted:
            def write(self, data: bytes) -> None:
                protocol.writes.append(bytes(data))
                transport.write(data)

            def __getattr__(self, name: str) -> Any:
                return getattr(transport, name)

        super().connection_made(Counted())  # type: ignore[arg-type]


@pytest.mark.parametrize("http", [GuardedHttpToolsProtocol, HttpToolsProtocol])
async def test_many_texts_are_sent_in_one_write_and_received_as_many_messages(
    http: type[HttpToolsProtocol],
) -> None:
    """`SEND_MANY` (named in the scope of a handshake taken either way): the texts
    arrive as that many messages, in order, and left in one write."""
    CountingWrites.writes.clear()
    async with (
        in_process_uvicorn(
            sending_many, http=http, ws=CountingWrites, ws_per_message_deflate=False
        ) as server,
        connect(f"ws://127.0.0.1:{server.config.port}/", max_size=None) as ws,
    ):
        received = [await asyncio.wait_for(ws.recv(), timeout(5)) for _ in range(5)]
    assert received == [*TEXTS, "after"]
    assert SEND_MANY in seen["extensions"]
    framed = b"".join(text_frame(text) for text in TEXTS)
    assert sum(framed in write for write in CountingWrites.writes) == 1


async def test_many_texts_on_a_compressed_socket_are_framed_by_wsproto() -> None:
    """A client that negotiated permessage-deflate (uvicorn's default offers it) gets
    the texts compressed, as wsproto frames them, still as many messages."""
    async with (
        in_process_uvicorn(sending_many, ws=LeanWSProtocol) as server,
        connect(f"ws://127.0.0.1:{server.config.port}/", max_size=None) as ws,
    ):
        assert ws.protocol.extensions  # permessage-deflate is in force
        received = [await asyncio.wait_for(ws.recv(), timeout(5)) for _ in range(5)]
    assert received == [*TEXTS, "after"]
