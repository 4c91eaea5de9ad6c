"""The redis bus on a Redis Cluster (`redis+cluster://`) with sharded pub/sub: two
instances on a real 3-master cluster, users whose channels live on different masters.

Reconcile rounds are set to an hour and both buses are up (while down, an instance polls
the database every second), so nothing here can arrive by a poll: every delivery checked
crossed the cluster.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster_support import (
    RedisCluster,
    cluster_unsupported,
    redis_cluster,
    users_on_distinct_masters,
)
from tests.e2e.test_revoke import revoked_cut
from tests.e2e.test_topics import change, new_topic, topic_publish
from tests.e2e.ws_support import close_code
from tests.support import Server, make_token, new_user, publish, recv_notifications, timeout
from tests.support import ws_connect as connect

pytestmark = pytest.mark.skipif(
    cluster_unsupported() is not None, reason=f"no Redis Cluster: {cluster_unsupported()}"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with redis_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def on_cluster(cluster: RedisCluster, pg_database: str) -> Iterator[tuple[Server, Server]]:
    env = {
        "NOTIFIER_BUS": "redis",
        "NOTIFIER_REDIS_URL": cluster.url,
        "NOTIFIER_RECONCILE_SECONDS": "3600",
    }
    first = Server(pg_database, env_extra=env).start()
    second = Server(pg_database, env_extra=env).start()
    try:
        for server in (first, second):  # a bus down would poll the database every second
            assert httpx.get(server.url + "/readyz").json()["bus"] == "up", server.logs()
        yield first, second
    finally:
        first.stop()
        second.stop()


def shard_subscribers(cluster: RedisCluster, channel: str) -> tuple[int, int]:
    """(SSUBSCRIBE count on the channel's master, plain SUBSCRIBE count there)."""
    port = str(cluster.master_of(channel).port)

    def count(*args: str) -> int:
        out = subprocess.run(
            ["redis-cli", "-p", port, "pubsub", *args, channel],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return int(out[1])

    return count("shardnumsub"), count("numsub")


async def until(check: object, seconds: float = 5) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout(seconds)
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_publish_crosses_instances_for_users_on_every_master(
    cluster: RedisCluster, on_cluster: tuple[Server, Server]
) -> None:
    """For three users on three different masters, a socket on each instance gets what
    was posted to the other, in seq order; each instance holds one shard subscription per
    user, on the user's master (none with plain SUBSCRIBE), and drops it when the user's
    last socket closes."""
    a, b = on_cluster
    users = users_on_distinct_masters(cluster, 3)
    channels = ["notifier:user:" + user for user in users]
    for user, channel in zip(users, channels, strict=True):
        async with connect(a, user) as on_a, connect(b, user) as on_b:
            assert shard_subscribers(cluster, channel) == (2, 0)
            created = [
                publish(None, a if n % 2 else b, user, data={"n": n}).json() for n in range(4)
            ]
            assert await recv_notifications(on_a, 4, seconds=5) == created
            assert await recv_notifications(on_b, 4, seconds=5) == created
        await until(lambda channel=channel: shard_subscribers(cluster, channel) == (0, 0))


async def test_topic_publish_reaches_both_instances(
    cluster: RedisCluster, on_cluster: tuple[Server, Server]
) -> None:
    """A topic publish on one instance reaches the subscribers' sockets on the other."""
    a, b = on_cluster
    topic = new_topic()
    users = users_on_distinct_masters(cluster, 2)
    assert change(a, topic, add=users).status_code == 200
    async with connect(a, users[0]) as on_a, connect(b, users[1]) as on_b:
        for target in (a, b):
            response = topic_publish(target, topic, data={"on": target.port})
            assert response.status_code == 201, response.text
            for ws in (on_a, on_b):
                [got] = await recv_notifications(ws, 1, seconds=5)
                assert got["topic"] == topic and got["data"] == {"on": target.port}


async def test_revocation_closes_the_socket_on_the_other_instance(
    on_cluster: tuple[Server, Server],
) -> None:
    """Revoked through B: A's socket of the user closes with 4403 within a second and a
    half (the control channel, not a reconcile round)."""
    a, b = on_cluster
    user = new_user()
    async with connect(a, token=make_token(user)) as ws:
        started = time.monotonic()
        revoked_cut(b, user)
        code, _ = await close_code(ws, 2)
    assert code == 4403
    assert time.monotonic() - started < timeout(1.5)
