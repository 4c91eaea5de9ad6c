"""The Python SDK (notifier/client) against a real `notifier serve`: a publish whose
answer is lost, or that meets a restart or a database outage (a real 503), is retried
with its one Idempotency-Key and stored once; a 4xx is never retried; batches are cut to
1,000; a Subscriber delivers every notification exactly once across a SIGTERM and a
kill -9 of the server, renews its token without reconnecting, and reports a gap."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import httpx
import pytest

from notifier.client import (
    ApiError,
    AsyncPublisher,
    Backoff,
    Delivered,
    Gap,
    Publisher,
    State,
    StateChanged,
    Subscriber,
    Unauthorized,
)
from tests.e2e.tcp_proxy import proxy_to
from tests.e2e.ws_support import items, own_server, pg_execute
from tests.support import (
    API_KEY,
    Server,
    make_token,
    new_user,
    publish,
    publish_batch,
    timeout,
    user_headers,
    ws_connect,
)

FAST = Backoff(base=0.05, cap=0.5)


def stored(server: Server, user: str) -> list[int]:
    """The seqs the user has, ascending."""
    response = httpx.get(
        server.url + "/v1/me/notifications",
        params={"after": 0, "limit": 500},
        headers=user_headers(user),
        timeout=10,
    )
    return [n["seq"] for n in response.json()["notifications"]]


def keys_sent(chunks: list[bytes]) -> list[str]:
    text = b"".join(chunks).decode("latin-1")
    return re.findall(r"(?i)idempotency-key: ([^\r\n]+)", text)


async def test_a_lost_answer_is_retried_with_the_same_key(pg_server: Server) -> None:
    """The server commits, the answer is lost on the way back: the retry carries the
    same Idempotency-Key and gets the original; one notification is stored."""
    user = new_user()
    async with proxy_to(pg_server.port) as proxy:
        proxy.lose_answers = 1
        async with AsyncPublisher(f"http://127.0.0.1:{proxy.port}", API_KEY, backoff=FAST) as pub:
            notification = await pub.publish(user, "t", {"n": 1})
    keys = keys_sent(proxy.sent)
    assert len(keys) == 2 and keys[0] == keys[1], keys
    assert notification["seq"] == 1
    assert stored(pg_server, user) == [1]


async def test_a_given_key_is_the_one_sent(pg_server: Server) -> None:
    user = new_user()
    async with (
        proxy_to(pg_server.port) as proxy,
        AsyncPublisher(f"http://127.0.0.1:{proxy.port}", API_KEY) as pub,
    ):
        first = await pub.publish(user, "t", {"n": 1}, idempotency_key="order-17")
        again = await pub.publish(user, "t", {"n": 1}, idempotency_key="order-17")
    assert keys_sent(proxy.sent) == ["order-17", "order-17"]
    assert first == again and stored(pg_server, user) == [1]


async def test_the_sync_publisher_rides_out_a_restart(pg_database: str) -> None:
    """With the server killed (-9), a blocking publish retries on connection errors
    until the restarted server answers; it is stored once."""
    user = new_user()
    server = Server(pg_database)
    await asyncio.to_thread(server.start)
    try:
        await asyncio.to_thread(server.kill)
        backoff = Backoff(base=0.2, cap=1.0)
        with Publisher(server.url, API_KEY, retries=30, backoff=backoff) as pub:
            publishing = asyncio.create_task(asyncio.to_thread(pub.publish, user, "t", {"a": 1}))
            await asyncio.sleep(0.5)
            assert not publishing.done()
            await asyncio.to_thread(server.start)
            notification = await asyncio.wait_for(publishing, timeout(20))
        assert notification["seq"] == 1
        assert stored(server, user) == [1]
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_503_is_retried_after_its_retry_after(pg_database: str) -> None:
    """The server's database goes away: the service answers 503 with Retry-After: 1; the
    publisher waits that long and retries; once the database is back the publish is
    stored once."""
    user = new_user()
    async with proxy_to(5432) as database:
        url = pg_database.replace("127.0.0.1:5432", f"127.0.0.1:{database.port}")
        assert url != pg_database, pg_database
        async with own_server(url) as server:
            async with httpx.AsyncClient(timeout=10) as client:
                database.down = True
                database.cut()
                plain = await client.post(
                    server.url + "/v1/notifications",
                    json={"user_id": user, "type": "t", "data": {}},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )
            assert plain.status_code == 503 and plain.headers["retry-after"] == "1"
            async with AsyncPublisher(server.url, API_KEY, backoff=FAST) as pub:
                started = time.monotonic()
                publishing = asyncio.create_task(pub.publish(user, "t", {"a": 1}))
                await asyncio.sleep(0.3)
                database.down = False
                notification = await asyncio.wait_for(publishing, timeout(20))
                took = time.monotonic() - started
            assert took >= 1.0, f"retried after {took:.2f}s, before Retry-After"
            assert notification["seq"] == 1
            # In a thread: the database's proxy runs on this event loop.
            assert await asyncio.to_thread(stored, server, user) == [1]


async def test_a_4xx_is_never_retried(pg_server: Server) -> None:
    """A 422 and a 401 are raised at once, after one request each."""
    async with proxy_to(pg_server.port) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        async with AsyncPublisher(url, API_KEY, backoff=FAST) as pub:
            with pytest.raises(ApiError) as invalid:
                await pub.publish("", "t", {})
        async with AsyncPublisher(url, "wrong-key", backoff=FAST) as pub:
            with pytest.raises(ApiError) as refused:
                await pub.publish(new_user(), "t", {})
    assert (invalid.value.status, refused.value.status) == (422, 401)
    assert len(keys_sent(proxy.sent)) == 2


async def test_a_batch_is_cut_into_requests_of_1000(pg_server: Server) -> None:
    """2,500 items go as three requests and come back in order, each with its key kept
    in the item (so retrying the whole batch stores nothing twice)."""
    user = new_user()
    batch = items(user, 2500)
    async with AsyncPublisher(pg_server.url, API_KEY) as pub:
        published = await pub.publish_batch(batch)
        again = await pub.publish_batch(batch)
    assert [n["seq"] for n in published] == list(range(1, 2501))
    assert again == published
    assert len(stored(pg_server, user)) == 500  # one page of the inbox; the count below
    response = httpx.get(
        pg_server.url + "/v1/me/notifications/unread-count", headers=user_headers(user)
    )
    assert response.json() == {"unread": 2500}


def test_the_sync_batch_matches_the_async_one(pg_server: Server) -> None:
    user = new_user()
    with Publisher(pg_server.url, API_KEY) as pub:
        published = pub.publish_batch(items(user, 1001))
    assert [n["seq"] for n in published] == list(range(1, 1002))


async def collect(subscriber: Subscriber, into: list[int], states: list[State]) -> None:
    async for event in subscriber.events():
        if isinstance(event, Delivered):
            into.append(event.notification["seq"])
        elif isinstance(event, StateChanged):
            states.append(event.state)


async def until(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + timeout(seconds)
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_subscriber_loses_and_repeats_nothing_across_restarts(
    pg_database: str,
) -> None:
    """Notifications published before a SIGTERM (1012), around a kill -9 and after the
    restarts all arrive, each once, in seq order."""
    user = new_user()
    server = Server(pg_database)
    await asyncio.to_thread(server.start)
    seqs: list[int] = []
    states: list[State] = []
    subscriber = Subscriber(server.url, lambda: make_token(user), after=0, backoff=FAST)
    task = asyncio.create_task(collect(subscriber, seqs, states))
    try:
        assert publish_batch(server, items(user, 20)).status_code == 201
        await until(lambda: len(seqs) == 20)
        await asyncio.to_thread(server.terminate)
        await asyncio.to_thread(server.start)
        assert publish_batch(server, items(user, 20)).status_code == 201
        await until(lambda: len(seqs) == 40)
        assert publish_batch(server, items(user, 20)).status_code == 201
        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.start)
        assert publish_batch(server, items(user, 20)).status_code == 201
        await until(lambda: len(seqs) >= 80)
        await asyncio.sleep(0.2)
    finally:
        await subscriber.close()
        await asyncio.wait_for(task, timeout(10))
        await asyncio.to_thread(server.stop)
    assert seqs == list(range(1, 81))
    assert subscriber.last_seq == 80
    assert states.count(State.LIVE) >= 3 and states[-1] is State.CLOSED


async def test_without_after_a_subscriber_starts_at_the_head(pg_server: Server) -> None:
    """`after=None` reads the user's newest seq first: older notifications are not
    replayed, and nothing committed after the start is missed."""
    user = new_user()
    assert publish_batch(pg_server, items(user, 5)).status_code == 201
    seqs: list[int] = []
    states: list[State] = []
    subscriber = Subscriber(pg_server.url, make_token(user), backoff=FAST)
    task = asyncio.create_task(collect(subscriber, seqs, states))
    try:
        await until(lambda: State.LIVE in states)
        assert publish(None, pg_server, user).status_code == 201
        await until(lambda: seqs == [6])
    finally:
        await subscriber.close()
        await asyncio.wait_for(task, timeout(10))


async def test_a_subscriber_renews_its_token_without_reconnecting(pg_server: Server) -> None:
    """With 5-second tokens from its callback, a subscriber stays on one connection for
    several lifetimes (renewed with `auth` frames, a fifth of the lifetime before `exp`)
    and gets everything. (With 3-second tokens, minted at whole seconds, the renewal
    came 0.6 s before `exp`: a loaded machine sometimes missed it.)"""
    user = new_user()
    minted: list[str] = []

    async def fresh() -> str:
        minted.append(make_token(user, ttl=5))
        return minted[-1]

    seqs: list[int] = []
    states: list[State] = []
    subscriber = Subscriber(pg_server.url, fresh, after=0, backoff=FAST)
    task = asyncio.create_task(collect(subscriber, seqs, states))
    try:
        await until(lambda: State.LIVE in states)
        for n in range(1, 12):
            assert publish(None, pg_server, user).status_code == 201
            await until(lambda n=n: len(seqs) == n)  # type: ignore[misc]
            await asyncio.sleep(1)
    finally:
        await subscriber.close()
        await asyncio.wait_for(task, timeout(10))
    assert seqs == list(range(1, 12))
    assert subscriber.connections == 1, states
    assert len(minted) >= 3


async def test_a_fixed_token_that_expires_stops_the_subscriber(pg_server: Server) -> None:
    user = new_user()
    subscriber = Subscriber(pg_server.url, make_token(user, ttl=1), after=0, backoff=FAST)
    with pytest.raises(Unauthorized):
        async with asyncio.timeout(timeout(10)):
            async for _ in subscriber:
                pass
    assert subscriber.state is State.UNAUTHORIZED


async def test_a_subscriber_reports_a_gap_and_goes_on(pg_database: str) -> None:
    """Notifications 1..3 were deleted (as retention does): resuming from 0 reports a
    Gap, then delivers 4 and 5."""
    user = new_user()
    async with own_server(pg_database) as server:
        assert publish_batch(server, items(user, 5)).status_code == 201
        deleting = "DELETE FROM notifications WHERE user_id = $1 AND seq <= 3"
        await pg_execute(pg_database, deleting, user)
        gaps: list[Gap] = []
        seqs: list[int] = []
        subscriber = Subscriber(server.url, make_token(user), after=0, on_gap=gaps.append)
        async with asyncio.timeout(timeout(10)):
            async for event in subscriber.events():
                if isinstance(event, Delivered):
                    seqs.append(event.notification["seq"])
                elif isinstance(event, Gap):
                    assert gaps == [event]
                    break
        await subscriber.close()
    assert seqs == [4, 5]
    assert gaps == [Gap(after=0, resumed_at=5)]
    assert subscriber.last_seq == 5


async def test_notifier_tail_prints_each_notification_once(pg_server: Server) -> None:
    """`notifier tail USER` (tokens minted with the configured secret) prints every new
    notification as one JSON line."""
    import json
    import os
    import sys

    user = new_user()
    env = {**os.environ, **pg_server.env()}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        "tail",
        user,
        "--url",
        pg_server.url,
        "--after",
        "0",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert publish_batch(pg_server, items(user, 3)).status_code == 201
        assert process.stdout is not None
        lines = [
            json.loads(await asyncio.wait_for(process.stdout.readline(), timeout(20)))
            for _ in range(3)
        ]
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout(10))
    assert [n["seq"] for n in lines] == [1, 2, 3]
    assert all(n["user_id"] == user for n in lines)


def test_topics_presence_and_revoke_through_the_sync_publisher(pg_server: Server) -> None:
    """The publisher's topic, presence and revoke methods against the real routes: 1,500
    subscribers go in two requests and come back in byte order over two pages; a topic
    publish reaches each of them, and its repeat (the same key) answers the original
    without a second notification; presence answers every id asked; revoke answers the
    revocation."""
    topic = f"sdk:{new_user()}"
    users = sorted(new_user() for _ in range(1500))
    with Publisher(pg_server.url, API_KEY, backoff=FAST) as notifier:
        assert notifier.subscribe(topic, add=users) == (1500, 0)
        assert notifier.subscribe(topic, add=users[:10]) == (0, 0)
        assert list(notifier.subscribers(topic, page=1000)) == sorted(
            users, key=lambda u: u.encode()
        )
        answer = notifier.publish_topic(topic, "news", {"n": 1}, idempotency_key=topic)
        assert answer == {"topic": topic, "type": "news", "recipients": 1500}
        assert notifier.publish_topic(topic, "news", {"n": 1}, idempotency_key=topic) == answer
        assert stored(pg_server, users[0]) == [1] and stored(pg_server, users[-1]) == [1]
        assert notifier.subscribe(topic, remove=users[:5]) == (0, 5)
        presence = notifier.presence(users[:1200])
        assert set(presence) == set(users[:1200])
        assert presence[users[0]] == {"online": False, "connections": 0}
        revoked = notifier.revoke(users[0])
        assert revoked["user_id"] == users[0] and revoked["revoked_at"].endswith("Z")


async def test_topics_and_presence_through_the_async_publisher(pg_server: Server) -> None:
    """The asyncio publisher's methods give the same answers as the blocking one's, and
    presence sees a connected user within the contract's 2 seconds."""
    topic = f"sdk-async:{new_user()}"
    users = [new_user() for _ in range(3)]
    async with AsyncPublisher(pg_server.url, API_KEY, backoff=FAST) as notifier:
        assert await notifier.subscribe(topic, add=users) == (3, 0)
        assert await notifier.subscribers(topic, page=2) == sorted(users, key=str.encode)
        answer = await notifier.publish_topic(topic, "news", {"n": 2})
        assert answer["recipients"] == 3
        async with ws_connect(pg_server, users[0]):
            deadline = time.monotonic() + timeout(3)
            while (await notifier.presence([users[0]]))[users[0]]["connections"] != 1:
                assert time.monotonic() < deadline, "presence never showed the socket"
                await asyncio.sleep(0.1)
        assert (await notifier.revoke(users[1]))["user_id"] == users[1]
