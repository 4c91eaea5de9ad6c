"""Any request body, whatever its bytes, on every route that reads one: a 2xx or a 4xx
with a JSON detail, never a 500 (hypothesis, against a real server)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.api.body import MAX_LISTED_ERRORS
from tests.fuzz.test_frame_properties import JSON
from tests.support import Server, new_user, publisher_headers, user_headers

ROUTES = ["/v1/notifications", "/v1/notifications/batch", "/v1/me/notifications/read"]
OK = {200, 201, 409, 413, 422}

NAME = st.text(min_size=0, max_size=300)
ITEM = st.fixed_dictionaries(
    {"user_id": NAME, "type": NAME, "data": JSON},
    optional={"idempotency_key": NAME | JSON, "extra": JSON},
)
STRUCTURED = st.one_of(
    ITEM,
    st.fixed_dictionaries({"notifications": st.lists(ITEM, max_size=3) | JSON}),
    st.fixed_dictionaries({}, optional={"up_to_seq": JSON, "ids": JSON}),
    JSON,
).map(lambda value: json.dumps(value).encode())
DEEP = st.integers(min_value=1, max_value=400).map(
    lambda depth: (
        b'{"user_id":"u","type":"t","data":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    )
)
BODIES = st.binary(max_size=500) | STRUCTURED | DEEP


@pytest.fixture(scope="module")
def http_client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def _headers(route: str) -> dict[str, str]:
    if route.startswith("/v1/me/"):
        return {**user_headers(new_user()), "Content-Type": "application/json"}
    return publisher_headers(**{"Content-Type": "application/json"})


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(route=st.sampled_from(ROUTES), body=BODIES, key=st.none() | st.text(max_size=20))
def test_any_body_gets_a_precise_answer(
    sqlite_server: Server, http_client: httpx.Client, route: str, body: bytes, key: str | None
) -> None:
    """No body makes a route answer 500; every refusal is JSON with a bounded detail."""
    headers = _headers(route)
    if key is not None and route == "/v1/notifications":
        key = "".join(c for c in key if c.isprintable() and c.isascii())
        if key:
            headers["Idempotency-Key"] = key
    response = http_client.post(sqlite_server.url + route, content=body, headers=headers)
    assert response.status_code in OK, (response.status_code, response.text[:300])
    answer = response.json()
    if response.status_code >= 400:
        assert "detail" in answer
        if isinstance(answer["detail"], list):
            assert len(answer["detail"]) <= MAX_LISTED_ERRORS + 1
