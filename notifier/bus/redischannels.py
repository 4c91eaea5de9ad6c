"""The channels of both Redis engines (one Redis, a Redis Cluster) and what arrives on them.

One channel per user, subscribed only while this instance holds a socket of that user; a
control channel (revocations) and a topics channel that every instance subscribes to. On
a cluster each is a shard channel, served by the master that owns its hash slot.
"""

from __future__ import annotations

import logging

from notifier.bus.base import BusHandlers
from notifier.wire.announcement import Announcement, TopicAnnouncement, decode_payload

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
