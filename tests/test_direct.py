"""The publish routes are served by `api.direct`, not by FastAPI's router: for every kind
of request a publisher sends, good or bad, both ways must answer the same status, headers
and body, and store the same thing. The app runs in process here (SQLite); the e2e tests
hold the direct path to the contract over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from notifier.app import App, create_app
from notifier.config import Settings
from tests.support import API_KEY, SECRET, make_token, new_user


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'direct.db'}",
        jwt_secret=SECRET,
        api_keys=[f"main:{API_KEY}"],
        max_payload_bytes=1000,
    )
    app = create_app(settings)
    assert isinstance(app, App)
    async with app.router.lifespan_context(app):
        yield app


def through_fastapi(app: App) -> object:
    """The same app, but every request through FastAPI's own routing."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    return asgi


def client(asgi: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=asgi)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://notifier")


AUTH = {"authorization": f"Bearer {API_KEY}"}
JSON = {"content-type": "application/json"}


def cases(user: str) -> list[tuple[str, dict[str, str], bytes]]:
    """(path, headers, body): one of each answer the publish routes give."""
    one = orjson.dumps({"user_id": user, "type": "t", "data": {"n": 1}})
    key = "key-" + user  # keys are per publisher: each side its own
    return [
        ("/v1/notifications", {**AUTH, **JSON}, one),
        ("/v1/notifications", {**AUTH, **JSON, "idempotency-key": key}, one),
        ("/v1/notifications", {**AUTH, **JSON, "idempotency-key": key}, one),  # 200 repeat
        (
            "/v1/notifications",
            {**AUTH, **JSON, "idempotency-key": key},
            orjson.dumps({"user_id": user, "type": "t", "data": {"n": 2}}),
        ),  # 409
        ("/v1/notifications", {**AUTH, **JSON, "idempotency-key": ""}, one),  # 422
        ("/v1/notifications", JSON, one),  # 401
        ("/v1/notifications", {**JSON, "authorization": "Bearer wrong"}, one),  # 401
        ("/v1/notifications", {**AUTH, **JSON}, b'{"user_id": '),  # 422 bad JSON
        ("/v1/notifications", {**AUTH, **JSON}, b'{"user_id": 5, "type": "t", "data": {}}'),
        ("/v1/notifications", {**AUTH, **JSON}, b'{"user_id": "u", "type": "t"}'),
        (
            "/v1/notifications",
            {**AUTH, **JSON},
            orjson.dumps({"user_id": user, "type": "t", "data": {"x": "y" * 2000}}),
        ),  # 413 data
        ("/v1/notifications", {**AUTH, **JSON}, b"x" * (1024 * 1024 + 1)),  # 413 body
        ("/v1/notifications/batch", {**AUTH, **JSON}, b'{"notifications": [' + one + b"]}"),
        ("/v1/notifications/batch", {**AUTH, **JSON}, b'{"notifications": []}'),
        ("/v1/notifications/batch", AUTH, b"[]"),
    ]


async def test_direct_and_fastapi_answer_alike(app: App) -> None:
    direct_user, fastapi_user = new_user(), new_user()
    async with client(app) as direct, client(through_fastapi(app)) as routed:
        for (path, headers, body), (_, other_headers, other_body) in zip(
            cases(direct_user), cases(fastapi_user), strict=True
        ):
            a = await direct.post(path, headers=headers, content=body)
            b = await routed.post(path, headers=other_headers, content=other_body)
            assert a.status_code == b.status_code, (path, headers, body[:80])
            assert dict(a.headers) == dict(b.headers) or (
                a.status_code in (200, 201)
                and {k: v for k, v in a.headers.items() if k != "content-length"}
                == {k: v for k, v in b.headers.items() if k != "content-length"}
            ), (path, a.headers, b.headers)
            if a.status_code in (200, 201):
                continue  # ids and times differ; compared below
            assert a.content == b.content.replace(fastapi_user.encode(), direct_user.encode())

        # What each stored reads back the same, but for ids, users and times.
        stored = []
        for user in (direct_user, fastapi_user):
            token = make_token(user)
            listed = await direct.get(
                "/v1/me/notifications", headers={"authorization": f"Bearer {token}"}
            )
            assert listed.status_code == 200
            stored.append(
                [(n["seq"], n["type"], n["data"]) for n in listed.json()["notifications"]]
            )
        assert stored[0] == stored[1]
        assert len(stored[0]) == 3  # the single, the keyed one, the batch item


async def test_the_openapi_schema_still_describes_the_publish_routes(app: App) -> None:
    async with client(app) as direct:
        schema = (await direct.get("/openapi.json")).json()
    single = schema["paths"]["/v1/notifications"]["post"]
    batch = schema["paths"]["/v1/notifications/batch"]["post"]
    assert "requestBody" in single and "requestBody" in batch
    assert [p["name"] for p in single["parameters"]] == ["Idempotency-Key"]
