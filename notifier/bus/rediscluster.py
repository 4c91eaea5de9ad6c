"""The redis bus on a Redis Cluster, with sharded pub/sub (Redis 7).

Plain PUBLISH on a cluster is broadcast to every node over the cluster bus, so each
master carries every message and adding masters adds no pub/sub capacity. SPUBLISH goes
only to the master that owns the channel's hash slot (and its replicas): each user's
channel, the control channel and the topics channel live on one shard each, and the
load spreads over the masters. Publishing uses redis-py's cluster client, which routes
each SPUBLISH by slot and follows `MOVED` and failovers by itself.

Receiving keeps the guarantees of the single-Redis bus. The subscriber holds one
connection per master of a slot map read at connect (`shards.Shard`); `watch` sends the
SSUBSCRIBE to the user's shard and returns once that shard has confirmed it. Losing any
shard connection, an error reply, or a subscription withdrawn by Redis (a slot moved, a
master demoted) fails the whole subscriber: the supervisor reconnects with jittered
backoff, every shard is opened again from a fresh slot map (after a failover, the
promoted replica), every channel is subscribed again and confirmed, and only then is the
instance healthy and every socket caught up from the database, since messages published
meanwhile are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from notifier.bus.clusterurl import parse_cluster_url
from notifier.bus.redis import WATCH_TIMEOUT
from notifier.bus.redischannels import CONTROL, PREFIX, TOPICS, Announcing, channel, receive
from notifier.bus.shards import Shard, ShardLost
from notifier.bus.supervisor import SupervisedBus

log = logging.getLogger("notifier.bus")

_CONNECT_TIMEOUT = 5.0
"""Every shard must confirm every subscription within this, or the connect fails."""
_PING_AFTER = 5.0
_SILENT_LIMIT = 10.0
"""A shard that has sent nothing for this long, PING included, is gone."""


class RedisClusterBus(Announcing, SupervisedBus):
    name = "redis"
    _command = "spublish"

    def __init__(self, url: str, *, origin: str, max_backoff: float = 10.0) -> None:
        super().__init__(max_backoff=max_backoff)
        address = parse_cluster_url(url)
        self._origin = origin
        self._cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            username=address.username,
            password=address.password,
            ssl=address.tls,
            socket_connect_timeout=5,
            socket_timeout=5,
            # An announcement is sent after commit, while the publisher waits for its
            # response. redis-py's default (10 attempts, backoff to 1 s) holds it for
            # seconds when a master dies; failing sooner loses nothing, since every
            # instance holds a connection to every master, loses it too, and resyncs.
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=3),
        )
        self._publisher = self._cluster
        self._shards: dict[str, Shard] = {}
        self._owners: dict[int, str] = {}
        """Slot -> the master that owned it when the subscriber connected."""
        self._readers: list[asyncio.Task[None]] = []
        self._lost: asyncio.Future[None] | None = None
        """Failed when a send to a shard fails outside the readers (a watch's SSUBSCRIBE)."""
        self._watched: set[str] = set()
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        """User channel -> resolved when its shard confirmed the subscription."""
        self._connecting: dict[str, asyncio.Future[None]] = {}
        """Every channel subscribed by the connect in progress -> confirmed."""
        self._unsubscribing: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        await super().stop()
        await self._cluster.aclose()

    # -- subscriptions follow the sockets -------------------------------------------------

    async def watch(self, user_id: str) -> None:
        name = channel(user_id)
        if user_id not in self._watched:
            self._watched.add(user_id)
            self._confirmed[name] = asyncio.get_running_loop().create_future()
            if self._connected:
                await self._send(name, subscribe=True)
        pending = self._confirmed.get(name)
        if pending is not None and not pending.done() and self._connected:
            # Down or slow: carry on; the resync after reconnect catches the socket up.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pending), WATCH_TIMEOUT)

    def unwatch(self, user_id: str) -> None:
        if user_id in self._watched:
            self._watched.discard(user_id)
            self._confirmed.pop(channel(user_id), None)
            if self._connected:
                task = asyncio.get_running_loop().create_task(self._unsubscribe(user_id))
                self._unsubscribing.add(task)  # referenced until done
                task.add_done_callback(self._unsubscribing.discard)

    async def _unsubscribe(self, user_id: str) -> None:
        if user_id in self._watched or not self._connected:  # back meanwhile, or down
            return
        name = channel(user_id)
        await self._send(name, subscribe=False)

    async def _send(self, name: str, *, subscribe: bool) -> None:
        """SSUBSCRIBE or SUNSUBSCRIBE `name` on the shard of its slot; on failure, fail
        the subscriber (it reconnects and subscribes everything again)."""
        shard = self._shards.get(self._owners.get(self._cluster.keyslot(name), ""))
        try:
            if shard is None:
                raise ShardLost(f"no shard holds the slot of {name}")
            if subscribe:
                await shard.subscribe([[name]])
            else:
                await shard.unsubscribe(name)
        except ShardLost as error:
            if self._lost is not None and not self._lost.done():
                self._lost.set_exception(error)

    # -- the supervised subscriber --------------------------------------------------------

    async def _connect(self) -> None:
        masters = await self._slot_map()
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        self._shards = {name: Shard(node) for name, node in masters.items()}
        # Every open settles before any failure is raised, so `_disconnect` closes them all.
        opened = await asyncio.gather(
            *(shard.open() for shard in self._shards.values()), return_exceptions=True
        )
        for outcome in opened:
            if isinstance(outcome, BaseException):
                raise outcome
        self._readers = [
            asyncio.create_task(self._read(shard), name=f"redis-shard-{shard.name}")
            for shard in self._shards.values()
        ]
        # Healthy only once every shard confirmed every channel: the resync that follows
        # then reads the database when no message can be missed any more. Sockets that
        # came or went while this ran are subscribed or unsubscribed before that.
        subscribed: set[str] = set()
        wanted = {CONTROL, TOPICS, *(channel(user) for user in self._watched)}
        while wanted - subscribed:
            await self._subscribe_confirmed(wanted - subscribed)
            subscribed |= wanted
            wanted = {CONTROL, TOPICS, *(channel(user) for user in self._watched)}
        for name in subscribed - wanted:
            await self._send(name, subscribe=False)
        self._connected = True
        log.info("redis cluster subscriber connected", extra={"masters": sorted(self._shards)})

    async def _subscribe_confirmed(self, names: set[str]) -> None:
        """Subscribe `names` on their shards and wait until every one is confirmed."""
        loop = asyncio.get_running_loop()
        for name in names:  # `watch` waits on these
            if name not in self._confirmed and name.startswith(PREFIX):
                self._confirmed[name] = loop.create_future()
        self._connecting = {name: loop.create_future() for name in names}
        for shard_name, slots in self._by_shard(names).items():
            await self._shards[shard_name].subscribe(slots.values())
        confirmed = asyncio.gather(*self._connecting.values())
        assert self._lost is not None
        outcomes: list[asyncio.Future[Any]] = [confirmed, self._lost, *self._readers]
        done, _ = await asyncio.wait(
            outcomes,
            timeout=_CONNECT_TIMEOUT,
            return_when=asyncio.FIRST_COMPLETED,
        )
        self._connecting = {}
        if confirmed not in done:
            confirmed.cancel()
            await asyncio.wait([confirmed])
            if not confirmed.cancelled():
                confirmed.exception()  # retrieved, or asyncio logs it
            for failed in done:
                failed.result()  # raises why
            raise ShardLost("subscriptions not confirmed in time")

    async def _slot_map(self) -> dict[str, ClusterNode]:
        """The masters, from the slot map asked of the cluster now (after a failover,
        the promoted replicas); `_owners` records which serves each slot."""
        if self._owners:  # not the first connect: the client's map may be out of date
            await self._cluster.nodes_manager.initialize()
        else:
            await self._cluster.initialize()
        slots = self._cluster.nodes_manager.slots_cache
        self._owners = {slot: nodes[0].name for slot, nodes in slots.items()}
        return {nodes[0].name: nodes[0] for nodes in slots.values()}

    def _by_shard(self, names: Iterable[str]) -> dict[str, dict[int, list[str]]]:
        """Channels grouped by owning master, then by hash slot."""
        groups: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
        for name in names:
            slot = self._cluster.keyslot(name)
            groups[self._owners[slot]][slot].append(name)
        return groups

    async def _read(self, shard: Shard) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        while True:
            reply = await shard.read(within=1.0)
            if reply is None:
                silent = loop.time() - heard
                if silent >= _SILENT_LIMIT:
                    raise ShardLost(f"{shard.name} did not answer a PING")
                if silent >= _PING_AFTER and not pinged:
                    await shard.ping()
                    pinged = True
                continue
            heard, pinged = loop.time(), False
            kind, name, data = reply
            if kind == "smessage":
                receive(self._handlers, self._origin, name, data)
            elif kind == "ssubscribe":
                for waiting in (self._confirmed, self._connecting):
                    future = waiting.get(name)
                    if future is not None and not future.done():
                        future.set_result(None)

    async def _run_until_lost(self) -> None:
        assert self._lost is not None
        done, _ = await asyncio.wait(
            [self._lost, *self._readers], return_when=asyncio.FIRST_COMPLETED
        )
        for failed in done:
            failed.result()
        raise ShardLost("a shard reader stopped")

    async def _disconnect(self) -> None:
        readers, self._readers = self._readers, []
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        shards, self._shards = self._shards, {}
        for shard in shards.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(shard.close(), timeout=2)
        lost, self._lost = self._lost, None
        if lost is not None and not lost.done():
            lost.cancel()
        elif lost is not None and not lost.cancelled():
            lost.exception()  # retrieved: it was reported by `_run_until_lost` or not at all
