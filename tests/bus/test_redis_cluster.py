"""The cluster engine of the redis bus in-process, against a real Redis Cluster: what
`watch` promises, and what happens when a watched channel's slot moves to another master."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as ClusterClient

from notifier.bus.base import BusHandlers
from notifier.bus.rediscluster import RedisClusterBus
from notifier.wire.announcement import Announcement
from tests.cluster_support import RedisCluster, cluster_unsupported, redis_cluster
from tests.support import new_user, timeout

pytestmark = pytest.mark.skipif(
    cluster_unsupported() is not None, reason=f"no Redis Cluster: {cluster_unsupported()}"
)


@dataclass
class Heard:
    """What the bus handed the service."""

    announcements: list[Announcement] = field(default_factory=list)
    resyncs: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    resynced: asyncio.Event = field(default_factory=asyncio.Event)

    def handlers(self) -> BusHandlers:
        def deliver(announcement: Announcement) -> None:
            self.announcements.append(announcement)
            self.arrived.set()

        def resync() -> None:
            self.resyncs += 1
            self.resynced.set()

        return BusHandlers(deliver=deliver, resync=resync)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with redis_cluster() as running:
        yield running


@pytest.fixture
async def publisher(cluster: RedisCluster) -> AsyncIterator[ClusterClient]:
    """Another instance's publishing side: SPUBLISH with a foreign origin."""
    client = ClusterClient(startup_nodes=[ClusterNode("127.0.0.1", cluster.nodes[0].port)])
    yield client
    await client.aclose()


async def _heard(heard: Heard, user: str, seq: int) -> None:
    async with asyncio.timeout(timeout(5)):
        while not any(a.user_id == user and a.seq == seq for a in heard.announcements):
            heard.arrived.clear()
            await heard.arrived.wait()


def _shard_subscribers(port: int, channel: str) -> int:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "pubsub", "shardnumsub", channel],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[1])


async def _announce(publisher: ClusterClient, user: str, seq: int) -> None:
    payload = Announcement(user_id=user, seq=seq).encode("another-instance")
    await publisher.spublish("notifier:user:" + user, payload)


async def test_watch_returns_once_the_master_holds_the_subscription(
    cluster: RedisCluster, publisher: ClusterClient
) -> None:
    """When `watch` returns, the user's master already counts the subscription (nothing
    published from then on can be missed); `unwatch` removes it."""
    heard = Heard()
    bus = RedisClusterBus(cluster.url, origin="this-instance")
    await bus.start(heard.handlers())
    try:
        assert bus.healthy
        user = new_user()
        channel = "notifier:user:" + user
        master = cluster.master_of(channel)
        await bus.watch(user)
        assert _shard_subscribers(master.port, channel) == 1
        await _announce(publisher, user, 1)
        await _heard(heard, user, 1)
        bus.unwatch(user)
        async with asyncio.timeout(timeout(5)):
            while _shard_subscribers(master.port, channel):
                await asyncio.sleep(0.05)
    finally:
        await bus.stop()


async def test_slot_moved_to_another_master_resubscribes_and_resyncs(
    cluster: RedisCluster, publisher: ClusterClient
) -> None:
    """A watched channel's slot migrates: Redis withdraws the subscription, the bus
    reconnects, subscribes on the new owner and asks for a resync (what was published
    in between is gone); then announcements arrive again."""
    heard = Heard()
    bus = RedisClusterBus(cluster.url, origin="this-instance", max_backoff=0.5)
    await bus.start(heard.handlers())
    try:
        user = new_user()
        channel = "notifier:user:" + user
        await bus.watch(user)
        source = cluster.master_of(channel)
        target = next(n for n in cluster.masters() if n.port != source.port)
        cluster.move_slot(channel, target)
        async with asyncio.timeout(timeout(10)):
            await heard.resynced.wait()
        assert bus.healthy and heard.resyncs == 1
        assert _shard_subscribers(target.port, channel) == 1
        await _announce(publisher, user, 2)
        await _heard(heard, user, 2)
    finally:
        await bus.stop()
