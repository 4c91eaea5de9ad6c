"""A driver error that says the database cannot be reached now answers 503, not 500,
even when it arrives unwrapped or wrapped in another error (`app._database_unavailable`)."""

from __future__ import annotations

import asyncpg

from notifier.app import _database_unavailable


class DriverError(Exception):
    """Like SQLAlchemy's adapted asyncpg error: raised from the driver's own."""


def _wrapped(error: Exception) -> DriverError:
    """`error` as the adapter raises it: a DriverError raised from the driver's own."""
    try:
        try:
            raise error
        except Exception as cause:
            raise DriverError(str(cause)) from cause
    except DriverError as wrapped:
        return wrapped


def test_a_restart_refusing_connections_is_unavailable() -> None:
    shutting_down = asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")
    assert _database_unavailable(_wrapped(shutting_down))


def test_other_errors_stay_internal() -> None:
    missing = asyncpg.exceptions.UndefinedTableError("relation does not exist")
    assert not _database_unavailable(_wrapped(missing))
    assert not _database_unavailable(ValueError("bad"))
