"""The postgres bus's connection string, without a database."""

from __future__ import annotations

import pytest

from notifier.bus.postgres import asyncpg_dsn


@pytest.mark.parametrize(
    ("url", "dsn"),
    [
        ("postgresql+asyncpg://u:p@h:5/db", "postgresql://u:p@h:5/db"),
        ("postgresql+asyncpg://u@h/db?ssl=require", "postgresql://u@h/db?sslmode=require"),
    ],
)
def test_listen_connection_dsn(url: str, dsn: str) -> None:
    """The LISTEN connection gets a libpq DSN: no driver name, `ssl=` as `sslmode=`."""
    assert asyncpg_dsn(url) == dsn
