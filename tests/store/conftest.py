"""Fixtures of the store tests: a PostgreSQL store as `serve` makes it, and a listener
that reads what a publish announces."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from notifier import db
from notifier.bus.postgres import asyncpg_dsn
from notifier.config import Settings
from notifier.store import Store, create_store
from notifier.wire.announcement import Announcement

LOCK_TIMEOUT_MS = Settings.model_fields["publish_lock_timeout_ms"].default


@pytest.fixture
async def pg_store(pg_database: str) -> AsyncIterator[Store]:
    """The store on PostgreSQL, its connections waiting for a held stream as long as
    `serve`'s do by default."""
    engine = db.create_engine(pg_database, lock_timeout_ms=LOCK_TIMEOUT_MS)
    try:
        yield create_store(engine)
    finally:
        await engine.dispose()


class Listener:
    """A LISTEN connection of its own, as another instance has."""

    def __init__(self, conn: asyncpg.Connection, channel: str) -> None:
        self.conn = conn
        self.channel = channel
        self.payloads: list[str] = []
        self.arrived = asyncio.Event()

    def on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.payloads.append(payload)
        self.arrived.set()

    async def announcements(self, count: int) -> list[Announcement]:
        """The first `count` announcements received, waiting for them (5 s at most)."""
        async with asyncio.timeout(5):
            while True:
                found = [a for p in self.payloads for a in Announcement.decode_many(p)[1]]
                if len(found) >= count:
                    return found
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def listener(pg_database: str) -> AsyncIterator[Listener]:
    conn = await asyncpg.connect(asyncpg_dsn(pg_database))
    listener = Listener(conn, f"test_{uuid.uuid4().hex}")
    await conn.add_listener(listener.channel, listener.on_notify)
    try:
        yield listener
    finally:
        await conn.close()
