"""Planner statistics where autovacuum is off (`notifier.upkeep`): a table of notifier's
that changed enough is analyzed, one that did not is left alone, and the analyze gives
connections that cached a generic plan on an empty table an index look-up again."""

from __future__ import annotations

import asyncpg

from notifier import db, upkeep
from notifier.store.postgres import _FIND_KEYS
from tests.conftest import migrate
from tests.e2e.ws_support import asyncpg_dsn

KEYS = [f"key-{n}" for n in range(0, 40_000, 997)]
EXECUTE = "EXECUTE find_keys('p', ARRAY[" + ",".join(f"'{k}'" for k in KEYS) + "]::varchar[])"


def _plan(rows: list[asyncpg.Record]) -> str:
    return "\n".join(row[0] for row in rows)


def _keys_in_index_condition(plan: str) -> bool:
    """The look-up of `notifications` goes through its index on both columns."""
    lines = plan.splitlines()
    for at, line in enumerate(lines):
        if "on notifications" in line and "Index" in line:
            condition = lines[at + 1]
            return "Index Cond" in condition and "idempotency_key" in condition
    return False


async def test_a_grown_table_is_analyzed_and_keyed_lookups_use_both_columns(
    fresh_pg_database: str,
) -> None:
    migrate(fresh_pg_database)
    engine = db.create_engine(fresh_pg_database)
    conn = await asyncpg.connect(
        asyncpg_dsn(fresh_pg_database), server_settings={"plan_cache_mode": "force_generic_plan"}
    )
    try:
        await conn.execute(f"PREPARE find_keys(varchar, varchar[]) AS {_FIND_KEYS}")
        for _ in range(6):  # planned, and cached, while the table is empty
            await conn.fetch(EXECUTE)
        writer = await asyncpg.connect(asyncpg_dsn(fresh_pg_database))
        try:
            await writer.execute(
                "INSERT INTO notifications (id, user_id, seq, type, data, created_at,"
                " publisher, idempotency_key, fingerprint)"
                " SELECT gen_random_uuid(), 'u' || g, 1, 't', '{}', now(), 'p', 'key-' || g, 'f'"
                " FROM generate_series(1, 40000) g"
            )
        finally:
            await writer.close()  # its statistics are reported when it ends
        await conn.execute("SELECT pg_stat_clear_snapshot()")

        analyzed = await upkeep.analyze_stale(engine)

        assert "notifications" in analyzed
        assert "topic_subscribers" not in analyzed  # unchanged: left alone
        plan = _plan(await conn.fetch("EXPLAIN " + EXECUTE))
        assert _keys_in_index_condition(plan), plan
        assert await upkeep.analyze_stale(engine) == []
    finally:
        await conn.close()
        await engine.dispose()


async def test_autovacuum_setting_is_read(pg_database: str) -> None:
    engine = db.create_engine(pg_database)
    try:
        conn = await asyncpg.connect(asyncpg_dsn(pg_database))
        try:
            expected = await conn.fetchval("SHOW autovacuum") == "on"
        finally:
            await conn.close()
        assert await upkeep.autovacuum_on(engine) is expected
    finally:
        await engine.dispose()
