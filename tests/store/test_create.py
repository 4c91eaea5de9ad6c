"""`create_store` picks the store of the engine's database (no connection is made)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from notifier import db
from notifier.store import PostgresStore, SqliteStore, create_store


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("postgresql+asyncpg://u@127.0.0.1:1/db", PostgresStore),
        ("sqlite+aiosqlite:///{}/notifier.db", SqliteStore),
    ],
)
async def test_each_database_gets_its_own_store(url: str, kind: type, tmp_path: Path) -> None:
    engine = db.create_engine(url.format(tmp_path))
    try:
        store = create_store(engine)
        assert type(store) is kind
        assert store.engine is engine
    finally:
        await engine.dispose()


def test_another_database_is_refused() -> None:
    mysql = SimpleNamespace(dialect=SimpleNamespace(name="mysql"))
    with pytest.raises(ValueError, match="PostgreSQL or SQLite"):
        create_store(mysql)  # type: ignore[arg-type]
