"""Users' state beside their notifications: revocations and presence, on either engine.

Written once on SQLAlchemy Core for PostgreSQL and SQLite (the upserts differ only in
the dialect's `insert`). Neither is on a hot path: a revocation is rare, revocations are
read at start-up and after a bus outage, and presence is written by one coalesced flush a
second per instance (`notifier.presence`), never per connect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.models import presence, presence_instances, revocations

_NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)")
_CHUNK = 300
"""Values per IN list on SQLite: under its 999 parameters of old."""
_PG_UPSERT = sa.text(
    "INSERT INTO presence (instance_id, user_id, connections)"
    " SELECT :instance, u, c FROM unnest(CAST(:users AS text[]), CAST(:counts AS integer[]))"
    " AS changed(u, c)"
    " ON CONFLICT (instance_id, user_id) DO UPDATE SET connections = EXCLUDED.connections"
)
_PG_DELETE = sa.text(
    "DELETE FROM presence WHERE instance_id = :instance AND user_id = ANY(CAST(:users AS text[]))"
)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class UserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        on_postgres = engine.dialect.name == "postgresql"
        self._on_postgres = on_postgres
        self._insert: Any = postgresql.insert if on_postgres else sqlite.insert
        # A bulk presence read of 1,000 users is one query on PostgreSQL.
        self._read_chunk = 1000 if on_postgres else _CHUNK
        upsert = sqlite.insert(presence)
        self._sqlite_upsert = upsert.on_conflict_do_update(
            index_elements=[presence.c.instance_id, presence.c.user_id],
            set_={"connections": upsert.excluded.connections},
        )

    def _among(self, column: sa.Column[str], values: Sequence[str]) -> sa.ColumnElement[bool]:
        """`column` is one of `values`: `= ANY($1)` with one array parameter on
        PostgreSQL (one statement text whatever the count: prepared once), `IN (...)` on
        SQLite."""
        if self._on_postgres:
            ids = sa.bindparam("ids", list(values), type_=postgresql.ARRAY(sa.String()))
            return column == sa.any_(ids)
        return column.in_(list(values))

    # -- revocations ----------------------------------------------------------------

    async def revoke(
        self, user_id: str, at: datetime, announce: tuple[str, str] | None = None
    ) -> datetime:
        """Record that `user_id`'s tokens up to `at` are revoked; the revocation in force
        (a later one recorded before stays). `announce` (channel, payload) is NOTIFYed in
        the same transaction (PostgreSQL): it leaves exactly at commit."""
        upsert = self._insert(revocations).values(user_id=user_id, revoked_at=at)
        statement = upsert.on_conflict_do_update(
            index_elements=[revocations.c.user_id],
            set_={
                "revoked_at": sa.case(
                    (
                        upsert.excluded.revoked_at > revocations.c.revoked_at,
                        upsert.excluded.revoked_at,
                    ),
                    else_=revocations.c.revoked_at,
                )
            },
        ).returning(revocations.c.revoked_at)
        async with self.engine.begin() as conn:
            stored = (await conn.execute(statement)).scalar_one()
            if announce is not None:
                await conn.execute(_NOTIFY, {"channel": announce[0], "payload": announce[1]})
        return _utc(stored)

    async def revocations_of(self, user_ids: Sequence[str]) -> dict[str, datetime]:
        """The revocation of each of `user_ids` that has one."""
        found: dict[str, datetime] = {}
        step = self._read_chunk
        for start in range(0, len(user_ids), step):
            query = sa.select(revocations.c.user_id, revocations.c.revoked_at).where(
                self._among(revocations.c.user_id, user_ids[start : start + step])
            )
            async with self._reader.connect() as conn:
                found.update(
                    {row.user_id: _utc(row.revoked_at) for row in await conn.execute(query)}
                )
        return found

    async def all_revocations(self, page: int = 10_000) -> dict[str, datetime]:
        """Every revocation, read in pages by user id (no long-running read)."""
        found: dict[str, datetime] = {}
        last: str | None = None
        while True:
            query = sa.select(revocations.c.user_id, revocations.c.revoked_at)
            if last is not None:
                query = query.where(revocations.c.user_id > last)
            query = query.order_by(revocations.c.user_id).limit(page)
            async with self._reader.connect() as conn:
                rows = (await conn.execute(query)).all()
            found.update({row.user_id: _utc(row.revoked_at) for row in rows})
            if len(rows) < page:
                return found
            last = rows[-1].user_id

    # -- presence -------------------------------------------------------------------

    async def flush_presence(
        self,
        instance_id: str,
        expires_at: datetime,
        changed: Mapping[str, int],
        everything: Callable[[], Mapping[str, int]],
    ) -> None:
        """One transaction: extend the instance's heartbeat to `expires_at` and write the
        `changed` counts (0 deletes the row). An instance whose row is gone (its first
        flush, or it was taken for dead and collected) registers again and writes
        `everything()` instead, replacing whatever it had."""
        me = presence_instances.c.instance_id == instance_id
        async with self.engine.begin() as conn:
            beat = await conn.execute(
                sa.update(presence_instances).where(me).values(expires_at=expires_at)
            )
            if beat.rowcount == 0:
                await conn.execute(
                    sa.insert(presence_instances).values(
                        instance_id=instance_id, expires_at=expires_at
                    )
                )
                await conn.execute(sa.delete(presence).where(presence.c.instance_id == instance_id))
                changed = {user: n for user, n in everything().items() if n > 0}
            await self._write_counts(conn, instance_id, changed)

    async def _write_counts(
        self, conn: AsyncConnection, instance_id: str, counts: Mapping[str, int]
    ) -> None:
        """Upsert the held counts and delete the zeros, each in statements whose text
        does not depend on how many users changed: compiled once, then cached.

        A multi-row VALUES list is compiled afresh for each size, about 60 µs of CPU a
        row: 3,000 connects a second cost 200 ms of event loop, felt as handshake latency.
        On PostgreSQL each part is one statement over two arrays (`unnest`); on SQLite an
        executemany of the one-row statement.
        """
        held = [(user, n) for user, n in counts.items() if n > 0]
        gone = [user for user, n in counts.items() if n <= 0]
        if self._on_postgres:
            if held:
                users, numbers = zip(*held, strict=True)
                await conn.execute(
                    _PG_UPSERT,
                    {"instance": instance_id, "users": list(users), "counts": list(numbers)},
                )
            if gone:
                await conn.execute(_PG_DELETE, {"instance": instance_id, "users": gone})
            return
        if held:
            await conn.execute(
                self._sqlite_upsert,
                [{"instance_id": instance_id, "user_id": u, "connections": n} for u, n in held],
            )
        if gone:
            await conn.execute(
                sa.delete(presence).where(
                    presence.c.instance_id == sa.bindparam("instance"),
                    presence.c.user_id == sa.bindparam("user"),
                ),
                [{"instance": instance_id, "user": user} for user in gone],
            )

    async def leave_presence(self, instance_id: str) -> None:
        """The instance shuts down: its streams stop counting at once."""
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(presence).where(presence.c.instance_id == instance_id))
            await conn.execute(
                sa.delete(presence_instances).where(presence_instances.c.instance_id == instance_id)
            )

    async def collect_dead(self, before: datetime) -> int:
        """Forget instances whose heartbeat expired before `before` (killed, or cut off),
        with their counts; how many. Every instance runs it now and then; it is
        idempotent."""
        dead = sa.select(presence_instances.c.instance_id).where(
            presence_instances.c.expires_at < before
        )
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(presence).where(presence.c.instance_id.in_(dead)))
            result = await conn.execute(
                sa.delete(presence_instances).where(presence_instances.c.expires_at < before)
            )
            return result.rowcount

    async def connections(self, user_ids: Sequence[str], now: datetime) -> dict[str, int]:
        """Each user's open streams over every instance whose heartbeat is alive at `now`;
        users with none are left out."""
        found: dict[str, int] = {}
        alive = presence_instances.c.expires_at > now
        step = self._read_chunk
        for start in range(0, len(user_ids), step):
            query = (
                sa.select(presence.c.user_id, sa.func.sum(presence.c.connections))
                .join(
                    presence_instances,
                    presence_instances.c.instance_id == presence.c.instance_id,
                )
                .where(self._among(presence.c.user_id, user_ids[start : start + step]), alive)
                .group_by(presence.c.user_id)
            )
            async with self._reader.connect() as conn:
                found.update({user: int(n) for user, n in await conn.execute(query)})
        return found
