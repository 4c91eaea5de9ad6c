"""WebSocket frames: ping/pong, error frames for bad client frames, read state across a
user's sockets, per-user isolation and fan-out to many sockets (docs/reference.md, WebSocket:
Server frames, Client frames, Lifetime; HTTP POST /v1/me/notifications/read)."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from tests.e2e.ws_support import items, ping_pong, recv_frame, unread_count
from tests.support import (
    Server,
    new_user,
    no_frame,
    publish,
    publish_batch,
    recv_notifications,
    user_headers,
    ws_connect,
)


async def test_ping_gets_pong(server: Server) -> None:
    """A client `ping` frame is answered by exactly {"type": "pong"}, as a text frame."""
    async with ws_connect(server, new_user()) as ws:
        for _ in range(3):
            await ws.send('{"type": "ping"}')
            assert await recv_frame(ws) == {"type": "pong"}
        assert await no_frame(ws)


BAD_FRAMES: dict[str, str | bytes] = {
    "malformed-json": '{"type": "ping"',
    "not-json-at-all": "hello",
    "array": '[{"type": "ping"}]',
    "number": "42",
    "string": '"ping"',
    "null": "null",
    "no-type": '{"up_to_seq": 1}',
    "type-not-string": '{"type": 7}',
    "unknown-type": '{"type": "subscribe", "topic": "x"}',
    "read-negative": '{"type": "read", "up_to_seq": -1}',
    "read-string": '{"type": "read", "up_to_seq": "3"}',
    "read-float": '{"type": "read", "up_to_seq": 1.5}',
    "read-bool": '{"type": "read", "up_to_seq": true}',
    "read-missing": '{"type": "read"}',
    "read-null": '{"type": "read", "up_to_seq": null}',
    "binary": b'{"type": "ping"}',
    "binary-garbage": b"\x00\xff\x10",
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
async def test_bad_client_frame_gets_error_and_stays_open(server: Server, case: str) -> None:
    """A malformed, non-object, unknown, bad `read` or binary client frame gets an
    {"type": "error", "detail": "..."} frame; the socket stays open (ping, delivery)."""
    user = new_user()
    async with ws_connect(server, user) as ws:
        await ws.send(BAD_FRAMES[case])
        frame = await recv_frame(ws)
        assert frame["type"] == "error", frame
        assert isinstance(frame.get("detail"), str) and frame["detail"], frame
        await ws.send('{"type": "ping"}')
        assert await recv_frame(ws) == {"type": "pong"}
        assert publish(None, server, user).status_code == 201
        [received] = await recv_notifications(ws, 1)
        assert received["seq"] == 1
    assert unread_count(server, user) == 1, "a bad read frame must not mark anything read"


async def test_client_read_frame_marks_read_and_reaches_other_sockets(server: Server) -> None:
    """A client `read` frame marks read like the HTTP call; the user's other sockets get
    {"type": "read", "up_to_seq": N}, the sending socket does not."""
    user = new_user()
    async with ws_connect(server, user) as sender, ws_connect(server, user) as other:
        assert publish_batch(server, items(user, 3)).status_code == 201
        for ws in (sender, other):
            assert [n["seq"] for n in await recv_notifications(ws, 3)] == [1, 2, 3]
        assert unread_count(server, user) == 3
        await sender.send('{"type": "read", "up_to_seq": 2}')
        frame = await recv_frame(other)
        assert frame == {"type": "read", "up_to_seq": 2}
        assert unread_count(server, user) == 1
        # The sender's next frame is the pong: no read frame was sent back to it.
        await sender.send('{"type": "ping"}')
        assert await recv_frame(sender) == {"type": "pong"}
        assert await no_frame(sender)
        inbox = httpx.get(
            server.url + "/v1/me/notifications", params={"after": 0}, headers=user_headers(user)
        ).json()["notifications"]
        assert [(n["seq"], n["read_at"] is not None) for n in inbox] == [
            (1, True),
            (2, True),
            (3, False),
        ]


async def test_http_read_reaches_every_socket_in_both_forms(server: Server) -> None:
    """POST /v1/me/notifications/read reaches every open socket of the user as a `read`
    frame of the same form: up_to_seq, then ids."""
    user = new_user()
    stranger = new_user()
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(ws_connect(server, user)) for _ in range(3)]
        outsider = await stack.enter_async_context(ws_connect(server, stranger))
        created = publish_batch(server, items(user, 4)).json()["notifications"]
        for ws in sockets:
            await recv_notifications(ws, 4)
        url = server.url + "/v1/me/notifications/read"
        async with httpx.AsyncClient(headers=user_headers(user), timeout=10) as client:
            response = await client.post(url, json={"up_to_seq": 2})
            assert response.json() == {"updated": 2}
            for ws in sockets:
                assert await recv_frame(ws) == {"type": "read", "up_to_seq": 2}
            ids = [created[3]["id"]]
            response = await client.post(url, json={"ids": ids})
            assert response.json() == {"updated": 1}
            for ws in sockets:
                frame = await recv_frame(ws)
                assert frame["type"] == "read" and frame.get("ids") == ids, frame
                assert "up_to_seq" not in frame, frame
        assert unread_count(server, user) == 1
        assert await no_frame(outsider), "another user's socket got a read frame"


async def test_user_socket_never_receives_other_users_notifications(server: Server) -> None:
    """Isolation: user A's socket gets only A's notifications while B's are published."""
    alice, bob = new_user(), new_user()
    async with ws_connect(server, alice) as a, ws_connect(server, bob) as b:
        assert publish_batch(server, items(bob, 5)).status_code == 201
        assert publish(None, server, bob).status_code == 201
        assert publish(None, server, alice, "for.alice").status_code == 201
        got_b = await recv_notifications(b, 6)
        assert [(n["user_id"], n["seq"]) for n in got_b] == [(bob, s) for s in range(1, 7)]
        [got_a] = await recv_notifications(a, 1)
        assert (got_a["user_id"], got_a["seq"], got_a["type"]) == (alice, 1, "for.alice")
        await b.send('{"type": "read", "up_to_seq": 6}')
        assert await no_frame(a, 0.5), "user A's socket got a frame meant for B"
        assert await no_frame(b, 0.1)


async def test_every_socket_of_a_user_gets_every_notification(server: Server) -> None:
    """Five sockets of one user each receive every notification, in seq order, once."""
    user = new_user()
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(ws_connect(server, user)) for _ in range(5)]
        created = publish_batch(server, items(user, 7)).json()["notifications"]
        created += [publish(None, server, user).json() for _ in range(3)]
        results = await asyncio.gather(*(recv_notifications(ws, 10) for ws in sockets))
        for received in results:
            assert received == created
        for ws in sockets:
            assert await no_frame(ws, 0.1)
            await ping_pong(ws)


async def test_read_frame_lists_ids_in_request_order(server: Server) -> None:
    """Marking several ids read sends one read frame listing the ids that changed, in the
    order the request gave them (duplicates once, already-read ones left out)."""
    user = new_user()
    created = [publish(None, server, user, data={"n": n}).json() for n in range(5)]
    async with ws_connect(server, user) as ws:
        with httpx.Client() as client:
            url = server.url + "/v1/me/notifications/read"
            headers = user_headers(user)
            first = client.post(url, json={"ids": [created[1]["id"]]}, headers=headers)
            assert first.json() == {"updated": 1}
            assert await recv_frame(ws, 10) == {"type": "read", "ids": [created[1]["id"]]}
            order = [created[4]["id"], created[0]["id"], created[1]["id"], created[4]["id"]]
            second = client.post(url, json={"ids": order}, headers=headers)
            assert second.json() == {"updated": 2}
            frame = await recv_frame(ws, 10)
    assert frame == {"type": "read", "ids": [created[4]["id"], created[0]["id"]]}
