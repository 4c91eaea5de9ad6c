"""The channels of both Redis engines (one Redis, a Redis Cluster), what is sent on them
(`Announcing`) and what arrives on them (`receive`).

One channel per user, subscribed only while this instance holds a socket of that user; a
control channel (revocations) and a topics channel that every instance subscribes to. On
a cluster each is a shard channel, served by the master that owns its hash slot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from notifier.bus.base import BusHandlers
from notifier.bus.outbox import Outbox
from notifier.wire.announcement import Announcement, TopicAnnouncement, decode_payload
from notifier.wire.notification import Notification

log = logging.getLogger("notifier.bus")

PREFIX = "notifier:user:"
CONTROL = "notifier:control"
"""Revocations: every instance subscribes, whether or not it holds a socket of the user."""
TOPICS = "notifier:topics"
"""Topic publishes: every instance subscribes, each resolves the recipients it holds."""


def channel(user_id: str) -> str:
    return PREFIX + user_id


def receive(handlers: BusHandlers | None, origin: str, name: str, payload: bytes | str) -> None:
    """A message on channel `name`: to the service, unless this instance sent it (it
    delivered that one itself at commit)."""
    if handlers is None:
        return
    if name == TOPICS:
        try:
            sender, announced = decode_payload(payload)
        except ValueError:
            log.warning("ignored a foreign payload on the topics channel")
            return
        if (
            isinstance(announced, TopicAnnouncement)
            and sender != origin
            and handlers.deliver_topic is not None
        ):
            handlers.deliver_topic(announced)
        return
    if not (name.startswith(PREFIX) or name == CONTROL):
        return
    try:
        sender, announcement = Announcement.decode(payload)
    except ValueError:
        log.warning("ignored a foreign payload on a bus channel")
        return
    if sender != origin:
        handlers.deliver(announcement)


class Announcing:
    """What both engines send, on the same channels, after commit. Only the command
    differs: PUBLISH on one Redis, SPUBLISH on a cluster (to the master of the channel's
    slot). Mixed into each bus ahead of `SupervisedBus`."""

    _origin: str
    _publisher: Any
    """A `redis.asyncio.Redis` or `RedisCluster`."""
    _command: str
    """`publish` or `spublish`: the method of the client, and of its pipeline."""
    _outbox: Outbox | None = None

    async def _publish(self, name: str, payload: str) -> None:
        await getattr(self._publisher, self._command)(name, payload)

    async def _send_pipeline(self, messages: Sequence[tuple[str, str]]) -> None:
        # One pipeline (split by redis-py per master on a cluster): a user's messages
        # keep their order.
        async with self._publisher.pipeline(transaction=False) as pipe:
            publish = getattr(pipe, self._command)
            for name, payload in messages:
                publish(name, payload)
            await pipe.execute()

    async def announce(self, notifications: Sequence[Notification]) -> None:
        """With the messages of every publish announcing at the same moment (`Outbox`)."""
        if self._outbox is None:
            self._outbox = Outbox(self._send_pipeline)
        await self._outbox.send(
            [
                (
                    channel(notification.user_id),
                    Announcement.of(notification).encode(self._origin, inline_limit=None),
                )
                for notification in notifications
            ]
        )

    async def announce_topic(self, announcement: TopicAnnouncement) -> None:
        await self._publish(TOPICS, announcement.encode(self._origin))

    async def broadcast(self, announcement: Announcement) -> None:
        """On the control channel, which every instance subscribes to at all times."""
        await self._publish(CONTROL, announcement.encode(self._origin))

    async def announce_read(self, user_id: str, frame: str) -> None:
        payload = Announcement(user_id=user_id, read_frame=frame).encode(self._origin)
        try:
            await self._publish(channel(user_id), payload)
        except Exception as error:
            log.warning("read announcement lost", extra={"error": repr(error)})
