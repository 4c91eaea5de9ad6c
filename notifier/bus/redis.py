"""Redis pub/sub: one channel per user, subscribed only while this instance holds a socket
of that user, so each instance receives only what it can deliver.

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
import random
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis

from notifier.bus.base import Announcement, Bus, BusHandlers
from notifier.core.notification import Notification

log = logging.getLogger("notifier.bus")

PREFIX = "notifier:user:"
_CONTROL = "notifier:control"
_WATCH_TIMEOUT = 2.0


def channel(user_id: str) -> str:
    return PREFIX + user_id


class RedisBus(Bus):
    name = "redis"

    def __init__(self, url: str, *, origin: str, max_backoff: float = 10.0) -> None:
        self._url = url
        self._origin = origin
        self._max_backoff = max_backoff
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=5, health_check_interval=10
        )
        self._handlers: BusHandlers | None = None
        self._task: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        self._connected = False
        self._watched: set[str] = set()
        self._confirmed: dict[str, asyncio.Future[None]] = {}

    @property
    def healthy(self) -> bool:
        return self._connected

    async def start(self, handlers: BusHandlers) -> None:
        self._handlers = handlers
        ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._supervise(ready), name="redis-bus")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ready), timeout=5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_pubsub()
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
                await asyncio.wait_for(asyncio.shield(pending), _WATCH_TIMEOUT)

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

    # -- announcing -----------------------------------------------------------------------

    async def announce(self, notifications: Sequence[Notification]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for notification in notifications:
                payload = Announcement.of(notification).encode(self._origin, inline_limit=None)
                pipe.publish(channel(notification.user_id), payload)
            await pipe.execute()

    async def announce_read(self, user_id: str, frame: str) -> None:
        payload = Announcement(user_id=user_id, read_frame=frame).encode(self._origin)
        try:
            await self._client.publish(channel(user_id), payload)
        except Exception as error:
            log.warning("read announcement lost", extra={"error": repr(error)})

    # -- the supervised subscriber --------------------------------------------------------

    async def _supervise(self, ready: asyncio.Future[None]) -> None:
        attempt = 0
        first = True
        while True:
            try:
                await self._connect()
                attempt = 0
                if not ready.done():
                    ready.set_result(None)
                if not first and self._handlers is not None:
                    self._handlers.resync()
                first = False
                log.info("bus connected", extra={"bus": self.name})
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self._connected or attempt == 0:
                    log.warning(
                        "bus connection lost, reconnecting",
                        extra={"bus": self.name, "error": repr(error)},
                    )
            self._connected = False
            await self._close_pubsub()
            attempt += 1
            delay = min(self._max_backoff, 0.2 * 2 ** min(attempt, 10))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _connect(self) -> None:
        pubsub = self._client.pubsub()
        self._pubsub = pubsub
        await pubsub.subscribe(_CONTROL, *[channel(user) for user in self._watched])
        for user in self._watched:
            if user not in self._confirmed or self._confirmed[user].done():
                self._confirmed[user] = asyncio.get_running_loop().create_future()
        self._connected = True

    async def _read(self) -> None:
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
        if kind != "message" or not name.startswith(PREFIX):
            return
        try:
            origin, announcement = Announcement.decode(message["data"])
        except ValueError:
            log.warning("ignored a foreign payload on a bus channel")
            return
        if origin != self._origin and self._handlers is not None:
            self._handlers.deliver(announcement)

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), timeout=2)
