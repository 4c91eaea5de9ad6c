"""End-to-end fixtures: the HTTP tests' shared keep-alive client, two instances on one bus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.http_support import close_http
from tests.support import Server


@pytest.fixture(scope="session", autouse=True)
def _close_shared_http_client() -> Iterator[None]:
    """tests/e2e/http_support.py makes its client on first use; this closes it at the end."""
    yield
    close_http()


@pytest.fixture(scope="module", params=["postgres", "redis"])
def two_instances(
    request: pytest.FixtureRequest, pg_database: str
) -> Iterator[tuple[Server, Server]]:
    """Two instances on one database, fanning out through the bus under test.

    One pair per module and bus, not per test: starting two servers is most of a short
    test's time. The tests that use it make their own users and never stop a server."""
    env = {"NOTIFIER_BUS": request.param}
    first = Server(pg_database, env_extra=env).start()
    second = Server(pg_database, env_extra=env).start()
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()
