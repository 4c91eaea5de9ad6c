"""A lane's short lock wait is for the users' counters, not for its commit (PostgreSQL).

A commit that NOTIFYs takes PostgreSQL's one lock for the notification queue and holds it
through its WAL flush, so notifying commits wait for each other. A flush slowed for longer
than the lane's wait (a busy disk, a checkpoint) must delay the publishes queued behind
it, not fail them: they failed with "lock timeout", were taken for held streams, and some
were answered 503."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from notifier.bus.postgres import asyncpg_dsn
from notifier.store import NewNotification, PublishRequest, Store
from notifier.wire.announcement import TransactionNotify
from tests.store.conftest import Listener
from tests.support import new_user


async def slow_notifying_transaction(dsn: str) -> asyncpg.Connection:
    """A connection in a transaction that wrote and NOTIFYed, whose commit will flush its
    WAL 100 ms late (`commit_delay`), holding the notification queue's lock meanwhile."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("SET commit_delay = 100000")  # µs, the most PostgreSQL allows
    await conn.execute("SET commit_siblings = 0")
    await conn.execute("BEGIN")
    await conn.execute(f"CREATE TEMP TABLE w_{uuid.uuid4().hex} (x int)")  # a write
    await conn.execute("SELECT pg_notify('elsewhere', 'x')")
    return conn


async def test_a_lane_publish_waits_for_slow_notifying_commits_instead_of_failing(
    pg_store: Store, pg_database: str, listener: Listener
) -> None:
    dsn = asyncpg_dsn(pg_database)
    user = new_user()
    await pg_store.publish("p", [NewNotification(user, "t", "{}", "")])  # its counter exists
    slow = [await slow_notifying_transaction(dsn) for _ in range(2)]
    try:
        # Both commits at once: one holds the lock for about 100 ms, then the other.
        commits = [asyncio.ensure_future(conn.execute("COMMIT")) for conn in slow]
        await asyncio.sleep(0.02)
        started = time.monotonic()
        notify = TransactionNotify(listener.channel, "origin")
        [outcome] = await pg_store.try_publish_group(
            [PublishRequest("p", [NewNotification(user, "t", '{"n":2}', "")])], notify
        )
        waited = time.monotonic() - started
        await asyncio.gather(*commits)
    finally:
        for conn in slow:
            await conn.close()

    assert isinstance(outcome, list) and outcome[0].notification.seq == 2
    assert waited > 0.1  # it did wait behind the slow commits, past the lane's 100 ms
    [announced] = await listener.announcements(1)
    assert announced.seq == 2
