"""Publishing while another transaction holds some users' streams (a holder's open
transaction that called notifier_publish(), on a separate asyncpg connection): the
store's `try_publish_group` leaves exactly the held requests and commits the rest at
once, and the group committer keeps every other user's publishes prompt while the held
ones wait for the holder, numbered after it, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from notifier import db
from notifier.bus.postgres import asyncpg_dsn
from notifier.committer import GroupCommitter
from notifier.core.idempotency import fingerprint
from notifier.core.topics import TopicPublish
from notifier.store import NewNotification, PublishRequest, Store, create_store
from notifier.store.base import StreamBusy
from tests.store.test_sql_publish import blocked, publish, seqs
from tests.support import new_user, timeout


@pytest.fixture
async def holder(pg_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A backend's own connection, whose transactions hold streams."""
    conn = await asyncpg.connect(asyncpg_dsn(pg_database))
    try:
        yield conn
    finally:
        await conn.close()


def item(user: str, n: int, key: str | None = None) -> NewNotification:
    data = {"n": n}
    return NewNotification(
        user_id=user,
        type="t",
        data_json=f'{{"n":{n}}}',
        fingerprint=fingerprint(user, "t", data) if key else "",
        idempotency_key=key,
    )


@pytest.mark.parametrize("held_likely", [False, True], ids=["lane-wait", "locks-first"])
@pytest.mark.parametrize("known", [True, False], ids=["known-user", "first-publish"])
async def test_try_leaves_the_held_requests_and_commits_the_rest(
    pg_store: Store, holder: asyncpg.Connection, known: bool, held_likely: bool
) -> None:
    """A group with a held user (whose stream exists, or is being created by the open
    transaction) answers None for that request alone, without waiting longer than a
    lane's short wait, and commits the others, a batch over two free users included; the
    held user gets nothing."""
    held, a, b = new_user(), new_user(), new_user()
    await pg_store.publish("p", [item(a, 0), item(b, 0)])  # (see `_TRY_PUBLISH`)
    if known:
        await pg_store.publish("p", [item(held, 0)])
    await holder.execute("BEGIN")
    await publish(holder, held, {"from": "sql"})
    started = time.monotonic()
    outcomes = await pg_store.try_publish_group(
        [
            PublishRequest("p", [item(a, 1)]),
            PublishRequest("p", [item(held, 2), item(b, 2)]),
            PublishRequest("p", [item(a, 3), item(b, 3)]),
        ],
        held_likely=held_likely,
    )
    assert time.monotonic() - started < timeout(1)
    first, left, batch = outcomes
    assert left is None
    assert isinstance(first, list) and [p.notification.seq for p in first] == [2]
    assert isinstance(batch, list) and [p.notification.seq for p in batch] == [3, 2]
    assert await seqs(holder, b) == [1, 2]
    await holder.execute("COMMIT")
    assert await seqs(holder, held) == ([1, 2] if known else [1])


async def test_requests_linked_by_a_key_are_left_together(
    pg_store: Store, holder: asyncpg.Connection
) -> None:
    """A request repeating the key of a held request's new item is left too (its answer
    is that item), while an unrelated request commits; after the holder commits, both go
    through as one new notification and its repeat."""
    held, free = new_user(), new_user()
    await pg_store.publish("p", [item(held, 0)])
    await holder.execute("BEGIN")
    await publish(holder, held, {"from": "sql"})
    same = item(held, 1, key=f"k-{held}")
    requests = [
        PublishRequest("p", [same]),
        PublishRequest("p", [item(free, 1)]),
        PublishRequest("p", [same]),
    ]
    outcomes = await pg_store.try_publish_group(requests)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], list)
    await holder.execute("COMMIT")
    again = await pg_store.try_publish_group([requests[0], requests[2]])
    assert isinstance(again[0], list) and isinstance(again[1], list)
    assert again[0][0].created and not again[1][0].created
    assert again[0][0].notification.seq == again[1][0].notification.seq == 3
    assert await seqs(holder, held) == [1, 2, 3]


@pytest.mark.parametrize("known", [True, False], ids=["known-user", "first-publish"])
async def test_a_held_stream_does_not_hold_up_other_users(
    pg_store: Store, holder: asyncpg.Connection, known: bool
) -> None:
    """While an open transaction holds one user's stream, 400 concurrent publishes to 40
    other users through the same committer all commit well under a second, the held
    user's 30 publishes wait (without spinning); once the holder commits they commit
    too, numbered after it: every stream gap-free, nothing lost or doubled."""
    committer = GroupCommitter(pg_store, None)
    held = new_user()
    others = [new_user() for _ in range(40)]
    if known:
        await pg_store.publish("p", [item(held, 0)])
    await holder.execute("BEGIN")
    await publish(holder, held, {"from": "sql"})
    waiting = [asyncio.create_task(committer.publish("p", [item(held, n)])) for n in range(20)]
    started = time.monotonic()
    answers = await asyncio.gather(
        *(committer.publish("p", [item(others[n % 40], n)]) for n in range(400))
    )
    elapsed = time.monotonic() - started
    assert elapsed < timeout(1), elapsed
    assert len(answers) == 400
    assert not any(task.done() for task in waiting)
    # More for the held user while its first are waiting: queued, no busy loop.
    waiting += [asyncio.create_task(committer.publish("p", [item(held, n)])) for n in range(20, 30)]
    cpu = time.process_time()
    assert await blocked(waiting[0], 0.5)
    assert time.process_time() - cpu < 0.2
    await holder.execute("COMMIT")
    async with asyncio.timeout(timeout(5)):
        results = await asyncio.gather(*waiting)
    base = 2 if known else 1
    assert sorted(r[0].notification.seq for r in results) == list(range(base + 1, base + 31))
    assert await seqs(holder, held) == list(range(1, base + 31))
    for user in others:
        assert await seqs(holder, user) == list(range(1, 11))


async def test_a_stream_held_past_the_lock_timeout_answers_busy(
    pg_database: str, holder: asyncpg.Connection
) -> None:
    """With a lock timeout, the held user's publishes fail with StreamBusy (a 503) after
    about that long, storing nothing, and other users' publishes are not held up."""
    engine = db.create_engine(pg_database, lock_timeout_ms=300)
    try:
        store = create_store(engine)
        committer = GroupCommitter(store, None, busy_after=0.3)
        held, free = new_user(), new_user()
        await store.publish("p", [item(held, 0)])
        await holder.execute("BEGIN")
        await publish(holder, held, {"from": "sql"})
        stuck = [asyncio.create_task(committer.publish("p", [item(held, n)])) for n in range(5)]
        started = time.monotonic()
        answers = await asyncio.gather(
            *(committer.publish("p", [item(free, n)]) for n in range(50))
        )
        assert time.monotonic() - started < timeout(1)
        assert sorted(a[0].notification.seq for a in answers) == list(range(1, 51))
        results = await asyncio.gather(*stuck, return_exceptions=True)
        assert all(isinstance(r, StreamBusy) for r in results), results
        assert time.monotonic() - started < timeout(3)
        await holder.execute("ROLLBACK")
        assert await seqs(holder, held) == [1]
        [after] = await committer.publish("p", [item(held, 9)])
        assert after.notification.seq == 2
    finally:
        await engine.dispose()


async def test_the_sqlite_store_never_leaves_a_request(store: Store) -> None:
    """The default (SQLite or PostgreSQL) store: a group with no held user commits whole."""
    user = new_user()
    outcomes = await store.try_publish_group(
        [PublishRequest("p", [item(user, 1)]), PublishRequest("p", [item(user, 2)])]
    )
    assert [o[0].notification.seq for o in outcomes if isinstance(o, list)] == [1, 2]


async def test_a_large_topic_publish_does_not_hold_up_other_users(pg_store: Store) -> None:
    """While a topic publish to 50,000 subscribers runs (its recipients' counters held
    until it commits), direct publishes to users outside the topic, sent among publishes
    to recipients through the same committer, all commit before it does; the recipients'
    commit after or before it, each stream gap-free (the topic's seq and the direct)."""
    topic = f"big-{new_user()}"
    recipients = [f"{topic}-{n:05}" for n in range(50_000)]
    await pg_store.change_subscribers(topic, recipients, [])
    committer = GroupCommitter(pg_store, None)
    started = asyncio.get_running_loop().create_task(
        pg_store.publish_topic(TopicPublish("p", topic, "t", "{}", ""))
    )
    await asyncio.sleep(0.2)  # past its first counters (taken in user order)
    inside = recipients[:1000:50]
    outside = [new_user() for _ in inside]
    direct = [
        asyncio.create_task(committer.publish("p", [item(user, 1)]))
        for pair in zip(inside, outside, strict=True)
        for user in pair
    ]
    outside_done = asyncio.gather(*direct[1::2])
    async with asyncio.timeout(timeout(10)):
        await asyncio.wait({started, outside_done}, return_when=asyncio.FIRST_COMPLETED)
    assert outside_done.done() and not started.done()
    async with asyncio.timeout(timeout(10)):
        published = await started
        await asyncio.gather(*direct)
    assert published.recipients == 50_000
    async with pg_store.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        for user in inside:
            assert await seqs(raw, user) == [1, 2]
        for user in outside:
            assert await seqs(raw, user) == [1]
