"""Revocations and presence in the database (notifier/store/users.py), on PostgreSQL and
SQLite: the revocation in force only moves forward; presence sums live instances only,
re-registers an instance taken for dead, and forgets dead ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.store.users import UserStore
from tests.support import new_user

T0 = datetime(2026, 11, 24, 5, 0, 0, 123456, tzinfo=UTC)


async def test_revoke_keeps_the_latest(engine: AsyncEngine) -> None:
    """A later revocation moves `revoked_at` forward; an earlier one leaves it."""
    store = UserStore(engine)
    user = new_user()
    assert await store.revoke(user, T0) == T0
    later = T0 + timedelta(seconds=5)
    assert await store.revoke(user, later) == later
    assert await store.revoke(user, T0) == later
    assert await store.revocations_of([user, new_user()]) == {user: later}


async def test_all_revocations_reads_every_page(engine: AsyncEngine) -> None:
    """Paging by user id returns every revocation exactly once."""
    store = UserStore(engine)
    users = [new_user() for _ in range(7)]
    for user in users:
        await store.revoke(user, T0)
    found = await store.all_revocations(page=2)
    assert {u: found[u] for u in users} == dict.fromkeys(users, T0)


async def test_presence_sums_live_instances_only(engine: AsyncEngine) -> None:
    """Two live instances add up; an expired one does not count; 0 deletes a row."""
    store = UserStore(engine)
    user, other = new_user(), new_user()
    now = datetime.now(UTC)
    a, b, dead = (f"i-{new_user()}" for _ in range(3))
    await store.flush_presence(a, now + timedelta(seconds=10), {}, lambda: {user: 2})
    await store.flush_presence(b, now + timedelta(seconds=10), {}, lambda: {user: 1, other: 1})
    await store.flush_presence(dead, now - timedelta(seconds=1), {}, lambda: {user: 5})
    assert await store.connections([user, other, new_user()], now) == {user: 3, other: 1}
    await store.flush_presence(b, now + timedelta(seconds=10), {other: 0}, dict)
    assert await store.connections([user, other], now) == {user: 3}


async def test_an_instance_taken_for_dead_writes_everything_again(engine: AsyncEngine) -> None:
    """Once its row is collected, the next flush registers again and writes every count
    (not only the changed ones)."""
    store = UserStore(engine)
    user, other = new_user(), new_user()
    me = f"i-{new_user()}"
    now = datetime.now(UTC)
    await store.flush_presence(me, now - timedelta(seconds=30), {}, lambda: {user: 1, other: 2})
    assert await store.collect_dead(now - timedelta(seconds=10)) >= 1
    assert await store.connections([user, other], now) == {}
    await store.flush_presence(
        me, now + timedelta(seconds=10), {user: 1}, lambda: {user: 1, other: 2}
    )
    assert await store.connections([user, other], now) == {user: 1, other: 2}
    await store.leave_presence(me)
    assert await store.connections([user, other], now) == {}


async def test_presence_of_many_users_in_chunks(engine: AsyncEngine) -> None:
    """More users than one statement or IN list takes, written, changed and zeroed in
    one flush each."""
    store = UserStore(engine)
    users = [new_user() for _ in range(1200)]
    me = f"i-{new_user()}"
    now = datetime.now(UTC)
    counts = {u: 1 + n % 3 for n, u in enumerate(users)}
    await store.flush_presence(me, now + timedelta(seconds=10), {}, lambda: counts)
    assert await store.connections(users, now) == counts
    changed = {u: (0 if n % 2 else 7) for n, u in enumerate(users)}
    await store.flush_presence(me, now + timedelta(seconds=10), changed, dict)
    assert await store.connections(users, now) == {u: 7 for u in users[::2]}
    await store.leave_presence(me)
