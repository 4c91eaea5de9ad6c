"""End-to-end fixtures: close the HTTP tests' shared keep-alive client after the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.http_support import close_http


@pytest.fixture(scope="session", autouse=True)
def _close_shared_http_client() -> Iterator[None]:
    """tests/e2e/http_support.py makes its client on first use; this closes it at the end."""
    yield
    close_http()
