"""Topics on SQLite (SQLAlchemy): the same operations as `pg_topics`, set-based too.

A topic publish is one transaction: raise every recipient's counter with one INSERT ..
SELECT .. ON CONFLICT DO UPDATE, store every row with one INSERT .. SELECT that joins the
subscribers with their raised counters, and keep the key's answer. SQLite has one writer
at a time (and this service one connection), so nothing interleaves with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.core.topics import (
    MAX_RECIPIENTS,
    StoredKey,
    TooManyRecipients,
    TopicPublish,
    TopicPublished,
)
from notifier.models import notifications as nt
from notifier.models import topic_publishes as tp
from notifier.models import topic_subscribers as ts
from notifier.store.base import row_to_notification
from notifier.wire.notification import COLUMNS

_TIME = nt.c.created_at.type
_CHUNK = 500

# A random version 4 UUID per row, as the Uuid type keeps it on SQLite (32 hex digits).
_NEW_ID = (
    "substr(h, 1, 12) || '4' || substr(h, 14, 3) || "
    "substr('89ab', 1 + (abs(random()) % 4), 1) || substr(h, 18)"
)
_RAISE = sa.text(
    """INSERT INTO streams (user_id, last_seq)
    SELECT user_id, 1 FROM topic_subscribers WHERE topic = :topic ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE SET last_seq = streams.last_seq + 1"""
)
_STORE = sa.text(
    f"""INSERT INTO notifications
        (id, user_id, seq, type, data, created_at, publisher, idempotency_key, fingerprint,
         topic)
    SELECT {_NEW_ID}, user_id, last_seq, :type, :data, :created_at, :publisher,
           CASE WHEN user_id = :first THEN :key END,
           CASE WHEN user_id = :first THEN :fingerprint END, :topic
    FROM (
        SELECT lower(hex(randomblob(16))) AS h, s.user_id, streams.last_seq
        FROM topic_subscribers s JOIN streams ON streams.user_id = s.user_id
        WHERE s.topic = :topic
    )"""
).bindparams(sa.bindparam("created_at", type_=_TIME))


async def find_key(conn: AsyncConnection, publisher: str, key: str) -> StoredKey | None:
    kept = await conn.execute(
        sa.select(tp.c.fingerprint, tp.c.topic, tp.c.type, tp.c.recipients, tp.c.created_at).where(
            tp.c.publisher == publisher, tp.c.idempotency_key == key
        )
    )
    row = kept.first()
    if row is not None:
        created = row.created_at
        original = TopicPublished(row.topic, row.type, row.recipients, created, created=False)
        return StoredKey(row.fingerprint, original)
    direct = await conn.execute(
        sa.select(nt.c.fingerprint).where(nt.c.publisher == publisher, nt.c.idempotency_key == key)
    )
    fingerprint = direct.scalar_one_or_none()
    return None if fingerprint is None else StoredKey(fingerprint, None)


async def publish_topic(
    conn: AsyncConnection, request: TopicPublish, now: datetime
) -> TopicPublished:
    """Inside the caller's transaction. Raises TooManyRecipients, having stored nothing."""
    subscribers = (
        sa.select(ts.c.user_id)
        .where(ts.c.topic == request.topic)
        .limit(MAX_RECIPIENTS + 1)
        .subquery()
    )
    counted = sa.select(sa.func.count(), sa.func.min(subscribers.c.user_id))
    count, first = (await conn.execute(counted)).one()
    if count > MAX_RECIPIENTS:
        raise TooManyRecipients(request.topic, count)
    if count:
        await conn.execute(_RAISE, {"topic": request.topic})
        await conn.execute(
            _STORE,
            {
                "topic": request.topic,
                "type": request.type,
                "data": request.data_json,
                "created_at": now,
                "publisher": request.publisher,
                "key": request.idempotency_key,
                "fingerprint": request.fingerprint or None,
                "first": first,
            },
        )
    if request.idempotency_key is not None:
        await conn.execute(
            tp.insert().values(
                publisher=request.publisher,
                idempotency_key=request.idempotency_key,
                fingerprint=request.fingerprint,
                topic=request.topic,
                type=request.type,
                recipients=count,
                created_at=now,
            )
        )
    return TopicPublished(request.topic, request.type, count, now)


async def change_subscribers(
    conn: AsyncConnection, topic: str, add: Sequence[str], remove: Sequence[str]
) -> tuple[int, int]:
    added = removed = 0
    wanted = list(dict.fromkeys(add))
    for start in range(0, len(wanted), _CHUNK):
        rows = [{"topic": topic, "user_id": user} for user in wanted[start : start + _CHUNK]]
        statement = sqlite.insert(ts).values(rows).on_conflict_do_nothing()
        added += (await conn.execute(statement)).rowcount
    unwanted = list(dict.fromkeys(remove))
    for start in range(0, len(unwanted), _CHUNK):
        deletion = sa.delete(ts).where(
            ts.c.topic == topic, ts.c.user_id.in_(unwanted[start : start + _CHUNK])
        )
        removed += (await conn.execute(deletion)).rowcount
    return added, removed


def subscribers_query(topic: str, after: str | None, limit: int) -> sa.Select[Any]:
    """SQLite compares text by its bytes (BINARY collation): byte order as it is."""
    query = sa.select(ts.c.user_id).where(ts.c.topic == topic)
    if after is not None:
        query = query.where(ts.c.user_id > after)
    return query.order_by(ts.c.user_id).limit(limit)


def recipients_query(topic: str, created_at: datetime) -> sa.Select[Any]:
    return sa.select(nt.c.user_id, nt.c.seq).where(
        nt.c.created_at == created_at, nt.c.topic == topic
    )


async def frames_at(
    conn: AsyncConnection, users: Sequence[str], seqs: Sequence[int]
) -> list[tuple[str, int, str]]:
    found: list[tuple[str, int, str]] = []
    pairs = list(zip(users, seqs, strict=True))
    columns = tuple(nt.c[name] for name in COLUMNS)
    for start in range(0, len(pairs), _CHUNK):
        part = pairs[start : start + _CHUNK]
        query = sa.select(*columns).where(sa.tuple_(nt.c.user_id, nt.c.seq).in_(part))
        for row in await conn.execute(query):
            notification = row_to_notification(row._mapping)
            found.append((notification.user_id, notification.seq, notification.frame))
    return found
