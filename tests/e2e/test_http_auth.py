"""Credentials on the HTTP API: every refusal is 401 JSON and changes nothing; plus the
operations endpoints (/healthz, /readyz, /metrics)."""

from __future__ import annotations

import base64
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.http_support import http, inbox, unread
from tests.support import (
    API_KEY,
    OTHER_API_KEY,
    SECRET,
    Server,
    make_token,
    new_user,
    publish,
    publisher_headers,
)

AUDIENCE = "notifier-api"
ISSUER = "https://idp.example.test/"
LEEWAY = 30


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned_token(user: str, alg: str = "none") -> str:
    """A hand-made `alg: none` token: header.payload. with an empty signature."""
    now = int(time.time())
    header = b64url(orjson.dumps({"alg": alg, "typ": "JWT"}))
    payload = b64url(orjson.dumps({"sub": user, "iat": now, "exp": now + 3600}))
    return f"{header}.{payload}."


def tampered_token(user: str) -> str:
    """A valid token for someone else whose payload was rewritten to name `user`."""
    header, _, signature = make_token("somebody-else").split(".")
    now = int(time.time())
    payload = b64url(orjson.dumps({"sub": user, "iat": now, "exp": now + 3600}))
    return f"{header}.{payload}.{signature}"


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


# Authorization header values (None: no header) that must not pass as a user.
BAD_USER_CREDENTIALS: dict[str, Callable[[str], str | None]] = {
    "no header": lambda user: None,
    "bearer without credential": lambda user: "Bearer",
    "garbage": lambda user: "Bearer garbage",
    "three garbage parts": lambda user: "Bearer aaa.bbb.ccc",
    "basic scheme": lambda user: basic(f"{user}:password"),
    "valid token under basic scheme": lambda user: "Basic " + make_token(user),
    "api key as user token": lambda user: f"Bearer {API_KEY}",
    "expired a minute ago": lambda user: f"Bearer {make_token(user, ttl=-60)}",
    "just expired": lambda user: f"Bearer {make_token(user, ttl=-2)}",
    "other secret": lambda user: f"Bearer {make_token(user, secret=SECRET + '-other')}",
    "tampered payload": lambda user: f"Bearer {tampered_token(user)}",
    "alg none": lambda user: f"Bearer {unsigned_token(user)}",
    "alg None": lambda user: f"Bearer {unsigned_token(user, 'None')}",
    "alg NONE": lambda user: f"Bearer {unsigned_token(user, 'NONE')}",
    "HS512 not allowed": lambda user: f"Bearer {make_token(user, algorithm='HS512')}",
    "HS384 not allowed": lambda user: f"Bearer {make_token(user, algorithm='HS384')}",
    "no exp": lambda user: f"Bearer {make_token(user, exp=None)}",
    "exp not a number": lambda user: f"Bearer {make_token(user, exp='99999999999')}",
    "nbf in the future": lambda user: f"Bearer {make_token(user, nbf=int(time.time()) + 120)}",
    "iat in the future": lambda user: f"Bearer {make_token(user, iat=int(time.time()) + 120)}",
    "no sub": lambda user: f"Bearer {make_token(user, sub=None)}",
    "empty sub": lambda user: f"Bearer {make_token(user, sub='')}",
    "sub a number": lambda user: f"Bearer {make_token(user, sub=12345)}",
    "NUL in sub": lambda user: f"Bearer {make_token(user, sub=user + chr(0) + 'x')}",
}

# Authorization header values that must not pass as a publisher.
BAD_PUBLISHER_CREDENTIALS: dict[str, Callable[[str], str | None]] = {
    "no header": lambda user: None,
    "bearer without credential": lambda user: "Bearer",
    "garbage": lambda user: "Bearer garbage",
    "wrong key": lambda user: "Bearer not-a-configured-key",
    "key prefix": lambda user: f"Bearer {API_KEY[:-1]}",
    "key with suffix": lambda user: f"Bearer {API_KEY}x",
    "publisher name as key": lambda user: "Bearer main",
    "name:key entry as key": lambda user: f"Bearer main:{API_KEY}",
    "basic scheme with key": lambda user: basic(f"main:{API_KEY}"),
    "key under basic scheme": lambda user: f"Basic {API_KEY}",
    "key without scheme": lambda user: API_KEY,
    "user token as key": lambda user: f"Bearer {make_token(user)}",
}


def headers_of(value: str | None) -> dict[str, str]:
    return {} if value is None else {"Authorization": value}


def good_user(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


def assert_refused(response: httpx.Response, status: int = 401) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and "detail" in body, body
    assert "Traceback" not in response.text


def metric_sum(server: Server, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    text = http().get(server.url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


@pytest.mark.parametrize("case", list(BAD_PUBLISHER_CREDENTIALS))
def test_publish_refuses_bad_publisher_credentials(server: Server, case: str) -> None:
    """Single and batch publish without a valid API key are 401 JSON and store nothing."""
    user = new_user()
    key = f"auth-{user}"
    item = {"user_id": user, "type": "t", "data": {}}
    published = metric_sum(server, "notifier_notifications_published_total")
    single_headers = {**headers_of(BAD_PUBLISHER_CREDENTIALS[case](user)), "Idempotency-Key": key}
    single = http().post(server.url + "/v1/notifications", json=item, headers=single_headers)
    assert_refused(single)
    batch = http().post(
        server.url + "/v1/notifications/batch",
        json={"notifications": [item, {**item, "idempotency_key": key + "-b"}]},
        headers=headers_of(BAD_PUBLISHER_CREDENTIALS[case](user)),
    )
    assert_refused(batch)
    assert inbox(server, user) == []
    assert metric_sum(server, "notifier_notifications_published_total") == published
    # The keys were not taken by the refused requests.
    ok = publish(http(), server, user, "other.type", {"x": 1}, key=key)
    assert ok.status_code == 201 and ok.json()["seq"] == 1
    ok = publish(http(), server, user, "other.type", {"x": 2}, key=key + "-b")
    assert ok.status_code == 201 and ok.json()["seq"] == 2


@pytest.mark.parametrize("case", list(BAD_USER_CREDENTIALS))
def test_inbox_refuses_bad_user_credentials(server: Server, case: str) -> None:
    """Every inbox endpoint without a valid user token is 401 JSON and changes nothing."""
    user = new_user()
    assert publish(http(), server, user).status_code == 201
    headers = headers_of(BAD_USER_CREDENTIALS[case](user))
    base = server.url + "/v1/me/notifications"
    for response in (
        http().get(base, headers=headers),
        http().get(base + "/unread-count", headers=headers),
        http().post(base + "/read", json={"up_to_seq": 10}, headers=headers),
        http().post(base + "/read", json={"ids": [inbox(server, user)[0]["id"]]}, headers=headers),
    ):
        assert_refused(response)
        assert "notifications" not in response.json()
    assert unread(server, user) == 1
    assert inbox(server, user)[0]["read_at"] is None


def test_refusals_are_counted_in_metrics(server: Server) -> None:
    """Each refused credential raises notifier_auth_refused_total."""
    before = metric_sum(server, "notifier_auth_refused_total")
    assert_refused(http().get(server.url + "/v1/me/notifications", timeout=10))
    assert_refused(publish(http(), server, new_user(), api_key="wrong"))
    assert metric_sum(server, "notifier_auth_refused_total") == before + 2


def test_healthz_answers_200(server: Server) -> None:
    """/healthz answers 200 without credentials."""
    response = http().get(server.url + "/healthz", timeout=10)
    assert response.status_code == 200, response.text


def test_readyz_names_database_and_bus_state(server: Server) -> None:
    """/readyz answers 200 with a body naming the database and bus state."""
    response = http().get(server.url + "/readyz", timeout=10)
    assert response.status_code == 200, response.text
    text = response.text.lower()
    assert "database" in text and "bus" in text


def test_metrics_are_prometheus_text_with_notifier_metrics(server: Server) -> None:
    """/metrics is Prometheus text with the notifier_ metrics; publishes are counted."""
    user = new_user()
    before = metric_sum(server, "notifier_notifications_published_total", publisher="main")
    assert publish(http(), server, user).status_code == 201
    other_before = metric_sum(server, "notifier_notifications_published_total", publisher="other")
    assert publish(http(), server, user, api_key=OTHER_API_KEY).status_code == 201
    response = http().get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "notifier_notifications_published_total",
        "notifier_open_sockets",
        "notifier_auth_refused_total",
    ):
        base = name.removesuffix("_total")
        assert re.search(rf"^# TYPE {base}(_total)? (counter|gauge)$", text, re.M), name
        assert re.search(rf"^{name}(\{{.*\}})? \S+$", text, re.M), name
    after = metric_sum(server, "notifier_notifications_published_total", publisher="main")
    assert after == before + 1
    other_after = metric_sum(server, "notifier_notifications_published_total", publisher="other")
    assert other_after == other_before + 1


# -- an own server with audience, issuer and leeway ---------------------------------------


@pytest.fixture(scope="module")
def strict_server() -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="notifier-auth-") as folder:
        server = Server(
            f"sqlite+aiosqlite:///{Path(folder) / 'auth.db'}",
            env_extra={
                "NOTIFIER_JWT_AUDIENCE": AUDIENCE,
                "NOTIFIER_JWT_ISSUER": ISSUER,
                "NOTIFIER_JWT_LEEWAY_SECONDS": str(LEEWAY),
            },
        ).start()
        try:
            yield server
        finally:
            server.stop()


def strict_token(user: str, *, nbf_in: int | None = None, **claims: Any) -> str:
    """A token with our aud and iss unless overridden; `nbf_in` seconds from now."""
    if nbf_in is not None:
        claims["nbf"] = int(time.time()) + nbf_in
    return make_token(user, **{"aud": AUDIENCE, "iss": ISSUER, **claims})


STRICT_REFUSED: dict[str, dict[str, Any]] = {
    "missing aud": {"aud": None},
    "wrong aud": {"aud": "another-api"},
    "aud list without ours": {"aud": ["another-api", "third-api"]},
    "missing iss": {"iss": None},
    "wrong iss": {"iss": "https://evil.example.test/"},
    "expired beyond the leeway": {"ttl": -LEEWAY - 60},
    "nbf beyond the leeway": {"nbf_in": LEEWAY + 120},
}
STRICT_ACCEPTED: dict[str, dict[str, Any]] = {
    "right aud and iss": {},
    "aud list holding ours": {"aud": ["another-api", AUDIENCE]},
    "expired within the leeway": {"ttl": -5},
    "nbf within the leeway": {"nbf_in": 5},
}


@pytest.mark.parametrize("case", list(STRICT_REFUSED))
def test_configured_audience_issuer_and_leeway_refuse(strict_server: Server, case: str) -> None:
    """With aud/iss/leeway configured, a wrong or missing aud/iss, or a token outside
    the leeway, is 401 on every inbox endpoint and marks nothing read."""
    user = new_user()
    assert publish(http(), strict_server, user).status_code == 201
    headers = {"Authorization": f"Bearer {strict_token(user, **STRICT_REFUSED[case])}"}
    base = strict_server.url + "/v1/me/notifications"
    assert_refused(http().get(base, headers=headers, timeout=10))
    assert_refused(http().get(base + "/unread-count", headers=headers, timeout=10))
    assert_refused(http().post(base + "/read", json={"up_to_seq": 5}, headers=headers, timeout=10))
    good = {"Authorization": f"Bearer {strict_token(user)}"}
    count = http().get(base + "/unread-count", headers=good, timeout=10)
    assert count.status_code == 200 and count.json() == {"unread": 1}


@pytest.mark.parametrize("case", list(STRICT_ACCEPTED))
def test_configured_audience_issuer_and_leeway_accept(strict_server: Server, case: str) -> None:
    """With aud/iss/leeway configured, the right aud/iss within the leeway is 200."""
    user = new_user()
    created = publish(http(), strict_server, user)
    assert created.status_code == 201
    headers = {"Authorization": f"Bearer {strict_token(user, **STRICT_ACCEPTED[case])}"}
    base = strict_server.url + "/v1/me/notifications"
    response = http().get(base, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["notifications"] == [created.json()]
    read = http().post(base + "/read", json={"up_to_seq": 1}, headers=headers, timeout=10)
    assert read.status_code == 200 and read.json()["updated"] == 1


def test_publisher_keys_unaffected_by_user_token_settings(strict_server: Server) -> None:
    """A token valid for the strict server is still no publisher key there."""
    user = new_user()
    headers = {"Authorization": f"Bearer {strict_token(user)}"}
    response = http().post(
        strict_server.url + "/v1/notifications",
        json={"user_id": user, "type": "t", "data": {}},
        headers=headers,
        timeout=10,
    )
    assert_refused(response)
    ok = http().post(
        strict_server.url + "/v1/notifications",
        json={"user_id": user, "type": "t", "data": {}},
        headers=publisher_headers(),
        timeout=10,
    )
    assert ok.status_code == 201 and ok.json()["seq"] == 1
