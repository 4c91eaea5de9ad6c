"""The announcements a publish sends inside its own statement on PostgreSQL (the payloads
are built in SQL from `Announcement.around_seq` pieces): what another instance receives
must be exactly `Announcement.of` each new notification, in order, in payloads under
PostgreSQL's 8000-byte NOTIFY limit, for any text and any size."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import orjson
import pytest

from notifier.store import (
    IdempotencyConflict,
    NewNotification,
    PublishRequest,
    Store,
)
from notifier.wire.announcement import MAX_PAYLOAD_BYTES, Announcement, TransactionNotify
from notifier.wire.notification import Notification
from tests.store.conftest import Listener
from tests.store.test_frames import DATA, HOSTILE, TYPES
from tests.support import new_user

ORIGIN = "origin-" + HOSTILE[:20]


def expected(notification: Notification, room: int) -> Announcement:
    """What is announced: the notification with its frame, or without it over `room`."""
    announcement = Announcement.of(notification)
    if len(orjson.dumps(announcement.body())) > room:
        return dataclasses.replace(announcement, frame=None)
    return announcement


async def test_a_group_is_announced_whole_in_order_in_few_payloads_under_the_limit(
    pg_store: Store, listener: Listener
) -> None:
    notify = TransactionNotify(listener.channel, ORIGIN)
    users = [new_user() + " " + HOSTILE[: i * 7] for i in range(8)]
    items = [
        NewNotification(
            users[i % len(users)],
            TYPES[i % len(TYPES)],
            orjson.dumps({"i": i, **DATA[i % len(DATA)]}).decode(),
            "",
        )
        for i in range(1000)
    ]
    # Frames that cannot ride along: one just over `room` bytes in UTF-8 though under it
    # in characters, one far over; and one small one right after each.
    items[10] = NewNotification(users[0], "big", '{"t":"' + "中" * (notify.room // 3) + '"}', "")
    items[500] = NewNotification(users[1], "huge", '{"t":"' + "x" * 100_000 + '"}', "")
    [outcome] = await pg_store.publish_group([PublishRequest("p", items)], notify)
    assert not isinstance(outcome, IdempotencyConflict)
    published = [p.notification for p in outcome]

    received = await listener.announcements(len(published))
    assert received == [expected(n, notify.room) for n in published]
    assert received[10].frame is None and received[500].frame is None
    assert received[11].frame == published[11].frame
    assert all(
        len(p.encode()) < 8000 and len(p.encode()) <= MAX_PAYLOAD_BYTES for p in listener.payloads
    )
    assert all(Announcement.decode_many(p)[0] == ORIGIN for p in listener.payloads)
    # Dense: a payload ends only where the announcements reach a multiple of `room`.
    total = sum(len(orjson.dumps(a.body())) + 1 for a in received)
    assert len(listener.payloads) <= total // notify.room + 1


async def test_a_publish_without_a_channel_announces_nothing(
    pg_store: Store, listener: Listener
) -> None:
    user = new_user()
    await pg_store.publish("p", [NewNotification(user, "t", "{}", "")])
    await pg_store.publish(
        "p", [NewNotification(user, "t", "{}", "")], TransactionNotify(listener.channel, ORIGIN)
    )
    [only] = await listener.announcements(1)
    assert only.seq == 2
    await asyncio.sleep(0.2)
    assert len(listener.payloads) == 1


async def test_a_failed_publish_announces_nothing(pg_store: Store, listener: Listener) -> None:
    """A group whose statement fails (here: data that is not JSON text PostgreSQL can
    store, a NUL) sends nothing: NOTIFY leaves only at commit."""
    notify = TransactionNotify(listener.channel, ORIGIN)
    user = new_user()
    with pytest.raises(asyncpg.PostgresError):
        await pg_store.publish("p", [NewNotification(user, "t", '{"a":"\x00"}', "")], notify)
    await pg_store.publish("p", [NewNotification(user, "t", "{}", "")], notify)
    [only] = await listener.announcements(1)
    assert only.seq == 1
    await asyncio.sleep(0.2)
    assert len(listener.payloads) == 1
