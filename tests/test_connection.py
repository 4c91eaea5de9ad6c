"""A socket's sender (notifier/connection.py), driven through its ASGI `send`: a live
frame the socket takes at once is written in the step that delivers it, a write that has
to wait goes on in a task without losing or reordering frames, a failing write ends in
exactly one close frame, and its phases follow the lifecycle's table."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest

from notifier.admission import Admission
from notifier.connection import Connection
from notifier.core.lifecycle import InvalidTransition, State
from notifier.store import NewNotification, Store
from tests.support import new_user


def handshaking(reads: Any, send: Any, *, user: str = "u", after: int | None = None) -> Connection:
    return Connection(
        user_id=user,
        reads=reads,
        send=send,
        replay_after=after,
        page_size=100,
        max_buffer_bytes=1 << 20,
    )


def live(store: Store, send: Any) -> Connection:
    connection = handshaking(store, send)
    connection.start_at(0)
    connection.start()
    return connection


async def until_closed(connection: Connection) -> None:
    """Until the close frame is out."""
    async with asyncio.timeout(2):
        while connection.state is not State.CLOSED:
            await asyncio.sleep(0.001)


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
    assert connection.state is State.CLOSED


async def test_a_close_requested_during_the_handshake_wins(store: Store) -> None:
    """A token that expires while the head is read: the socket never goes live, and its
    only frame is the close."""
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    connection = handshaking(store, send)
    connection.request_close(4401, "token expired")
    connection.start_at(5)
    assert connection.state is State.CLOSING
    connection.start()
    connection.offer(6, "frame-6", None)
    await until_closed(connection)
    assert sent == [{"type": "websocket.close", "code": 4401, "reason": "token expired"}]


async def test_the_first_close_is_the_one_sent(store: Store) -> None:
    """Later closes (expiry, a refused renewal, the endpoint's discard) change nothing."""
    sent: list[MutableMapping[str, Any]] = []
    writable = asyncio.Event()

    async def send(message: MutableMapping[str, Any]) -> None:
        await writable.wait()
        sent.append(message)

    connection = live(store, send)
    connection.offer(1, "frame-1", None)  # waits for the client
    connection.request_close(1013, "client too slow: outgoing buffer full")
    connection.request_close(4401, "token expired")
    assert (connection.state, connection.close_code) == (State.CLOSING, 1013)
    writable.set()
    await until_closed(connection)
    connection.request_close(4401, "token expired")
    connection.discard()
    close = {
        "type": "websocket.close",
        "code": 1013,
        "reason": "client too slow: outgoing buffer full",
    }
    assert sent == [{"type": "websocket.send", "text": "frame-1"}, close]
    assert (connection.close_code, connection.close_reason) == (close["code"], close["reason"])


async def test_a_socket_discarded_without_a_close_is_gone(store: Store) -> None:
    """The client left: the socket ends CLOSED with 1006 and takes nothing more."""
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    connection = live(store, send)
    connection.discard()
    assert (connection.state, connection.close_code, connection.close_reason) == (
        State.CLOSED,
        1006,
        "",
    )
    connection.offer(1, "frame-1", None)
    connection.push("pong")
    await asyncio.sleep(0.01)
    assert sent == []


async def test_out_of_order_calls_are_refused(store: Store) -> None:
    """start() needs the position first, and a socket goes live once."""

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    with pytest.raises(InvalidTransition, match="start_at"):
        handshaking(store, send).start()
    connection = live(store, send)
    with pytest.raises(InvalidTransition, match="begin_live is not allowed in live"):
        connection.start_at(3)


async def test_a_resume_gives_back_its_opening_place_once_its_first_page_is_read(
    store: Store,
) -> None:
    """A long replay does not count as opening (it could hold the place for minutes):
    the place is given back as soon as the first page is read, before it is sent."""
    gate = Admission(max_opening=1, max_streams=10)
    opening = gate.admit("ws")
    assert opening is not None
    writable = asyncio.Event()

    async def send(message: MutableMapping[str, Any]) -> None:
        await writable.wait()  # a client that reads slowly

    connection = Connection(
        user_id=new_user(),
        reads=store,
        send=send,
        replay_after=0,
        page_size=100,
        max_buffer_bytes=1 << 20,
        opening=opening,
    )
    connection.start()
    async with asyncio.timeout(2):
        while gate.opening:
            await asyncio.sleep(0.001)
    assert gate.admit("ws") is not None
    writable.set()
    connection.discard()


class CountingReads:
    """The real store's reads, counting the pages asked for; `on_head` runs just before
    a head read returns (an announcement arriving then)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pages = 0
        self.on_head: Any = None

    async def head(self, user_id: str) -> int:
        head = await self.store.head(user_id)
        if self.on_head is not None:
            await self.on_head()
        return head

    async def frames_after(self, user_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        self.pages += 1
        return await self.store.frames_after(user_id, after, limit)


def resuming(reads: Any, user: str, after: int, sent: list[Any]) -> Connection:
    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    return handshaking(reads, send, user=user, after=after)


async def until_replayed(sent: list[Any]) -> list[dict[str, Any]]:
    async with asyncio.timeout(2):
        while not any('"replayed"' in text for text in texts(sent)):
            await asyncio.sleep(0.001)
    return [orjson.loads(text) for text in texts(sent)]


async def test_a_resume_with_nothing_past_its_position_reads_no_page(store: Store) -> None:
    """A resume at the user's head (the common reconnect) is done after its head read,
    complete; one behind it reads its page and gets what it missed."""
    user = new_user()
    await store.publish(
        "p", [NewNotification(user, "t", '{"n":1}', ""), NewNotification(user, "t", '{"n":2}', "")]
    )
    for after, pages, seqs in ((2, 0, []), (5, 0, []), (1, 1, [2])):
        reads, sent = CountingReads(store), []
        connection = resuming(reads, user, after, sent)
        connection.start()
        frames = await until_replayed(sent)
        assert reads.pages == pages, after
        assert [f["notification"]["seq"] for f in frames if f["type"] == "notification"] == seqs
        assert frames[-1] == {"type": "replayed", "last_seq": max([after, *seqs]), "complete": True}
        connection.discard()


async def test_an_announcement_during_the_head_read_still_gets_its_page(store: Store) -> None:
    """A notification committed after the head read and announced before the replay's
    decision is read from the database and sent once, before `replayed`."""
    user = new_user()
    await store.publish("p", [NewNotification(user, "t", '{"n":1}', "")])
    reads, sent = CountingReads(store), []
    connection = resuming(reads, user, 1, sent)

    async def announce_a_new_one() -> None:
        reads.on_head = None
        await store.publish("p", [NewNotification(user, "t", '{"n":2}', "")])
        ((seq, frame),) = await store.frames_after(user, 1, 10)
        connection.offer(seq, frame, None)

    reads.on_head = announce_a_new_one
    connection.start()
    frames = await until_replayed(sent)
    assert reads.pages == 1
    assert [f["notification"]["seq"] for f in frames if f["type"] == "notification"] == [2]
    assert frames[-1] == {"type": "replayed", "last_seq": 2, "complete": True}
    connection.discard()
