"""A driver error that says the database cannot be reached now answers 503, not 500,
even when it arrives unwrapped or wrapped in another error (`app._database_unavailable`)."""

from __future__ import annotations

import asyncpg

from notifier.app import _database_unavailable


class DriverError(Exception):
    """Like SQLAlchemy's adapted asyncpg error: raised from the driver's own."""


def test_a_restart_refusing_connections_is_unavailable() -> None:
    try:
        try:
            raise asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")
        except asyncpg.PostgresError as error:
            raise DriverError(str(error)) from error
    except DriverError as wrapped:
        assert _database_unavailable(wrapped)


def test_other_errors_stay_internal() -> None:
    try:
        try:
            raise asyncpg.exceptions.UndefinedTableError("relation does not exist")
        except asyncpg.PostgresError as error:
            raise DriverError(str(error)) from error
    except DriverError as wrapped:
        assert not _database_unavailable(wrapped)
    assert not _database_unavailable(ValueError("bad"))
