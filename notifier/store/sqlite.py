"""SQLite (development and single-process use), on SQLAlchemy: a publish group is a few
statements in one transaction; replay frames are serialized here from rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from notifier.core.publishing import Outcome, PublishRequest, keys, plan_group
from notifier.core.topics import TopicPublish, TopicPublished, judge_topic_key
from notifier.models import notifications as nt
from notifier.models import streams
from notifier.models import topic_publishes as tp
from notifier.store import sqlite_topics
from notifier.store.base import INSERTED, KEYED, inserted_columns, stored_originals
from notifier.store.sql import SqlStore
from notifier.wire.announcement import TransactionNotify
from notifier.wire.notification import COLUMNS

_KEYED_COLUMNS = tuple(nt.c[name] for name in (*COLUMNS, *KEYED))


class SqliteStore(SqlStore):
    async def _publish_once(
        self, requests: Sequence[PublishRequest], notify: TransactionNotify | None
    ) -> list[Outcome]:
        if notify is not None:
            raise ValueError("announcing inside the transaction needs PostgreSQL")
        async with self.engine.begin() as conn:
            rows: list[Mapping[Any, Any]] = []
            for publisher, found in keys(requests).items():
                query = sa.select(*_KEYED_COLUMNS).where(
                    nt.c.publisher == publisher, nt.c.idempotency_key.in_(found)
                )
                rows.extend(row._mapping for row in await conn.execute(query))
                # Keys of topic publishes: a direct publish reusing one is refused.
                topic_keys = sa.select(tp.c.idempotency_key, tp.c.fingerprint).where(
                    tp.c.publisher == publisher, tp.c.idempotency_key.in_(found)
                )
                rows.extend(
                    {"id": None, "publisher": publisher, **row._mapping}
                    for row in await conn.execute(topic_keys)
                )
            plan = plan_group(requests, stored_originals(rows), datetime.now(UTC))
            fresh = plan.fresh
            if not fresh:
                return plan.outcomes([])
            per_user: dict[str, int] = {}
            for f in fresh:
                per_user[f.user_id] = per_user.get(f.user_id, 0) + 1
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
                seqs.append(next_seq[f.user_id])
                next_seq[f.user_id] += 1
            values_by_row = zip(*inserted_columns(fresh), strict=True)
            inserts = [
                {
                    **dict(zip(INSERTED, values, strict=True)),
                    "seq": seq,
                    "created_at": plan.created_at,
                }
                for values, seq in zip(values_by_row, seqs, strict=True)
            ]
            await conn.execute(nt.insert(), inserts)
        return plan.outcomes(seqs)

    async def _publish_topic_once(
        self, request: TopicPublish, notify: TransactionNotify | None
    ) -> TopicPublished:
        if notify is not None:
            raise ValueError("announcing inside the transaction needs PostgreSQL")
        async with self.engine.begin() as conn:
            key = request.idempotency_key
            if key is not None:
                stored = await sqlite_topics.find_key(conn, request.publisher, key)
                repeat = judge_topic_key(request, stored)
                if repeat is not None:
                    return repeat
            return await sqlite_topics.publish_topic(conn, request, datetime.now(UTC))

    async def change_subscribers(
        self, topic: str, add: Sequence[str], remove: Sequence[str]
    ) -> tuple[int, int]:
        async with self.engine.begin() as conn:
            return await sqlite_topics.change_subscribers(conn, topic, add, remove)

    async def subscribers(self, topic: str, after: str | None, limit: int) -> list[str]:
        async with self._reader.connect() as conn:
            rows = await conn.execute(sqlite_topics.subscribers_query(topic, after, limit))
            return [row.user_id for row in rows]

    async def topic_recipients(self, topic: str, created_at: datetime) -> list[tuple[str, int]]:
        async with self._reader.connect() as conn:
            rows = await conn.execute(sqlite_topics.recipients_query(topic, created_at))
            return [(row.user_id, row.seq) for row in rows]

    async def frames_at(
        self, users: Sequence[str], seqs: Sequence[int]
    ) -> list[tuple[str, int, str]]:
        async with self._reader.connect() as conn:
            return await sqlite_topics.frames_at(conn, users, seqs)

    async def topic_frames_after(
        self,
        topic: str,
        created_at: datetime,
        positions: Sequence[tuple[str, int]],
        page: int,
    ) -> tuple[list[tuple[str, int, str]], list[str]]:
        """SQLite reads the publish's rows (one indexed query, in process) and keeps the
        given users' beyond their position: never unsure."""
        after = dict(positions)
        wanted = [
            (user, seq)
            for user, seq in await self.topic_recipients(topic, created_at)
            if seq > after.get(user, seq)
        ]
        if not wanted:
            return [], []
        return await self.frames_at([u for u, _ in wanted], [s for _, s in wanted]), []

    async def frames_after(self, user_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        return [(n.seq, n.frame) for n in await self.after(user_id, after, limit)]

    async def frames_after_many(
        self, requests: Sequence[tuple[str, int]], limit: int
    ) -> dict[tuple[str, int], list[tuple[int, str]]]:
        # One node, one writer: a loop of the single read is all SQLite needs.
        found: dict[tuple[str, int], list[tuple[int, str]]] = {}
        for user, after in requests:
            page = await self.frames_after(user, after, limit)
            if page:
                found[(user, after)] = page
        return found

    async def heads(self, user_ids: Sequence[str], chunk: int = 1000) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(user_ids), chunk):
            query = sa.select(streams.c.user_id, streams.c.last_seq).where(
                streams.c.user_id.in_(list(user_ids[start : start + chunk]))
            )
            async with self._reader.connect() as conn:
                found.update({row.user_id: row.last_seq for row in await conn.execute(query)})
        return found
