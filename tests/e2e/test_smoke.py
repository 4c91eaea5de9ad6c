"""The shortest path a user takes: publish, receive on a socket, read the inbox."""

from __future__ import annotations

import httpx

from tests.support import Server, new_user, publish, recv_notifications, user_headers, ws_connect


async def test_publish_reaches_open_socket_and_inbox(server: Server) -> None:
    """A POSTed notification arrives on the user's socket and is listed in the inbox."""
    user = new_user()
    async with ws_connect(server, user) as ws:
        response = publish(None, server, user, "comment.created", {"text": "hi"})
        assert response.status_code == 201, response.text
        created = response.json()
        [received] = await recv_notifications(ws, 1)
    assert received == created
    assert created["seq"] == 1 and created["data"] == {"text": "hi"}
    inbox = httpx.get(server.url + "/v1/me/notifications", headers=user_headers(user)).json()
    assert inbox["notifications"] == [created]
