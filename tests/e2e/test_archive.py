"""Archive (v1.1): POST /v1/me/notifications/archive, `archived=` on the list, unread
counts without archived ones, `archived` frames on every instance, replay unchanged."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.http_support import assert_error, http, inbox, publish_batch, unread
from tests.e2e.ws_support import recv_frame
from tests.support import (
    Server,
    new_user,
    no_frame,
    recv_until,
    user_headers,
    ws_connect,
)

ARCHIVE = "/v1/me/notifications/archive"


def seed(server: Server, user: str, count: int) -> list[dict[str, Any]]:
    items = [{"user_id": user, "type": "seed", "data": {"i": i}} for i in range(count)]
    response = publish_batch(server, items)
    assert response.status_code == 201, response.text
    created: list[dict[str, Any]] = response.json()["notifications"]
    return created


def archive(server: Server, user: str, body: object) -> httpx.Response:
    return http().post(server.url + ARCHIVE, json=body, headers=user_headers(user), timeout=10)


def archived(server: Server, user: str, ids: list[str]) -> int:
    response = archive(server, user, {"ids": ids})
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"archived"}
    count: int = response.json()["archived"]
    return count


def test_archive_counts_changes_and_marks_read(server: Server) -> None:
    """`archived` counts rows that went from not archived to archived; an archived
    notification has `archived_at` and `read_at` set; a repeat changes nothing."""
    user = new_user()
    created = seed(server, user, 4)
    ids = [created[0]["id"], created[2]["id"]]
    assert archived(server, user, ids) == 2
    assert archived(server, user, ids) == 0
    listed = {n["id"]: n for n in inbox(server, user, archived="any")}
    for i in ids:
        assert listed[i]["archived_at"] is not None and listed[i]["read_at"] is not None
    assert listed[created[1]["id"]]["archived_at"] is None


def test_archiving_a_read_notification_keeps_its_read_at(server: Server) -> None:
    """A notification read before keeps the moment it was read."""
    user = new_user()
    [one] = seed(server, user, 1)
    response = http().post(
        server.url + "/v1/me/notifications/read",
        json={"ids": [one["id"]]},
        headers=user_headers(user),
    )
    assert response.json() == {"updated": 1}
    read_at = inbox(server, user)[0]["read_at"]
    assert archived(server, user, [one["id"]]) == 1
    [after] = inbox(server, user, archived="true")
    assert after["read_at"] == read_at and after["archived_at"] is not None


def test_list_filters_archived(server: Server) -> None:
    """Default and `archived=false` leave archived ones out; `true` lists only them;
    `any` lists all; the other filters and cursors still apply."""
    user = new_user()
    created = seed(server, user, 6)
    assert archived(server, user, [created[1]["id"], created[4]["id"]]) == 2
    seqs = lambda **p: [n["seq"] for n in inbox(server, user, **p)]  # noqa: E731
    assert seqs() == [6, 4, 3, 1]
    assert seqs(archived="false") == [6, 4, 3, 1]
    assert seqs(archived="true") == [5, 2]
    assert seqs(archived="any") == [6, 5, 4, 3, 2, 1]
    assert seqs(archived="any", after=2) == [3, 4, 5, 6]
    assert seqs(archived="true", unread="true") == []
    assert seqs(unread="true", before=4) == [3, 1]


@pytest.mark.parametrize("value", ["yes", "1", "", "False"])
def test_bad_archived_filter_is_422(server: Server, value: str) -> None:
    """`archived` is exactly false, true or any."""
    response = http().get(
        server.url + "/v1/me/notifications",
        params={"archived": value},
        headers=user_headers(new_user()),
    )
    assert_error(response, 422)


def test_unread_count_never_counts_archived(server: Server) -> None:
    """Archiving an unread notification takes it out of the unread count."""
    user = new_user()
    created = seed(server, user, 3)
    assert unread(server, user) == 3
    archived(server, user, [created[0]["id"]])
    assert unread(server, user) == 2


def test_other_users_ids_match_nothing(server: Server) -> None:
    """Ids of another user's notifications, or unknown ids, archive nothing."""
    owner, other = new_user(), new_user()
    [one] = seed(server, owner, 1)
    assert archived(server, other, [one["id"], str(uuid.uuid4())]) == 0
    assert inbox(server, owner)[0]["archived_at"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": []},
        {"ids": "x"},
        {"ids": ["not-a-uuid"]},
        {"ids": [1]},
        {"ids": [str(uuid.uuid4())] * 1001},
        {"ids": [str(uuid.uuid4())], "extra": 1},
        [],
    ],
    ids=["empty", "no-ids", "string", "bad-uuid", "int", "1001", "unknown-field", "array"],
)
def test_bad_archive_body_is_422_and_changes_nothing(server: Server, body: object) -> None:
    """Malformed bodies are refused with 422; nothing is archived."""
    user = new_user()
    seed(server, user, 1)
    assert_error(archive(server, user, body), 422)
    assert unread(server, user) == 1


def test_archive_needs_a_user_token(server: Server) -> None:
    """Without a token, or with a publisher key: 401."""
    response = http().post(server.url + ARCHIVE, json={"ids": [str(uuid.uuid4())]})
    assert_error(response, 401)


async def test_archived_frame_reaches_every_socket_of_the_user(server: Server) -> None:
    """Each open socket of the user gets {"type": "archived", "ids": [...]} naming the ids
    that changed, in request order; another user's socket gets nothing."""
    user = new_user()
    created = seed(server, user, 3)
    ids = [created[2]["id"], created[0]["id"]]
    async with (
        ws_connect(server, user) as first,
        ws_connect(server, user) as second,
        ws_connect(server, new_user()) as outsider,
    ):
        assert archived(server, user, [*ids, ids[0]]) == 2
        for ws in (first, second):
            assert await recv_frame(ws) == {"type": "archived", "ids": ids}
        assert await no_frame(outsider)


async def test_replay_keeps_archived_notifications_with_archived_at(server: Server) -> None:
    """Replay is not filtered: an archived notification keeps its place, with its
    `archived_at` set."""
    user = new_user()
    created = seed(server, user, 3)
    archived(server, user, [created[1]["id"]])
    async with ws_connect(server, user, after=0) as ws:
        replayed, done = await recv_until(ws, "replayed")
    assert [n["seq"] for n in replayed] == [1, 2, 3]
    assert done["last_seq"] == 3
    assert replayed[1]["archived_at"] is not None and replayed[1]["read_at"] is not None
    assert replayed[0]["archived_at"] is None


async def test_archived_frames_cross_instances_whatever_their_length(
    two_instances: tuple[Server, Server],
) -> None:
    """An archive of 250 ids on instance B reaches a socket on instance A as `archived`
    frames naming all 250 in order (each frame small enough for any bus)."""
    a, b = two_instances
    user = new_user()
    created = seed(b, user, 250)
    ids = [n["id"] for n in created]
    async with ws_connect(a, user) as ws:
        assert archived(b, user, ids) == 250
        got: list[str] = []
        while len(got) < 250:
            frame = await recv_frame(ws)
            assert frame["type"] == "archived", frame
            got.extend(frame["ids"])
    assert got == ids
