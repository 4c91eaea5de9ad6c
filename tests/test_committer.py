"""Group commit against the real databases: requests that share a transaction stay
atomic and independent, and concurrent publishes are actually gathered."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from notifier import db
from notifier.bus.postgres import asyncpg_dsn
from notifier.committer import GroupCommitter
from notifier.core.idempotency import fingerprint
from notifier.store import (
    DatabaseUnavailable,
    IdempotencyConflict,
    NewNotification,
    Outcome,
    PublishRequest,
    Store,
    create_store,
)
from notifier.wire.announcement import TransactionNotify
from tests.support import new_user


def item(user: str, n: int, key: str | None = None) -> NewNotification:
    data = {"n": n}
    return NewNotification(
        user_id=user,
        type="t",
        data_json=f'{{"n":{n}}}',
        fingerprint=fingerprint(user, "t", data) if key else "",
        idempotency_key=key,
    )


async def test_a_conflict_fails_only_its_own_request(store: Store) -> None:
    """In one group, the request whose key conflicts stores nothing and the others commit,
    with consecutive seqs per user in request order."""
    user = new_user()
    await store.publish("p", [item(user, 0, key="k1")])
    outcomes = await store.publish_group(
        [
            PublishRequest("p", [item(user, 1), item(user, 2)]),
            PublishRequest("p", [item(user, 3), item(user, 99, key="k1")]),  # conflict
            PublishRequest("p", [item(user, 4)]),
        ]
    )
    assert isinstance(outcomes[1], IdempotencyConflict)
    assert not isinstance(outcomes[0], IdempotencyConflict)
    assert not isinstance(outcomes[2], IdempotencyConflict)
    assert [p.notification.seq for p in outcomes[0]] == [2, 3]
    assert [p.notification.seq for p in outcomes[2]] == [4]
    stored = await store.after(user, 0, 100)
    assert [(n.seq, n.data_json) for n in stored] == [
        (1, '{"n":0}'),
        (2, '{"n":1}'),
        (3, '{"n":2}'),
        (4, '{"n":4}'),
    ]


async def test_same_key_twice_in_one_group_is_one_notification(store: Store) -> None:
    """Two requests of one group with the same key and body: one row, both answered with
    it; the same key from another publisher is a different key."""
    user = new_user()
    outcomes = await store.publish_group(
        [
            PublishRequest("p", [item(user, 1, key="k")]),
            PublishRequest("p", [item(user, 1, key="k")]),
            PublishRequest("q", [item(user, 1, key="k")]),
        ]
    )
    first, second, other = (o for o in outcomes if not isinstance(o, IdempotencyConflict))
    assert first[0].created and not second[0].created and other[0].created
    assert first[0].notification == second[0].notification
    assert other[0].notification.seq == 2
    assert len(await store.after(user, 0, 100)) == 2


async def test_concurrent_publishes_are_gathered_into_fewer_transactions(store: Store) -> None:
    """200 concurrent single publishes through the committer all commit, gap-free, in
    fewer transactions than requests."""
    counting = CountingStore(store)
    committer = GroupCommitter(counting, None)
    user = new_user()
    results = await asyncio.gather(*(committer.publish("p", [item(user, n)]) for n in range(200)))
    assert sorted(r[0].notification.seq for r in results) == list(range(1, 201))
    assert counting.groups < 200


class CountingStore:
    """The real store, counting its group transactions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.groups = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def publish_group(
        self, requests: Sequence[PublishRequest], notify: TransactionNotify | None = None
    ) -> list[Outcome]:
        self.groups += 1
        return await self.store.publish_group(requests, notify)

    async def try_publish_group(
        self,
        requests: Sequence[PublishRequest],
        notify: TransactionNotify | None = None,
        *,
        held_likely: bool = False,
    ) -> list[Outcome | None]:
        self.groups += 1
        return await self.store.try_publish_group(requests, notify, held_likely=held_likely)


async def test_a_dropped_connection_is_a_retryable_failure_and_is_not_reused(
    pg_database: str,
) -> None:
    """PostgreSQL ends every pooled connection (a restart, a failover): the next publish
    fails as DatabaseUnavailable (an OSError: the API answers 503 and the publisher
    retries), stores nothing, and the one after it works on a fresh connection."""
    engine = db.create_engine(pg_database)
    store = create_store(engine)
    user = new_user()
    try:
        await store.publish("p", [item(user, 1)])
        admin = await asyncpg.connect(asyncpg_dsn(pg_database))
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        with pytest.raises(DatabaseUnavailable) as failure:
            await store.publish("p", [item(user, 2)])
        assert isinstance(failure.value, OSError)
        [published] = await store.publish("p", [item(user, 2)])
        assert published.notification.seq == 2
        assert [n.seq for n in await store.after(user, 0, 10)] == [1, 2]
    finally:
        await engine.dispose()
