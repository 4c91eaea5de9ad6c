"""Every read and write of notifications. The one place that knows SQL.

A publish is one transaction: judge idempotency keys, raise each user's stream counter
(locking it, which orders concurrent publishes), insert the rows, let the bus announce
inside the transaction if it can, commit. Nothing is visible or announced before commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.core.idempotency import Verdict, judge
from notifier.core.notification import Notification
from notifier.models import notifications as nt
from notifier.models import streams

Announce = Callable[[Sequence[Notification]], "tuple[str, list[str]] | None"]
"""What to NOTIFY (channel, payloads) inside the transaction that stores these
notifications, so that they are announced exactly at commit (the postgres bus)."""

_COLUMNS = (nt.c.id, nt.c.user_id, nt.c.seq, nt.c.type, nt.c.data, nt.c.created_at, nt.c.read_at)
_RETRIES = 5

# PostgreSQL's hot statements, run on asyncpg directly ($n parameters): fixed texts over
# arrays whatever the number of rows, so each is prepared once per connection.
_ALLOCATE_PG = (
    "INSERT INTO streams (user_id, last_seq) "
    "SELECT * FROM unnest($1::varchar[], $2::bigint[]) "
    "ON CONFLICT (user_id) DO UPDATE SET last_seq = streams.last_seq + EXCLUDED.last_seq "
    "RETURNING user_id, last_seq"
)
_INSERT_COLUMNS = (
    "id",
    "user_id",
    "seq",
    "type",
    "data",
    "created_at",
    "publisher",
    "idempotency_key",
    "fingerprint",
)
_INSERT_PG = (
    "INSERT INTO notifications "
    "(id, user_id, seq, type, data, created_at, publisher, idempotency_key, fingerprint) "
    "SELECT * FROM unnest($1::uuid[], $2::varchar[], $3::bigint[], $4::varchar[], "
    "$5::text[], $6::timestamptz[], $7::varchar[], $8::varchar[], $9::varchar[])"
)
_FIND_KEYS_PG = (
    "SELECT id, user_id, seq, type, data, created_at, read_at, idempotency_key, fingerprint "
    "FROM notifications WHERE publisher = $1 AND idempotency_key = ANY($2::varchar[])"
)
_NOTIFY_PG = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"
_HEADS_PG = "SELECT user_id, last_seq FROM streams WHERE user_id = ANY($1::varchar[])"
# Replay reads frames, not rows: PostgreSQL writes each frame's text (on its own core)
# byte for byte as `Notification.frame` would (tests/test_store_frames.py holds them
# equal), which makes a replay about three times faster than decoding rows and
# serializing them here.
_FRAMES_PG = """SELECT seq, '{"type":"notification","notification":{"id":"' || id::text
    || '","user_id":' || to_json(user_id)::text
    || ',"seq":' || seq::text
    || ',"type":' || to_json(type)::text
    || ',"data":' || data
    || ',"created_at":"' || to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    || '","read_at":' || COALESCE(
        '"' || to_char(read_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"', 'null')
    || '}}'
    FROM notifications WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"""


class IdempotencyConflict(Exception):
    """An Idempotency-Key was reused with another request."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with another request")
        self.key = key


@dataclass(frozen=True, slots=True)
class NewNotification:
    """A validated publish request item."""

    user_id: str
    type: str
    data_json: str
    fingerprint: str
    """What the idempotency key stands for; empty without a key (never compared)."""
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """One publish call (a single notification or a batch): atomic on its own."""

    publisher: str
    items: Sequence[NewNotification]


@dataclass(frozen=True, slots=True)
class Published:
    notification: Notification
    created: bool
    """False when an idempotency key answered with the original."""


Outcome = list[Published] | IdempotencyConflict


# How one item is answered: None, stored as new; a Notification, an original already
# stored; (request index, item index), the same as an earlier new item of this group.
_Resolution = Notification | tuple[int, int] | None
# (publisher, key) -> (fingerprint, request index, item index) of the new item claiming it
_Claims = dict[tuple[str, str], tuple[str, int, int]]


def _plan(
    r_index: int,
    request: PublishRequest,
    stored: dict[tuple[str, str], tuple[str, Notification]],
    claimed: _Claims,
) -> list[_Resolution] | IdempotencyConflict:
    """Resolve each item of one request against stored keys and keys claimed earlier in
    the group or in this request. Only a request without conflict adds its keys to
    `claimed`, so a refused request never shadows a later one."""
    plan: list[_Resolution] = []
    own: _Claims = {}
    for i_index, item in enumerate(request.items):
        key = item.idempotency_key
        if key is None:
            plan.append(None)
            continue
        scoped = (request.publisher, key)
        if scoped in stored:
            fingerprint, original = stored[scoped]
            if judge(fingerprint, item.fingerprint) is Verdict.CONFLICT:
                return IdempotencyConflict(key)
            plan.append(original)
            continue
        earlier = own.get(scoped) or claimed.get(scoped)
        if earlier is not None:
            fingerprint, e_request, e_item = earlier
            if judge(fingerprint, item.fingerprint) is Verdict.CONFLICT:
                return IdempotencyConflict(key)
            plan.append((e_request, e_item))
            continue
        own[scoped] = (item.fingerprint, r_index, i_index)
        plan.append(None)
    claimed.update(own)
    return plan


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _new_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs from one read of the OS's random source:
    `uuid.uuid4()` reads it once per id, a system call per notification."""
    raw = os.urandom(16 * count)
    return [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, 16 * count, 16)]


def _row_to_notification(row: Mapping[Any, Any]) -> Notification:
    """A notifications row: a SQLAlchemy row's `_mapping` or an asyncpg record."""
    created = _utc(row["created_at"])
    assert created is not None
    return Notification(
        id=str(row["id"]),
        user_id=row["user_id"],
        seq=row["seq"],
        type=row["type"],
        data_json=row["data"],
        created_at=created,
        read_at=_utc(row["read_at"]),
    )


def _is_retryable(error: Exception) -> bool:
    """Deadlock, serialization failure, or a concurrent insert of the same key."""
    if isinstance(error, IntegrityError):
        return True
    origin = error.orig if isinstance(error, DBAPIError) else error
    code = getattr(origin, "sqlstate", None) or getattr(origin, "pgcode", None)
    return isinstance(code, str) and (code in {"40001", "40P01"} or code.startswith("23"))


class DatabaseUnavailable(ConnectionError):
    """The database connection failed during a publish; nothing was committed."""


# Errors of the connection, not of the statement: the connection is dropped, the
# request gets a 503 (an OSError) and is retried by its publisher.
_CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # 57P01 admin shutdown and the like
    asyncpg.exceptions.InternalClientError,  # a terminated connection's protocol state
)


class _Tx(Protocol):
    """The writes of a publish, inside its transaction."""

    async def find_keys(self, publisher: str, keys: list[str]) -> list[Mapping[Any, Any]]:
        """Stored rows (with idempotency_key, fingerprint) of these keys."""

    async def allocate(self, users: list[str], counts: list[int]) -> list[tuple[str, int]]:
        """Raise each user's counter by its count: (user, new last seq)."""

    async def insert(self, rows: list[dict[str, Any]]) -> None: ...

    async def notify(self, channel: str, payloads: list[str]) -> None: ...


class _SqlTx:
    """SQLite, through SQLAlchemy."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def find_keys(self, publisher: str, keys: list[str]) -> list[Mapping[Any, Any]]:
        query = sa.select(*_COLUMNS, nt.c.idempotency_key, nt.c.fingerprint).where(
            nt.c.publisher == publisher, nt.c.idempotency_key.in_(keys)
        )
        return [row._mapping for row in await self._conn.execute(query)]

    async def allocate(self, users: list[str], counts: list[int]) -> list[tuple[str, int]]:
        values = [{"user_id": u, "last_seq": c} for u, c in zip(users, counts, strict=True)]
        insert = sqlite.insert(streams).values(values)
        statement = insert.on_conflict_do_update(
            index_elements=[streams.c.user_id],
            set_={"last_seq": streams.c.last_seq + insert.excluded.last_seq},
        ).returning(streams.c.user_id, streams.c.last_seq)
        return [(row.user_id, row.last_seq) for row in await self._conn.execute(statement)]

    async def insert(self, rows: list[dict[str, Any]]) -> None:
        await self._conn.execute(nt.insert(), rows)

    async def notify(self, channel: str, payloads: list[str]) -> None:
        raise RuntimeError("NOTIFY needs PostgreSQL")


class _PgTx:
    """PostgreSQL, on asyncpg directly: fixed statements over arrays, prepared once per
    connection (asyncpg's statement cache), whatever the number of rows."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def find_keys(self, publisher: str, keys: list[str]) -> list[Mapping[Any, Any]]:
        rows: list[Mapping[Any, Any]] = await self._conn.fetch(_FIND_KEYS_PG, publisher, keys)
        return rows

    async def allocate(self, users: list[str], counts: list[int]) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in await self._conn.fetch(_ALLOCATE_PG, users, counts)]

    async def insert(self, rows: list[dict[str, Any]]) -> None:
        await self._conn.execute(
            _INSERT_PG, *([row[column] for row in rows] for column in _INSERT_COLUMNS)
        )

    async def notify(self, channel: str, payloads: list[str]) -> None:
        await self._conn.execute(_NOTIFY_PG, channel, payloads)


async def _stored_originals(
    tx: _Tx, requests: Sequence[PublishRequest]
) -> dict[tuple[str, str], tuple[str, Notification]]:
    """The notifications already stored under the idempotency keys of `requests`."""
    keys: dict[str, set[str]] = {}
    for request in requests:
        for item in request.items:
            if item.idempotency_key is not None:
                keys.setdefault(request.publisher, set()).add(item.idempotency_key)
    stored: dict[tuple[str, str], tuple[str, Notification]] = {}
    for publisher, publisher_keys in keys.items():
        for row in await tx.find_keys(publisher, sorted(publisher_keys)):
            stored[(publisher, row["idempotency_key"])] = (
                row["fingerprint"],
                _row_to_notification(row),
            )
    return stored


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Reads need no transaction: without one a SELECT is one round trip, not
        # BEGIN, SELECT, ROLLBACK.
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._postgres = engine.dialect.name == "postgresql"

    # -- publishing -----------------------------------------------------------------

    async def publish(
        self,
        publisher: str,
        items: Sequence[NewNotification],
        before_commit: Announce | None = None,
    ) -> list[Published]:
        """Store `items` atomically; results in request order. Raises
        IdempotencyConflict, having stored nothing."""
        [outcome] = await self.publish_group([PublishRequest(publisher, items)], before_commit)
        if isinstance(outcome, IdempotencyConflict):
            raise outcome
        return outcome

    async def publish_group(
        self, requests: Sequence[PublishRequest], before_commit: Announce | None = None
    ) -> list[Outcome]:
        """Store several independent requests in one transaction (group commit).

        Each request is all or nothing on its own: one whose idempotency key conflicts
        gets its IdempotencyConflict as its outcome and stores nothing, while the others
        commit. Retries on a deadlock or on losing a race to insert the same key (the
        retry then finds the original and answers it).
        """
        for attempt in range(_RETRIES):
            try:
                if self._postgres:
                    return await self._publish_group_pg(requests, before_commit)
                async with self.engine.begin() as conn:
                    return await self._publish_group(_SqlTx(conn), requests, before_commit)
            except (DBAPIError, asyncpg.PostgresError) as error:
                if attempt == _RETRIES - 1 or not _is_retryable(error):
                    raise
        raise AssertionError("unreachable")

    async def _publish_group_pg(
        self, requests: Sequence[PublishRequest], before_commit: Announce | None
    ) -> list[Outcome]:
        """The transaction on asyncpg itself: SQLAlchemy's layers cost about as much CPU
        as the four statements (960 against 445 µs a transaction, measured), and a
        publish is the hot path."""
        async with self._asyncpg() as raw, raw.transaction():
            return await self._publish_group(_PgTx(raw), requests, before_commit)

    @contextlib.asynccontextmanager
    async def _asyncpg(self) -> AsyncIterator[Any]:
        """The asyncpg connection of a connection of the engine's pool. A failure of the
        connection (not of a statement) drops it from the pool and is raised as
        DatabaseUnavailable (an OSError: the API answers 503)."""
        async with self.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            try:
                yield raw
            except _CONNECTION_ERRORS as error:
                await conn.invalidate()  # never back to the pool
                raise DatabaseUnavailable(repr(error)) from error

    async def _publish_group(
        self,
        tx: _Tx,
        requests: Sequence[PublishRequest],
        before_commit: Announce | None,
    ) -> list[Outcome]:
        stored = await _stored_originals(tx, requests)
        claimed: _Claims = {}
        plans = [_plan(r, request, stored, claimed) for r, request in enumerate(requests)]
        fresh = [
            (r_index, i_index)
            for r_index, plan in enumerate(plans)
            if not isinstance(plan, IdempotencyConflict)
            for i_index, resolution in enumerate(plan)
            if resolution is None
        ]
        created: dict[tuple[int, int], Notification] = {}
        if fresh:
            now = datetime.now(UTC)
            per_user: dict[str, int] = {}
            for r_index, i_index in fresh:
                user = requests[r_index].items[i_index].user_id
                per_user[user] = per_user.get(user, 0) + 1
            ordered = sorted(per_user.items())  # locked in sorted order: no deadlocks
            heads = await tx.allocate([u for u, _ in ordered], [c for _, c in ordered])
            next_seq = {user: head - per_user[user] + 1 for user, head in heads}
            rows: list[dict[str, Any]] = []
            ids = iter(_new_ids(len(fresh)))
            for r_index, i_index in fresh:
                publisher = requests[r_index].publisher
                item = requests[r_index].items[i_index]
                seq = next_seq[item.user_id]
                next_seq[item.user_id] = seq + 1
                notification = Notification(
                    id=next(ids),
                    user_id=item.user_id,
                    seq=seq,
                    type=item.type,
                    data_json=item.data_json,
                    created_at=now,
                )
                created[(r_index, i_index)] = notification
                rows.append(
                    {
                        "id": notification.id,
                        "user_id": item.user_id,
                        "seq": seq,
                        "type": item.type,
                        "data": item.data_json,
                        "created_at": now,
                        "publisher": publisher,
                        "idempotency_key": item.idempotency_key,
                        "fingerprint": item.fingerprint or None,
                    }
                )
            await tx.insert(rows)
            announcement = before_commit(list(created.values())) if before_commit else None
            if announcement is not None:
                await tx.notify(*announcement)

        outcomes: list[Outcome] = []
        for r_index, plan in enumerate(plans):
            if isinstance(plan, IdempotencyConflict):
                outcomes.append(plan)
                continue
            results: list[Published] = []
            for i_index, resolution in enumerate(plan):
                if resolution is None:
                    results.append(Published(created[(r_index, i_index)], created=True))
                elif isinstance(resolution, Notification):
                    results.append(Published(resolution, created=False))
                else:
                    results.append(Published(created[resolution], created=False))
            outcomes.append(results)
        return outcomes

    # -- reading --------------------------------------------------------------------

    async def after(self, user_id: str, after: int, limit: int) -> list[Notification]:
        """The user's notifications with seq > `after`, ascending: replay and gap fill."""
        query = (
            sa.select(*_COLUMNS)
            .where(nt.c.user_id == user_id, nt.c.seq > after)
            .order_by(nt.c.seq)
            .limit(limit)
        )
        async with self._reader.connect() as conn:
            return [_row_to_notification(row._mapping) for row in await conn.execute(query)]

    async def frames_after(self, user_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        """(seq, frame text) of the user's notifications with seq > `after`, ascending:
        what replay and gap fill send."""
        if not self._postgres:
            return [(n.seq, n.frame) for n in await self.after(user_id, after, limit)]
        rows = await self._fetch_pg(_FRAMES_PG, user_id, after, limit)
        return [(seq, frame) for seq, frame in rows]

    async def inbox(
        self,
        user_id: str,
        *,
        after: int | None,
        before: int | None,
        limit: int,
        unread: bool,
    ) -> list[Notification]:
        """A page of the inbox: ascending from `after`, else descending (below `before`)."""
        query = sa.select(*_COLUMNS).where(nt.c.user_id == user_id)
        if unread:
            query = query.where(nt.c.read_at.is_(None))
        if after is not None:
            query = query.where(nt.c.seq > after).order_by(nt.c.seq)
        else:
            if before is not None:
                query = query.where(nt.c.seq < before)
            query = query.order_by(nt.c.seq.desc())
        async with self._reader.connect() as conn:
            rows = await conn.execute(query.limit(limit))
            return [_row_to_notification(row._mapping) for row in rows]

    async def unread_count(self, user_id: str) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(nt)
            .where(nt.c.user_id == user_id, nt.c.read_at.is_(None))
        )
        async with self._reader.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def head(self, user_id: str) -> int:
        """The user's newest seq (0 before the first notification)."""
        query = sa.select(streams.c.last_seq).where(streams.c.user_id == user_id)
        async with self._reader.connect() as conn:
            return int((await conn.execute(query)).scalar_one_or_none() or 0)

    async def heads(self, user_ids: Sequence[str], chunk: int = 1000) -> dict[str, int]:
        """The newest seq of each of `user_ids` that has one."""
        found: dict[str, int] = {}
        for start in range(0, len(user_ids), chunk):
            part = list(user_ids[start : start + chunk])
            if self._postgres:  # one statement for any count: prepared once
                found.update(await self._fetch_pg(_HEADS_PG, part))
                continue
            query = sa.select(streams.c.user_id, streams.c.last_seq).where(
                streams.c.user_id.in_(part)
            )
            async with self._reader.connect() as conn:
                found.update({row.user_id: row.last_seq for row in await conn.execute(query)})
        return found

    async def _fetch_pg(self, query: str, *args: Any) -> list[Any]:
        """A read on asyncpg directly (no transaction: one round trip), for the hot
        reads: handshakes' heads and replay."""
        async with self._asyncpg() as raw:
            rows: list[Any] = await raw.fetch(query, *args)
            return rows

    async def ping(self) -> None:
        async with self._reader.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # -- read state -----------------------------------------------------------------

    async def mark_read_up_to(self, user_id: str, up_to_seq: int) -> int:
        statement = (
            sa.update(nt)
            .where(nt.c.user_id == user_id, nt.c.seq <= up_to_seq, nt.c.read_at.is_(None))
            .values(read_at=datetime.now(UTC))
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(statement)).rowcount

    async def mark_read_ids(self, user_id: str, ids: Sequence[str]) -> list[str]:
        """Mark the user's own notifications among `ids`; the ids that changed."""
        if not ids:
            return []
        statement = (
            sa.update(nt)
            .where(nt.c.user_id == user_id, nt.c.id.in_(list(ids)), nt.c.read_at.is_(None))
            .values(read_at=datetime.now(UTC))
            .returning(nt.c.id)
        )
        async with self.engine.begin() as conn:
            return [str(row.id) for row in await conn.execute(statement)]

    # -- retention ------------------------------------------------------------------

    async def purge_older_than(self, cutoff: datetime, batch: int = 5000) -> int:
        """Delete notifications created before `cutoff`, oldest first, in small batches
        so that publishes are never blocked for long. Returns how many went."""
        total = 0
        while True:
            oldest = (
                sa.select(nt.c.user_id, nt.c.seq)
                .where(nt.c.created_at < cutoff)
                .order_by(nt.c.created_at)
                .limit(batch)
            )
            async with self.engine.begin() as conn:
                keys = [(row.user_id, row.seq) for row in await conn.execute(oldest)]
                if not keys:
                    return total
                await conn.execute(sa.delete(nt).where(sa.tuple_(nt.c.user_id, nt.c.seq).in_(keys)))
            total += len(keys)
