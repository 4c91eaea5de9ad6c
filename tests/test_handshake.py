"""The handshake parsed once: `GuardedHttpToolsProtocol` hands `LeanWSProtocol` the
request httptools parsed, and the app sees the same scope, and the client the same
bytes, as through uvicorn's own path (the request written out again and parsed by
wsproto): the 101, a rejection, a refused version, data sent before the accept."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection
from wsproto.handshake import H11Handshake

from notifier.httpguard import GuardedHttpToolsProtocol
from notifier.wsprotocol import LeanWSProtocol
from tests.support import in_process_uvicorn, timeout

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def request(*extra: bytes, target: bytes = b"/v1/ws?after=3&x=%20y") -> bytes:
    lines = [
        b"GET " + target + b" HTTP/1.1",
        b"Host: 127.0.0.1:8000",
        b"Upgrade: websocket",
        b"Connection: keep-alive, Upgrade",
        b"Sec-WebSocket-Key: " + KEY,
        b"Sec-WebSocket-Protocol: bearer, a.b.c",
        b"Origin: http://example.test",
        *extra,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


PLAIN = request(b"Sec-WebSocket-Version: 13")


class App:
    """Accepts with "bearer" and a header, or answers as `answer` says; notes each scope
    and the first message after the accept."""

    def __init__(self, answer: str = "accept") -> None:
        self.answer = answer
        self.scopes: list[dict[str, Any]] = []
        self.received: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        # The addresses differ from one server to the other; the rest must not.
        kept = {key: value for key, value in scope.items() if key not in ("server", "client")}
        self.scopes.append({**kept, "headers": list(scope["headers"])})
        await receive()
        if self.answer == "close":
            await send({"type": "websocket.close", "code": 1008})
        elif self.answer == "response":
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "websocket.http.response.body", "body": b'{"error":"no"}'})
        elif self.answer == "slow accept":
            await asyncio.sleep(0.3)  # the client's frame arrives before the 101 leaves
            await send({"type": "websocket.accept"})
            self.received.append(await receive())
            await send({"type": "websocket.close", "code": 1000})
        elif self.answer == "bad header":
            await send({"type": "websocket.accept", "headers": [(b"x-a", b"b\r\nx-b: c")]})
        else:
            await send(
                {"type": "websocket.accept", "subprotocol": "bearer", "headers": [(b"x-a", b"b")]}
            )
            self.received.append(await receive())
            await send({"type": "websocket.close", "code": 1000})


@contextlib.asynccontextmanager
async def serving(app: Any, http: type[HttpToolsProtocol]) -> AsyncIterator[int]:
    async with in_process_uvicorn(
        app,
        http=http,
        ws=LeanWSProtocol,
        date_header=False,
        server_header=False,
        ws_per_message_deflate=False,  # as `serve` runs it
    ) as server:
        yield server.config.port


async def exchange(port: int, *writes: bytes) -> bytes:
    """Writes each part (the first, the request, alone), then reads until the server
    closes or, having sent its close frame, waits for ours."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in writes:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.05)
        received = b""
        while chunk := await asyncio.wait_for(reader.read(65536), timeout(5)):
            received += chunk
            if closed(received):
                break
        return received
    finally:
        writer.close()


def closed(received: bytes) -> bool:
    """Whether the server's frames after a 101 end with a whole close frame (it then
    waits for ours, so reading on would wait too)."""
    head, _, frames = received.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        return False
    while len(frames) >= 2:  # a server's frames: unmasked, short here
        end = 2 + (frames[1] & 0x7F)
        if frames[0] & 0x0F == 0x8 and len(frames) >= end:
            return True
        frames = frames[end:]
    return False


async def both(answer: str, *writes: bytes) -> list[tuple[bytes, App, int]]:
    """The exchange through the parse-once path, then through uvicorn's own; with each,
    how many times wsproto parsed a request."""
    results = []
    for http in (GuardedHttpToolsProtocol, HttpToolsProtocol):
        app = App(answer)
        parses: list[bytes | None] = []

        def counting(
            self: H11Handshake,
            data: bytes | None,
            parses: list[bytes | None] = parses,
            parse: Any = H11Handshake.receive_data,
        ) -> None:
            parses.append(data)
            parse(self, data)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(H11Handshake, "receive_data", counting)
            async with serving(app, http) as port:
                results.append((await exchange(port, *writes), app, len(parses)))
    return results


def text_frame(text: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    return (
        bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    )


async def test_an_accept_is_wsprotocols_101_and_scope_byte_for_byte() -> None:
    (once, app_once, parsed), (twice, app_twice, _) = await both("accept", PLAIN, text_frame(b"hi"))
    assert parsed == 0  # wsproto never parsed the request
    client = WSConnection(ConnectionType.SERVER)
    client.receive_data(PLAIN)
    list(client.events())
    expected = client.send(AcceptConnection(subprotocol="bearer", extra_headers=[(b"x-a", b"b")]))
    assert once.startswith(expected)
    assert once == twice
    assert app_once.scopes == app_twice.scopes
    (scope,) = app_once.scopes
    assert scope["path"] == "/v1/ws"
    assert scope["query_string"] == b"after=3&x=%20y"
    assert scope["subprotocols"] == ["bearer", "a.b.c"]
    assert scope["headers"][0] == (b"host", b"127.0.0.1:8000")
    assert (b"origin", b"http://example.test") in scope["headers"]
    assert not any(name == b"sec-websocket-protocol" for name, _ in scope["headers"])
    # The frame sent right after the request is the app's first message, both ways.
    assert app_once.received == app_twice.received == [{"type": "websocket.receive", "text": "hi"}]


async def test_a_frame_sent_before_the_accept_is_kept_for_the_app() -> None:
    """(Through uvicorn's own path this frame never reaches the app: its next message
    is the disconnect when the client gives up.)"""
    app = App("slow accept")
    async with serving(app, GuardedHttpToolsProtocol) as port:
        received = await exchange(port, PLAIN, text_frame(b"early"))
    assert received.startswith(b"HTTP/1.1 101 ")
    assert app.received == [{"type": "websocket.receive", "text": "early"}]


@pytest.mark.parametrize("answer", ["close", "response", "bad header"])
async def test_a_rejection_is_answered_as_wsproto_answers_it(answer: str) -> None:
    (once, _, parsed), (twice, _, _) = await both(answer, PLAIN)
    assert parsed == 1  # given to wsproto for the answer
    assert once == twice
    if answer == "bad header":
        # A header that would split the response is refused by h11, as the app's error:
        # no 101, and the connection closed (h11 then refuses the 500 as well).
        assert once == b""
    else:
        assert once.startswith(b"HTTP/1.1 403" if answer == "close" else b"HTTP/1.1 401")


@pytest.mark.parametrize(
    "extra",
    [
        (b"Sec-WebSocket-Version: 8",),
        (),
        (b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Key: " + KEY),
    ],
    ids=["old version", "no version", "two keys"],
)
async def test_an_unusual_handshake_goes_through_wsproto(extra: tuple[bytes, ...]) -> None:
    (once, app_once, _), (twice, app_twice, _) = await both(
        "accept", request(*extra), text_frame(b"x")
    )
    assert once == twice
    assert app_once.scopes == app_twice.scopes


class Greeting:
    """Accepts, then says hello after `delay` seconds (never, if None) and waits."""

    def __init__(self, delay: float | None) -> None:
        self.delay = delay

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        if self.delay is not None:
            await asyncio.sleep(self.delay)
            await send({"type": "websocket.send", "text": "hello"})
        await receive()


async def first_read(app: Greeting) -> tuple[bytes, float]:
    """The client's first read after its request, and how long it waited for it."""
    async with serving(app, GuardedHttpToolsProtocol) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(PLAIN)
            started = asyncio.get_running_loop().time()
            data = await asyncio.wait_for(reader.read(65536), timeout(5))
            return data, asyncio.get_running_loop().time() - started
        finally:
            writer.close()


async def test_the_101_leaves_with_the_first_frame_when_it_follows_soon() -> None:
    data, _ = await first_read(Greeting(delay=0.002))
    assert data.startswith(b"HTTP/1.1 101 ")
    assert data.endswith(b"\r\n\r\n\x81\x05hello")  # one segment, one read


async def test_the_101_leaves_alone_when_no_frame_follows() -> None:
    data, waited = await first_read(Greeting(delay=None))
    assert data.startswith(b"HTTP/1.1 101 ") and data.endswith(b"\r\n\r\n")
    assert waited < timeout(0.5)


class Refusing:
    """Accepts, then closes at once, as the endpoint refuses after the accept
    (`api.ws._refuse`: too many streams, a bad `after`)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4429, "reason": "too many"})


async def test_a_refusal_after_the_accept_carries_the_101_with_it() -> None:
    async with serving(Refusing(), GuardedHttpToolsProtocol) as port:
        received = await exchange(port, PLAIN)
    head, _, frames = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert frames == b"\x88\x0a\x11\x4dtoo many"  # close 4429 "too many"


async def test_a_handshake_without_host_goes_through_wsproto() -> None:
    no_host = PLAIN.replace(b"Host: 127.0.0.1:8000\r\n", b"")
    (once, app_once, _), (twice, app_twice, _) = await both("accept", no_host, text_frame(b"x"))
    # Refused as uvicorn's own path refuses it (wsproto's error): the app never runs.
    assert once == twice
    assert app_once.scopes == app_twice.scopes == []
