"""Topics over HTTP on both engines: subscribe and unsubscribe in bulk, list by page in
byte order, publish one notification per subscriber, idempotency in the publisher's one
key space, and every refusal (precise 4xx, nothing changed)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.http_support import all_ascending, assert_error, http, inbox, unread
from tests.support import (
    OTHER_API_KEY,
    Server,
    make_token,
    new_user,
    publish,
    publisher_headers,
    recv_notifications,
    ws_connect,
)


def new_topic() -> str:
    return f"topic.{uuid.uuid4().hex[:12]}"


def change(
    server: Server,
    topic: str,
    add: list[str] | None = None,
    remove: list[str] | None = None,
    **extra: Any,
) -> httpx.Response:
    body: dict[str, Any] = {}
    if add is not None:
        body["add"] = add
    if remove is not None:
        body["remove"] = remove
    body.update(extra)
    return http().post(
        f"{server.url}/v1/topics/{topic}/subscribers", json=body, headers=publisher_headers()
    )


def listing(server: Server, topic: str, **params: Any) -> httpx.Response:
    return http().get(
        f"{server.url}/v1/topics/{topic}/subscribers", params=params, headers=publisher_headers()
    )


def subscribers(server: Server, topic: str) -> list[str]:
    """Every subscriber, paging with `after`."""
    found: list[str] = []
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if found:
            params["after"] = found[-1]
        response = listing(server, topic, **params)
        assert response.status_code == 200, response.text
        page = response.json()["user_ids"]
        if not page:
            return found
        found.extend(page)


def topic_publish(
    server: Server,
    topic: str,
    type_: str = "topic.event",
    data: Any = None,
    *,
    key: str | None = None,
    api_key: str | None = None,
    body: Any = None,
) -> httpx.Response:
    headers = publisher_headers(api_key) if api_key else publisher_headers()
    if key is not None:
        headers["Idempotency-Key"] = key
    if body is None:
        body = {"type": type_, "data": {"n": 1} if data is None else data}
    return http().post(f"{server.url}/v1/topics/{topic}/notifications", json=body, headers=headers)


# -- subscribers ----------------------------------------------------------------------


def test_add_and_remove_answer_what_changed(server: Server) -> None:
    """`added` counts ids newly subscribed, `removed` ids newly unsubscribed; a repeat
    changes nothing and answers zeros."""
    topic = new_topic()
    a, b, c = new_user(), new_user(), new_user()
    response = change(server, topic, add=[a, b, c, a])
    assert response.status_code == 200, response.text
    assert response.json() == {"added": 3, "removed": 0}
    assert change(server, topic, add=[a, b]).json() == {"added": 0, "removed": 0}
    assert change(server, topic, add=[new_user()], remove=[b, new_user()]).json() == {
        "added": 1,
        "removed": 1,
    }
    assert change(server, topic, remove=[b]).json() == {"added": 0, "removed": 0}
    assert b not in subscribers(server, topic)
    assert {a, c} <= set(subscribers(server, topic))


def test_a_thousand_ids_each_way_are_accepted(server: Server) -> None:
    """1000 ids in `add` and 1000 others in `remove` (the maximum) in one call."""
    topic = new_topic()
    old = [f"old-{uuid.uuid4().hex[:8]}-{i}" for i in range(1000)]
    assert change(server, topic, add=old).json() == {"added": 1000, "removed": 0}
    new = [f"new-{uuid.uuid4().hex[:8]}-{i}" for i in range(1000)]
    assert change(server, topic, add=new, remove=old).json() == {"added": 1000, "removed": 1000}
    assert subscribers(server, topic) == sorted(new)


def test_subscribers_are_listed_by_page_in_byte_order(server: Server) -> None:
    """Ascending by the ids' bytes (upper case before lower, ASCII before the rest),
    `after` exclusive, `limit` per page; an unknown topic is an empty list."""
    topic = new_topic()
    ids = ["b", "B", "a", "Z", "é", "z", "ä", "0", "a-1", "a.1", "日本", "ab"]
    assert change(server, topic, add=ids).status_code == 200
    expected = sorted(ids, key=lambda s: s.encode())
    first = listing(server, topic, limit=5)
    assert first.status_code == 200, first.text
    assert first.json() == {"user_ids": expected[:5]}
    rest = listing(server, topic, after=expected[4], limit=1000).json()["user_ids"]
    assert rest == expected[5:]
    assert listing(server, topic).json()["user_ids"] == expected
    assert (
        listing(server, topic, after="z").json()["user_ids"] == expected[expected.index("z") + 1 :]
    )
    assert listing(server, new_topic()).json() == {"user_ids": []}


@pytest.mark.parametrize("limit", [0, 1001, -1, "x"])
def test_listing_limit_out_of_range_is_422(server: Server, limit: Any) -> None:
    assert_error(listing(server, new_topic(), limit=limit), 422)


BAD_CHANGES: dict[str, dict[str, Any]] = {
    "both empty": {"add": [], "remove": []},
    "neither": {},
    "1001 to add": {"add": [f"u{i}" for i in range(1001)]},
    "1001 to remove": {"remove": [f"u{i}" for i in range(1001)]},
    "an id in both": {"add": ["X", "y"], "remove": ["X"]},
    "an empty id": {"add": ["X", ""]},
    "an id of 256 characters": {"add": ["X", "u" * 256]},
    "an id with NUL": {"add": ["X", "a\x00b"]},
    "an id not a string": {"add": ["X", 7]},
    "add not a list": {"add": "X"},
    "an unknown field": {"add": ["X"], "also": 1},
}


@pytest.mark.parametrize("case", list(BAD_CHANGES))
def test_malformed_subscriber_change_is_422_and_changes_nothing(server: Server, case: str) -> None:
    topic = new_topic()
    user = new_user()
    body = {
        key: [user if v == "X" else v for v in value] if isinstance(value, list) else value
        for key, value in BAD_CHANGES[case].items()
    }
    response = http().post(
        f"{server.url}/v1/topics/{topic}/subscribers", json=body, headers=publisher_headers()
    )
    assert_error(response, 422)
    assert subscribers(server, topic) == []


BAD_TOPICS = ["a b", "a/b", "t" * 256, "ümlaut", "a%2Fb", "a+b", "a@b", "a,b"]


@pytest.mark.parametrize("topic", BAD_TOPICS)
def test_bad_topic_name_is_422_on_every_route(server: Server, topic: str) -> None:
    """A name outside 1..255 of `A-Z a-z 0-9 . _ : -` is 422, whatever the route."""
    user = new_user()
    assert_error(change(server, topic, add=[user]), 422)
    assert_error(listing(server, topic), 422)
    assert_error(topic_publish(server, topic), 422)
    assert inbox(server, user) == []


def test_longest_and_widest_topic_names_are_accepted(server: Server) -> None:
    """255 characters, and every allowed character."""
    user = new_user()
    names = ["t" * 255, "AZaz09._:-" + uuid.uuid4().hex]
    for topic in names:
        assert change(server, topic, add=[user]).json() == {"added": 1, "removed": 0}
        assert listing(server, topic).json()["user_ids"][-1:] == [user] or user in subscribers(
            server, topic
        )
        assert topic_publish(server, topic).status_code == 201
    assert [n["topic"] for n in all_ascending(server, user)] == names


def test_empty_topic_name_is_refused(server: Server) -> None:
    """No name at all is 422 (or matches no route)."""
    response = http().post(
        f"{server.url}/v1/topics//subscribers", json={"add": ["x"]}, headers=publisher_headers()
    )
    assert response.status_code in (404, 422), response.text


def test_topic_routes_need_a_publisher_key(server: Server) -> None:
    """No key, a wrong key, or a user token: 401, nothing changed."""
    topic = new_topic()
    user = new_user()
    url = f"{server.url}/v1/topics/{topic}"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {make_token(user)}"},
    ):
        assert_error(http().post(f"{url}/subscribers", json={"add": [user]}, headers=headers), 401)
        assert_error(http().get(f"{url}/subscribers", headers=headers), 401)
        body = {"type": "t", "data": {}}
        assert_error(http().post(f"{url}/notifications", json=body, headers=headers), 401)
    assert subscribers(server, topic) == []


# -- publishing -----------------------------------------------------------------------


def test_topic_publish_makes_one_notification_per_subscriber(server: Server) -> None:
    """Each subscriber gets its own notification: own id, its next seq, unread, `topic`
    set; a non-subscriber gets nothing."""
    topic = new_topic()
    a, b, outsider = new_user(), new_user(), new_user()
    assert publish(http(), server, a).status_code == 201  # a's seq 1
    change(server, topic, add=[a, b])
    response = topic_publish(server, topic, "order.shipped", {"order": 42, "é": [1, None]})
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"topic": topic, "type": "order.shipped", "recipients": 2}
    [na] = inbox(server, a, after=1)
    [nb] = inbox(server, b)
    for item, user, seq in ((na, a, 2), (nb, b, 1)):
        assert item["user_id"] == user and item["seq"] == seq
        assert item["type"] == "order.shipped"
        assert item["data"] == {"order": 42, "é": [1, None]}
        assert item["topic"] == topic
        assert item["read_at"] is None and item["archived_at"] is None
    assert na["id"] != nb["id"] and na["created_at"] == nb["created_at"]
    assert unread(server, a) == 2 and unread(server, b) == 1
    assert inbox(server, outsider) == []
    assert publish(http(), server, a).json()["seq"] == 3


def test_topic_without_subscribers_answers_zero_recipients(server: Server) -> None:
    response = topic_publish(server, new_topic())
    assert response.status_code == 201, response.text
    assert response.json()["recipients"] == 0


def test_only_users_subscribed_at_that_moment_receive(server: Server) -> None:
    """Unsubscribed before: nothing; subscribed after: nothing of the earlier publish."""
    topic = new_topic()
    stays, leaves, joins = new_user(), new_user(), new_user()
    change(server, topic, add=[stays, leaves])
    change(server, topic, remove=[leaves])
    assert topic_publish(server, topic, data={"n": 1}).json()["recipients"] == 1
    change(server, topic, add=[joins])
    assert topic_publish(server, topic, data={"n": 2}).json()["recipients"] == 2
    assert [n["data"]["n"] for n in all_ascending(server, stays)] == [1, 2]
    assert inbox(server, leaves) == []
    assert [n["data"]["n"] for n in all_ascending(server, joins)] == [2]


async def test_connected_subscriber_gets_the_topic_notification_live(server: Server) -> None:
    """A subscriber's open socket gets the frame, equal to what the inbox lists."""
    topic = new_topic()
    user = new_user()
    change(server, topic, add=[user])
    async with ws_connect(server, user) as ws:
        assert topic_publish(server, topic, data={"live": True}).status_code == 201
        [got] = await recv_notifications(ws, 1)
    assert got == inbox(server, user)[0]
    assert got["topic"] == topic and got["seq"] == 1


def test_topic_publish_repeat_with_same_key_answers_200_and_stores_nothing(server: Server) -> None:
    topic = new_topic()
    user = new_user()
    change(server, topic, add=[user])
    key = f"k-{uuid.uuid4()}"
    first = topic_publish(server, topic, data={"a": 1, "b": 2}, key=key)
    assert first.status_code == 201, first.text
    change(server, topic, add=[new_user()])  # a repeat answers the original count
    again = topic_publish(server, topic, data={"b": 2, "a": 1}, key=key)
    assert again.status_code == 200, again.text
    assert again.json() == first.json() == {"topic": topic, "type": "topic.event", "recipients": 1}
    assert len(inbox(server, user)) == 1


@pytest.mark.parametrize("difference", ["data", "type", "topic"])
def test_topic_key_reused_for_another_request_is_409(server: Server, difference: str) -> None:
    topic = new_topic()
    user = new_user()
    change(server, topic, add=[user])
    key = f"k-{uuid.uuid4()}"
    assert topic_publish(server, topic, key=key).status_code == 201
    other_topic = new_topic()
    change(server, other_topic, add=[user])
    response = {
        "data": lambda: topic_publish(server, topic, data={"n": 2}, key=key),
        "type": lambda: topic_publish(server, topic, "other.type", key=key),
        "topic": lambda: topic_publish(server, other_topic, key=key),
    }[difference]()
    assert_error(response, 409)
    assert len(inbox(server, user)) == 1


@pytest.mark.parametrize("recipients", [0, 1])
def test_key_of_a_direct_publish_is_409_for_a_topic_and_back(
    server: Server, recipients: int
) -> None:
    """One key space per publisher: a direct publish's key refuses a topic publish, and
    a topic publish's key (with or without recipients) refuses a direct publish."""
    user = new_user()
    topic = new_topic()
    if recipients:
        change(server, topic, add=[user])
    direct_key, topic_key = f"d-{uuid.uuid4()}", f"t-{uuid.uuid4()}"
    assert publish(http(), server, user, key=direct_key).status_code == 201
    assert_error(topic_publish(server, topic, key=direct_key), 409)
    assert topic_publish(server, topic, key=topic_key).status_code == 201
    assert_error(publish(http(), server, user, key=topic_key), 409)
    batch = http().post(
        f"{server.url}/v1/notifications/batch",
        json={
            "notifications": [
                {"user_id": user, "type": "t", "data": {}, "idempotency_key": topic_key}
            ]
        },
        headers=publisher_headers(),
    )
    assert_error(batch, 409)
    assert len(inbox(server, user)) == 1 + recipients


def test_topic_key_belongs_to_its_publisher(server: Server) -> None:
    """Another publisher's same key is its own: a new publish."""
    topic = new_topic()
    user = new_user()
    change(server, topic, add=[user])
    key = f"k-{uuid.uuid4()}"
    assert topic_publish(server, topic, key=key).status_code == 201
    assert topic_publish(server, topic, key=key, api_key=OTHER_API_KEY).status_code == 201
    assert len(inbox(server, user)) == 2


BAD_PUBLISHES: dict[str, tuple[Any, int]] = {
    "empty type": ({"type": "", "data": {}}, 422),
    "type of 256 characters": ({"type": "t" * 256, "data": {}}, 422),
    "data a list": ({"type": "t", "data": [1]}, 422),
    "data null": ({"type": "t", "data": None}, 422),
    "missing data": ({"type": "t"}, 422),
    "user_id given": ({"type": "t", "data": {}, "user_id": "x"}, 422),
    "not an object": ([1, 2], 422),
    "data over the limit": ({"type": "t", "data": {"p": "x" * 65529}}, 413),
}


@pytest.mark.parametrize("case", list(BAD_PUBLISHES))
def test_malformed_topic_publish_is_refused_and_stores_nothing(server: Server, case: str) -> None:
    topic = new_topic()
    user = new_user()
    change(server, topic, add=[user])
    body, status = BAD_PUBLISHES[case]
    assert_error(topic_publish(server, topic, body=body), status)
    assert inbox(server, user) == []


def test_data_at_the_payload_limit_is_accepted(server: Server) -> None:
    topic = new_topic()
    user = new_user()
    change(server, topic, add=[user])
    exact = {"p": "x" * (65536 - len('{"p":""}'))}
    assert topic_publish(server, topic, data=exact).status_code == 201
    assert inbox(server, user)[0]["data"] == exact


def test_bad_idempotency_key_is_422(server: Server) -> None:
    topic = new_topic()
    user = new_user()
    change(server, topic, add=[user])
    assert_error(topic_publish(server, topic, key="k" * 256), 422)
    assert inbox(server, user) == []


def test_over_100000_subscribers_is_413_and_stores_nothing(server: Server) -> None:
    """100,001 subscribers: 413, no notification and no seq for anyone; one fewer: 201."""
    topic = new_topic()
    prefix = uuid.uuid4().hex[:8]
    users = [f"{prefix}-{i:06d}" for i in range(100_001)]
    for start in range(0, len(users), 1000):
        response = change(server, topic, add=users[start : start + 1000])
        assert response.status_code == 200, response.text
    assert_error(topic_publish(server, topic, key=f"k-{uuid.uuid4()}"), 413)
    for user in (users[0], users[50_000], users[-1]):
        assert inbox(server, user) == []
        assert publish(http(), server, user).json()["seq"] == 1
    change(server, topic, remove=[users[-1]])
    response = topic_publish(server, topic)
    assert response.status_code == 201, response.text
    assert response.json()["recipients"] == 100_000
    assert [n["seq"] for n in inbox(server, users[0])] == [2, 1]
    assert [n["seq"] for n in inbox(server, users[1])] == [1]


async def test_a_key_raced_by_a_topic_and_a_direct_publish_is_taken_once(server: Server) -> None:
    """Topic and direct publishes sent at once with one key: one kind wins, every
    request of the other kind is 409, and only the winner's notifications exist."""
    topic = new_topic()
    users = [new_user() for _ in range(3)]
    change(server, topic, add=users)
    headers = publisher_headers(**{"Idempotency-Key": f"race-{uuid.uuid4()}"})
    direct = (f"{server.url}/v1/notifications", {"user_id": users[0], "type": "d", "data": {}})
    to_topic = (f"{server.url}/v1/topics/{topic}/notifications", {"type": "t", "data": {}})
    kinds = ["direct" if i % 2 else "topic" for i in range(20)]
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=20)) as client:
        responses = await asyncio.gather(
            *(
                client.post(url, json=body, headers=headers)
                for url, body in (direct if kind == "direct" else to_topic for kind in kinds)
            )
        )
    answers = list(zip(kinds, responses, strict=True))
    won = {kind for kind, response in answers if response.status_code in (200, 201)}
    assert len(won) == 1, [(k, r.status_code, r.text) for k, r in answers]
    [winner] = won
    for kind, response in answers:
        expected = (200, 201) if kind == winner else (409,)
        assert response.status_code in expected, (kind, response.text)
    assert sum(response.status_code == 201 for response in responses) == 1
    stored = [n for user in users for n in inbox(server, user)]
    assert len(stored) == (1 if winner == "direct" else 3)
