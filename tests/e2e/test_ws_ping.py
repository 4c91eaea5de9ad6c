"""`NOTIFIER_WS_PING_SECONDS`: the server pings every socket at that interval and closes,
with 1011, one whose pong has not come within as long again; a client that answers (every
WebSocket library does, while it reads) stays connected."""

from __future__ import annotations

import asyncio

from tests.e2e.ws_support import close_code, own_server, recv_frame
from tests.support import new_user, timeout, ws_connect


async def test_a_socket_that_stops_answering_pings_is_closed_1011(sqlite_url: str) -> None:
    async with (
        own_server(sqlite_url, NOTIFIER_WS_PING_SECONDS="1") as server,
        ws_connect(server, new_user(), after=0) as silent,
        ws_connect(server, new_user(), after=0) as answering,
    ):
        assert (await recv_frame(silent))["type"] == "replayed"
        assert (await recv_frame(answering))["type"] == "replayed"
        # Not reading, the client neither sees the pings nor answers them.
        silent.transport.pause_reading()
        await asyncio.sleep(timeout(3.5))
        silent.transport.resume_reading()
        code, _ = await close_code(silent, seconds=5)
        assert code == 1011
        # The other one answered every ping in those seconds and is still served.
        await answering.send('{"type": "ping"}')
        assert (await recv_frame(answering))["type"] == "pong"
