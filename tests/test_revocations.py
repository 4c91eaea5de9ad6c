"""This instance's copy of the revocations (notifier/revocations.py), on a real SQLite
database: when it may be trusted alone, and what it learns from the database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.claims import UserIdentity
from notifier.revocations import Revocations
from notifier.store.users import UserStore
from tests.support import new_user

AT = datetime(2026, 11, 24, 5, 0, 0, 700000, tzinfo=UTC)
CUT = int(AT.timestamp())


def identity(user: str, issued_at: float | None) -> UserIdentity:
    return UserIdentity(user, expires_at=CUT + 3600, issued_at=issued_at)


async def test_cuts_only_move_forward(engine: AsyncEngine) -> None:
    """`apply` answers the new cut when it rose, None otherwise."""
    copy = Revocations(UserStore(engine))
    assert copy.apply("a", 100.7) == 100
    assert copy.apply("a", 50.0) is None
    assert copy.apply("a", 100.9) is None
    assert copy.apply("a", 101.0) == 101
    assert copy.refuses(identity("a", 101.0)) and not copy.refuses(identity("a", 102.0))


async def test_trusted_only_when_loaded_with_the_bus_up(engine: AsyncEngine) -> None:
    """A load while the bus is down merges what it read but leaves the copy incomplete; a
    load with the bus up completes it; a reconnect (`stale`) makes it incomplete again."""
    store = UserStore(engine)
    user = new_user()
    await store.revoke(user, AT)
    up = False
    copy = Revocations(store)
    copy.bind(lambda: up)
    assert (user, CUT) in await copy.load()
    assert copy.refuses(identity(user, CUT)) and not copy.complete and not copy.trusted
    up = True
    await copy.load()
    assert copy.complete and copy.trusted
    copy.stale()
    assert not copy.trusted
    up = False
    await copy.load()
    assert not copy.complete


async def test_confirm_reads_the_database(engine: AsyncEngine) -> None:
    """A revocation the copy never heard of is found by `confirm`, and kept."""
    store = UserStore(engine)
    user = new_user()
    copy = Revocations(store)
    assert await copy.confirm(user) is None
    await store.revoke(user, AT)
    assert not copy.refuses(identity(user, None))
    assert await copy.confirm(user) == CUT
    assert copy.refuses(identity(user, None)) and copy.cut(user) == CUT
    assert await copy.check_users([user]) == []
