"""PostgreSQL, with the hot paths on asyncpg directly: a publish group is one statement
(keys and all, unless a key is stored already), and replay reads frames that PostgreSQL
writes.

A publish raises each user's stream counter (locking it, which orders concurrent
publishes), inserts the rows and, with the postgres bus, announces them, all inside one
statement that commits on its own. Nothing is visible or announced before commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.util import greenlet_spawn

from notifier.core.publishing import GroupPlan, Outcome, PublishRequest, keys, plan_group
from notifier.core.topics import TopicPublish, TopicPublished, judge_topic_key
from notifier.store import pg_topics
from notifier.store.base import (
    KEYED,
    DatabaseUnavailable,
    StreamBusy,
    inserted_columns,
    stored_originals,
)
from notifier.store.sql import SqlStore
from notifier.wire.announcement import NOTIFY_SQL, TransactionNotify, notify_parameters
from notifier.wire.notification import COLUMNS, FRAME_SQL

# The hot statements ($n parameters): fixed texts over arrays whatever the number of
# rows, so each is prepared once per connection.
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
# $1..$7 are the new rows' `INSERTED` columns, $8 their created_at; $9..$15 announce
# them (`NOTIFY_SQL`, which reads `numbered`: $9..$11 are its announcement pieces, and
# with $13 NULL nothing is announced).
_NUMBER_AND_STORE = (
    """wanted AS (
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
), """
    + NOTIFY_SQL
)
_ITEMS = """unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::text[],
                         $5::varchar[], $6::varchar[], $7::varchar[],
                         $9::text[], $10::text[], $11::text[]"""
_COLUMNS_OF_ITEM = """id, user_id, type, data, publisher, idempotency_key,
                             fingerprint, first, middle, last"""

# A group with idempotency keys is published first as if none of its keys were stored:
# `_KNOWN` looks them up inside the statement, which then stores nothing if one is (and
# says so, as its third column). Only then does the store read the originals and plan
# the group against them. Every SDK publish carries a key, and a key's repeat (a retry
# after a lost answer) is rare, so a keyed publish is one round trip, as an unkeyed one
# is, instead of a lookup and then the statement. $5 and $6 are the new rows' publishers
# and keys: a key repeated within the group is judged in Python (`plan_group`), and its
# first use is among the new rows. (`OFFSET 0`: each key is probed through its index,
# whatever the plan; see `_FIND_KEYS`.)
_KNOWN = """known AS (
    SELECT FROM unnest($5::varchar[], $6::varchar[]) AS k(publisher, idempotency_key)
    WHERE EXISTS (SELECT FROM notifications n
                  WHERE n.publisher = k.publisher AND n.idempotency_key = k.idempotency_key
                  OFFSET 0)
       OR EXISTS (SELECT FROM topic_publishes p
                  WHERE p.publisher = k.publisher AND p.idempotency_key = k.idempotency_key
                  OFFSET 0)
)"""


def _publishing(*, keyed: bool, wait: str | None = None) -> str:
    """The publishing statement; `keyed`, it stores nothing when one of its keys is
    (`_KNOWN`); with `wait`, it waits that long at most for a counter (`_short_wait`),
    and no shorter than the connection's own timeout for its commit (`_COMMIT_WAIT`)."""
    where = _short_wait(wait) if wait else "true"
    if keyed:
        where = f"{where} AND NOT EXISTS (SELECT FROM known)"
    return f"""WITH {_KNOWN + ", " if keyed else ""}item AS (
    SELECT * FROM {_ITEMS})
        WITH ORDINALITY AS t({_COLUMNS_OF_ITEM}, ord)
    WHERE {where}
), {_NUMBER_AND_STORE}
SELECT (SELECT array_agg(seq ORDER BY ord) FROM numbered), (SELECT count(*) FROM sent){
        ", EXISTS (SELECT FROM known)" if keyed else ""
    }{_COMMIT_WAIT if wait else ""}"""


_PUBLISH = _publishing(keyed=False)
_PUBLISH_KEYED = _publishing(keyed=True)

# A lane's publish (`try_publish_group`) must not wait long for a counter that another
# transaction holds (a topic publish, a backend's open transaction that called
# notifier_publish()): that would hold up every publish of the instance. The lock
# timeout is set inside the statement, for its own transaction only (set_config, is_local,
# evaluated once as an init plan before the first counter is raised), so the usual path
# costs no round trip and no lock it did not take before.
#
# `_LANE_PUBLISH` is `_PUBLISH` that gives up after `_LANE_WAIT`, longer than another
# lane's group holds counters, short next to the holds it is meant to avoid.
#
# `_TRY_PUBLISH` waits for nothing: it first locks the group's counters that no one else
# holds (SKIP LOCKED, in the mode the raise of a counter takes); a part of the group ($16:
# each item's part, see `GroupPlan.parts`) with a user whose counter another transaction
# holds is left out and reported, and the rest is published as `_PUBLISH` does, under
# the locks already taken. A user without a counter in the snapshot cannot be locked
# beforehand: its INSERT waits if another transaction is inserting the same counter (a
# backend's open transaction that published that user's first notification). With $17
# false such a user counts as free (a user's first publish takes no detour), and
# `_NEW_USER_WAIT` stops such a wait short. Then (rare) the store creates the missing
# counters one by one, at 0, each with the same short wait (`_NEW_COUNTER`): those not
# being inserted elsewhere now exist, and the statement runs again with $17 true, where a
# user still without a counter counts as held. Subscribing creates the subscribers'
# counters, so a topic publish raises existing ones only, which this sees held.
#
# Each test reads streams through the group's own users (a join from `given`, which the
# generic plan estimates small: index probes), never `user_id = ANY($2)` or a hashed
# subplan over the table, which a generic plan made while the table was small turns into
# a scan of every stream; the existence test runs only for users not locked (the
# MATERIALIZED CTE keeps it after the anti-join). Measured on a 200,000-stream table: a
# 2,000-user group 47 ms against 39 ms for `_PUBLISH`, which is why lanes use it only
# while streams are found held (`held_likely`).
_LANE_WAIT = "100ms"
_NEW_USER_WAIT = "20ms"


def _short_wait(wait: str) -> str:
    return f"(SELECT set_config('lock_timeout', '{wait}', true)) IS NOT NULL"


# The short wait is for the counters only: the last column, evaluated once they are all
# taken, gives the connection's own lock timeout back (NULL: its value before any SET
# LOCAL) for the commit. A commit that NOTIFYs first takes PostgreSQL's one lock for the
# notification queue (`pg_locks`: an object lock on pg_database), and holds it through its
# own WAL flush, so notifying commits queue for it one at a time; a flush slowed for
# 100 ms (the disk, a checkpoint) failed every commit waiting behind it with "lock
# timeout", which the lanes took for held streams: the groups were retried the long way
# round and some requests answered 503 (`python -m bench.scale --sockets 12000` at 1,000
# publishes a second: 11 to 15 such 503s a run, each a burst of statements failing in the
# same few milliseconds on every worker).
_COMMIT_WAIT = ", set_config('lock_timeout', NULL, true)"
_LANE_PUBLISH = _publishing(keyed=False, wait=_LANE_WAIT)
_LANE_PUBLISH_KEYED = _publishing(keyed=True, wait=_LANE_WAIT)
_TRY_PUBLISH = f"""WITH given AS (
    SELECT * FROM {_ITEMS}, $16::int[])
        WITH ORDINALITY AS t({_COLUMNS_OF_ITEM}, part, ord)
    WHERE {_short_wait(_NEW_USER_WAIT)}
), free AS (
    SELECT s.user_id FROM streams s WHERE s.user_id IN (SELECT user_id FROM given)
    FOR NO KEY UPDATE OF s SKIP LOCKED
), unlocked AS MATERIALIZED (
    SELECT user_id, part FROM given g
    WHERE NOT EXISTS (SELECT FROM free f WHERE f.user_id = g.user_id)
), held AS (
    SELECT DISTINCT part FROM unlocked u
    WHERE $17::boolean OR EXISTS (SELECT FROM streams s WHERE s.user_id = u.user_id)
), item AS (
    SELECT * FROM given g WHERE NOT EXISTS (SELECT FROM held h WHERE h.part = g.part)
), {_NUMBER_AND_STORE}
SELECT (SELECT array_agg(seq ORDER BY ord) FROM numbered), (SELECT count(*) FROM sent),
       (SELECT array_agg(part) FROM held){_COMMIT_WAIT}"""
_MISSING_COUNTERS = """SELECT array_agg(DISTINCT u) FROM unnest($1::varchar[]) AS u
WHERE NOT EXISTS (SELECT FROM streams WHERE user_id = u)"""
_NEW_COUNTER = f"""INSERT INTO streams (user_id, last_seq)
SELECT $1, 0 WHERE {_short_wait(_NEW_USER_WAIT)}
ON CONFLICT DO NOTHING"""
# Keys of topic publishes come too, as rows without a notification (`stored_originals`):
# a direct publish reusing one is refused.
#
# Each key is probed through the unique index on (publisher, key), and `OFFSET 0` keeps
# it so: without it, a generic plan (the pool's connections force them, `db.py`) made
# while the table was young hashes a scan of the whole table, or probes on the publisher
# alone and filters its every row by key, until an ANALYZE has the statement replanned.
# Seen in `python -m bench.run --keyed`: PostgreSQL spent about 1 ms of CPU a keyed
# publish.
_FIND_KEYS = (
    "SELECT n.* FROM unnest($2::varchar[]) AS k(key) CROSS JOIN LATERAL (\n"
    f"    SELECT {', '.join((*COLUMNS, *KEYED))} FROM notifications\n"
    "    WHERE publisher = $1 AND idempotency_key = k.key OFFSET 0) AS n\n"
    f"UNION ALL SELECT {', '.join(['NULL'] * len(COLUMNS))}, t.* "
    "FROM unnest($2::varchar[]) AS k(key) CROSS JOIN LATERAL (\n"
    f"    SELECT {', '.join(KEYED)} FROM topic_publishes\n"
    "    WHERE publisher = $1 AND idempotency_key = k.key OFFSET 0) AS t"
)
_HEADS = "SELECT user_id, last_seq FROM streams WHERE user_id = ANY($1::varchar[])"
# Replay reads frames, not rows: PostgreSQL writes each frame's text (on its own core)
# byte for byte as `Notification.frame` would (tests/store/test_frames.py holds them
# equal), which makes a replay about three times faster than decoding rows and
# serializing them here.
_FRAMES = (
    f"SELECT seq, {FRAME_SQL}\n"
    "    FROM notifications WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
)

# Many streams' pages in one statement (a reconnect storm's resumes, gathered): each
# pair's frames through the primary key, as `_FRAMES` reads them one user at a time.
_FRAMES_MANY = (
    "SELECT r.user_id, r.after, page.seq, page.frame\n"
    "    FROM unnest($1::varchar[], $2::bigint[]) AS r(user_id, after)\n"
    f"    CROSS JOIN LATERAL (SELECT seq, {FRAME_SQL} AS frame FROM notifications\n"
    "        WHERE user_id = r.user_id AND seq > r.after ORDER BY seq LIMIT $3) AS page"
)

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


async def _create_counters(raw: Any, users: Sequence[str]) -> None:
    """The counters of `users` that do not exist yet and are not being inserted by
    another transaction, created at 0 (as no stream), one statement each."""
    missing = await raw.fetchval(_MISSING_COUNTERS, list(users))
    for user in missing or ():
        with contextlib.suppress(asyncpg.exceptions.LockNotAvailableError):
            await raw.execute(_NEW_COUNTER, user)


def _arguments(plan: GroupPlan, notify: TransactionNotify | None) -> tuple[object, ...]:
    """$1..$15 of the publishing statements: the plan's new rows, when, and their
    announcement."""
    return (
        *inserted_columns(plan.fresh),
        plan.created_at,
        *notify_parameters(notify, plan.fresh, plan.created_at),
    )


async def _as_if_new(
    raw: Any,
    requests: Sequence[PublishRequest],
    keyed: Mapping[str, list[str]],
    notify: TransactionNotify | None,
    statements: tuple[str, str],
) -> list[Outcome] | None:
    """The group published as if none of its keys were stored, with the first of
    `statements` (no key in the group) or the second (`_KNOWN`): its outcomes, or None
    when a key was stored after all and nothing was."""
    plan = plan_group(requests, {}, datetime.now(UTC))
    row = await raw.fetchrow(statements[1] if keyed else statements[0], *_arguments(plan, notify))
    if keyed and row[2]:
        return None
    return plan.outcomes(row[0] or [])


async def _plan_with_originals(
    raw: Any, requests: Sequence[PublishRequest], keyed: Mapping[str, list[str]]
) -> GroupPlan:
    """The group planned against the stored originals of its keys, read without a lock."""
    rows: list[Mapping[Any, Any]] = []
    for publisher, found in keyed.items():
        rows.extend(await raw.fetch(_FIND_KEYS, publisher, found))
    return plan_group(requests, stored_originals(rows), datetime.now(UTC))


class PostgresStore(SqlStore):
    _errors = (DBAPIError, asyncpg.PostgresError)

    async def _publish_once(
        self, requests: Sequence[PublishRequest], notify: TransactionNotify | None
    ) -> list[Outcome]:
        """In one statement (see `_PUBLISH`), keys and all unless one is stored
        (`_KNOWN`). The stored originals are then read without a lock: a key stored
        meanwhile by another group makes the statement fail on its unique index, and the
        retry finds it."""
        async with self._asyncpg() as raw:
            keyed = keys(requests)
            done = await _as_if_new(raw, requests, keyed, notify, (_PUBLISH, _PUBLISH_KEYED))
            if done is not None:
                return done
            plan = await _plan_with_originals(raw, requests, keyed)
            seqs: list[int] = []
            if plan.fresh:
                row = await raw.fetchrow(_PUBLISH, *_arguments(plan, notify))
                seqs = row[0]
        return plan.outcomes(seqs)

    async def _try_publish_once(
        self,
        requests: Sequence[PublishRequest],
        notify: TransactionNotify | None,
        held_likely: bool,
    ) -> list[Outcome | None]:
        """`_LANE_PUBLISH` (keys and all, as in `_publish_once`), and if it gave up,
        `_TRY_PUBLISH`, at once when `held_likely` (see both)."""
        async with self._asyncpg() as raw:
            keyed = keys(requests)
            if not held_likely:
                lane = (_LANE_PUBLISH, _LANE_PUBLISH_KEYED)
                with contextlib.suppress(asyncpg.exceptions.LockNotAvailableError):
                    done = await _as_if_new(raw, requests, keyed, notify, lane)
                    if done is not None:
                        return list(done)
            plan = await _plan_with_originals(raw, requests, keyed)
            if not plan.fresh:
                return list(plan.outcomes([]))
            parts = plan.parts()
            arguments = (*_arguments(plan, notify), [parts[f.request] for f in plan.fresh])
            try:
                row = await raw.fetchrow(_TRY_PUBLISH, *arguments, False)
            except asyncpg.exceptions.LockNotAvailableError:
                # A counter being inserted elsewhere (see `_TRY_PUBLISH`).
                await _create_counters(raw, [f.user_id for f in plan.fresh])
                row = await raw.fetchrow(_TRY_PUBLISH, *arguments, True)
        seqs, held = row[0] or [], row[2]
        if not held:
            return list(plan.outcomes(seqs))
        return plan.outcomes_except(seqs, parts, set(held))

    async def _publish_topic_once(
        self, request: TopicPublish, notify: TransactionNotify | None
    ) -> TopicPublished:
        """In one statement (`pg_topics`), after the key's lookup, without a lock: a key
        stored meanwhile makes the statement fail on a unique index, and the retry
        finds it."""
        async with self._asyncpg() as raw:
            key = request.idempotency_key
            if key is not None:
                stored = await pg_topics.find_key(raw, request.publisher, key)
                repeat = judge_topic_key(request, stored)
                if repeat is not None:
                    return repeat
            return await pg_topics.publish_topic(raw, request, datetime.now(UTC), notify)

    async def change_subscribers(
        self, topic: str, add: Sequence[str], remove: Sequence[str]
    ) -> tuple[int, int]:
        async with self._asyncpg() as raw:
            return await pg_topics.change_subscribers(raw, topic, add, remove)

    async def subscribers(self, topic: str, after: str | None, limit: int) -> list[str]:
        async with self._asyncpg() as raw:
            return await pg_topics.subscribers(raw, topic, after, limit)

    async def topic_recipients(self, topic: str, created_at: datetime) -> list[tuple[str, int]]:
        async with self._asyncpg() as raw:
            return await pg_topics.recipients(raw, topic, created_at)

    async def frames_at(
        self, users: Sequence[str], seqs: Sequence[int]
    ) -> list[tuple[str, int, str]]:
        async with self._asyncpg() as raw:
            return await pg_topics.frames_at(raw, users, seqs)

    async def topic_frames_after(
        self,
        topic: str,
        created_at: datetime,
        positions: Sequence[tuple[str, int]],
        page: int,
    ) -> tuple[list[tuple[str, int, str]], list[str]]:
        async with self._asyncpg() as raw:
            return await pg_topics.topic_frames_after(raw, topic, created_at, positions, page)

    async def frames_after(self, user_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        rows = await self._fetch(_FRAMES, user_id, after, limit)
        return [(seq, frame) for seq, frame in rows]

    async def frames_after_many(
        self, requests: Sequence[tuple[str, int]], limit: int
    ) -> dict[tuple[str, int], list[tuple[int, str]]]:
        users = [user for user, _ in requests]
        afters = [after for _, after in requests]
        found: dict[tuple[str, int], list[tuple[int, str]]] = {}
        for user, after, seq, frame in await self._fetch(_FRAMES_MANY, users, afters, limit):
            found.setdefault((user, after), []).append((seq, frame))
        for page in found.values():
            page.sort()  # rows of one pair come in seq order; this only makes it certain
        return found

    async def heads(self, user_ids: Sequence[str], chunk: int = 1000) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(user_ids), chunk):
            # One statement for any count: prepared once.
            found.update(await self._fetch(_HEADS, list(user_ids[start : start + chunk])))
        return found

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        """A read on asyncpg directly (no transaction: one round trip), for the hot
        reads: handshakes' heads and replay."""
        async with self._asyncpg() as raw:
            rows: list[Any] = await raw.fetch(query, *args)
            return rows

    @contextlib.asynccontextmanager
    async def _asyncpg(self) -> AsyncIterator[Any]:
        """The asyncpg connection of a connection of the engine's pool. A failure of the
        connection (not of a statement) drops it from the pool and is raised as
        DatabaseUnavailable (an OSError: the API answers 503)."""
        # The pool's own connection record, not an AsyncConnection around it: a third
        # of the CPU per checkout (16 against 55 µs, measured), and every publish group
        # and gathered head read checks one out.
        try:
            record = await self.engine.raw_connection()
        except Exception as error:
            # No connection could be had: refused, timed out, the pool exhausted, or the
            # server not accepting ("the database system is shutting down", 57P03, during
            # a restart). Whatever the error, the database is unavailable for now: 503.
            raise DatabaseUnavailable(repr(error)) from error
        try:
            yield record.driver_connection
        except asyncpg.exceptions.LockNotAvailableError as error:
            raise StreamBusy(str(error)) from error
        except _CONNECTION_ERRORS as error:
            await greenlet_spawn(record.invalidate)  # never back to the pool
            raise DatabaseUnavailable(repr(error)) from error
        finally:
            # Back to the pool (no transaction is left open on it). With connections
            # beyond the pool's size open (a burst of handshakes), the pool may close
            # this one instead, which awaits asyncpg: only inside a greenlet, or the
            # connection is dropped unclosed ("MissingGreenlet" in the log).
            if self.engine.pool.overflow() > 0:  # type: ignore[attr-defined]
                await greenlet_spawn(record.close)
            else:
                record.close()
