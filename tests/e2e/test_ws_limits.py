"""Limits on what a client controls over its socket."""

from __future__ import annotations

import asyncio

from websockets.exceptions import ConnectionClosed

from tests.support import Server, new_user, recv_json, ws_connect


async def test_a_frame_flood_is_refused_frame_by_frame_and_the_socket_survives(
    server: Server,
) -> None:
    """200 pings at once: about the burst allowance is answered with pong, the rest with
    error frames; the socket stays open and answers pings again once the client slows."""
    async with ws_connect(server, new_user()) as ws:
        for _ in range(200):
            await ws.send('{"type": "ping"}')
        frames = [await recv_json(ws) for _ in range(200)]
        pongs = sum(f["type"] == "pong" for f in frames)
        errors = [f for f in frames if f["type"] == "error"]
        assert 50 <= pongs < 120, pongs
        assert len(errors) == 200 - pongs
        assert "too many frames" in errors[0]["detail"]
        await asyncio.sleep(0.2)
        await ws.send('{"type": "ping"}')
        assert await recv_json(ws) == {"type": "pong"}


async def test_oversized_client_frame_closes_with_1009(server: Server) -> None:
    """A client frame over the 64 KiB limit closes the socket with 1009 (message too big)."""
    async with ws_connect(server, new_user()) as ws:
        await ws.send('{"type": "ping", "pad": "' + "x" * 70000 + '"}')
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1009
        else:
            raise AssertionError("the socket stayed open")
