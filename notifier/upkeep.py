"""Planner statistics kept fresh where PostgreSQL's autovacuum is off.

Every hot statement here runs as a prepared statement with a generic plan
(`plan_cache_mode=force_generic_plan`, see `db.create_engine`), planned once per pooled
connection from the statistics of the moment. Autovacuum's ANALYZE refreshes those
statistics as tables grow and invalidates the cached plans. With autovacuum off, a plan
made while `notifications` was empty stays for the connection's life: the idempotency-key
look-up of every keyed publish became a scan of the publisher's rows, 1.1 s for 1,000
keys at 50,000 rows (bench.soak found it; a fresh plan takes 9 ms, one after ANALYZE
0.04 ms). The key look-ups are now written so that every plan probes the index
(`store.postgres._FIND_KEYS`), but the other statements' plans still follow the
statistics. So where autovacuum is off, each instance does what it would have done:
ANALYZE a table of notifier's once the rows changed since its last ANALYZE pass
autovacuum's default threshold (50 + 10% of its rows). Several instances doing it at
once is harmless (one waits for the other).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("notifier.upkeep")

INTERVAL_SECONDS = 30.0
TABLES = ("notifications", "streams", "topic_subscribers", "topic_publishes")
THRESHOLD_ROWS = 50
SCALE_FACTOR = 0.1

_STALE = sa.text(
    "SELECT relname FROM pg_stat_user_tables"
    " WHERE schemaname = current_schema() AND relname = ANY(:tables)"
    " AND n_mod_since_analyze > :threshold + :scale * n_live_tup"
)


async def autovacuum_on(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return bool((await conn.execute(sa.text("SHOW autovacuum"))).scalar_one() == "on")


async def analyze_stale(engine: AsyncEngine) -> list[str]:
    """ANALYZE each of notifier's tables changed enough since its last ANALYZE; which."""
    reader = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with reader.connect() as conn:
        stale = [
            row[0]
            for row in await conn.execute(
                _STALE,
                {"tables": list(TABLES), "threshold": THRESHOLD_ROWS, "scale": SCALE_FACTOR},
            )
        ]
        for table in stale:  # names from TABLES only: never user input
            await conn.execute(sa.text(f'ANALYZE "{table}"'))
    if stale:
        log.info("analyzed tables (autovacuum is off)", extra={"tables": stale})
    return stale
