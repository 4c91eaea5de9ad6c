"""One key space for a publisher's direct and topic publishes, under a race (PostgreSQL):
a topic publish marks its first recipient's row with its key, so the unique index on
notifications stops a direct publish sent at the same moment with the same key."""

from __future__ import annotations

import asyncio
import uuid

from notifier.core.topics import TopicPublish, topic_fingerprint
from notifier.store import IdempotencyConflict, NewNotification, Store


async def test_topic_and_direct_publish_racing_one_key_never_both_succeed(
    pg_store: Store,
) -> None:
    """40 rounds of a topic publish and a direct publish with one key, sent together:
    each round exactly one succeeds and the other is an IdempotencyConflict."""
    for _ in range(40):
        topic = f"race.{uuid.uuid4().hex[:10]}"
        user = f"racer-{uuid.uuid4().hex[:10]}"
        await pg_store.change_subscribers(topic, [user, user + "-2"], [])
        key = f"k-{uuid.uuid4()}"
        fingerprint = topic_fingerprint(topic, "t", {})
        outcomes = await asyncio.gather(
            pg_store.publish_topic(TopicPublish("p", topic, "t", "{}", fingerprint, key)),
            pg_store.publish("p", [NewNotification(user, "d", "{}", "direct", key)]),
            return_exceptions=True,
        )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(failed) == 1 and isinstance(failed[0], IdempotencyConflict), outcomes
