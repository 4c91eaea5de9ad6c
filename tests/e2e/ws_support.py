"""Helpers shared by the WebSocket end-to-end tests (tests/e2e/test_ws_*.py).

Everything talks to real `notifier serve` processes over loopback sockets; nothing here
mocks the service.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support import Server, timeout, user_headers, ws_url


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def alg_none_token(claims: dict[str, Any]) -> str:
    """A hand-crafted unsigned JWT (`alg: none`, empty signature)."""
    header = b64url(orjson.dumps({"alg": "none", "typ": "JWT"}))
    return f"{header}.{b64url(orjson.dumps(claims))}."


async def recv_frame(ws: ClientConnection, seconds: float = 10) -> dict[str, Any]:
    """The next server frame, which must be a JSON text frame holding an object."""
    raw = await asyncio.wait_for(ws.recv(), timeout(seconds))
    assert isinstance(raw, str), f"server sent a binary frame: {raw!r:.200}"
    body = orjson.loads(raw)
    assert isinstance(body, dict) and isinstance(body.get("type"), str), body
    return body


async def close_code(ws: ClientConnection, seconds: float = 10) -> tuple[int | None, list[Any]]:
    """Read until the server closes; the close code it sent and the frames before it."""
    frames: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(seconds)
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError(f"socket still open; frames so far: {frames[:5]!r:.500}")
        try:
            frames.append(await asyncio.wait_for(ws.recv(), left))
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd is not None else None), frames


async def expect_no_connection(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    close_codes: tuple[int, ...] = (4401,),
    statuses: tuple[int, ...] = (401, 403),
    origin: str | None = None,
) -> str:
    """The handshake is refused with one of `statuses`, or the socket is closed with one
    of `close_codes` before any frame. Returns how it was refused (for messages)."""
    try:
        async with connect(
            url,
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]
            open_timeout=timeout(10),
        ) as ws:
            code, frames = await close_code(ws, 10)
    except InvalidStatus as refused:
        status = refused.response.status_code
        assert status in statuses, f"handshake refused with {status}, expected one of {statuses}"
        return f"http {status}"
    assert frames == [], f"frames were sent before the close: {frames!r:.500}"
    assert code in close_codes, f"closed with {code}, expected one of {close_codes}"
    return f"close {code}"


@contextlib.asynccontextmanager
async def open_ws(url: str, **kwargs: Any) -> AsyncIterator[ClientConnection]:
    async with connect(url, open_timeout=timeout(10), max_size=2**24, **kwargs) as ws:
        yield ws


async def ping_pong(ws: ClientConnection) -> None:
    """A ping gets a pong (notifications arriving meanwhile are skipped)."""
    await ws.send('{"type": "ping"}')
    for _ in range(10_000):
        frame = await recv_frame(ws)
        if frame["type"] == "pong":
            return
        assert frame["type"] in ("notification", "read", "replayed"), frame
    raise AssertionError("no pong")


def items(user: str, count: int, data: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [
        {"user_id": user, "type": "test.batch", "data": data if data is not None else {"i": i}}
        for i in range(count)
    ]


def unread_count(server: Server, user: str) -> int:
    response = httpx.get(
        server.url + "/v1/me/notifications/unread-count", headers=user_headers(user), timeout=10
    )
    assert response.status_code == 200, response.text
    return int(response.json()["unread"])


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def pg_execute(url: str, sql: str, *args: Any) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return str(await conn.execute(sql, *args))
    finally:
        await conn.close()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextlib.asynccontextmanager
async def own_server(database_url: str, **env: str) -> AsyncIterator[Server]:
    """A server of the test's own, started without blocking the event loop."""
    server = Server(database_url, env_extra=env)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


def log_tail(server: Server, lines: int = 40) -> str:
    return "\n".join(server.logs().splitlines()[-lines:])


class Stream:
    """What one client has seen of one user's stream, across all its connections.

    Every notification must be the next seq (no gap, no duplicate, in order), and a
    `replayed` frame must name the last seq seen so far. `replayed` frames saying
    `complete: false` are collected in `incomplete` (tests that delete nothing assert
    it stays empty, after checking the seqs)."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.seqs: list[int] = []
        self.replayed: list[dict[str, Any]] = []
        self.incomplete: list[tuple[int, dict[str, Any]]] = []
        self.connections = 0

    @property
    def last(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    def take(self, frame: dict[str, Any]) -> str:
        kind = frame["type"]
        if kind == "notification":
            notification = frame["notification"]
            assert notification["user_id"] == self.user, notification
            seq = notification["seq"]
            assert seq == self.last + 1, (
                f"connection #{self.connections}: got seq {seq} right after {self.last} "
                f"({'duplicate' if seq <= self.last else 'gap'})"
            )
            self.seqs.append(seq)
        elif kind == "replayed":
            assert frame["last_seq"] == self.last, (frame, self.last)
            assert isinstance(frame["complete"], bool), frame
            if not frame["complete"]:
                self.incomplete.append((self.connections, frame))
            self.replayed.append(frame)
        else:
            assert kind not in ("error",), frame
        return str(kind)


async def drop(ws: ClientConnection) -> None:
    """Vanish without a closing handshake, as a client on a lost network does."""
    ws.transport.abort()
    await asyncio.wait_for(ws.wait_closed(), timeout(5))


@contextlib.asynccontextmanager
async def unpaced_ws(
    server: Server, user: str, *, after: int | None = None
) -> AsyncIterator[ClientConnection]:
    """A client that never pauses reading (max_queue=None), so that its close handshake
    completes even while the server is streaming a replay at it."""
    async with open_ws(ws_url(server, user, after=after), max_queue=None) as ws:
        yield ws
