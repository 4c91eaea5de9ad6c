"""The counters' table keeps room on its pages (migration 0004): raising a user's counter,
which every publish does, is a heap-only update, with no new primary key entry."""

from __future__ import annotations

import asyncpg

from tests.e2e.ws_support import asyncpg_dsn
from tests.support import new_user


async def test_raising_counters_is_a_heap_only_update(pg_database: str) -> None:
    """1,000 counters written, then each raised once, in one transaction: every update
    stays on its page (with full pages almost none could)."""
    users = sorted(new_user() for _ in range(1000))
    conn = await asyncpg.connect(asyncpg_dsn(pg_database))
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO streams (user_id, last_seq) SELECT u, 1 FROM unnest($1::text[]) u",
                users,
            )
            await conn.execute(
                "UPDATE streams SET last_seq = last_seq + 1 WHERE user_id = ANY($1::text[])",
                users,
            )
            hot = await conn.fetchval(
                "SELECT pg_stat_get_xact_tuples_hot_updated('streams'::regclass)"
            )
            assert hot >= 990, hot
    finally:
        await conn.close()
