"""The PostgreSQL store's hot paths take the pool's connections directly
(`PostgresStore._asyncpg`); a burst that opens connections beyond the pool's size hands
them back closed, not dropped open."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest

from notifier import db
from notifier.bus.postgres import asyncpg_dsn
from notifier.store import DatabaseUnavailable, create_store
from notifier.store.postgres import PostgresStore


async def test_overflow_connections_are_closed_when_handed_back(
    fresh_pg_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """25 reads at once on a pool of 20 (+10 overflow): every connection beyond the 20
    is closed by the pool as it comes back, with no "Exception closing connection" in
    the log, and the database (one of its own) sees at most the pool's 20 afterwards."""
    pg_database = fresh_pg_database
    caplog.set_level(logging.WARNING)
    engine = db.create_engine(pg_database)
    store = create_store(engine)
    assert isinstance(store, PostgresStore)
    admin = await asyncpg.connect(asyncpg_dsn(pg_database))
    try:
        start = asyncio.Event()

        async def hold() -> None:
            async with store._asyncpg() as raw:
                await start.wait()
                await raw.fetchval("SELECT 1")

        tasks = [asyncio.create_task(hold()) for _ in range(25)]
        while engine.pool.checkedout() < 25:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
        start.set()
        await asyncio.gather(*tasks)
        open_now = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        assert open_now <= 20
        assert not [r for r in caplog.records if "closing connection" in r.getMessage()]
    finally:
        await admin.close()
        await engine.dispose()


async def test_a_connection_that_cannot_be_had_is_database_unavailable(pg_database: str) -> None:
    """The server refusing a new connection with an error of its own (here: no such
    database; in a restart, "the database system is shutting down") is the database being
    unavailable (a 503 to the publisher, a retry to the socket), not an internal error."""
    missing = pg_database.rsplit("/", 1)[0] + "/notifier_no_such_database"
    engine = db.create_engine(missing)
    try:
        store = create_store(engine)
        with pytest.raises(DatabaseUnavailable):
            await store.heads(["u"])
    finally:
        await engine.dispose()
