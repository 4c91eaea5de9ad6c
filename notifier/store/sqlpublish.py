"""What the instances tell `notifier_publish()`, the SQL function that publishes from a
backend's own transaction (migration 0003, docs/sql-publish.md).

The function runs in the backend's session, not in an instance, so it cannot read the
instances' environment. `serve` records the `NOTIFIER_MAX_PAYLOAD_BYTES` it runs with in
`sql_publish_settings` at start-up, and the function measures `data` against it (65536,
the default, until an instance has started). With instances running different limits
(during a configuration change), the last one started wins.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("notifier.store")

PUBLISHER = "sql"
"""The publisher of every notification the function stores: its idempotency keys are
its own (`NOTIFIER_API_KEYS` refuses a publisher of that name)."""

_RECORD = sa.text(
    "UPDATE sql_publish_settings SET max_payload_bytes = :limit, updated_at = now() "
    "WHERE max_payload_bytes <> :limit"
)


async def record_settings(engine: AsyncEngine, max_payload_bytes: int) -> None:
    """Tell the function the payload limit this instance runs with (PostgreSQL only).

    A refusal (a role without UPDATE on the table) is logged, not fatal: the instance
    serves HTTP and sockets all the same, and the function keeps the recorded limit."""
    try:
        async with engine.begin() as conn:
            await conn.execute(_RECORD, {"limit": max_payload_bytes})
    except DBAPIError as error:
        if error.connection_invalidated:
            raise
        log.warning(
            "could not record NOTIFIER_MAX_PAYLOAD_BYTES for notifier_publish(); it keeps "
            "the limit recorded before",
            extra={"error": str(error.orig).splitlines()[0][:300]},
        )
