"""One subscriber connection per master of a Redis Cluster, for sharded pub/sub.

redis-py's `ClusterPubSub` keeps shard subscriptions alive on its own: a node connection
that drops is reconnected and resubscribed inside the next read, and a channel whose slot
moved is resubscribed on the new owner by a background task. Messages published in
between are gone, and the caller is never told, so the bus would never resync. A `Shard`
does no such thing: any failure of its connection, an error reply (a `MOVED` for a slot
that left this master), or a subscription that Redis withdrew (`sunsubscribe` sent when a
slot migrates or its master is demoted) raises `ShardLost`, and the bus reconnects every
shard from a fresh slot map, then catches every socket up from the database.

The connection is the one redis-py's cluster client would open to that node (same
class, TLS and credentials), with retries off: reconnecting is the bus's decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


class ShardLost(Exception):
    """A master's subscriber connection failed, or Redis withdrew a subscription."""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Shard:
    """The subscriber connection to one master, and the replies still owed on it.

    Redis answers every channel of an SSUBSCRIBE or SUNSUBSCRIBE with one reply, in
    order, so a count per channel of replies still to come tells a confirmation from a
    withdrawal: an `sunsubscribe` that nothing asked for means the slot moved.
    """

    def __init__(self, node: ClusterNode) -> None:
        self.name = node.name
        kwargs = dict(node.connection_kwargs)
        kwargs["retry"] = Retry(NoBackoff(), 0)
        self._connection: Any = node.connection_class(**kwargs)
        self._owed: Counter[str] = Counter()

    async def open(self) -> None:
        await self._connection.connect()

    async def close(self) -> None:
        await self._connection.disconnect(nowait=True)

    async def subscribe(self, slots: Iterable[list[str]]) -> None:
        """SSUBSCRIBE each group (channels of one hash slot: Redis refuses a command
        spanning slots), in one write."""
        commands = [("SSUBSCRIBE", *group) for group in slots if group]
        for group in commands:
            self._owed.update(group[1:])
        await self._send(commands)

    async def unsubscribe(self, name: str) -> None:
        self._owed[name] += 1
        await self._send([("SUNSUBSCRIBE", name)])

    async def ping(self) -> None:
        await self._send([("PING",)])

    async def _send(self, commands: list[tuple[str, ...]]) -> None:
        # A closed connection would be reopened by redis-py, silently and subscribed to
        # nothing: refuse instead.
        if not self._connection.is_connected:
            raise ShardLost(f"{self.name}: connection closed")
        try:
            await self._connection.send_packed_command(
                self._connection.pack_commands(commands), check_health=False
            )
        except Exception as error:
            raise ShardLost(f"{self.name}: {error!r}") from error

    async def read(self, within: float) -> tuple[str, str, Any] | None:
        """The next reply within `within` seconds as (kind, channel, data), or None if
        none came. Kinds: `smessage`; `pong` or `other` (no news, but a sign of life);
        for a channel with several (un)subscriptions in flight, `pending` until the last
        one's reply, which comes as itself: an `ssubscribe` means the channel is
        subscribed now, not merely that it once was."""
        if not self._connection.is_connected:
            raise ShardLost(f"{self.name}: connection closed")
        try:
            reply = await self._connection.read_response(timeout=within, push_request=True)
        except Exception as error:
            raise ShardLost(f"{self.name}: {error!r}") from error
        if reply is None:
            return None
        if not isinstance(reply, list):  # PING's answer
            return ("pong", "", None)
        kind = _text(reply[0])
        if kind == "smessage":
            return (kind, _text(reply[1]), reply[2])
        if kind not in ("ssubscribe", "sunsubscribe"):
            return ("other", "", None)  # a pong in RESP2, or a push of no concern
        name = _text(reply[1])
        if self._owed[name] <= 0:
            if kind == "sunsubscribe":
                raise ShardLost(f"{self.name} withdrew {name}: its slot moved")
            raise ShardLost(f"{self.name}: unexpected {kind} for {name}")
        self._owed[name] -= 1
        if self._owed[name] > 0:
            return ("pending", name, None)  # more replies for this channel to come
        del self._owed[name]
        return (kind, name, None)
