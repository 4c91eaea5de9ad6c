"""Helpers shared by the HTTP end-to-end tests (test_batch, test_inbox, test_publish,
test_http_auth, test_bad_input): one keep-alive client and the requests built on it.

A fresh httpx client per call costs ~20 ms, so every request here goes through one client
for the whole test session: `http()` creates it on first use, and the session fixture in
tests/e2e/conftest.py closes it at the end.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support import API_KEY, Server, publisher_headers, user_headers

_client: httpx.Client | None = None


def http() -> httpx.Client:
    """The session's keep-alive client (60 s default timeout: 1 MiB bodies go through it)."""
    global _client
    if _client is None:
        _client = httpx.Client(timeout=60)
    return _client


def close_http() -> None:
    """Close the session's client, if one was made; `http()` would make a new one."""
    global _client
    if _client is not None:
        _client.close()
        _client = None


def publish_batch(
    server: Server, items: list[dict[str, Any]], *, api_key: str = API_KEY
) -> httpx.Response:
    """Like tests.support.publish_batch, on the shared keep-alive client."""
    return http().post(
        server.url + "/v1/notifications/batch",
        json={"notifications": items},
        headers=publisher_headers(api_key),
        timeout=60,
    )


def inbox(server: Server, user: str, **params: Any) -> list[dict[str, Any]]:
    """One page of the user's inbox (up to 500, newest first unless `params` say otherwise)."""
    response = http().get(
        server.url + "/v1/me/notifications",
        params={"limit": 500, **params},
        headers=user_headers(user),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["notifications"]
    return items


def all_ascending(server: Server, user: str) -> list[dict[str, Any]]:
    """The user's whole inbox, oldest first, paging with `after`."""
    found: list[dict[str, Any]] = []
    while True:
        page = inbox(server, user, after=found[-1]["seq"] if found else 0)
        if not page:
            return found
        found.extend(page)


def unread(server: Server, user: str) -> int:
    response = http().get(
        server.url + "/v1/me/notifications/unread-count", headers=user_headers(user), timeout=10
    )
    assert response.status_code == 200, response.text
    count: int = response.json()["unread"]
    return count


def assert_error(response: httpx.Response, status: int) -> None:
    """An error answer: `status`, a JSON object with a detail, and no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and "detail" in body, body
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


RFC3339_UTC = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?Z$")


def parse_time(text: str) -> datetime:
    match = RFC3339_UTC.match(text)
    assert match, f"not RFC 3339 UTC with Z and 0..6 fraction digits: {text!r}"
    *parts, fraction = match.groups()
    micros = int((fraction or "0").ljust(6, "0"))
    year, month, day, hour, minute, second = (int(p) for p in parts)
    return datetime(year, month, day, hour, minute, second, micros, tzinfo=UTC)
