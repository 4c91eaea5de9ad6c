"""NOTIFIER_RETENTION_DAYS: old notifications are deleted, and a resume that reaches back
past them is told so with `complete: false`."""

from __future__ import annotations

import asyncio

import httpx

from tests.support import (
    API_KEY,
    Server,
    new_user,
    publish,
    publisher_headers,
    recv_until,
    timeout,
    user_headers,
    ws_connect,
)


async def test_expired_notifications_are_purged_and_resume_says_incomplete(
    sqlite_url: str,
) -> None:
    """With a 2-second retention, older notifications disappear from the inbox, a resume
    from 0 gets only what is left and `complete: false`, and seqs are never reused."""
    server = Server(
        sqlite_url.replace("notifier.db", "retention.db"),
        env_extra={"NOTIFIER_RETENTION_DAYS": str(2 / 86400)},
    ).start()
    user = new_user()
    try:
        for n in range(3):
            assert publish(None, server, user, data={"n": n}).status_code == 201
        deadline = asyncio.get_running_loop().time() + timeout(15)
        while True:
            inbox = httpx.get(
                server.url + "/v1/me/notifications", headers=user_headers(user)
            ).json()["notifications"]
            if not inbox:
                break
            assert asyncio.get_running_loop().time() < deadline, inbox
            await asyncio.sleep(0.5)
        kept = publish(None, server, user, data={"n": 3}).json()
        assert kept["seq"] == 4
        async with ws_connect(server, user, after=0) as ws:
            replayed, marker = await recv_until(ws, "replayed")
        assert [n["seq"] for n in replayed] == [4]
        assert marker == {"type": "replayed", "last_seq": 4, "complete": False}
    finally:
        server.stop()


async def test_topic_publish_keys_are_forgotten_with_their_notifications(
    sqlite_url: str,
) -> None:
    """A topic publish's Idempotency-Key lives as long as its notifications: once they
    are purged, the same key publishes anew (201), and a direct publish may take it."""
    server = Server(
        sqlite_url.replace("notifier.db", "retention-topics.db"),
        env_extra={"NOTIFIER_RETENTION_DAYS": str(2 / 86400)},
    ).start()
    user = new_user()
    topic = f"retention.{user}"
    headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "topic-key"}
    body = {"type": "t", "data": {}}
    url = f"{server.url}/v1/topics/{topic}/notifications"
    try:
        subscribed = httpx.post(
            f"{server.url}/v1/topics/{topic}/subscribers",
            json={"add": [user]},
            headers=publisher_headers(),
        )
        assert subscribed.status_code == 200
        assert httpx.post(url, json=body, headers=headers).status_code == 201
        assert httpx.post(url, json=body, headers=headers).status_code == 200
        deadline = asyncio.get_running_loop().time() + timeout(15)
        while httpx.post(url, json=body, headers=headers).status_code != 201:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.5)
    finally:
        server.stop()
