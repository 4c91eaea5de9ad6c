"""Gathered head reads against the real databases: every handshake gets its own user's
newest seq, concurrent reads share few queries, a failed query reaches every caller that
waited on it, and a cancelled caller leaves the others alone."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier import db
from notifier.heads import HeadReader
from notifier.store import NewNotification, PublishRequest, Store, create_store
from tests.support import free_port, new_user

WAIT = 5.0  # a bound on every wait: a reader that stalls fails the test instead of hanging


def item(user: str, n: int) -> NewNotification:
    return NewNotification(user_id=user, type="t", data_json=f'{{"n":{n}}}', fingerprint="")


class CountingStore:
    """The real store, recording which users each `heads` query asked for."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def heads(self, user_ids: Sequence[str], chunk: int = 1000) -> dict[str, int]:
        self.calls.append(list(user_ids))
        return await self.store.heads(user_ids, chunk)


class GatedStore(CountingStore):
    """Holds each `heads` query until released, so callers can arrive (or be cancelled)
    while one is in flight; then reads the real database."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def heads(self, user_ids: Sequence[str], chunk: int = 1000) -> dict[str, int]:
        self.entered.set()
        await self.release.wait()
        return await super().heads(user_ids, chunk)


class FailingStore(CountingStore):
    """Its first `failures` queries go to `broken` (a store on a database that is not
    there), later ones to the real database."""

    def __init__(self, store: Store, broken: Store, failures: int) -> None:
        super().__init__(store)
        self.broken = broken
        self.failures = failures

    async def heads(self, user_ids: Sequence[str], chunk: int = 1000) -> dict[str, int]:
        if self.failures > 0:
            self.failures -= 1
            self.calls.append(list(user_ids))
            return await self.broken.heads(user_ids, chunk)
        return await super().heads(user_ids, chunk)


@pytest.fixture
def store(engine: AsyncEngine) -> CountingStore:
    return CountingStore(create_store(engine))


@pytest.fixture
async def dead_store(database_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A store whose database cannot be reached: nothing listens on the PostgreSQL port,
    the SQLite file's folder does not exist."""
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'notifier.db'}"
    else:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/notifier"
    engine = db.create_engine(url)
    yield create_store(engine)
    await engine.dispose()


async def publish_heads(store: Store, heads: dict[str, int]) -> None:
    """Give each user `heads[user]` notifications, all in one transaction."""
    items = [item(user, n) for user, count in heads.items() for n in range(count)]
    if items:
        await store.publish_group([PublishRequest("p", items)])


async def test_head_is_zero_before_the_first_notification_then_the_count(
    store: CountingStore,
) -> None:
    reader = HeadReader(store)
    user = new_user()
    assert await asyncio.wait_for(reader.head(user), WAIT) == 0
    await store.publish("p", [item(user, n) for n in range(3)])
    assert await asyncio.wait_for(reader.head(user), WAIT) == 3
    await store.publish("p", [item(user, 3), item(user, 4)])
    assert await asyncio.wait_for(reader.head(user), WAIT) == 5
    assert await asyncio.wait_for(reader.head(new_user()), WAIT) == 0


async def test_concurrent_heads_are_each_their_own_user_in_few_batched_queries(
    store: CountingStore,
) -> None:
    """300 concurrent reads of 100 users (distinct heads, user 0 has none, every user read
    three times) each get their own user's head, in few queries of at most 50 users."""
    users = [new_user() for _ in range(100)]
    expected = {user: index for index, user in enumerate(users)}  # heads 0..99
    await publish_heads(store, expected)
    requests = users * 3
    random.Random(7).shuffle(requests)
    reader = HeadReader(store, max_batch=50)
    store.calls.clear()

    results = await asyncio.wait_for(
        asyncio.gather(*(reader.head(user) for user in requests)), WAIT
    )

    assert results == [expected[user] for user in requests]
    assert 2 <= len(store.calls) <= 5
    assert all(len(call) <= 50 for call in store.calls)
    asked = [user for call in store.calls for user in call]
    assert sorted(asked) == sorted(users)  # each user once, however often requested


async def test_reads_arriving_during_a_query_share_the_next_one(store: CountingStore) -> None:
    """While one query runs, the reads that arrive wait and then go together in one."""
    gated = GatedStore(store.store)
    first = new_user()
    later = [new_user() for _ in range(40)]
    expected = {first: 2} | {user: index % 4 for index, user in enumerate(later)}
    await publish_heads(gated, expected)
    reader = HeadReader(gated)

    first_read = asyncio.ensure_future(reader.head(first))
    await asyncio.wait_for(gated.entered.wait(), WAIT)
    later_reads = asyncio.gather(*(reader.head(user) for user in later))
    await asyncio.sleep(0.01)
    gated.release.set()

    assert await asyncio.wait_for(first_read, WAIT) == 2
    assert await asyncio.wait_for(later_reads, WAIT) == [expected[u] for u in later]
    assert gated.calls == [[first], later]


async def test_a_failed_query_reaches_every_waiting_caller_and_the_reader_recovers(
    store: CountingStore, dead_store: Store
) -> None:
    """The first query hits a database that is not there: every caller in it (both reads
    of the same user too) gets the error; the next batch of the same run and a read after
    the run both reach the real database."""
    failing = FailingStore(store.store, broken=dead_store, failures=1)
    users = [new_user() for _ in range(4)]
    expected = dict(zip(users, [1, 2, 0, 3], strict=True))
    await publish_heads(failing, expected)
    reader = HeadReader(failing, max_batch=2)

    requests = [users[0], users[1], users[0], users[2], users[3]]
    results = await asyncio.wait_for(
        asyncio.gather(*(reader.head(user) for user in requests), return_exceptions=True),
        WAIT,
    )

    assert failing.calls == [[users[0], users[1]], [users[2], users[3]]]
    failed = results[:3]
    assert all(isinstance(r, Exception) for r in failed), results
    assert len({type(r) for r in failed}) == 1  # the one query's error, for each caller
    assert results[3:] == [0, 3]  # the next batch of the same run was not lost
    # The run that failed has ended; a new read starts a new one and succeeds.
    assert await asyncio.wait_for(reader.head(users[0]), WAIT) == 1
    assert await asyncio.wait_for(reader.head(users[1]), WAIT) == 2


async def test_a_failure_when_every_query_fails_does_not_wedge_the_reader(
    store: CountingStore,
) -> None:
    """A store that raises: all callers see that exception; once it is back, reads work."""

    class Flaky(CountingStore):
        down = True

        async def heads(self, user_ids: Sequence[str], chunk: int = 1000) -> dict[str, int]:
            if self.down:
                raise OSError("database unreachable")
            return await super().heads(user_ids, chunk)

    flaky = Flaky(store.store)
    user = new_user()
    await publish_heads(flaky, {user: 4})
    reader = HeadReader(flaky)
    for _ in range(2):  # twice: a failed run must not leave the reader marked as reading
        results = await asyncio.wait_for(
            asyncio.gather(*(reader.head(user) for _ in range(5)), return_exceptions=True), WAIT
        )
        assert all(isinstance(r, OSError) for r in results), results
    flaky.down = False
    assert await asyncio.wait_for(reader.head(user), WAIT) == 4


async def test_a_cancelled_caller_does_not_break_the_others(
    store: CountingStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Callers cancelled while their query runs (the one that started the reader, one of
    two reading the same user, one alone for its user) change nothing for the others, and
    the reader logs no error and keeps working."""
    gated = GatedStore(store.store)
    users = [new_user() for _ in range(5)]
    expected = dict(zip(users, [3, 1, 4, 1, 5], strict=True))
    await publish_heads(gated, expected)
    reader = HeadReader(gated)
    caplog.set_level(logging.ERROR, logger="asyncio")

    requests = [users[0], users[1], users[1], users[2], users[3], users[4], users[0]]
    tasks = [asyncio.ensure_future(reader.head(user)) for user in requests]
    await asyncio.wait_for(gated.entered.wait(), WAIT)
    cancelled = {0, 2, 4}  # the starter; one of users[1]'s two; users[3], alone
    for index in cancelled:
        tasks[index].cancel()
    await asyncio.sleep(0)
    gated.release.set()

    _, pending = await asyncio.wait(tasks, timeout=WAIT)
    assert not pending
    for index, task in enumerate(tasks):
        if index in cancelled:
            assert task.cancelled()
        else:
            assert task.result() == expected[requests[index]]
    assert len(gated.calls) == 1
    # Still working after the cancellations, for a cancelled user too.
    gated.calls.clear()
    assert await asyncio.wait_for(reader.head(users[3]), WAIT) == 1
    await asyncio.sleep(0)
    gc.collect()  # a reader task that died with an exception logs it when collected
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
