"""A WebSocket handshake or an SSE request that waited in the listen backlog past 5 s is
answered `503` with `Retry-After` without any work (its client may have given up, and
the ones behind it wait); one whose client already left is not served; both are counted.
An ordinary request that waited as long is served. The process is stopped (SIGSTOP) so
that the requests queue in the kernel, as in a storm."""

from __future__ import annotations

import asyncio
import base64
import os
import signal

import httpx

from tests.e2e.test_shedding import shed
from tests.e2e.ws_support import own_server, recv_frame
from tests.support import make_token, new_user, timeout, ws_connect


def _upgrade(port: int, user: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /v1/ws?access_token={make_token(user)}&after=0 HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _sse(port: int, user: str) -> bytes:
    return (
        f"GET /v1/sse?after=0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {make_token(user)}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()


def _plain(port: int) -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()


async def _send(
    port: int, request: bytes, *, give_up: bool = False
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The connection (keep the writer: a collected one closes it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    if give_up:
        writer.close()  # as a client does at its connect timeout
    return reader, writer


def _busy(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer[:200]
    assert b"retry-after: 1" in head.lower()
    assert body == b'{"detail":"server busy, retry later"}'


async def test_stale_and_abandoned_stream_requests_are_refused_without_work(
    sqlite_url: str,
) -> None:
    async with own_server(sqlite_url) as server:
        assert server.process is not None
        pid, port = server.process.pid, server.port
        os.kill(pid, signal.SIGSTOP)
        try:
            # The kernel completes the TCP handshakes and keeps the requests queued.
            stale_ws, w1 = await _send(port, _upgrade(port, new_user()))
            stale_sse, w2 = await _send(port, _sse(port, new_user()))
            plain, w3 = await _send(port, _plain(port))
            await _send(port, _upgrade(port, new_user()), give_up=True)
            await _send(port, _sse(port, new_user()), give_up=True)
            await asyncio.sleep(5.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        _busy(await asyncio.wait_for(stale_ws.read(), timeout(10)))
        # The SSE refusal is a complete response on a kept-alive connection.
        head = await asyncio.wait_for(stale_sse.readuntil(b"\r\n\r\n"), timeout(10))
        _busy(head + await stale_sse.readexactly(len(b'{"detail":"server busy, retry later"}')))
        answer = await asyncio.wait_for(plain.read(), timeout(10))
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        # Fresh streams are served as usual.
        async with ws_connect(server, new_user(), after=0) as ws:
            assert (await recv_frame(ws))["type"] == "replayed"
        async with httpx.AsyncClient(base_url=server.url) as http:
            fresh, w4 = await _send(port, _sse(port, new_user()))
            head = await asyncio.wait_for(fresh.readuntil(b"\r\n\r\n"), timeout(10))
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert b"text/event-stream" in head
            metrics = (await http.get("/metrics")).text
        for writer in (w1, w2, w3, w4):
            writer.close()
        for transport in ("ws", "sse"):
            assert shed(metrics, transport, "stale") == 1, transport
            assert shed(metrics, transport, "gone") == 1, transport
