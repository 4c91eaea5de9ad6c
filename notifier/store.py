"""Every read and write of notifications. The one place that knows SQL.

A publish is one transaction: judge idempotency keys, raise each user's stream counter
(locking it, which orders concurrent publishes), insert the rows, let the bus announce
inside the transaction if it can, commit. Nothing is visible or announced before commit.
On PostgreSQL all of it but the key lookup is a single statement (`_PUBLISH_PG`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from notifier.bus.base import Announcement, TransactionNotify
from notifier.core.idempotency import Verdict, judge
from notifier.core.notification import Notification, frame_around_seq
from notifier.models import notifications as nt
from notifier.models import streams

_COLUMNS = (nt.c.id, nt.c.user_id, nt.c.seq, nt.c.type, nt.c.data, nt.c.created_at, nt.c.read_at)
_RETRIES = 5

# PostgreSQL's hot statements, run on asyncpg directly ($n parameters): fixed texts over
# arrays whatever the number of rows, so each is prepared once per connection.
#
# A publish is one statement, run outside an explicit transaction (PostgreSQL commits it
# on its own): it raises the users' counters, which locks their rows in user order,
# numbers and inserts the notifications and, with the postgres bus, NOTIFYs them. The
# row locks are held only while PostgreSQL works: no round trip, and no wait for this
# process's event loop, falls between taking them and the commit. With BEGIN, four
# statements and COMMIT, each await under the locks queued behind whatever the loop was
# doing (a fan-out of thousands of frames), and concurrent groups for the same users
# waited that long too. Everything but the seqs is computed before, in Python.
#
# With the postgres bus ($13, the channel, is set) the statement also announces: each
# announcement is joined from its `Announcement.around_seq` pieces ($9..$11), or, over
# `room` bytes ($15), sent without its frame ($12 ends it). Announcements are cut into
# runs in order, a run ending with the first announcement whose end passes a multiple of
# `room`: each run is one payload of less than 2 * room bytes after the head ($14), under
# PostgreSQL's 8000-byte limit (see `TransactionNotify`).
_PUBLISH_PG = """WITH item AS (
    SELECT * FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::text[],
                         $5::varchar[], $6::varchar[], $7::varchar[],
                         $9::text[], $10::text[], $11::text[])
        WITH ORDINALITY AS t(id, user_id, type, data, publisher, idempotency_key,
                             fingerprint, first, middle, last, ord)
), wanted AS (
    SELECT user_id, count(*) AS n FROM item GROUP BY user_id
), allocated AS (
    INSERT INTO streams (user_id, last_seq) SELECT user_id, n FROM wanted ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE SET last_seq = streams.last_seq + EXCLUDED.last_seq
    RETURNING user_id, last_seq
), numbered AS (
    SELECT item.*, allocated.last_seq - wanted.n
        + row_number() OVER (PARTITION BY item.user_id ORDER BY item.ord) AS seq
    FROM item JOIN wanted USING (user_id) JOIN allocated USING (user_id)
), stored AS (
    INSERT INTO notifications
        (id, user_id, seq, type, data, created_at, publisher, idempotency_key, fingerprint)
    SELECT id, user_id, seq, type, data, $8, publisher, idempotency_key, fingerprint
    FROM numbered
), announcement AS (
    SELECT ord, CASE WHEN octet_length(whole) <= $15 THEN whole ELSE bare END AS body
    FROM (
        SELECT ord, first || seq || middle || seq || last AS whole, first || seq || $12 AS bare
        FROM numbered WHERE $13::text IS NOT NULL
    ) a
), sent AS (
    SELECT pg_notify($13, $14 || payload || ']}')
    FROM (
        SELECT run, string_agg(body, ',' ORDER BY ord) AS payload
        FROM (
            SELECT ord, body, (sum(octet_length(body) + 1) OVER (ORDER BY ord) - 1) / $15 AS run
            FROM announcement
        ) r
        GROUP BY run ORDER BY run
    ) p
)
SELECT (SELECT array_agg(seq ORDER BY ord) FROM numbered), (SELECT count(*) FROM sent)"""
_FIND_KEYS_PG = (
    "SELECT id, user_id, seq, type, data, created_at, read_at, publisher, idempotency_key, "
    "fingerprint "
    "FROM notifications WHERE publisher = $1 AND idempotency_key = ANY($2::varchar[])"
)
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


@dataclass(slots=True)  # not frozen: see Notification (one per item of every publish)
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
    digits = os.urandom(16 * count).hex()
    ids = []
    for start in range(0, 32 * count, 32):
        h = digits[start : start + 32]
        # The version nibble is 4 and the variant's top bits are 10 (RFC 9562), written
        # into the text directly: three times faster than building uuid.UUID objects.
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}")
    return ids


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


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


@dataclass(slots=True)
class _Fresh:
    """A new notification of a group, built but for its seq."""

    request: int
    item: int
    publisher: str
    new: NewNotification
    id: str
    frame_before: str
    frame_after: str


def _keys(requests: Sequence[PublishRequest]) -> dict[str, list[str]]:
    """The idempotency keys of `requests`, by publisher."""
    keys: dict[str, set[str]] = {}
    for request in requests:
        for item in request.items:
            if item.idempotency_key is not None:
                keys.setdefault(request.publisher, set()).add(item.idempotency_key)
    return {publisher: sorted(found) for publisher, found in keys.items()}


def _plan_group(
    requests: Sequence[PublishRequest],
    stored_rows: Sequence[Mapping[Any, Any]],
    now: datetime,
) -> tuple[list[list[_Resolution] | IdempotencyConflict], list[_Fresh]]:
    """Each request's plan against the stored originals (rows of `_FIND_KEYS_PG`), and
    the new notifications of the group, in order, built but for their seqs."""
    stored = {
        (row["publisher"], row["idempotency_key"]): (row["fingerprint"], _row_to_notification(row))
        for row in stored_rows
    }
    claimed: _Claims = {}
    plans = [_plan(r, request, stored, claimed) for r, request in enumerate(requests)]
    positions = [
        (r_index, i_index)
        for r_index, plan in enumerate(plans)
        if not isinstance(plan, IdempotencyConflict)
        for i_index, resolution in enumerate(plan)
        if resolution is None
    ]
    fresh = []
    for (r_index, i_index), id_ in zip(positions, _new_ids(len(positions)), strict=True):
        new = requests[r_index].items[i_index]
        before, after = frame_around_seq(id_, new.user_id, new.type, new.data_json, now)
        publisher = requests[r_index].publisher
        fresh.append(_Fresh(r_index, i_index, publisher, new, id_, before, after))
    return plans, fresh


def _outcomes(
    requests: Sequence[PublishRequest],
    plans: list[list[_Resolution] | IdempotencyConflict],
    fresh: list[_Fresh],
    seqs: Sequence[int],
    now: datetime,
) -> list[Outcome]:
    created: dict[tuple[int, int], Notification] = {}
    for f, seq in zip(fresh, seqs, strict=True):
        created[(f.request, f.item)] = Notification(
            id=f.id,
            user_id=f.new.user_id,
            seq=seq,
            type=f.new.type,
            data_json=f.new.data_json,
            created_at=now,
            _frame=f.frame_before + str(seq) + f.frame_after,
        )
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


_INSERTED = ("id", "user_id", "type", "data", "publisher", "idempotency_key", "fingerprint")


def _columns(fresh: list[_Fresh]) -> list[list[Any]]:
    """The arrays $1..$7 of the publishing statement (`_INSERTED`)."""
    return [
        [f.id for f in fresh],
        [f.new.user_id for f in fresh],
        [f.new.type for f in fresh],
        [f.new.data_json for f in fresh],
        [f.publisher for f in fresh],
        [f.new.idempotency_key for f in fresh],
        [f.new.fingerprint or None for f in fresh],
    ]


def _announcement_columns(fresh: list[_Fresh], now: datetime) -> list[list[str]]:
    """The arrays $9..$11 of the announcing statement."""
    stamp = now.timestamp()
    pieces = [
        Announcement.around_seq(f.new.user_id, stamp, f.frame_before, f.frame_after) for f in fresh
    ]
    return [[p[0] for p in pieces], [p[1] for p in pieces], [p[2] for p in pieces]]


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
        notify: TransactionNotify | None = None,
    ) -> list[Published]:
        """Store `items` atomically; results in request order. Raises
        IdempotencyConflict, having stored nothing."""
        [outcome] = await self.publish_group([PublishRequest(publisher, items)], notify)
        if isinstance(outcome, IdempotencyConflict):
            raise outcome
        return outcome

    async def publish_group(
        self, requests: Sequence[PublishRequest], notify: TransactionNotify | None = None
    ) -> list[Outcome]:
        """Store several independent requests in one transaction (group commit), and
        announce the new notifications in it when `notify` is given (PostgreSQL).

        Each request is all or nothing on its own: one whose idempotency key conflicts
        gets its IdempotencyConflict as its outcome and stores nothing, while the others
        commit. Retries on a deadlock or on losing a race to insert the same key (the
        retry then finds the original and answers it).
        """
        for attempt in range(_RETRIES):
            try:
                if self._postgres:
                    return await self._publish_group_pg(requests, notify)
                if notify is not None:
                    raise ValueError("announcing inside the transaction needs PostgreSQL")
                return await self._publish_group_sqlite(requests)
            except (DBAPIError, asyncpg.PostgresError) as error:
                if attempt == _RETRIES - 1 or not _is_retryable(error):
                    raise
        raise AssertionError("unreachable")

    async def _publish_group_pg(
        self, requests: Sequence[PublishRequest], notify: TransactionNotify | None
    ) -> list[Outcome]:
        """On asyncpg itself, in one statement (see `_PUBLISH_PG`). The stored originals
        of idempotency keys are read first, without a lock: a key stored meanwhile by
        another group makes the statement fail on its unique index, and the retry finds
        it."""
        async with self._asyncpg() as raw:
            rows: list[Mapping[Any, Any]] = []
            for publisher, keys in _keys(requests).items():
                rows.extend(await raw.fetch(_FIND_KEYS_PG, publisher, keys))
            now = datetime.now(UTC)
            plans, fresh = _plan_group(requests, rows, now)
            seqs: list[int] = []
            if fresh:
                if notify is None:
                    announcing: list[Any] = [[], [], [], "", None, "", 1]
                else:
                    announcing = [
                        *_announcement_columns(fresh, now),
                        ',"t":' + orjson.dumps(now.timestamp()).decode() + "}",
                        notify.channel,
                        notify.head,
                        notify.room,
                    ]
                row = await raw.fetchrow(_PUBLISH_PG, *_columns(fresh), now, *announcing)
                seqs = row[0]
        return _outcomes(requests, plans, fresh, seqs, now)

    async def _publish_group_sqlite(self, requests: Sequence[PublishRequest]) -> list[Outcome]:
        async with self.engine.begin() as conn:
            rows: list[Mapping[Any, Any]] = []
            for publisher, keys in _keys(requests).items():
                query = sa.select(
                    *_COLUMNS, nt.c.publisher, nt.c.idempotency_key, nt.c.fingerprint
                ).where(nt.c.publisher == publisher, nt.c.idempotency_key.in_(keys))
                rows.extend(row._mapping for row in await conn.execute(query))
            now = datetime.now(UTC)
            plans, fresh = _plan_group(requests, rows, now)
            if not fresh:
                return _outcomes(requests, plans, fresh, [], now)
            per_user: dict[str, int] = {}
            for f in fresh:
                per_user[f.new.user_id] = per_user.get(f.new.user_id, 0) + 1
            values = [{"user_id": user, "last_seq": count} for user, count in per_user.items()]
            upsert = sqlite.insert(streams).values(values)
            statement = upsert.on_conflict_do_update(
                index_elements=[streams.c.user_id],
                set_={"last_seq": streams.c.last_seq + upsert.excluded.last_seq},
            ).returning(streams.c.user_id, streams.c.last_seq)
            next_seq = {
                row.user_id: row.last_seq - per_user[row.user_id] + 1
                for row in await conn.execute(statement)
            }
            seqs = []
            for f in fresh:
                seqs.append(next_seq[f.new.user_id])
                next_seq[f.new.user_id] += 1
            values_by_row = zip(*_columns(fresh), strict=True)
            inserts = [
                {**dict(zip(_INSERTED, values, strict=True)), "seq": seq, "created_at": now}
                for values, seq in zip(values_by_row, seqs, strict=True)
            ]
            await conn.execute(nt.insert(), inserts)
        return _outcomes(requests, plans, fresh, seqs, now)

    @contextlib.asynccontextmanager
    async def _asyncpg(self) -> AsyncIterator[Any]:
        """The asyncpg connection of a connection of the engine's pool. A failure of the
        connection (not of a statement) drops it from the pool and is raised as
        DatabaseUnavailable (an OSError: the API answers 503)."""
        # The pool's own connection record, not an AsyncConnection around it: a third
        # of the CPU per checkout (16 against 55 µs, measured), and every publish group
        # and gathered head read checks one out.
        record = await self.engine.raw_connection()
        try:
            yield record.driver_connection
        except _CONNECTION_ERRORS as error:
            await greenlet_spawn(record.invalidate)  # never back to the pool
            raise DatabaseUnavailable(repr(error)) from error
        finally:
            record.close()  # back to the pool (no transaction is left open on it)

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
