"""Presence (v1.1): GET /v1/users/{user_id}/presence and POST /v1/presence count a user's
open streams over every instance; a connect or disconnect shows within 2 s; the streams
of an instance killed with -9 stop counting within 30 s."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.e2e.http_support import assert_error
from tests.e2e.ws_support import own_server
from tests.support import (
    Server,
    make_token,
    new_user,
    publisher_headers,
    timeout,
    ws_connect,
)


def presence(server: Server, user: str) -> dict[str, Any]:
    response = httpx.get(
        f"{server.url}/v1/users/{user}/presence", headers=publisher_headers(), timeout=10
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bulk(server: Server, users: list[str]) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/presence",
        json={"user_ids": users},
        headers=publisher_headers(),
        timeout=10,
    )


async def settles(read: Callable[[], int], expected: int, seconds: float) -> float:
    """How long until `read()` gives `expected` (fails after `seconds`)."""
    started = time.monotonic()
    deadline = started + timeout(seconds)
    while True:
        value = await asyncio.to_thread(read)
        if value == expected:
            return time.monotonic() - started
        assert time.monotonic() < deadline, f"still {value}, expected {expected}"
        await asyncio.sleep(0.1)


async def test_connect_and_disconnect_show_within_two_seconds(server: Server) -> None:
    """0 before; 1 and then 2 as sockets open; back to 0 when they close; each change
    within 2 s."""
    user = new_user()
    assert presence(server, user) == {"user_id": user, "online": False, "connections": 0}
    count = lambda: int(presence(server, user)["connections"])  # noqa: E731
    async with ws_connect(server, user):
        assert await settles(count, 1, 2) < timeout(2)
        assert presence(server, user)["online"] is True
        async with ws_connect(server, user):
            await settles(count, 2, 2)
        await settles(count, 1, 2)
    await settles(count, 0, 2)
    assert presence(server, user)["online"] is False


async def test_bulk_answers_every_asked_user(server: Server) -> None:
    """Every asked id is in the answer, online or not; duplicates are answered once."""
    online, offline = new_user(), new_user()
    async with ws_connect(server, online):
        count = lambda: int(bulk(server, [online]).json()["presence"][online]["connections"])  # noqa: E731
        await settles(count, 1, 2)
        response = bulk(server, [online, offline, online])
    assert response.status_code == 200, response.text
    assert response.json() == {
        "presence": {
            online: {"online": True, "connections": 1},
            offline: {"online": False, "connections": 0},
        }
    }


def test_bulk_of_a_thousand_users(server: Server) -> None:
    """1,000 ids are accepted and all answered."""
    users = [new_user() for _ in range(1000)]
    response = bulk(server, users)
    assert response.status_code == 200, response.text
    assert set(response.json()["presence"]) == set(users)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_ids": []},
        {"user_ids": ["x"] * 1001},
        {"user_ids": [""]},
        {"user_ids": [1]},
        {"user_ids": ["a"], "x": 1},
    ],
    ids=["empty", "none", "1001", "blank-id", "int-id", "unknown-field"],
)
def test_bad_bulk_body_is_422(server: Server, body: object) -> None:
    """Bodies outside 1..1000 string ids of 1..255 characters are refused."""
    response = httpx.post(
        server.url + "/v1/presence", json=body, headers=publisher_headers(), timeout=10
    )
    assert_error(response, 422)


def test_presence_needs_a_publisher_key(server: Server) -> None:
    """A user token is not a publisher key: 401 on both routes."""
    user = new_user()
    as_user = {"Authorization": f"Bearer {make_token(user)}"}
    single = httpx.get(f"{server.url}/v1/users/{user}/presence", headers=as_user, timeout=10)
    assert_error(single, 401)
    many = httpx.post(
        server.url + "/v1/presence", json={"user_ids": [user]}, headers=as_user, timeout=10
    )
    assert_error(many, 401)


@contextlib.asynccontextmanager
async def sockets(server: Server, user: str, count: int) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(ws_connect(server, user))
        yield


async def test_three_instances_one_killed(pg_database: str) -> None:
    """Three instances on PostgreSQL hold 1, 2 and 3 sockets of a user: presence is 6 on
    each instance; after one is killed with -9 its 3 stop counting within 30 s."""
    user = new_user()
    env = {"NOTIFIER_BUS": "postgres"}
    async with (
        own_server(pg_database, **env) as a,
        own_server(pg_database, **env) as b,
        own_server(pg_database, **env) as c,
        sockets(a, user, 1),
        sockets(b, user, 2),
        sockets(c, user, 3),
    ):
        for server in (a, b, c):
            await settles(lambda s=server: int(presence(s, user)["connections"]), 6, 2)  # type: ignore[misc]
        killed_at = time.monotonic()
        await asyncio.to_thread(c.kill)
        took = await settles(lambda: int(presence(a, user)["connections"]), 3, 30)
        assert time.monotonic() - killed_at < timeout(30), took
        assert presence(b, user)["connections"] == 3


def test_presence_of_a_user_id_with_a_newline(server: Server) -> None:
    """A user id may hold a newline (only NUL is refused): its presence route is found
    (it was a 404: the path convertor stopped at the newline)."""
    response = httpx.get(
        server.url + "/v1/users/a%0Ab/presence", headers=publisher_headers(), timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == "a\nb"
