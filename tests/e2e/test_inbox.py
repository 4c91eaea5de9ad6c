"""The user's inbox: listing, paging, unread filter and count, marking read, isolation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.http_support import http, parse_time, publish_batch, unread
from tests.support import Server, new_user, user_headers


def seed(server: Server, user: str, count: int) -> list[dict[str, Any]]:
    items = [{"user_id": user, "type": "seed", "data": {"i": i}} for i in range(1, count + 1)]
    response = publish_batch(server, items)
    assert response.status_code == 201, response.text
    created: list[dict[str, Any]] = response.json()["notifications"]
    assert [n["seq"] for n in created] == list(range(1, count + 1))
    return created


def listing(server: Server, user: str, params: str | dict[str, Any] = "") -> httpx.Response:
    return http().get(
        server.url + "/v1/me/notifications",
        params=params or None,
        headers=user_headers(user),
        timeout=10,
    )


def seqs(server: Server, user: str, params: str | dict[str, Any] = "") -> list[int]:
    response = listing(server, user, params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return [n["seq"] for n in response.json()["notifications"]]


def mark_read(server: Server, user: str, body: dict[str, Any]) -> httpx.Response:
    return http().post(
        server.url + "/v1/me/notifications/read",
        json=body,
        headers=user_headers(user),
        timeout=10,
    )


def updated(server: Server, user: str, body: dict[str, Any]) -> int:
    response = mark_read(server, user, body)
    assert response.status_code == 200, response.text
    assert set(response.json()) >= {"updated"}
    count: int = response.json()["updated"]
    return count


def by_seq(server: Server, user: str) -> dict[int, dict[str, Any]]:
    response = listing(server, user, {"after": 0, "limit": 500})
    assert response.status_code == 200, response.text
    return {n["seq"]: n for n in response.json()["notifications"]}


def test_list_without_cursor_is_newest_first(server: Server) -> None:
    """Without after/before the inbox lists newest first, full objects as published."""
    user = new_user()
    created = seed(server, user, 10)
    response = listing(server, user)
    assert response.status_code == 200, response.text
    assert response.json()["notifications"] == list(reversed(created))
    assert seqs(server, user, {"limit": 3}) == [10, 9, 8]


def test_list_empty_inbox(server: Server) -> None:
    """A user with no notifications gets an empty list and an unread count of 0."""
    user = new_user()
    assert seqs(server, user) == []
    assert seqs(server, user, {"after": 0}) == []
    assert unread(server, user) == 0


def test_list_after_is_ascending_from_after_plus_one(server: Server) -> None:
    """after=SEQ lists ascending from SEQ+1, honouring limit."""
    user = new_user()
    seed(server, user, 10)
    assert seqs(server, user, {"after": 3}) == [4, 5, 6, 7, 8, 9, 10]
    assert seqs(server, user, {"after": 3, "limit": 2}) == [4, 5]
    assert seqs(server, user, {"after": 0}) == list(range(1, 11))
    assert seqs(server, user, {"after": 9}) == [10]
    assert seqs(server, user, {"after": 10}) == []
    assert seqs(server, user, {"after": 1000}) == []


def test_list_before_is_descending_below_before(server: Server) -> None:
    """before=SEQ lists descending from SEQ-1, honouring limit."""
    user = new_user()
    seed(server, user, 10)
    assert seqs(server, user, {"before": 5}) == [4, 3, 2, 1]
    assert seqs(server, user, {"before": 5, "limit": 2}) == [4, 3]
    assert seqs(server, user, {"before": 11}) == list(range(10, 0, -1))
    assert seqs(server, user, {"before": 1}) == []


def test_list_paging_with_after_visits_every_notification_once(server: Server) -> None:
    """Paging with after=last seq walks the inbox with no gap and no repeat."""
    user = new_user()
    seed(server, user, 23)
    found: list[int] = []
    while page := seqs(server, user, {"after": found[-1] if found else 0, "limit": 5}):
        assert len(page) <= 5
        found.extend(page)
    assert found == list(range(1, 24))


def test_list_with_both_after_and_before_is_422(server: Server) -> None:
    """after and before together are refused with 422."""
    user = new_user()
    seed(server, user, 3)
    response = listing(server, user, {"after": 1, "before": 3})
    assert response.status_code == 422, response.text
    assert "detail" in response.json()


def test_list_limit_defaults_to_50_and_allows_1_to_500(server: Server) -> None:
    """The default page is 50 items; limit=1 and limit=500 are accepted."""
    user = new_user()
    seed(server, user, 510)
    assert seqs(server, user) == list(range(510, 460, -1))
    assert seqs(server, user, {"after": 0}) == list(range(1, 51))
    assert seqs(server, user, {"limit": 1}) == [510]
    assert seqs(server, user, {"limit": 500}) == list(range(510, 10, -1))
    assert seqs(server, user, {"after": 0, "limit": 500}) == list(range(1, 501))


BAD_QUERIES = [
    "limit=0",
    "limit=501",
    "limit=-1",
    "limit=abc",
    "limit=",
    "limit=1.5",
    "limit=99999999999999999999999",
    "after=1e3",
    "after=-1",
    "after=abc",
    "after=1.5",
    "before=-1",
    "before=xyz",
    "unread=maybe",
    "after=1&before=5",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_list_with_malformed_query_is_422(server: Server, query: str) -> None:
    """An out-of-range or malformed query value is 422 with a JSON detail."""
    user = new_user()
    response = listing(server, user, query)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()
    assert "Traceback" not in response.text


def test_unread_filter_and_count(server: Server) -> None:
    """unread=true lists only unread ones; unread-count counts them."""
    user = new_user()
    seed(server, user, 8)
    assert unread(server, user) == 8
    assert updated(server, user, {"up_to_seq": 3}) == 3
    assert unread(server, user) == 5
    assert seqs(server, user, {"unread": "true"}) == [8, 7, 6, 5, 4]
    assert seqs(server, user, {"unread": "true", "after": 0}) == [4, 5, 6, 7, 8]
    assert seqs(server, user, {"unread": "true", "after": 5}) == [6, 7, 8]
    assert seqs(server, user, {"unread": "true", "before": 6}) == [5, 4]
    assert seqs(server, user, {"unread": "true", "limit": 2}) == [8, 7]
    assert seqs(server, user, {"unread": "false"}) == list(range(8, 0, -1))
    assert seqs(server, user) == list(range(8, 0, -1))


def test_read_up_to_seq_counts_only_rows_that_changed(server: Server) -> None:
    """up_to_seq marks seq <= N; updated counts unread→read rows; a repeat gives 0."""
    user = new_user()
    seed(server, user, 6)
    start = datetime.now(UTC) - timedelta(seconds=5)
    assert updated(server, user, {"up_to_seq": 3}) == 3
    end = datetime.now(UTC) + timedelta(seconds=5)
    assert updated(server, user, {"up_to_seq": 3}) == 0
    assert updated(server, user, {"up_to_seq": 5}) == 2
    assert updated(server, user, {"up_to_seq": 0}) == 0
    state = by_seq(server, user)
    for seq in (1, 2, 3, 4, 5):
        assert isinstance(state[seq]["read_at"], str)
        assert start <= parse_time(state[seq]["read_at"]) <= end + timedelta(seconds=5)
        assert parse_time(state[seq]["read_at"]) >= parse_time(state[seq]["created_at"])
    assert state[6]["read_at"] is None
    assert unread(server, user) == 1
    assert updated(server, user, {"up_to_seq": 1000}) == 1
    assert unread(server, user) == 0


def test_read_by_ids_counts_only_rows_that_changed(server: Server) -> None:
    """ids marks those notifications; already-read, repeated or unknown ids count nothing."""
    user = new_user()
    created = seed(server, user, 5)
    ids = [n["id"] for n in created]
    assert updated(server, user, {"ids": [ids[1], ids[3]]}) == 2
    assert updated(server, user, {"ids": [ids[1], ids[3]]}) == 0
    assert updated(server, user, {"ids": [ids[0], ids[0], ids[1], str(uuid.uuid4())]}) == 1
    state = by_seq(server, user)
    assert [seq for seq, n in sorted(state.items()) if n["read_at"] is not None] == [1, 2, 4]
    for seq in (1, 2, 4):
        parse_time(state[seq]["read_at"])
    assert unread(server, user) == 2
    assert seqs(server, user, {"unread": "true"}) == [5, 3]


def test_read_ids_of_another_users_notifications_match_nothing(server: Server) -> None:
    """A user cannot mark another user's notifications read by id."""
    me, other = new_user(), new_user()
    mine = seed(server, me, 1)
    theirs = seed(server, other, 2)
    assert updated(server, me, {"ids": [n["id"] for n in theirs]}) == 0
    assert updated(server, me, {"ids": [theirs[0]["id"], mine[0]["id"]]}) == 1
    assert unread(server, other) == 2
    assert all(n["read_at"] is None for n in by_seq(server, other).values())


def test_users_are_isolated(server: Server) -> None:
    """A user never sees, counts or marks another user's notifications."""
    alice, bob = new_user(), new_user()
    seed(server, alice, 3)
    seed(server, bob, 4)
    for user, count in ((alice, 3), (bob, 4)):
        for params in ({}, {"after": 0}, {"before": 100}, {"unread": "true"}):
            response = listing(server, user, params)
            assert response.status_code == 200
            items = response.json()["notifications"]
            assert len(items) == count
            assert {n["user_id"] for n in items} == {user}
        assert unread(server, user) == count
    assert updated(server, alice, {"up_to_seq": 100}) == 3
    assert unread(server, alice) == 0
    assert unread(server, bob) == 4
    assert seqs(server, bob, {"unread": "true"}) == [4, 3, 2, 1]


async def test_concurrent_reads_count_each_row_once(server: Server) -> None:
    """Racing mark-read calls report each unread→read row exactly once in total."""
    user = new_user()
    created = seed(server, user, 40)
    ids = [n["id"] for n in created]
    bodies: list[dict[str, Any]] = [{"up_to_seq": seq} for seq in (10, 20, 30, 40, 40)]
    bodies += [{"ids": ids[i : i + 15]} for i in range(0, 40, 5)]
    headers = user_headers(user)
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.post(server.url + "/v1/me/notifications/read", json=b, headers=headers)
                for b in bodies
            )
        )
    assert [r.status_code for r in responses] == [200] * len(bodies)
    assert sum(r.json()["updated"] for r in responses) == 40
    assert unread(server, user) == 0
