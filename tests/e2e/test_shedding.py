"""Shedding (`notifier.admission`): a process that holds all the streams it may refuses
the next one at once, before its token is checked (`503` with Retry-After, for the
WebSocket handshake and SSE alike), keeps serving the ones it holds, and admits again
once one ends."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.e2e.ws_support import expect_no_connection, own_server, ping_pong
from tests.support import new_user, publish, recv_notifications, user_headers, ws_connect, ws_url


def shed(metrics: str, transport: str, reason: str = "streams") -> float:
    """`notifier_streams_shed_total` for one transport and reason, from /metrics text."""
    match = re.search(
        rf'^notifier_streams_shed_total\{{reason="{reason}",transport="{transport}"\}} (\S+)$',
        metrics,
        re.M,
    )
    return float(match.group(1)) if match else 0.0


async def test_a_full_process_sheds_new_streams_and_keeps_its_own(sqlite_url: str) -> None:
    user, other = new_user(), new_user()
    async with (
        own_server(sqlite_url, NOTIFIER_MAX_STREAMS="2") as server,
        ws_connect(server, user) as first,
        ws_connect(server, user) as second,
    ):
        how = await expect_no_connection(ws_url(server, other), close_codes=(), statuses=(503,))
        assert how == "http 503"
        # Refused before the token is read: a bad token gets the same answer.
        how = await expect_no_connection(
            ws_url(server, other, token="not-a-token"), close_codes=(), statuses=(503,)
        )
        assert how == "http 503"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(server, other)):
                pass
        assert refused.value.response.headers["retry-after"] == "1"
        assert json.loads(refused.value.response.body or b"") == {
            "detail": "server busy, retry later"
        }
        async with httpx.AsyncClient(base_url=server.url) as http:
            refused = await http.get("/v1/sse", headers=user_headers(other))
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.json() == {"detail": "server busy, retry later"}
            metrics = (await http.get("/metrics")).text
        assert shed(metrics, "ws") == 3 and shed(metrics, "sse") == 1
        created = publish(None, server, user).json()
        for ws in (first, second):
            assert await recv_notifications(ws, 1) == [created]
        await second.close()
        for _attempt in range(40):  # until the server has seen the close
            try:
                async with ws_connect(server, other) as third:
                    await ping_pong(third)
                break
            except InvalidStatus as refused:
                assert refused.response.status_code == 503
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("a stream that ended was never given back")
        await ping_pong(first)
