"""What both engines do with the same SQL, written once on SQLAlchemy: the reads, the
read state and retention, and the retry of a publish group. `PostgresStore` and
`SqliteStore` add the engine's own publishing (`_publish_once`), replay frames and head
reads.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.publishing import (
    IdempotencyConflict,
    NewNotification,
    Outcome,
    Published,
    PublishRequest,
)
from notifier.core.topics import TopicPublish, TopicPublished
from notifier.models import notifications as nt
from notifier.models import streams, topic_publishes
from notifier.store.base import row_to_notification
from notifier.wire.announcement import TransactionNotify
from notifier.wire.notification import COLUMNS, Notification

_COLUMNS = tuple(nt.c[name] for name in COLUMNS)
_RETRIES = 5


def _is_retryable(error: Exception) -> bool:
    """Deadlock, serialization failure, or a concurrent insert of the same key."""
    if isinstance(error, IntegrityError):
        return True
    origin = error.orig if isinstance(error, DBAPIError) else error
    code = getattr(origin, "sqlstate", None) or getattr(origin, "pgcode", None)
    return isinstance(code, str) and (code in {"40001", "40P01"} or code.startswith("23"))


class SqlStore(abc.ABC):
    """The `Store` of an SQL engine, but for what differs between engines."""

    _errors: tuple[type[Exception], ...] = (DBAPIError,)
    """The errors of a statement (not of the connection) that a retry may cure."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Reads need no transaction: without one a SELECT is one round trip, not
        # BEGIN, SELECT, ROLLBACK.
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    # -- publishing -----------------------------------------------------------------

    async def publish(
        self,
        publisher: str,
        items: Sequence[NewNotification],
        notify: TransactionNotify | None = None,
    ) -> list[Published]:
        [outcome] = await self.publish_group([PublishRequest(publisher, items)], notify)
        if isinstance(outcome, IdempotencyConflict):
            raise outcome
        return outcome

    async def publish_group(
        self, requests: Sequence[PublishRequest], notify: TransactionNotify | None = None
    ) -> list[Outcome]:
        for attempt in range(_RETRIES):
            try:
                return await self._publish_once(requests, notify)
            except self._errors as error:
                if attempt == _RETRIES - 1 or not _is_retryable(error):
                    raise
        raise AssertionError("unreachable")

    async def try_publish_group(
        self,
        requests: Sequence[PublishRequest],
        notify: TransactionNotify | None = None,
        *,
        held_likely: bool = False,
    ) -> list[Outcome | None]:
        for attempt in range(_RETRIES):
            try:
                return await self._try_publish_once(requests, notify, held_likely)
            except self._errors as error:
                if attempt == _RETRIES - 1 or not _is_retryable(error):
                    raise
        raise AssertionError("unreachable")

    async def _try_publish_once(
        self,
        requests: Sequence[PublishRequest],
        notify: TransactionNotify | None,
        held_likely: bool,
    ) -> list[Outcome | None]:
        """One attempt at `try_publish_group`. An engine without row locks held by
        others (SQLite: one connection, one writer) never leaves a request."""
        return list(await self._publish_once(requests, notify))

    async def publish_topic(
        self, request: TopicPublish, notify: TransactionNotify | None = None
    ) -> TopicPublished:
        for attempt in range(_RETRIES):
            try:
                return await self._publish_topic_once(request, notify)
            except self._errors as error:
                if attempt == _RETRIES - 1 or not _is_retryable(error):
                    raise
        raise AssertionError("unreachable")

    @abc.abstractmethod
    async def _publish_topic_once(
        self, request: TopicPublish, notify: TransactionNotify | None
    ) -> TopicPublished:
        """One attempt at `publish_topic`, in one transaction."""

    @abc.abstractmethod
    async def _publish_once(
        self, requests: Sequence[PublishRequest], notify: TransactionNotify | None
    ) -> list[Outcome]:
        """One attempt at `publish_group`, in one transaction."""

    # -- reading --------------------------------------------------------------------

    async def after(self, user_id: str, after: int, limit: int) -> list[Notification]:
        query = (
            sa.select(*_COLUMNS)
            .where(nt.c.user_id == user_id, nt.c.seq > after)
            .order_by(nt.c.seq)
            .limit(limit)
        )
        async with self._reader.connect() as conn:
            return [row_to_notification(row._mapping) for row in await conn.execute(query)]

    async def inbox(
        self,
        user_id: str,
        *,
        after: int | None,
        before: int | None,
        limit: int,
        unread: bool,
        archived: bool | None = False,
    ) -> list[Notification]:
        query = sa.select(*_COLUMNS).where(nt.c.user_id == user_id)
        if unread:
            query = query.where(nt.c.read_at.is_(None))
        if archived is not None:
            query = query.where(
                nt.c.archived_at.is_not(None) if archived else nt.c.archived_at.is_(None)
            )
        if after is not None:
            query = query.where(nt.c.seq > after).order_by(nt.c.seq)
        else:
            if before is not None:
                query = query.where(nt.c.seq < before)
            query = query.order_by(nt.c.seq.desc())
        async with self._reader.connect() as conn:
            rows = await conn.execute(query.limit(limit))
            return [row_to_notification(row._mapping) for row in rows]

    async def unread_count(self, user_id: str) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(nt)
            .where(nt.c.user_id == user_id, nt.c.read_at.is_(None), nt.c.archived_at.is_(None))
        )
        async with self._reader.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def head(self, user_id: str) -> int:
        query = sa.select(streams.c.last_seq).where(streams.c.user_id == user_id)
        async with self._reader.connect() as conn:
            return int((await conn.execute(query)).scalar_one_or_none() or 0)

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

    # -- archive --------------------------------------------------------------------

    async def archive_ids(self, user_id: str, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        now = datetime.now(UTC)
        statement = (
            sa.update(nt)
            .where(nt.c.user_id == user_id, nt.c.id.in_(list(ids)), nt.c.archived_at.is_(None))
            .values(archived_at=now, read_at=sa.func.coalesce(nt.c.read_at, now))
            .returning(nt.c.id)
        )
        async with self.engine.begin() as conn:
            return [str(row.id) for row in await conn.execute(statement)]

    # -- retention ------------------------------------------------------------------

    async def purge_older_than(self, cutoff: datetime, batch: int = 5000) -> int:
        """Oldest first, in small batches so that publishes are never blocked for long;
        then the keys of topic publishes as old."""
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
                    break
                await conn.execute(sa.delete(nt).where(sa.tuple_(nt.c.user_id, nt.c.seq).in_(keys)))
            total += len(keys)
        # A topic publish's idempotency key is kept as long as its notifications.
        statement = sa.delete(topic_publishes).where(topic_publishes.c.created_at < cutoff)
        async with self.engine.begin() as conn:
            await conn.execute(statement)
        return total
