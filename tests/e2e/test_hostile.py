"""What a hostile client tries against one server (issue 13): oversized and slow heads,
slow and unauthenticated bodies, huge batches and error lists, handshake floods, tokens
that never expire. Each is refused with a precise answer, costs the server no memory
beyond its bound, and leaves it serving."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.http_support import assert_error, inbox
from tests.e2e.ws_support import close_code, expect_no_connection, open_ws, own_server, rss_bytes
from tests.support import (
    API_KEY,
    Server,
    make_token,
    new_user,
    publish,
    publisher_headers,
    recv_notifications,
    timeout,
    ws_url,
)

HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def guarded() -> Iterator[Server]:
    """A server with short head and body time limits and a small handshake rate."""
    with tempfile.TemporaryDirectory(prefix="notifier-hostile-") as folder:
        server = Server(
            f"sqlite+aiosqlite:///{Path(folder) / 'hostile.db'}",
            env_extra={
                "NOTIFIER_HEAD_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
                "NOTIFIER_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
                "NOTIFIER_HANDSHAKE_RATE": "2",
            },
        ).start()
        try:
            yield server
        finally:
            server.stop()


def raw_exchange(server: Server, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout(wait)) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def test_oversized_head_is_431_and_closed(guarded: Server) -> None:
    """A request head over 32 KiB is answered 431 and the connection closed; 30 KiB of
    headers pass."""
    big = b"x-filler: " + b"a" * (33 * 1024) + b"\r\n"
    answer = raw_exchange(guarded, b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + big + b"\r\n")
    assert status_of(answer) == 431
    fine = b"x-filler: " + b"a" * (30 * 1024) + b"\r\n"
    request = b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" + fine + b"\r\n"
    assert status_of(raw_exchange(guarded, request)) == 200


def test_oversized_url_is_431(guarded: Server) -> None:
    """A request line over the bound (a huge query string) is refused the same way."""
    answer = raw_exchange(guarded, b"GET /healthz?q=" + b"a" * 40000 + b" HTTP/1.1\r\n\r\n")
    assert status_of(answer) == 431


def test_slow_head_is_408_and_closed(guarded: Server) -> None:
    """A head still incomplete after the head time limit is answered 408 and closed."""
    started = time.monotonic()
    answer = raw_exchange(guarded, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: 1")
    assert status_of(answer) == 408
    assert HEAD_TIMEOUT * 0.9 <= time.monotonic() - started < timeout(HEAD_TIMEOUT + 3)


def test_silent_connection_is_closed(guarded: Server) -> None:
    """A connection that never sends a byte is closed after the head time limit."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=timeout(5)) as sock:
        sock.recv(65536)  # returns when the server closes
    assert time.monotonic() - started < timeout(HEAD_TIMEOUT + 3)


def test_slow_body_is_408_and_stores_nothing(guarded: Server) -> None:
    """A body not complete within the body time limit is 408, the connection closed,
    nothing stored."""
    user = new_user()
    body = orjson.dumps({"user_id": user, "type": "slow", "data": {}})
    head = (
        b"POST /v1/notifications HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer " + API_KEY.encode() + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    started = time.monotonic()
    answer = raw_exchange(guarded, head + body[:10])
    assert status_of(answer) == 408
    assert b"connection: close" in answer.lower()
    assert time.monotonic() - started < timeout(BODY_TIMEOUT + 3)
    assert inbox(guarded, user) == []


def test_unauthenticated_body_is_refused_before_it_is_read(guarded: Server) -> None:
    """A wrong key gets 401 as soon as the head is in: the server does not wait for the
    1 MiB body it announced. A client that then trickles that body is cut off at the
    body time limit."""
    head = (
        b"POST /v1/notifications HTTP/1.1\r\nhost: x\r\n"
        b"authorization: Bearer wrong-key\r\ncontent-length: 1048576\r\n\r\n"
    )
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=timeout(10)) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        assert status_of(answer) == 401
        assert time.monotonic() - started < BODY_TIMEOUT  # answered before any body
        sock.sendall(b"x" * 1000)
        while sock.recv(65536):  # the rest of the answer, then the close
            pass
    assert BODY_TIMEOUT * 0.9 <= time.monotonic() - started < timeout(BODY_TIMEOUT + 3)


def test_unauthenticated_uploads_cost_no_memory(guarded: Server) -> None:
    """Eight unauthenticated 16 MiB batch uploads in parallel leave the server's memory
    where it was (it used to buffer each body, 128 MiB in all, before checking the key)."""
    assert guarded.process is not None
    before = rss_bytes(guarded.process.pid)
    body = b"{" + b" " * (16 * 1024 * 1024 - 2) + b"}"
    uploads = 8

    async def upload(client: httpx.AsyncClient) -> int:
        try:
            response = await client.post(
                guarded.url + "/v1/notifications/batch",
                content=body,
                headers={"Authorization": "Bearer wrong-key"},
            )
        except httpx.HTTPError:
            return 0  # closed while still sending: refused all the same
        return response.status_code

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=timeout(30)) as client:
            return await asyncio.gather(*(upload(client) for _ in range(uploads)))

    statuses = asyncio.run(run())
    assert set(statuses) <= {401, 0}, statuses
    assert rss_bytes(guarded.process.pid) - before < 32 * 1024 * 1024


def test_batch_over_1000_items_is_422_before_items_are_validated(guarded: Server) -> None:
    """300,000 empty items are refused by their count, with one short error."""
    body = b'{"notifications":[' + b",".join([b"{}"] * 300_000) + b"]}"
    response = httpx.post(
        guarded.url + "/v1/notifications/batch",
        content=body,
        headers=publisher_headers(),
        timeout=timeout(30),
    )
    assert_error(response, 422)
    assert len(response.content) < 1000
    assert "at most 1000 items" in response.text


def test_422_lists_a_bounded_number_of_errors(guarded: Server) -> None:
    """Thousands of unknown fields, with long names, get a short 422 (at most 20 errors
    and a count of the rest), not one error per field."""
    user = new_user()
    fields = {f"unknown-{i}-" + "n" * 200: 1 for i in range(3000)}
    body = orjson.dumps({"user_id": user, "type": "t", "data": {}, **fields})
    assert len(body) > 600_000
    response = httpx.post(
        guarded.url + "/v1/notifications",
        content=body,
        headers=publisher_headers(),
        timeout=timeout(30),
    )
    assert_error(response, 422)
    detail = response.json()["detail"]
    assert len(detail) == 21
    assert detail[-1]["msg"] == "2980 more errors not listed"
    assert len(response.content) < 20_000
    assert inbox(guarded, user) == []


async def _handshake(url: str) -> str:
    """'open' when the socket is accepted (after=0: a `replayed` frame comes first), or
    how it was closed before any frame."""
    async with open_ws(url) as ws:
        try:
            await asyncio.wait_for(ws.recv(), timeout(5))
        except ConnectionClosed as closed:
            return f"closed {closed.rcvd.code if closed.rcvd else None}"
        return "open"


async def test_handshakes_beyond_the_rate_are_closed_4429(guarded: Server) -> None:
    """With NOTIFIER_HANDSHAKE_RATE=2 (bursts of 10), 16 simultaneous handshakes from one
    address: about 10 open, the rest are closed with 4429 before any frame; after a
    pause handshakes work again."""
    user = new_user()
    await asyncio.sleep(5)  # a full bucket, whatever ran before
    url = ws_url(guarded, user, after=0)
    outcomes = await asyncio.gather(*(_handshake(url) for _ in range(16)))
    assert set(outcomes) == {"open", "closed 4429"}, outcomes
    assert 10 <= outcomes.count("open") <= 12, outcomes
    await asyncio.sleep(1)
    assert await _handshake(url) == "open"


async def test_exp_far_ahead_is_refused(guarded: Server) -> None:
    """A token whose exp is 1e300, or more than 366 days ahead, opens no socket and
    passes no HTTP call."""
    await asyncio.sleep(3)  # the handshake bucket refills after the test above
    user = new_user()
    for exp in (1e300, time.time() + 367 * 86400):
        token = make_token(user, exp=exp)
        await expect_no_connection(ws_url(guarded, token=token, after=0))
        response = httpx.get(
            guarded.url + "/v1/me/notifications", headers={"Authorization": f"Bearer {token}"}
        )
        assert_error(response, 401)
    ok = make_token(user, exp=int(time.time()) + 300 * 86400)
    response = httpx.get(
        guarded.url + "/v1/me/notifications", headers={"Authorization": f"Bearer {ok}"}
    )
    assert response.status_code == 200


async def test_socket_never_outlives_the_maximum_lifetime(sqlite_url: str) -> None:
    """With NOTIFIER_MAX_TOKEN_LIFETIME_SECONDS=5, a socket whose token lasts an hour,
    renewed by `auth` frames, is closed with 4401 about 5 s after its handshake; until
    then it receives notifications."""
    async with own_server(sqlite_url, NOTIFIER_MAX_TOKEN_LIFETIME_SECONDS="5") as server:
        user = new_user()
        renew = orjson.dumps({"type": "auth", "access_token": make_token(user)}).decode()
        started = time.monotonic()
        async with open_ws(ws_url(server, user, after=0)) as ws:
            await ws.send(renew)
            assert publish(None, server, user).status_code == 201
            assert len(await recv_notifications(ws, 1)) == 1
            await asyncio.sleep(2)
            await ws.send(renew)
            code, _frames = await close_code(ws, 10)
        assert code == 4401
        assert 4.9 <= time.monotonic() - started < timeout(8)


def test_deep_topic_data_with_a_key_is_422(guarded: Server) -> None:
    """A topic publish checks `data` like a direct one: nested past 64 levels with an
    Idempotency-Key it is 422 (the topic fingerprint nests it deeper still)."""
    data = b'{"a":' * 253 + b"{}" + b"}" * 253
    for depth_data in (data, b'{"a":' * 64 + b"{}" + b"}" * 64):
        response = httpx.post(
            guarded.url + "/v1/topics/hostile.topic/notifications",
            content=b'{"type":"t","data":' + depth_data + b"}",
            headers=publisher_headers(**{"Idempotency-Key": uuid.uuid4().hex}),
            timeout=timeout(10),
        )
        assert_error(response, 422)
        assert "nested more than 64" in response.text


def test_sse_streams_beyond_the_rate_are_429(guarded: Server) -> None:
    """NOTIFIER_HANDSHAKE_RATE counts SSE streams too: a quick series from one address
    gets 429 (with Retry-After) once the burst is spent."""
    time.sleep(6)  # a full bucket, whatever ran before
    user = new_user()
    token = make_token(user)
    statuses = []
    with httpx.Client(timeout=timeout(10)) as client:
        for _ in range(15):
            with client.stream("GET", guarded.url + f"/v1/sse?access_token={token}") as response:
                statuses.append(response.status_code)
                if response.status_code == 429:
                    assert response.headers.get("retry-after")
    assert statuses[:10] == [200] * 10, statuses
    assert 429 in statuses[10:], statuses
