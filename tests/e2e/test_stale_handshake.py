"""A WebSocket handshake that waited in the listen backlog past 5 s is answered `503` with
`Retry-After` without any work (its client may have given up, and the ones behind it
wait); one whose client already left is dropped unanswered; both are counted. The
process is stopped (SIGSTOP) so that the requests queue in the kernel, as in a storm."""

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


async def test_stale_and_abandoned_handshakes_are_refused_without_work(sqlite_url: str) -> None:
    async with own_server(sqlite_url) as server:
        assert server.process is not None
        pid = server.process.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            # The kernel completes the TCP handshakes and keeps the requests queued.
            stale_r, stale_w = await asyncio.open_connection("127.0.0.1", server.port)
            stale_w.write(_upgrade(server.port, new_user()))
            _, gone_w = await asyncio.open_connection("127.0.0.1", server.port)
            gone_w.write(_upgrade(server.port, new_user()))
            await gone_w.drain()
            gone_w.close()  # gives up, as a client does at its connect timeout
            await asyncio.sleep(5.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        answer = await asyncio.wait_for(stale_r.read(), timeout(10))
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert b"retry-after: 1" in head.lower()
        assert body == b'{"detail":"server busy, retry later"}'
        stale_w.close()
        # A fresh handshake is served as usual.
        async with ws_connect(server, new_user(), after=0) as ws:
            assert (await recv_frame(ws))["type"] == "replayed"
        async with httpx.AsyncClient(base_url=server.url) as http:
            metrics = (await http.get("/metrics")).text
        assert shed(metrics, "ws", "stale") == 1
        assert shed(metrics, "ws", "gone") == 1
