"""Fixtures: a fresh PostgreSQL database per test run, and real servers on both backends."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier import db
from notifier.store import Store, create_store
from tests.support import PG_ADMIN_DSN, ROOT, Server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fault tests restart the shared PostgreSQL and Redis: run them after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("faults") is not None)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_base() -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)


def migrate(url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["NOTIFIER_DATABASE_URL"] = url
    subprocess.run(
        [sys.executable, "-m", "notifier", "migrate"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database created for this run, migrated, dropped at the end."""
    name = f"notifier_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = f"{_pg_base()}/{name}"
    try:
        migrate(url)
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fresh_pg_database() -> Iterator[str]:
    """A PostgreSQL database of its own for one test (not migrated)."""
    name = f"notifier_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{_pg_base()}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="notifier-test-") as folder:
        yield f"sqlite+aiosqlite:///{Path(folder) / 'notifier.db'}"


@pytest.fixture(scope="session")
def pg_server(pg_database: str) -> Iterator[Server]:
    server = Server(pg_database).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_server(sqlite_url: str) -> Iterator[Server]:
    server = Server(sqlite_url).start()
    yield server
    server.stop()


@pytest.fixture(params=["postgres", "sqlite"])
def server(request: pytest.FixtureRequest) -> Server:
    """The same behaviour on both backends: a shared server; tests use their own users."""
    name = "pg_server" if request.param == "postgres" else "sqlite_server"
    result: Server = request.getfixturevalue(name)
    return result


@pytest.fixture(params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each backend, for tests of the store itself."""
    name = "pg_database" if request.param == "postgres" else "sqlite_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The service's engine on `database_url`, migrated."""
    engine = db.create_engine(database_url)
    if db.is_sqlite(engine):
        await db.upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> Store:
    return create_store(engine)
