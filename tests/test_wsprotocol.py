"""`LeanWSProtocol`: once a socket is accepted, the handshake's leftovers are dropped
(wsproto's handshake state, the request headers in the scope) and the socket works on:
messages both ways, pings answered, a clean close."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from websockets.asyncio.client import connect

from notifier.wsprotocol import LeanWSProtocol
from tests.support import free_port

seen: dict[str, Any] = {}


async def echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    seen["before"] = list(scope["headers"])
    await send({"type": "websocket.accept"})
    seen["after"] = list(scope["headers"])
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            seen["close"] = message["code"]
            return
        await send({"type": "websocket.send", "text": message["text"].upper()})


async def test_an_accepted_socket_keeps_no_handshake_and_works_on() -> None:
    port = free_port()
    config = uvicorn.Config(echo, port=port, ws=LeanWSProtocol, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with connect(f"ws://127.0.0.1:{port}/", additional_headers={"X-A": "b"}) as ws:
            await ws.send("hello")
            assert await ws.recv() == "HELLO"
            await asyncio.wait_for(await ws.ping(), 5)  # answered after the upgrade
            await ws.send("again")
            assert await ws.recv() == "AGAIN"
            (protocol,) = server.server_state.connections
            assert isinstance(protocol, LeanWSProtocol)
            assert not hasattr(protocol.conn.handshake, "_h11_connection")
        assert (b"x-a", b"b") in seen["before"]
        assert seen["after"] == []
        for _ in range(100):
            if "close" in seen:
                break
            await asyncio.sleep(0.01)
        assert seen["close"] == 1000
    finally:
        server.should_exit = True
        await serving
