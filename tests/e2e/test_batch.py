"""POST /v1/notifications/batch: order, per-user seqs, limits, all or nothing, idempotency."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.http_support import all_ascending, assert_error, http, inbox, publish_batch, unread
from tests.support import (
    OTHER_API_KEY,
    Server,
    new_user,
    publish,
    publisher_headers,
)


def item(user: str, type_: str = "batch.event", data: Any = None, **extra: Any) -> dict[str, Any]:
    return {"user_id": user, "type": type_, "data": {"n": 1} if data is None else data, **extra}


def assert_next_seq(server: Server, user: str, expected: int) -> None:
    response = publish(http(), server, user)
    assert response.status_code == 201, response.text
    assert response.json()["seq"] == expected


def test_batch_answers_201_in_request_order(server: Server) -> None:
    """A batch answers 201 with one Notification per item, in request order."""
    a, b, c = new_user(), new_user(), new_user()
    items = [item(u, f"t.{i}", {"i": i}) for i, u in enumerate([a, b, c, b, a])]
    response = publish_batch(server, items)
    assert response.status_code == 201, response.text
    created = response.json()["notifications"]
    assert len(created) == 5
    for sent, got in zip(items, created, strict=True):
        assert {"id", "user_id", "seq", "type", "data", "created_at", "read_at"} <= got.keys()
        assert (got["user_id"], got["type"], got["data"]) == (
            sent["user_id"],
            sent["type"],
            sent["data"],
        )
        assert got["read_at"] is None
    assert len({n["id"] for n in created}) == 5
    assert inbox(server, a, after=0) == [created[0], created[4]]
    assert inbox(server, b, after=0) == [created[1], created[3]]
    assert inbox(server, c) == [created[2]]


def test_batch_gives_each_user_consecutive_seqs_in_request_order(server: Server) -> None:
    """Interleaved users each get consecutive seqs in request order, after their last one."""
    a, b = new_user(), new_user()
    assert publish(http(), server, a).json()["seq"] == 1
    order = [a, b, b, a, a, b, a]
    response = publish_batch(server, [item(u, data={"i": i}) for i, u in enumerate(order)])
    assert response.status_code == 201, response.text
    created = response.json()["notifications"]
    assert [n["seq"] for n in created if n["user_id"] == a] == [2, 3, 4, 5]
    assert [n["seq"] for n in created if n["user_id"] == b] == [1, 2, 3]
    assert [n["data"]["i"] for n in created] == list(range(len(order)))
    assert [n["seq"] for n in all_ascending(server, a)] == [1, 2, 3, 4, 5]
    assert_next_seq(server, b, 4)


def test_batch_of_1000_items_is_accepted(server: Server) -> None:
    """1000 items (the maximum) are stored, seqs 1..N per user in request order."""
    a, b = new_user(), new_user()
    items = [item(a if i % 4 else b, data={"i": i}) for i in range(1000)]
    response = publish_batch(server, items)
    assert response.status_code == 201, response.text
    created = response.json()["notifications"]
    assert [n["data"]["i"] for n in created] == list(range(1000))
    assert [n["seq"] for n in created if n["user_id"] == a] == list(range(1, 751))
    assert [n["seq"] for n in created if n["user_id"] == b] == list(range(1, 251))
    assert [n["seq"] for n in all_ascending(server, a)] == list(range(1, 751))
    assert unread(server, b) == 250


@pytest.mark.parametrize("count", [0, 1001])
def test_batch_size_outside_1_to_1000_is_422(server: Server, count: int) -> None:
    """An empty batch or one of 1001 items is 422 and stores nothing."""
    user = new_user()
    response = publish_batch(server, [item(user, data={"i": i}) for i in range(count)])
    assert_error(response, 422)
    assert inbox(server, user) == []
    assert_next_seq(server, user, 1)


INVALID_ITEMS = {
    "empty type": (item("X", ""), 422),
    "empty user_id": (item(""), 422),
    "data a list": (item("X", data=[1, 2]), 422),
    "data a string": (item("X", data="text"), 422),
    "data null": ({"user_id": "X", "type": "t", "data": None}, 422),
    "missing data": ({"user_id": "X", "type": "t"}, 422),
    "user_id a number": ({"user_id": 7, "type": "t", "data": {}}, 422),
    "type of 256 chars": (item("X", "t" * 256), 422),
    "idempotency_key of 256 chars": (item("X", idempotency_key="k" * 256), 422),
    "data over the limit": (item("X", data={"p": "x" * 65529}), 413),
}


@pytest.mark.parametrize("case", list(INVALID_ITEMS))
def test_batch_with_one_invalid_item_stores_nothing(server: Server, case: str) -> None:
    """One invalid item refuses the whole batch with its status; no user's state changes."""
    a, b = new_user(), new_user()
    assert publish(http(), server, a).status_code == 201
    bad, status = INVALID_ITEMS[case]
    bad = {k: (b if v == "X" else v) for k, v in bad.items()}
    items = [item(a, data={"i": 0}), item(b, data={"i": 1}), bad, item(a, data={"i": 3})]
    response = publish_batch(server, items)
    assert_error(response, status)
    assert [n["seq"] for n in inbox(server, a)] == [1]
    assert unread(server, a) == 1
    assert inbox(server, b) == []
    assert unread(server, b) == 0
    assert_next_seq(server, a, 2)
    assert_next_seq(server, b, 1)


def test_batch_item_at_payload_limit_is_accepted(server: Server) -> None:
    """An item whose data is exactly the payload limit is stored; one byte more is 413."""
    user = new_user()
    exact = {"p": "x" * (65536 - len('{"p":""}'))}
    response = publish_batch(server, [item(user, data=exact)])
    assert response.status_code == 201, response.text
    over = publish_batch(server, [item(user, data={"p": exact["p"] + "x"})])
    assert_error(over, 413)
    assert [n["seq"] for n in inbox(server, user)] == [1]


def test_batch_idempotency_key_repeat_returns_originals_in_place(server: Server) -> None:
    """Repeated item keys come back as the originals; only the new items are stored."""
    a, b = new_user(), new_user()
    k1, k2, k3 = (f"key-{uuid.uuid4()}" for _ in range(3))
    first_items = [
        item(a, data={"i": 1}, idempotency_key=k1),
        item(b, data={"i": 2}, idempotency_key=k2),
    ]
    first = publish_batch(server, first_items)
    assert first.status_code == 201, first.text
    originals = first.json()["notifications"]
    second_items = [
        item(a, data={"i": 3}, idempotency_key=k3),
        first_items[1],
        item(a, data={"i": 4}),
        first_items[0],
    ]
    second = publish_batch(server, second_items)
    assert second.status_code == 201, second.text
    answered = second.json()["notifications"]
    assert answered[1] == originals[1]
    assert answered[3] == originals[0]
    assert [answered[0]["seq"], answered[2]["seq"]] == [2, 3]
    assert answered[0]["id"] not in {o["id"] for o in originals}
    stored_a = all_ascending(server, a)
    assert [n["data"]["i"] for n in stored_a] == [1, 3, 4]
    assert [n["seq"] for n in stored_a] == [1, 2, 3]
    assert inbox(server, b) == [originals[1]]


def test_batch_item_key_and_header_key_share_one_namespace(server: Server) -> None:
    """A key first sent as a header, repeated as an item key, answers the original."""
    user = new_user()
    key = f"key-{uuid.uuid4()}"
    single = publish(http(), server, user, "t", {"v": 1}, key=key)
    assert single.status_code == 201, single.text
    response = publish_batch(server, [item(user, "t", {"v": 1}, idempotency_key=key)])
    assert response.status_code == 201, response.text
    assert response.json()["notifications"] == [single.json()]
    conflict = publish_batch(server, [item(user, "t", {"v": 2}, idempotency_key=key)])
    assert_error(conflict, 409)
    assert inbox(server, user) == [single.json()]


def test_batch_repeating_a_key_within_itself_stores_it_once(server: Server) -> None:
    """The same key and item twice in one batch is one notification, answered twice."""
    user = new_user()
    key = f"key-{uuid.uuid4()}"
    twice = item(user, data={"v": 1}, idempotency_key=key)
    response = publish_batch(server, [twice, item(user, data={"v": 2}), twice])
    assert response.status_code == 201, response.text
    first, middle, third = response.json()["notifications"]
    assert first == third
    assert (first["seq"], middle["seq"]) == (1, 2)
    assert len(inbox(server, user)) == 2


@pytest.mark.parametrize("where", ["stored", "same batch"])
def test_batch_with_conflicting_key_is_409_and_stores_nothing(server: Server, where: str) -> None:
    """A key reused with another body (stored earlier or in the batch) refuses it all."""
    a, b = new_user(), new_user()
    key = f"key-{uuid.uuid4()}"
    if where == "stored":
        original = publish_batch(server, [item(a, data={"v": 1}, idempotency_key=key)])
        assert original.status_code == 201, original.text
        items = [item(b), item(a, data={"v": 2}, idempotency_key=key), item(a)]
    else:
        assert publish(http(), server, a).status_code == 201
        items = [
            item(b),
            item(a, data={"v": 1}, idempotency_key=key),
            item(a, data={"v": 2}, idempotency_key=key),
        ]
    response = publish_batch(server, items)
    assert_error(response, 409)
    assert inbox(server, b) == []
    assert [n["seq"] for n in inbox(server, a)] == [1]
    assert_next_seq(server, a, 2)
    assert_next_seq(server, b, 1)


def test_batch_keys_belong_to_their_publisher(server: Server) -> None:
    """An item key used by one publisher is free for another: new rows, no conflict."""
    user = new_user()
    key = f"key-{uuid.uuid4()}"
    main = publish_batch(server, [item(user, data={"v": 1}, idempotency_key=key)])
    assert main.status_code == 201, main.text
    other = publish_batch(
        server, [item(user, data={"v": 2}, idempotency_key=key)], api_key=OTHER_API_KEY
    )
    assert other.status_code == 201, other.text
    assert other.json()["notifications"][0]["seq"] == 2
    assert len(inbox(server, user)) == 2


async def post_batches_at_once(
    server: Server, batches: list[list[dict[str, Any]]]
) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(
                    server.url + "/v1/notifications/batch",
                    json={"notifications": items},
                    headers=publisher_headers(),
                )
                for items in batches
            )
        )


async def test_concurrent_overlapping_batches_keep_seqs_gap_free(server: Server) -> None:
    """Batches racing over the same users, in different orders, all commit gap-free."""
    users = [new_user() for _ in range(4)]
    rng = random.Random(7)
    batches = []
    for b in range(20):
        order = [u for u in users for _ in range(5)]
        rng.shuffle(order)
        batches.append([item(u, data={"b": b, "i": i}) for i, u in enumerate(order)])
    responses = await post_batches_at_once(server, batches)
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
    for response in responses:
        created = response.json()["notifications"]
        for user in users:
            mine = [n["seq"] for n in created if n["user_id"] == user]
            assert mine == list(range(mine[0], mine[0] + 5)), mine
    for user in users:
        assert [n["seq"] for n in all_ascending(server, user)] == list(range(1, 101))


async def test_concurrent_identical_keyed_batches_store_once(server: Server) -> None:
    """Ten identical keyed batches at once store each item once and all answer the same."""
    a, b = new_user(), new_user()
    items = [
        item(u, data={"i": i}, idempotency_key=f"key-{uuid.uuid4()}")
        for i, u in enumerate([a, b, a, b, a])
    ]
    responses = await post_batches_at_once(server, [items] * 10)
    assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses]
    answers = [r.json()["notifications"] for r in responses]
    assert all(answer == answers[0] for answer in answers)
    assert [n["seq"] for n in answers[0]] == [1, 1, 2, 2, 3]
    assert len(all_ascending(server, a)) == 3
    assert len(all_ascending(server, b)) == 2
