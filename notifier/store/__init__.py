"""Every read and write of notifications, one store per database engine.

`create_store` picks the engine's store; everything else sees only the `Store` protocol.
What a publish means (idempotency, ids, outcomes) is decided in `notifier.core.publishing`
without I/O; a store only looks up, allocates and writes.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.publishing import (
    IdempotencyConflict,
    NewNotification,
    Outcome,
    Published,
    PublishRequest,
)
from notifier.store.base import DatabaseUnavailable, Store
from notifier.store.postgres import PostgresStore
from notifier.store.sqlite import SqliteStore

__all__ = [
    "DatabaseUnavailable",
    "IdempotencyConflict",
    "NewNotification",
    "Outcome",
    "PostgresStore",
    "PublishRequest",
    "Published",
    "SqliteStore",
    "Store",
    "create_store",
]


def create_store(engine: AsyncEngine) -> Store:
    """The store of `engine`'s database (PostgreSQL or SQLite)."""
    if engine.dialect.name == "postgresql":
        return PostgresStore(engine)
    if engine.dialect.name == "sqlite":
        return SqliteStore(engine)
    raise ValueError(f"unsupported database {engine.dialect.name!r}: use PostgreSQL or SQLite")
