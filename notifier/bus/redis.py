"""Redis pub/sub: one channel per user, subscribed only while this instance holds a socket
of that user, so each instance receives only what it can deliver. A topic publish is one
message on a channel every instance subscribes to (`TOPICS`), not one per recipient.

`watch` returns once Redis has confirmed the SUBSCRIBE, and the socket reads its starting
position from the database only after that: a notification committed in between is
either in that read or arrives on the channel. Publishing happens after commit (Redis
cannot join the transaction); a message lost on the way is a gap that the next seq or a
resync fills from the database. The subscriber connection is supervised: health-checked,
reconnected with jittered backoff, all channels subscribed again, and every socket caught
up, since messages published meanwhile are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as redis

from notifier.bus.redischannels import CONTROL, PREFIX, TOPICS, Announcing, channel, receive
from notifier.bus.supervisor import SupervisedBus

log = logging.getLogger("notifier.bus")

WATCH_TIMEOUT = 2.0
"""How long `watch` waits for Redis to confirm a subscription before the socket carries
on (and is caught up by the resync after the reconnect that follows)."""


class RedisBus(Announcing, SupervisedBus):
    name = "redis"
    _command = "publish"

    def __init__(self, url: str, *, origin: str, max_backoff: float = 10.0) -> None:
        super().__init__(max_backoff=max_backoff)
        self._url = url
        self._origin = origin
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=5, health_check_interval=10
        )
        self._publisher = self._client
        self._pubsub: Any = None
        self._watched: set[str] = set()
        self._confirmed: dict[str, asyncio.Future[None]] = {}

    async def stop(self) -> None:
        await super().stop()
        await self._client.aclose()

    # -- subscriptions follow the sockets -------------------------------------------------

    async def watch(self, user_id: str) -> None:
        if user_id not in self._watched:
            self._watched.add(user_id)
            self._confirmed[user_id] = asyncio.get_running_loop().create_future()
            if self._connected:
                with contextlib.suppress(Exception):
                    await self._pubsub.subscribe(channel(user_id))
        pending = self._confirmed.get(user_id)
        if pending is not None and not pending.done() and self._connected:
            # Down or slow: carry on; the resync after reconnect catches the socket up.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pending), WATCH_TIMEOUT)

    def unwatch(self, user_id: str) -> None:
        if user_id in self._watched:
            self._watched.discard(user_id)
            self._confirmed.pop(user_id, None)
            if self._connected and self._pubsub is not None:
                asyncio.get_running_loop().create_task(self._unsubscribe(user_id))

    async def _unsubscribe(self, user_id: str) -> None:
        if user_id in self._watched:  # a socket of that user came back meanwhile
            return
        with contextlib.suppress(Exception):
            await self._pubsub.unsubscribe(channel(user_id))

    # -- the supervised subscriber --------------------------------------------------------

    async def _connect(self) -> None:
        pubsub = self._client.pubsub()
        self._pubsub = pubsub
        await pubsub.subscribe(CONTROL, TOPICS, *[channel(user) for user in self._watched])
        for user in self._watched:
            if user not in self._confirmed or self._confirmed[user].done():
                self._confirmed[user] = asyncio.get_running_loop().create_future()
        self._connected = True

    async def _run_until_lost(self) -> None:
        idle = 0
        while True:
            message = await self._pubsub.get_message(timeout=1.0)
            if message is None:
                idle += 1
                if idle >= 5:
                    idle = 0
                    await asyncio.wait_for(self._pubsub.ping(), timeout=5)
                continue
            idle = 0
            self._on_message(message)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        raw_channel = message.get("channel")
        name = raw_channel.decode() if isinstance(raw_channel, bytes) else str(raw_channel)
        if kind == "subscribe" and name.startswith(PREFIX):
            future = self._confirmed.get(name[len(PREFIX) :])
            if future is not None and not future.done():
                future.set_result(None)
            return
        if kind == "message":
            receive(self._handlers, self._origin, name, message["data"])

    async def _disconnect(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), timeout=2)
