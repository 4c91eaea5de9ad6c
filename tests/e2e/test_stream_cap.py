"""NOTIFIER_MAX_SOCKETS_PER_USER (v1.1 Limits): a user's streams beyond the cap on one
instance are refused with 4429 before any frame; the user's other streams, and other
users, are not affected."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.ws_support import close_code, expect_no_connection, own_server, ping_pong
from tests.support import new_user, publish, recv_notifications, ws_connect, ws_url


def refusals(metrics: str) -> float:
    match = re.search(
        r'^notifier_stream_cap_refusals_total\{transport="ws"\} (\S+)$', metrics, re.M
    )
    return float(match.group(1)) if match else 0.0


async def test_beyond_the_cap_is_4429_and_the_others_keep_working(sqlite_url: str) -> None:
    """With a cap of 2, a third socket of the user is closed 4429 before any frame; the
    first two still get notifications; another user connects; after one of the two
    leaves, a new socket is accepted; each refusal counts in the metric."""
    user = new_user()
    async with (
        own_server(sqlite_url, NOTIFIER_MAX_SOCKETS_PER_USER="2") as server,
        ws_connect(server, user) as first,
        ws_connect(server, user) as second,
    ):
        before = refusals(httpx.get(server.url + "/metrics").text)
        how = await expect_no_connection(ws_url(server, user), close_codes=(4429,), statuses=())
        assert how == "close 4429"
        async with ws_connect(server, new_user()) as other:
            await ping_pong(other)
        created = publish(None, server, user).json()
        for ws in (first, second):
            assert await recv_notifications(ws, 1) == [created]
        assert refusals(httpx.get(server.url + "/metrics").text) == before + 1
        await second.close()
        for _attempt in range(40):  # until the server has seen the close
            try:
                async with ws_connect(server, user) as third:
                    await ping_pong(third)
                break
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4429
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("a socket freed by a close was never given back")
        await ping_pong(first)


async def test_concurrent_handshakes_never_pass_the_cap(sqlite_url: str) -> None:
    """Twelve handshakes of one user at once with a cap of 5: exactly 5 stay open, the
    other 7 are closed with 4429."""
    user = new_user()
    async with own_server(sqlite_url, NOTIFIER_MAX_SOCKETS_PER_USER="5") as server:
        sockets = await asyncio.gather(*(connect(ws_url(server, user)) for _ in range(12)))
        try:

            async def outcome(ws: ClientConnection) -> int | None:
                try:
                    await ping_pong(ws)
                except ConnectionClosed:
                    code, _ = await close_code(ws)
                    return code
                return None

            results = await asyncio.gather(*(outcome(ws) for ws in sockets))
        finally:
            for ws in sockets:
                await ws.close()
    assert results.count(None) == 5 and results.count(4429) == 7, results


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_a_cap_below_one_is_refused_at_startup(value: str) -> None:
    """NOTIFIER_MAX_SOCKETS_PER_USER must be a positive integer."""
    from pydantic import ValidationError

    from notifier.config import Settings

    with pytest.raises(ValidationError):
        Settings(max_sockets_per_user=value)  # type: ignore[arg-type]
