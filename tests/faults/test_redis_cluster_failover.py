"""A Redis Cluster master killed with -9 under a steady stream of publishes (the redis
bus on `redis+cluster://`): its replica is promoted, both instances resubscribe on the
new master and catch their sockets up, and every notification reaches every client
exactly once, in order.

The cluster is this test's own (six local redis-server processes), not the shared Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster_support import RedisCluster, cluster_unsupported, redis_cluster
from tests.faults.harness import Client
from tests.support import Server, new_user, publisher_headers, timeout

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(
        cluster_unsupported() is not None, reason=f"no Redis Cluster: {cluster_unsupported()}"
    ),
]

COUNT = 100
"""Notifications published, one every 40 ms, the failover in the middle."""
TAIL = 20
"""The last ones, published once both buses are back: only the new master carries them."""


@pytest.fixture
def cluster() -> Iterator[RedisCluster]:
    with redis_cluster() as running:
        yield running


async def _publish_all(
    servers: list[Server], user: str, accepted: list[int], back: asyncio.Event
) -> None:
    """COUNT notifications at a steady rate, alternating instances, the last TAIL after
    `back`; each retried with its Idempotency-Key until accepted, as backends are told."""
    async with httpx.AsyncClient(timeout=10) as http:
        for n in range(COUNT):
            if n == COUNT - TAIL:
                await back.wait()
            started = time.monotonic()
            while True:
                server = servers[(n + len(accepted)) % len(servers)]
                try:
                    response = await http.post(
                        server.url + "/v1/notifications",
                        json={"user_id": user, "type": "failover.test", "data": {"n": n}},
                        headers=publisher_headers(**{"Idempotency-Key": f"{user}-{n}"}),
                    )
                    if response.status_code in (200, 201):
                        accepted.append(n)
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            await asyncio.sleep(max(0.0, 0.04 - (time.monotonic() - started)))


async def _bus_down_then_up(server: Server) -> None:
    """Returns once /readyz has shown the bus down, then up again."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout(15)
    async with httpx.AsyncClient(timeout=5) as http:
        while seen[-2:] != ["down", "up"]:
            assert time.monotonic() < deadline, f"bus states {seen}"
            state = (await http.get(server.url + "/readyz")).json()["bus"]
            if "down" in seen or state == "down":
                seen.append(state)
            await asyncio.sleep(0.05)


async def test_master_killed_mid_stream(cluster: RedisCluster, pg_database: str) -> None:
    """The master serving the user's channel is killed -9 while notifications flow; each
    instance reports its bus down until the replica is promoted, then up again; a socket
    on each instance has 1..COUNT exactly once, in order, and no socket had to reconnect.
    Reconcile rounds are an hour apart, so the last TAIL, published after recovery, came
    through the channel resubscribed on the new master, not a poll."""
    env = {
        "NOTIFIER_BUS": "redis",
        "NOTIFIER_REDIS_URL": cluster.url,
        "NOTIFIER_RECONCILE_SECONDS": "3600",
    }
    servers = [Server(pg_database, env_extra=env).start() for _ in range(2)]
    user = new_user()
    channel = "notifier:user:" + user
    victim = cluster.master_of(channel)
    clients = [Client(user, servers, start=i) for i in range(2)]
    listeners = [asyncio.create_task(client.run()) for client in clients]
    accepted: list[int] = []
    back = asyncio.Event()
    try:
        await asyncio.sleep(0.5)  # both sockets open and subscribed
        publishing = asyncio.create_task(_publish_all(servers, user, accepted, back))
        while len(accepted) < COUNT // 4:
            await asyncio.sleep(0.01)
        cluster.kill(victim)
        killed_at = time.monotonic()
        await asyncio.gather(*(_bus_down_then_up(server) for server in servers))
        back_after = time.monotonic() - killed_at
        back.set()
        await publishing
        deadline = time.monotonic() + timeout(10)
        while any(client.last < COUNT for client in clients):
            assert time.monotonic() < deadline, [c.seqs[-3:] for c in clients]
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a duplicate would arrive now
        reconnects = [client.reconnects for client in clients]
    finally:
        for client in clients:
            client.stop.set()
        await asyncio.gather(*listeners, return_exceptions=True)
        for server in servers:
            server.stop()
    assert cluster.master_of(channel).port != victim.port, "the replica was not promoted"
    for client in clients:
        assert client.seqs == list(range(1, COUNT + 1)), client.seqs
    assert reconnects == [0, 0], "the instances stayed up: no socket had to reconnect"
    print(f"both buses back {back_after:.1f} s after the kill")
