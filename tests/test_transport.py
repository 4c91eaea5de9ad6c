"""A `Connection` on the SSE transport (notifier/transport.py): the same sender, replay
and closes as a WebSocket's, written as events of one HTTP response; the WebSocket
transport writes nothing for a heartbeat."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import orjson

from notifier.connection import Connection
from notifier.core.lifecycle import State
from notifier.store import NewNotification, Store
from notifier.transport import HEARTBEAT, SSE, WEBSOCKET
from tests.support import new_user


def stream(store: Store, send: Any, *, user: str = "u", after: int | None = None) -> Connection:
    connection = Connection(
        user_id=user,
        reads=store,
        send=send,
        replay_after=after,
        page_size=2,
        max_buffer_bytes=1 << 20,
        transport=SSE,
    )
    if after is None:
        connection.start_at(0)
    connection.start()
    return connection


async def until_closed(connection: Connection) -> None:
    async with asyncio.timeout(5):
        while connection.state is not State.CLOSED:
            await asyncio.sleep(0.001)


def bodies(sent: list[MutableMapping[str, Any]]) -> bytes:
    assert all(m["type"] == "http.response.body" for m in sent), sent
    return b"".join(m["body"] for m in sent)


async def test_a_replay_is_events_then_replayed_then_close_ends_the_response(
    store: Store,
) -> None:
    """Replayed notifications carry `id: <seq>`, each page's in one chunk, `replayed`
    follows, and a requested close is the `close` event in the response's last chunk
    (`more_body` false)."""
    user = new_user()
    await store.publish("p", [NewNotification(user, "t", "{}", "") for _ in range(5)])
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    connection = stream(store, send, user=user, after=2)
    async with asyncio.timeout(5):
        while connection.state is not State.LIVE:
            await asyncio.sleep(0.001)
    connection.request_close(4403, "tokens revoked")
    await until_closed(connection)
    # Pages of 2: seqs 3 and 4 in one chunk, 5 in the next, then `replayed` and `close`.
    assert [m.get("more_body", False) for m in sent] == [True] * 3 + [False]
    assert sent[0]["body"].count(b"event: notification") == 2
    text = bodies(sent).decode()
    events = [block.split("\n") for block in text.split("\n\n") if block]
    assert [e[:2] for e in events[:3]] == [
        ["event: notification", f"id: {seq}"] for seq in (3, 4, 5)
    ]
    assert events[3] == ["event: replayed", 'data: {"last_seq":5,"complete":true}']
    assert events[4][0] == "event: close"
    assert orjson.loads(events[4][1].removeprefix("data: ")) == {
        "code": 4403,
        "detail": "tokens revoked",
    }


async def test_a_heartbeat_is_a_comment_on_sse_and_nothing_on_a_websocket(store: Store) -> None:
    sse_sent: list[MutableMapping[str, Any]] = []
    ws_sent: list[MutableMapping[str, Any]] = []

    async def sse_send(message: MutableMapping[str, Any]) -> None:
        sse_sent.append(message)

    async def ws_send(message: MutableMapping[str, Any]) -> None:
        ws_sent.append(message)

    sse = stream(store, sse_send)
    ws = Connection(
        user_id="u",
        reads=store,
        send=ws_send,
        replay_after=None,
        page_size=2,
        max_buffer_bytes=1 << 20,
        transport=WEBSOCKET,
    )
    ws.start_at(0)
    ws.start()
    sse.push(HEARTBEAT)
    ws.push(HEARTBEAT)
    assert bodies(sse_sent) == b": heartbeat\n\n"
    assert ws_sent == []
