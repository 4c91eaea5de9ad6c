"""Shedding (`notifier.admission`): a process that holds all the streams it may refuses
the next one at once, before its token is checked (WebSocket 1013 "try again later", SSE
503 with Retry-After), keeps serving the ones it holds, and admits again once one ends."""

from __future__ import annotations

import asyncio
import re

import httpx
from websockets.exceptions import ConnectionClosed

from tests.e2e.ws_support import expect_no_connection, own_server, ping_pong
from tests.support import new_user, publish, recv_notifications, user_headers, ws_connect, ws_url


def shed(metrics: str, transport: str) -> float:
    match = re.search(
        rf'^notifier_streams_shed_total\{{reason="streams",transport="{transport}"\}} (\S+)$',
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
        how = await expect_no_connection(ws_url(server, other), close_codes=(1013,), statuses=())
        assert how == "close 1013"
        # Refused before the token is read: a bad token gets the same answer.
        how = await expect_no_connection(
            ws_url(server, other, token="not-a-token"), close_codes=(1013,), statuses=()
        )
        assert how == "close 1013"
        async with httpx.AsyncClient(base_url=server.url) as http:
            refused = await http.get("/v1/sse", headers=user_headers(other))
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.json() == {"detail": "server busy, retry later"}
            metrics = (await http.get("/metrics")).text
        assert shed(metrics, "ws") == 2 and shed(metrics, "sse") == 1
        created = publish(None, server, user).json()
        for ws in (first, second):
            assert await recv_notifications(ws, 1) == [created]
        await second.close()
        for _attempt in range(40):  # until the server has seen the close
            try:
                async with ws_connect(server, other) as third:
                    await ping_pong(third)
                break
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1013
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("a stream that ended was never given back")
        await ping_pong(first)
