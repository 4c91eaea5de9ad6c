"""A socket's sender (notifier/connection.py), driven through its ASGI `send`: a live
frame the socket takes at once is written in the step that delivers it, a write that has
to wait goes on in a task without losing or reordering frames, and a failing write
ends in exactly one close frame."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from notifier.connection import Connection
from notifier.store import Store


def live(store: Store, send: Any) -> Connection:
    connection = Connection(
        user_id="u",
        store=store,
        send=send,
        replay_after=None,
        page_size=100,
        max_buffer_bytes=1 << 20,
    )
    connection.start_at(0)
    connection.start()
    return connection


def texts(sent: list[MutableMapping[str, Any]]) -> list[str]:
    return [m["text"] for m in sent if m["type"] == "websocket.send"]


async def test_a_live_frame_is_written_in_the_delivering_step(store: Store) -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    connection = live(store, send)
    tasks = len(asyncio.all_tasks())
    for seq in (1, 2, 3):
        connection.offer(seq, f"frame-{seq}", None)
        assert texts(sent) == [f"frame-{n}" for n in range(1, seq + 1)]  # no await between
    assert len(asyncio.all_tasks()) == tasks


async def test_a_write_that_waits_goes_on_in_a_task_in_order(store: Store) -> None:
    sent: list[MutableMapping[str, Any]] = []
    writable = asyncio.Event()

    async def send(message: MutableMapping[str, Any]) -> None:
        await writable.wait()  # the socket's buffer is full until the client reads
        sent.append(message)

    connection = live(store, send)
    for seq in (1, 2, 3):
        connection.offer(seq, f"frame-{seq}", None)
    assert sent == []
    await asyncio.sleep(0.01)
    assert sent == []
    writable.set()
    async with asyncio.timeout(2):
        while len(sent) < 3:
            await asyncio.sleep(0.001)
    assert texts(sent) == ["frame-1", "frame-2", "frame-3"]
    connection.offer(4, "frame-4", None)  # writable again: at once
    assert texts(sent) == ["frame-1", "frame-2", "frame-3", "frame-4"]
    await asyncio.sleep(0.01)
    assert len(texts(sent)) == 4


async def test_a_failing_write_ends_in_exactly_one_close_frame(store: Store) -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "websocket.send":
            raise RuntimeError("the server's own bug, not the client leaving")
        sent.append(message)

    connection = live(store, send)
    connection.offer(1, "frame-1", None)
    connection.offer(2, "frame-2", None)
    await asyncio.sleep(0.05)
    close = {"type": "websocket.close", "code": 1011, "reason": "internal error, reconnect"}
    assert sent == [close]
    assert connection.close_code == 1011
