"""NOTIFIER_PUBLISH_RATE on a real server: bursts of 2R per publisher, 429 with
Retry-After and nothing stored beyond them, a batch counting its items and a topic
publish counting 1, another publisher unaffected, and a counter per publisher."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.http_support import assert_error, inbox
from tests.e2e.test_topics import change, new_topic, topic_publish
from tests.support import OTHER_API_KEY, Server, new_user, publish, publisher_headers, running


@pytest.fixture(params=["postgres", "sqlite"])
def limited(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server of its own with NOTIFIER_PUBLISH_RATE=1 (bursts of 2)."""
    url: str = request.getfixturevalue(
        "pg_database" if request.param == "postgres" else "sqlite_url"
    )
    with running(url, NOTIFIER_PUBLISH_RATE="1") as server:
        yield server


def retry_after(response: httpx.Response) -> int:
    assert_error(response, 429)
    seconds = int(response.headers["retry-after"])
    assert seconds >= 1
    return seconds


def test_publish_rate_limits_each_publisher(limited: Server) -> None:
    """Two at once pass, the third is 429 with nothing stored; a batch counts its
    items; a topic publish to many counts one; another publisher has its own bucket."""
    server = limited
    user = new_user()
    topic = new_topic()
    assert change(server, topic, add=[new_user() for _ in range(10)]).status_code == 200
    started = time.monotonic()
    assert publish(None, server, user, data={"n": 1}).status_code == 201
    assert publish(None, server, user, data={"n": 2}).status_code == 201
    assert retry_after(publish(None, server, user, data={"n": 3})) == 1
    batch = httpx.post(
        server.url + "/v1/notifications/batch",
        json={"notifications": [{"user_id": user, "type": "t", "data": {"n": 4}}] * 2},
        headers=publisher_headers(),
        timeout=10,
    )
    assert retry_after(batch) == 2
    assert retry_after(topic_publish(server, topic)) == 1
    assert [n["data"]["n"] for n in inbox(server, user)] == [2, 1]
    assert publish(None, server, user, data={"n": 5}, api_key=OTHER_API_KEY).status_code == 201
    # One token back (1.2 s at 1 a second since the last one was taken), not two.
    assert time.monotonic() - started < 0.7, "too slow to tell the burst apart"
    time.sleep(1.2)
    response = topic_publish(server, topic)
    assert response.status_code == 201, response.text
    assert response.json()["recipients"] == 10
    retry_after(publish(None, server, user, data={"n": 6}))
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert 'notifier_publish_rate_limited_total{publisher="main"} 4.0' in metrics
    assert 'notifier_publish_rate_limited_total{publisher="other"}' not in metrics
    assert [n["data"]["n"] for n in inbox(server, user)] == [5, 2, 1]
