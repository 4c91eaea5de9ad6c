"""Topic publishes delivered live and replayed, against real `notifier serve` processes,
PostgreSQL and Redis: every instance's sockets, a publish racing direct publishes to the
same users, a subscriber that reconnects, and (marked slow) 100,000 subscribers with
10,000 of them connected across two instances."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from tests.e2e.http_support import all_ascending, http
from tests.e2e.test_topics import change, new_topic, topic_publish
from tests.support import (
    Server,
    make_token,
    new_user,
    publish,
    publisher_headers,
    recv_json,
    recv_notifications,
    recv_until,
    timeout,
    ws_connect,
)


async def test_topic_publish_reaches_sockets_on_every_instance(
    two_instances: tuple[Server, Server],
) -> None:
    """Sockets on both instances (one user on both) each get their own notification
    once, with that user's seq, whichever instance took the publish."""
    a, b = two_instances
    topic = new_topic()
    users = [new_user() for _ in range(6)]
    change(a, topic, add=users)
    publish(None, a, users[0])  # users[0] is at seq 1 already
    async with (
        ws_connect(a, users[0]) as s0,
        ws_connect(b, users[0]) as s0b,
        ws_connect(a, users[1]) as s1,
        ws_connect(b, users[2]) as s2,
        ws_connect(b, users[3]) as s3,
    ):
        sockets = [(s0, users[0], 2), (s0b, users[0], 2), (s1, users[1], 1)]
        sockets += [(s2, users[2], 1), (s3, users[3], 1)]
        for target, round_ in ((a, 0), (b, 1)):
            response = topic_publish(target, topic, data={"round": round_})
            assert response.status_code == 201, response.text
            assert response.json()["recipients"] == 6
            for ws, user, first_seq in sockets:
                [got] = await recv_notifications(ws, 1)
                assert (got["user_id"], got["seq"], got["topic"]) == (
                    user,
                    first_seq + round_,
                    topic,
                )
                assert got["data"] == {"round": round_}
        for ws, _user, _seq in sockets:
            with pytest.raises(TimeoutError):
                await recv_json(ws, 0.3)
    for user in users:
        assert [n["topic"] for n in all_ascending(a, user)][-2:] == [topic, topic]


async def _collect(ws: ClientConnection, until_seq: int, seconds: float) -> list[int]:
    """Seqs of the notification frames received until `until_seq` arrives."""
    seqs: list[int] = []
    while not seqs or seqs[-1] < until_seq:
        frame = await recv_json(ws, seconds)
        if frame["type"] == "notification":
            seqs.append(frame["notification"]["seq"])
    return seqs


async def _race(servers: list[Server], sockets_on: list[Server]) -> None:
    """10 topic publishes to 40 users racing 160 direct publishes and 4 batches to the
    same users, through `servers`; 16 users hold a socket (on `sockets_on`)."""
    topic = new_topic()
    users = [new_user() for _ in range(40)]
    change(servers[0], topic, add=users)
    rng = random.Random(11)
    connected = users[:16]
    async with asyncio.timeout(timeout(90)), contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(ws_connect(sockets_on[i % len(sockets_on)], user))
            for i, user in enumerate(connected)
        ]
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            gate = asyncio.Semaphore(24)

            async def send(i: int, kind: str) -> int:
                target = servers[i % len(servers)]
                async with gate:
                    if kind == "topic":
                        response = await client.post(
                            f"{target.url}/v1/topics/{topic}/notifications",
                            json={"type": "race.topic", "data": {"i": i}},
                            headers=publisher_headers(),
                        )
                        assert response.status_code == 201, response.text
                        return int(response.json()["recipients"])
                    if kind == "batch":
                        items = [
                            {"user_id": rng.choice(users), "type": "race.batch", "data": {}}
                            for _ in range(25)
                        ]
                        response = await client.post(
                            f"{target.url}/v1/notifications/batch",
                            json={"notifications": items},
                            headers=publisher_headers(),
                        )
                    else:
                        response = await client.post(
                            f"{target.url}/v1/notifications",
                            json={"user_id": rng.choice(users), "type": "race.direct", "data": {}},
                            headers=publisher_headers(),
                        )
                    assert response.status_code == 201, response.text
                    return 0

            kinds = ["topic"] * 10 + ["direct"] * 160 + ["batch"] * 4
            rng.shuffle(kinds)
            counts = await asyncio.gather(*(send(i, kind) for i, kind in enumerate(kinds)))
        assert sum(counts) == 10 * len(users)
        for user in users:
            stored = all_ascending(servers[0], user)
            assert [n["seq"] for n in stored] == list(range(1, len(stored) + 1)), user
            assert sum(n["topic"] == topic for n in stored) == 10
        for user, ws in zip(connected, sockets, strict=True):
            head = len(all_ascending(servers[0], user))
            assert await _collect(ws, head, 20) == list(range(1, head + 1)), user
            with pytest.raises(TimeoutError):
                await recv_json(ws, 0.2)


async def test_topic_publish_racing_direct_publishes_one_instance(server: Server) -> None:
    """Every stream stays gap-free and every socket gets each seq once, in order."""
    await _race([server], [server])


async def test_topic_publish_racing_direct_publishes_two_instances(
    two_instances: tuple[Server, Server],
) -> None:
    """The same across two instances, publishes and sockets spread over both."""
    await _race(list(two_instances), list(two_instances))


async def test_reconnecting_subscriber_replays_topic_notifications_in_order(
    server: Server,
) -> None:
    """A socket that resumes after seq 3 gets 4..7 (topic and direct, in seq order),
    `replayed`, then the next topic publish live."""
    topic = new_topic()
    user = new_user()
    change(server, topic, add=[user, new_user()])
    async with ws_connect(server, user) as ws:
        topic_publish(server, topic, data={"n": 1})
        publish(None, server, user, data={"n": 2})
        topic_publish(server, topic, data={"n": 3})
        got = await recv_notifications(ws, 3)
    assert [(n["seq"], n["data"]["n"]) for n in got] == [(1, 1), (2, 2), (3, 3)]
    for n in (4, 5):
        topic_publish(server, topic, data={"n": n})
    publish(None, server, user, data={"n": 6})
    topic_publish(server, topic, data={"n": 7})
    async with ws_connect(server, user, after=3) as ws:
        replayed, marker = await recv_until(ws, "replayed")
        assert [(n["seq"], n["data"]["n"]) for n in replayed] == [(s, s) for s in range(4, 8)]
        assert [n["topic"] for n in replayed] == [topic, topic, None, topic]
        assert marker == {"type": "replayed", "last_seq": 7, "complete": True}
        topic_publish(server, topic, data={"n": 8})
        [live] = await recv_notifications(ws, 1)
    assert (live["seq"], live["topic"]) == (8, topic)
    assert all_ascending(server, user)[3:] == [*replayed, live]


# -- 100,000 subscribers, 10,000 of them connected across two instances ------------------

LARGE_SUBSCRIBERS = 100_000
LARGE_CONNECTED = 10_000


class _Receiver:
    """What the raw sockets (bench.loadgen's WsClient) received: seqs per user."""

    def __init__(self) -> None:
        self.seqs: dict[str, list[int]] = {}
        self.topics: set[Any] = set()
        self.arrived = asyncio.Event()
        self.count = 0
        self.expected = 0
        self.last = 0.0

    def sink(self, client: Any, payload: bytes) -> None:
        frame = orjson.loads(payload)
        if frame.get("type") != "notification":
            return
        notification = frame["notification"]
        assert notification["user_id"] == client.user
        self.seqs.setdefault(client.user, []).append(notification["seq"])
        self.topics.add(notification["topic"])
        self.count += 1
        self.last = time.monotonic()
        if self.count >= self.expected:
            self.arrived.set()


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_100000_subscribers_with_10000_connected_across_two_instances(
    pg_database: str,
) -> None:
    """One topic publish to 100,000 subscribers: every one of the 10,000 connected
    (5,000 on each instance, postgres bus) gets it exactly once with its seq, and every
    subscriber's inbox has it."""
    from bench import loadgen

    # No reconcile round during the test: only the topic fan-out can deliver.
    env = {
        "NOTIFIER_BUS": "postgres",
        "NOTIFIER_LOG_LEVEL": "warning",
        "NOTIFIER_RECONCILE_SECONDS": "3600",
    }
    servers = [Server(pg_database, env_extra=env).start() for _ in range(2)]
    receiver = _Receiver()
    loadgen.SINK[0] = receiver.sink
    clients: list[Any] = []
    try:
        topic = new_topic()
        prefix = uuid.uuid4().hex[:8]
        users = [f"{prefix}-{i:06d}" for i in range(LARGE_SUBSCRIBERS)]
        for start in range(0, len(users), 1000):
            assert change(servers[0], topic, add=users[start : start + 1000]).status_code == 200
        ahead = users[::1000]  # 100 users at seq 1 already: theirs is 2
        http().post(
            f"{servers[0].url}/v1/notifications/batch",
            json={"notifications": [{"user_id": u, "type": "before", "data": {}} for u in ahead]},
            headers=publisher_headers(),
        ).raise_for_status()
        connected = users[:: LARGE_SUBSCRIBERS // LARGE_CONNECTED]
        clients = await _open_raw(servers, connected)
        assert len(clients) == LARGE_CONNECTED
        receiver.expected = LARGE_CONNECTED
        started = time.monotonic()
        response = topic_publish(servers[0], topic, data={"big": True})
        answered = time.monotonic()
        assert response.status_code == 201, response.text
        assert response.json()["recipients"] == LARGE_SUBSCRIBERS
        # The target is 0.5 s after the 201; 10 s leaves room for a loaded machine.
        await asyncio.wait_for(receiver.arrived.wait(), timeout(10))
        print(
            f"\n100,000-subscriber topic publish: 201 after {answered - started:.2f} s; "
            f"the last of {LARGE_CONNECTED} sockets had it {receiver.last - answered:.2f} s later"
        )
        await asyncio.sleep(0.5)  # anything sent twice would arrive meanwhile
        ahead_set = set(ahead)
        assert receiver.topics == {topic}
        assert len(receiver.seqs) == LARGE_CONNECTED
        for user in connected:
            assert receiver.seqs[user] == [2 if user in ahead_set else 1], user
        for user in users[::9973]:
            stored = all_ascending(servers[1], user)
            assert stored[-1]["topic"] == topic
            assert [n["seq"] for n in stored] == list(range(1, len(stored) + 1))
    finally:
        for client in clients:
            client.abort()
        for server in servers:
            server.stop()


async def _open_raw(servers: list[Server], users: list[str]) -> list[Any]:
    """One raw socket per user (bench.loadgen's WsClient: a few KiB each), spread over
    `servers`, 100 handshakes at a time."""
    from bench import loadgen

    loop = asyncio.get_running_loop()
    opened: list[Any] = []
    work = iter(enumerate(users))

    async def worker() -> None:
        for index, user in work:
            server = servers[index % len(servers)]
            request = (
                f"GET /v1/ws?access_token={make_token(user)} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            waiter: asyncio.Future[float] = loop.create_future()
            transport, client = await loop.create_connection(
                lambda user=user, waiter=waiter: loadgen.WsClient(user, waiter),
                "127.0.0.1",
                server.port,
            )
            client.transport = transport
            transport.write(request)
            await asyncio.wait_for(waiter, timeout(30))
            opened.append(client)

    await asyncio.gather(*(worker() for _ in range(100)))
    return opened
