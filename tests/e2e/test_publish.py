"""POST /v1/notifications: the Notification object, per-user seq, idempotency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.http_support import all_ascending, http, inbox, parse_time, unread
from tests.support import (
    API_KEY,
    OTHER_API_KEY,
    Server,
    new_user,
    publish,
    publisher_headers,
)

FIELDS = {"id", "user_id", "seq", "type", "data", "created_at", "read_at", "topic", "archived_at"}


def post_raw(
    server: Server, body: bytes, *, key: str | None = None, api_key: str = API_KEY
) -> httpx.Response:
    headers = publisher_headers(api_key, **{"Content-Type": "application/json"})
    if key is not None:
        headers["Idempotency-Key"] = key
    return http().post(server.url + "/v1/notifications", content=body, headers=headers, timeout=10)


def assert_notification(item: dict[str, Any]) -> None:
    assert item.keys() >= FIELDS, item
    assert isinstance(item["id"], str) and str(uuid.UUID(item["id"]))
    assert isinstance(item["user_id"], str)
    assert isinstance(item["seq"], int) and not isinstance(item["seq"], bool)
    assert isinstance(item["type"], str)
    assert isinstance(item["data"], dict)
    assert isinstance(item["created_at"], str)
    parse_time(item["created_at"])
    assert item["read_at"] is None or isinstance(item["read_at"], str)
    assert item["topic"] is None or isinstance(item["topic"], str)
    assert item["archived_at"] is None or isinstance(item["archived_at"], str)


def test_publish_returns_201_with_full_notification(server: Server) -> None:
    """A publish answers 201 with all nine fields, of the right types and values."""
    user = new_user()
    data = {"text": "hi", "nested": {"list": [1, 2.5, None, True, "é"]}, "n": -3}
    before = datetime.now(UTC) - timedelta(seconds=5)
    response = publish(http(), server, user, "comment.created", data)
    after = datetime.now(UTC) + timedelta(seconds=5)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    item = response.json()
    assert_notification(item)
    assert item["user_id"] == user
    assert item["type"] == "comment.created"
    assert item["data"] == data
    assert item["seq"] == 1
    assert item["read_at"] is None
    assert (item["topic"], item["archived_at"]) == (None, None)  # direct, not archived (v1.1)
    assert before <= parse_time(item["created_at"]) <= after
    assert inbox(server, user) == [item]


def test_data_round_trips_exactly(server: Server) -> None:
    """Unusual but valid JSON data comes back unchanged, in the answer and the inbox."""
    user = new_user()
    nested: dict[str, Any] = {"leaf": True}
    for depth in range(40):
        nested = {f"d{depth}": nested}
    data = {
        "empty": {},
        "nul": "a\u0000b",
        "controls": "\t\n\r\b\f\u0001",
        "quotes": "\"'\\/",
        "unicode": "é漢字\U0001f600",
        "clé ünïcode": 1,
        "": "empty key",
        "max": 2**63 - 1,
        "min": -(2**63),
        "float": 1.5e300,
        "tiny": -2.5e-300,
        "list": [[], {}, None, False, 0, -0.5, ""],
        "nested": nested,
    }
    response = publish(http(), server, user, "t", data)
    assert response.status_code == 201, response.text
    assert response.json()["data"] == data
    assert inbox(server, user)[0]["data"] == data
    empty = publish(http(), server, user, "t", {})
    assert empty.status_code == 201 and empty.json()["data"] == {}


def test_seq_starts_at_one_and_is_consecutive_per_user(server: Server) -> None:
    """Each user's seqs run 1, 2, 3, ... independently of other users' publishes."""
    alice, bob = new_user(), new_user()
    seqs: dict[str, list[int]] = {alice: [], bob: []}
    ids: set[str] = set()
    with httpx.Client(timeout=10) as client:
        for user in [alice, bob, alice, alice, bob, alice, bob, bob, bob]:
            response = publish(client, server, user)
            assert response.status_code == 201, response.text
            seqs[user].append(response.json()["seq"])
            ids.add(response.json()["id"])
    assert seqs[alice] == [1, 2, 3, 4]
    assert seqs[bob] == [1, 2, 3, 4, 5]
    assert len(ids) == 9
    assert [n["seq"] for n in inbox(server, alice)] == [4, 3, 2, 1]
    assert all(n["user_id"] == bob for n in inbox(server, bob))


def test_same_idempotency_key_and_body_returns_original_with_200(server: Server) -> None:
    """A repeat answers 200 with the original object and stores nothing new."""
    user = new_user()
    key = f"key-{uuid.uuid4()}"
    first = publish(http(), server, user, "order.paid", {"amount": 5}, key=key)
    assert first.status_code == 201, first.text
    for _ in range(2):
        again = publish(http(), server, user, "order.paid", {"amount": 5}, key=key)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
    assert inbox(server, user) == [first.json()]
    assert unread(server, user) == 1
    following = publish(http(), server, user)
    assert following.status_code == 201 and following.json()["seq"] == 2


@pytest.mark.parametrize("change", ["user_id", "type", "data"])
def test_same_idempotency_key_with_other_body_is_409(server: Server, change: str) -> None:
    """Reusing a key with another user_id, type or data is 409 and stores nothing."""
    user, other_user = new_user(), new_user()
    key = f"key-{uuid.uuid4()}"
    first = publish(http(), server, user, "order.paid", {"amount": 5}, key=key)
    assert first.status_code == 201, first.text
    body = {"user_id": user, "type": "order.paid", "data": {"amount": 5}}
    body[change] = {"user_id": other_user, "type": "order.refunded", "data": {"amount": 6}}[change]
    conflict = post_raw(server, orjson.dumps(body), key=key)
    assert conflict.status_code == 409, conflict.text
    assert "detail" in conflict.json()
    assert inbox(server, user) == [first.json()]
    assert inbox(server, other_user) == []
    assert unread(server, other_user) == 0
    # The key still stands for the original, and no seq was used up.
    again = publish(http(), server, user, "order.paid", {"amount": 5}, key=key)
    assert again.status_code == 200 and again.json() == first.json()
    assert publish(http(), server, user).json()["seq"] == 2


def test_idempotency_compares_data_by_meaning_not_bytes(server: Server) -> None:
    """The same data with keys in another order and other whitespace is a repeat."""
    user = new_user()
    key = f"key-{uuid.uuid4()}"
    first = post_raw(
        server,
        b'{"user_id":"%s","type":"t","data":{"a":1,"b":{"x":[1,2],"y":"z"}}}' % user.encode(),
        key=key,
    )
    assert first.status_code == 201, first.text
    reordered = (
        b'{ "data" : { "b" : { "y" : "z", "x" : [ 1, 2 ] }, "a" : 1 },\n'
        b'  "type" : "t", "user_id" : "%s" }' % user.encode()
    )
    again = post_raw(server, reordered, key=key)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert inbox(server, user) == [first.json()]


def test_idempotency_key_belongs_to_its_publisher(server: Server) -> None:
    """The same key from another publisher is another key: a new notification, never 409."""
    user = new_user()
    key = f"key-{uuid.uuid4()}"
    main = publish(http(), server, user, "t", {"v": 1}, key=key)
    assert main.status_code == 201, main.text
    same_body = publish(http(), server, user, "t", {"v": 1}, key=key, api_key=OTHER_API_KEY)
    assert same_body.status_code == 201, same_body.text
    assert same_body.json()["id"] != main.json()["id"]
    assert same_body.json()["seq"] == 2
    other_key = f"key-{uuid.uuid4()}"
    first = publish(http(), server, user, "t", {"v": 2}, key=other_key)
    assert first.status_code == 201, first.text
    other_body = publish(http(), server, user, "u", {"v": 3}, key=other_key, api_key=OTHER_API_KEY)
    assert other_body.status_code == 201, other_body.text
    # Each publisher's repeat answers its own original.
    assert publish(http(), server, user, "t", {"v": 1}, key=key).json() == main.json()
    repeat = publish(http(), server, user, "t", {"v": 1}, key=key, api_key=OTHER_API_KEY)
    assert repeat.status_code == 200 and repeat.json() == same_body.json()
    assert [n["seq"] for n in inbox(server, user)] == [4, 3, 2, 1]


async def test_concurrent_publishes_for_one_user_get_gap_free_seqs(server: Server) -> None:
    """200 publishes for one user from two publishers at concurrency 20 get seqs 1..200."""
    user = new_user()
    total, concurrency = 200, 20
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await client.post(
                    server.url + "/v1/notifications",
                    json={"user_id": user, "type": "burst", "data": {"i": i}},
                    headers=publisher_headers(API_KEY if i % 2 else OTHER_API_KEY),
                )

        responses = await asyncio.gather(*(one(i) for i in range(total)))
    assert [r.status_code for r in responses] == [201] * total, [r.text for r in responses[:3]]
    assert sorted(r.json()["seq"] for r in responses) == list(range(1, total + 1))
    stored = all_ascending(server, user)
    assert [n["seq"] for n in stored] == list(range(1, total + 1))
    assert len({n["id"] for n in stored}) == total
    assert sorted(n["data"]["i"] for n in stored) == list(range(total))
    by_seq = {r.json()["seq"]: r.json() for r in responses}
    assert all(by_seq[n["seq"]] == n for n in stored)


async def test_concurrent_same_idempotency_key_stores_exactly_one(server: Server) -> None:
    """20 simultaneous requests with one key and body: one 201, the rest 200 with it."""
    user = new_user()
    key = f"key-{uuid.uuid4()}"
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=20)) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    server.url + "/v1/notifications",
                    json={"user_id": user, "type": "once", "data": {"k": 1}},
                    headers=publisher_headers(**{"Idempotency-Key": key}),
                )
                for _ in range(20)
            )
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201], [r.text for r in responses if r.status_code >= 300]
    assert len({r.json()["id"] for r in responses}) == 1
    stored = inbox(server, user)
    assert len(stored) == 1 and stored[0] == responses[0].json()
    assert stored[0]["seq"] == 1


async def test_concurrent_same_key_with_different_bodies_stores_one(server: Server) -> None:
    """Racing one key with two bodies stores one; the losing body's requests get 409."""
    user_a, user_b = new_user(), new_user()
    key = f"key-{uuid.uuid4()}"
    bodies = [{"user_id": u, "type": "race", "data": {"u": u}} for u in (user_a, user_b)] * 10
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=20)) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    server.url + "/v1/notifications",
                    json=body,
                    headers=publisher_headers(**{"Idempotency-Key": key}),
                )
                for body in bodies
            )
        )
    stored_a, stored_b = inbox(server, user_a), inbox(server, user_b)
    assert len(stored_a) + len(stored_b) == 1
    winner = user_a if stored_a else user_b
    [original] = stored_a or stored_b
    for body, response in zip(bodies, responses, strict=True):
        if body["user_id"] == winner:
            assert response.status_code in (200, 201), response.text
            assert response.json() == original
        else:
            assert response.status_code == 409, response.text
    assert sorted(r.status_code for r in responses).count(201) == 1


async def test_concurrent_publishes_through_two_instances_are_gap_free(
    pg_server: Server, pg_database: str
) -> None:
    """Two instances on one PostgreSQL database publishing for one user give seqs 1..N."""
    second = Server(pg_database).start()
    try:
        user = new_user()
        total = 200
        gate = asyncio.Semaphore(20)
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(i: int) -> httpx.Response:
                target = (pg_server, second)[i % 2]
                async with gate:
                    return await client.post(
                        target.url + "/v1/notifications",
                        json={"user_id": user, "type": "burst", "data": {"i": i}},
                        headers=publisher_headers((API_KEY, OTHER_API_KEY)[i // 2 % 2]),
                    )

            responses = await asyncio.gather(*(one(i) for i in range(total)))
        assert [r.status_code for r in responses] == [201] * total
        assert sorted(r.json()["seq"] for r in responses) == list(range(1, total + 1))
        assert [n["seq"] for n in all_ascending(second, user)] == list(range(1, total + 1))
    finally:
        second.stop()
