"""CORS on the routes a browser page calls with a user token (`/v1/me/...`, `/v1/sse`):
any origin while NOTIFIER_ALLOWED_ORIGINS is unset, only those listed when it is set;
none on the publisher routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from notifier.app import create_app
from notifier.config import Settings
from tests.api.conftest import asgi_client
from tests.support import API_KEY, SECRET, make_token

APP = "https://app.example"
PREFLIGHT = {
    "origin": APP,
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type",
}


def user() -> dict[str, str]:
    return {"authorization": f"Bearer {make_token('cors-user')}", "origin": APP}


@pytest.fixture
async def listed(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'cors.db'}",
        jwt_secret=SECRET,
        api_keys=[f"main:{API_KEY}"],
        allowed_origins=[APP],
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), asgi_client(app) as http:  # type: ignore[arg-type]
        yield http


async def test_any_origin_may_read_the_inbox_with_a_token(client: httpx.AsyncClient) -> None:
    """Unset NOTIFIER_ALLOWED_ORIGINS: the preflight is answered, the answer readable."""
    preflight = await client.options("/v1/me/notifications/read", headers=PREFLIGHT)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert preflight.headers["access-control-allow-methods"] == "GET, POST"
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in preflight.headers
    answer = await client.get("/v1/me/notifications/unread-count", headers=user())
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    refused = await client.get("/v1/me/notifications", headers={"origin": APP})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"


async def test_publisher_routes_get_no_cors(client: httpx.AsyncClient) -> None:
    """Publishing is for backends: no CORS headers, and no preflight answered."""
    answer = await client.post(
        "/v1/notifications",
        json={"user_id": "u", "type": "t", "data": {}},
        headers={"authorization": f"Bearer {API_KEY}", "origin": APP},
    )
    assert answer.status_code == 201
    assert "access-control-allow-origin" not in answer.headers
    preflight = await client.options("/v1/notifications", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in preflight.headers


async def test_listed_origins_only(listed: httpx.AsyncClient) -> None:
    """With NOTIFIER_ALLOWED_ORIGINS set, a listed origin is named back (with
    `Vary: Origin`); any other gets no CORS headers, so its page cannot read."""
    answer = await listed.get("/v1/me/notifications", headers=user())
    assert answer.headers["access-control-allow-origin"] == APP
    assert answer.headers["vary"] == "Origin"
    other = {**user(), "origin": "https://evil.example"}
    answer = await listed.get("/v1/me/notifications", headers=other)
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers
    preflight = await listed.options(
        "/v1/me/notifications", headers={**PREFLIGHT, "origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in preflight.headers
