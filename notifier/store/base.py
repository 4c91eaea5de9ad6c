"""What the rest of the service asks of a store, whatever the database engine.

A store is every read and write of notifications, and the only code that knows SQL.
`create_store` (in `notifier.store`) picks the engine's own: `PostgresStore` runs its hot
paths on asyncpg, `SqliteStore` runs on SQLAlchemy; both share the reads that are the
same SQL on either (`SqlStore`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.publishing import (
    Fresh,
    NewNotification,
    Outcome,
    Published,
    PublishRequest,
    Stored,
)
from notifier.core.topics import TopicPublish, TopicPublished
from notifier.wire.announcement import TransactionNotify
from notifier.wire.notification import Notification


class DatabaseUnavailable(ConnectionError):
    """The database connection failed during a publish; nothing was committed."""


class StreamBusy(DatabaseUnavailable):
    """A user's stream stayed locked by another transaction past the lock timeout;
    nothing was committed, and the connection is sound. Answered like an outage (503 with
    Retry-After): the publisher retries with its key."""


class Store(Protocol):
    @property
    def engine(self) -> AsyncEngine: ...

    # -- publishing -----------------------------------------------------------------

    async def publish(
        self,
        publisher: str,
        items: Sequence[NewNotification],
        notify: TransactionNotify | None = None,
    ) -> list[Published]:
        """Store `items` atomically; results in request order. Raises
        IdempotencyConflict, having stored nothing."""
        ...

    async def publish_group(
        self, requests: Sequence[PublishRequest], notify: TransactionNotify | None = None
    ) -> list[Outcome]:
        """Store several independent requests in one transaction (group commit), and
        announce the new notifications in it when `notify` is given (PostgreSQL only).

        Each request is all or nothing on its own: one whose idempotency key conflicts
        gets its IdempotencyConflict as its outcome and stores nothing, while the others
        commit. Retries on a deadlock or on losing a race to insert the same key (the
        retry then finds the original and answers it). A failure of the connection is
        DatabaseUnavailable.
        """
        ...

    async def try_publish_group(
        self,
        requests: Sequence[PublishRequest],
        notify: TransactionNotify | None = None,
        *,
        held_likely: bool = False,
    ) -> list[Outcome | None]:
        """As `publish_group`, but without waiting long for a user's stream that another
        transaction holds (a topic publish, a backend's open transaction that called
        notifier_publish()): the requests that touch one, and those linked to them by an
        idempotency key, are left out, stored nothing, and answered None; the others
        commit. On PostgreSQL it first waits briefly, as long as another group holds a
        stream (no cost to the usual path), then tests the locks; `held_likely` tests
        them first (streams were found held a moment ago). A stream may also be left for
        being held a moment by a concurrent group: None means "not now", never "never"."""
        ...

    # -- topics ---------------------------------------------------------------------

    async def publish_topic(
        self, request: TopicPublish, notify: TransactionNotify | None = None
    ) -> TopicPublished:
        """One notification for each subscriber of the topic, numbered in each one's
        stream, all committed at once (announced in the transaction with `notify`, as
        `publish_group`); a repeated key answers its original. Raises
        IdempotencyConflict or TooManyRecipients, having stored nothing."""
        ...

    async def change_subscribers(
        self, topic: str, add: Sequence[str], remove: Sequence[str]
    ) -> tuple[int, int]:
        """(added, removed): ids that were not subscribed and now are, and the reverse."""
        ...

    async def subscribers(self, topic: str, after: str | None, limit: int) -> list[str]:
        """A page of the topic's subscribers, ascending by user id (byte order)."""
        ...

    async def topic_recipients(self, topic: str, created_at: datetime) -> list[tuple[str, int]]:
        """(user_id, seq) of each notification of the topic publish made at `created_at`."""
        ...

    async def frames_at(
        self, users: Sequence[str], seqs: Sequence[int]
    ) -> list[tuple[str, int, str]]:
        """(user_id, seq, frame) of the notifications at those (user_id, seq) pairs."""
        ...

    async def topic_frames_after(
        self,
        topic: str,
        created_at: datetime,
        positions: Sequence[tuple[str, int]],
        page: int,
    ) -> tuple[list[tuple[str, int, str]], list[str]]:
        """For (user_id, after) pairs: (user_id, seq, frame) of the topic publish's rows
        among each user's next `page` rows after `after`, and the users whose next `page`
        rows were read without finding one (their row, if any, is further on: the caller
        reads their heads). A user with fewer rows than `page` and none of the publish's
        had none after `after`."""
        ...

    # -- reading --------------------------------------------------------------------

    async def after(self, user_id: str, after: int, limit: int) -> list[Notification]:
        """The user's notifications with seq > `after`, ascending."""
        ...

    async def frames_after(self, user_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        """(seq, frame text) of the user's notifications with seq > `after`, ascending:
        what replay and gap fill send."""
        ...

    async def frames_after_many(
        self, requests: Sequence[tuple[str, int]], limit: int
    ) -> dict[tuple[str, int], list[tuple[int, str]]]:
        """`frames_after` for many (user_id, after) pairs at once: up to `limit` frames
        each, keyed by the pair (pairs with none are left out)."""
        ...

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
        """A page of the inbox: ascending from `after`, else descending (below `before`);
        not archived ones (`archived` False), archived ones (True), or both (None)."""
        ...

    async def unread_count(self, user_id: str) -> int:
        """Notifications neither read nor archived (archiving also marks read)."""
        ...

    async def head(self, user_id: str) -> int:
        """The user's newest seq (0 before the first notification)."""
        ...

    async def heads(self, user_ids: Sequence[str], chunk: int = 1000) -> dict[str, int]:
        """The newest seq of each of `user_ids` that has one."""
        ...

    async def ping(self) -> None: ...

    # -- read state -----------------------------------------------------------------

    async def mark_read_up_to(self, user_id: str, up_to_seq: int) -> int:
        """Mark the user's notifications up to `up_to_seq`; how many changed."""
        ...

    async def mark_read_ids(self, user_id: str, ids: Sequence[str]) -> list[str]:
        """Mark the user's own notifications among `ids`; the ids that changed."""
        ...

    # -- archive --------------------------------------------------------------------

    async def archive_ids(self, user_id: str, ids: Sequence[str]) -> list[str]:
        """Archive the user's own notifications among `ids`, marking them read too; the
        ids that went from not archived to archived."""
        ...

    # -- retention ------------------------------------------------------------------

    async def purge_older_than(self, cutoff: datetime, batch: int = 5000) -> int:
        """Delete notifications created before `cutoff`; how many went."""
        ...


# -- rows ---------------------------------------------------------------------------


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def row_to_notification(row: Mapping[Any, Any]) -> Notification:
    """A notifications row (its `COLUMNS`): a SQLAlchemy row's `_mapping` or an asyncpg
    record."""
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
        topic=row["topic"],
        archived_at=_utc(row["archived_at"]),
    )


KEYED = ("publisher", "idempotency_key", "fingerprint")
"""The columns that, beside a notification's own, identify what its key stands for."""


def stored_originals(rows: Sequence[Mapping[Any, Any]]) -> Stored:
    """The originals of a group's keys, from rows of their `COLUMNS` and `KEYED`; a row
    whose `id` is None is a topic publish's key (`topic_publishes`): no original."""
    return {
        (row["publisher"], row["idempotency_key"]): (
            row["fingerprint"],
            row_to_notification(row) if row["id"] is not None else None,
        )
        for row in rows
    }


INSERTED = ("id", "user_id", "type", "data", "publisher", "idempotency_key", "fingerprint")
"""The columns of a new notification known before its seq (`inserted_columns`)."""


def inserted_columns(fresh: list[Fresh]) -> list[list[Any]]:
    """The values of `INSERTED` of each new notification, column by column."""
    return [
        [f.id for f in fresh],
        [f.user_id for f in fresh],
        [f.new.type for f in fresh],
        [f.new.data_json for f in fresh],
        [f.publisher for f in fresh],
        [f.new.idempotency_key for f in fresh],
        [f.new.fingerprint or None for f in fresh],
    ]
