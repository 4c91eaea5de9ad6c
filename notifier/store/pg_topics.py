"""Topics on PostgreSQL (asyncpg): subscribers, and a topic publish in one statement.

A topic publish reads the topic's subscribers, numbers one notification for each in its
own stream, stores them, keeps the answer of its idempotency key and NOTIFYs one topic
announcement, all in one statement that commits on its own. Set-based: one INSERT raises
every recipient's counter and one INSERT stores every row, whatever the count.

Counter locks. Each recipient's `streams` row stays locked from the moment its counter is
raised until the commit, as for any publish (a later publish of that user must get the
next seq and commit after). The statement takes them in user order, like every publish
(`_PUBLISH` orders its counters the same way), so a topic publish and batches sharing
users wait for each other but never deadlock. It raises each counter and stores that
user's row before it raises the next counter (the INSERT of the rows reads the counters'
RETURNING row by row), so user number k of n waits for the statement's remaining part,
not the whole; nothing else runs under the locks: the subscribers are read, the ids made
and the payload built before the first counter, and no round trip or wait for this
process falls between the first lock and the commit.

The idempotency key. A keyed publish keeps its answer in `topic_publishes`, and also
marks the row of its first recipient with the key and its fingerprint: the unique index
on (publisher, idempotency_key) of `notifications` then stops a direct publish racing it
with the same key (one of the two fails on the index and its retry answers 409), which
two tables with a unique index each could not. Only an empty topic's publish leaves no
such mark.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from notifier.core.topics import (
    MAX_RECIPIENTS,
    StoredKey,
    TooManyRecipients,
    TopicPublish,
    TopicPublished,
)
from notifier.wire.announcement import TopicAnnouncement, TransactionNotify, topic_notify_parameters
from notifier.wire.notification import FRAME_SQL

# $1 topic, $2 type, $3 data, $4 created_at, $5 publisher, $6 key, $7 fingerprint,
# $8 the most recipients, $9 the NOTIFY channel (NULL: none), $10 its payload up to the
# count of recipients (`TopicAnnouncement.counted_prefix`).
PUBLISH_TOPIC = """WITH subscriber AS MATERIALIZED (
    SELECT user_id FROM topic_subscribers WHERE topic = $1 ORDER BY user_id LIMIT $8 + 1
), total AS (
    SELECT count(*) AS n, min(user_id) AS first FROM subscriber
), allocated AS (
    INSERT INTO streams (user_id, last_seq)
    SELECT user_id, 1 FROM subscriber WHERE (SELECT n FROM total) <= $8 ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE SET last_seq = streams.last_seq + 1
    RETURNING user_id, last_seq
), stored AS (
    INSERT INTO notifications
        (id, user_id, seq, type, data, created_at, publisher, idempotency_key, fingerprint,
         topic)
    SELECT gen_random_uuid(), a.user_id, a.last_seq, $2, $3, $4, $5,
           CASE WHEN a.user_id = t.first THEN $6::varchar END,
           CASE WHEN a.user_id = t.first THEN $7::varchar END, $1
    FROM allocated a CROSS JOIN total t
), kept AS (
    INSERT INTO topic_publishes
        (publisher, idempotency_key, fingerprint, topic, type, recipients, created_at)
    SELECT $5, $6, $7, $1, $2, n, $4 FROM total WHERE $6::varchar IS NOT NULL AND n <= $8
), sent AS (
    SELECT pg_notify($9, $10 || n || '}}') FROM total
    WHERE $9::text IS NOT NULL AND n BETWEEN 1 AND $8
)
SELECT n, (SELECT count(*) FROM sent) FROM total"""

# What a key already stands for: a topic publish's answer first, else a direct publish
# (or a topic publish's mark on its first recipient, whose answer is then also found).
FIND_KEY = """SELECT * FROM (
    SELECT 1 AS kind, fingerprint, topic, type, recipients, created_at FROM topic_publishes
    WHERE publisher = $1 AND idempotency_key = $2
    UNION ALL
    SELECT 2, fingerprint, NULL, NULL, NULL, NULL FROM notifications
    WHERE publisher = $1 AND idempotency_key = $2
) k ORDER BY kind LIMIT 1"""

# A new subscriber gets its counter (at 0, which reads as no stream yet) if it has none:
# a topic publish then raises existing counters only, which a direct publish meanwhile
# sees held and leaves to a path that may wait (`try_publish_group`), where a counter
# still being inserted by the topic publish would make it wait, lane and all.
CHANGE_SUBSCRIBERS = """WITH added AS (
    INSERT INTO topic_subscribers (topic, user_id)
    SELECT DISTINCT $1::varchar, u FROM unnest($2::varchar[]) AS u
    ON CONFLICT DO NOTHING RETURNING 1
), counters AS (
    INSERT INTO streams (user_id, last_seq)
    SELECT DISTINCT u, 0 FROM unnest($2::varchar[]) AS u ORDER BY 1
    ON CONFLICT DO NOTHING
), removed AS (
    DELETE FROM topic_subscribers WHERE topic = $1 AND user_id = ANY($3::varchar[])
    RETURNING 1
)
SELECT (SELECT count(*) FROM added), (SELECT count(*) FROM removed)"""

# Byte order whatever the database's collation ("C" compares UTF-8 bytes).
SUBSCRIBERS = """SELECT user_id FROM topic_subscribers
WHERE topic = $1 AND ($2::varchar IS NULL OR user_id COLLATE "C" > $2::varchar COLLATE "C")
ORDER BY user_id COLLATE "C" LIMIT $3"""

# The recipients of one topic publish: its rows all share created_at (and topic), found
# through the created_at index; the cost follows the publish's size, not the inboxes'.
RECIPIENTS = "SELECT user_id, seq FROM notifications WHERE created_at = $1 AND topic = $2"

# Frames of (user_id, seq) pairs: a primary-key lookup each.
FRAMES_AT = (
    f"SELECT user_id, seq, {FRAME_SQL}\n"
    "    FROM unnest($1::varchar[], $2::bigint[]) AS p(user_id, seq)\n"
    "    JOIN notifications USING (user_id, seq)"
)

# The next rows of each (user_id, after) pair, with the frame of the publish's own row.
# Its plan cannot depend on statistics: each pair is a primary-key range read of at most
# $5 rows; the publish's row is picked out by a CASE, not a filter the planner could send
# through the created_at index (which, with a generic plan and no statistics, it did: a
# scan of the publish's every row per pair, 9 s for 5,000 pairs).
TOPIC_FRAMES_AFTER = (
    "SELECT p.user_id, n.seq, n.frame\n"
    "    FROM unnest($1::varchar[], $2::bigint[]) AS p(user_id, after)\n"
    "    CROSS JOIN LATERAL (\n"
    f"        SELECT seq, CASE WHEN created_at = $3 AND topic = $4 THEN {FRAME_SQL} END AS frame\n"
    "        FROM notifications WHERE user_id = p.user_id AND seq > p.after\n"
    "        ORDER BY seq LIMIT $5) AS n"
)


async def find_key(raw: Any, publisher: str, key: str) -> StoredKey | None:
    row = await raw.fetchrow(FIND_KEY, publisher, key)
    if row is None:
        return None
    if row["kind"] == 2:
        return StoredKey(row["fingerprint"], None)
    original = TopicPublished(
        topic=row["topic"],
        type=row["type"],
        recipients=row["recipients"],
        created_at=row["created_at"],
        created=False,
    )
    return StoredKey(row["fingerprint"], original)


async def publish_topic(
    raw: Any, request: TopicPublish, now: datetime, notify: TransactionNotify | None
) -> TopicPublished:
    """One attempt (see the module's docstring). Raises TooManyRecipients, having
    stored nothing."""
    channel, payload = topic_notify_parameters(notify, TopicAnnouncement(request.topic, now))
    row = await raw.fetchrow(
        PUBLISH_TOPIC,
        request.topic,
        request.type,
        request.data_json,
        now,
        request.publisher,
        request.idempotency_key,
        request.fingerprint or None,
        MAX_RECIPIENTS,
        channel,
        payload,
    )
    count = int(row[0])
    if count > MAX_RECIPIENTS:
        raise TooManyRecipients(request.topic, count)
    return TopicPublished(request.topic, request.type, count, now)


async def change_subscribers(
    raw: Any, topic: str, add: Sequence[str], remove: Sequence[str]
) -> tuple[int, int]:
    row = await raw.fetchrow(CHANGE_SUBSCRIBERS, topic, list(add), list(remove))
    return int(row[0]), int(row[1])


async def subscribers(raw: Any, topic: str, after: str | None, limit: int) -> list[str]:
    return [row[0] for row in await raw.fetch(SUBSCRIBERS, topic, after, limit)]


async def recipients(raw: Any, topic: str, created_at: datetime) -> list[tuple[str, int]]:
    return [(row[0], row[1]) for row in await raw.fetch(RECIPIENTS, created_at, topic)]


async def frames_at(
    raw: Any, users: Sequence[str], seqs: Sequence[int]
) -> list[tuple[str, int, str]]:
    rows = await raw.fetch(FRAMES_AT, list(users), list(seqs))
    return [(row[0], row[1], row[2]) for row in rows]


async def topic_frames_after(
    raw: Any, topic: str, created_at: datetime, positions: Sequence[tuple[str, int]], page: int
) -> tuple[list[tuple[str, int, str]], list[str]]:
    rows = await raw.fetch(
        TOPIC_FRAMES_AFTER,
        [user for user, _ in positions],
        [after for _, after in positions],
        created_at,
        topic,
        page,
    )
    found: list[tuple[str, int, str]] = []
    read: Counter[str] = Counter()
    hit: set[str] = set()
    for user, seq, frame in rows:
        read[user] += 1
        if frame is not None:
            found.append((user, seq, frame))
            hit.add(user)
    return found, [user for user, count in read.items() if count >= page and user not in hit]
