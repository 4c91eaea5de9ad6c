"""The whole app in process (SQLite), for tests of how its routes are served and of the
published interface documents."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from notifier.app import App, create_app
from notifier.config import Settings
from tests.support import API_KEY, SECRET

MAX_PAYLOAD = 1000


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}",
        jwt_secret=SECRET,
        api_keys=[f"main:{API_KEY}"],
        max_payload_bytes=MAX_PAYLOAD,
    )
    app = create_app(settings)
    assert isinstance(app, App)
    async with app.router.lifespan_context(app):
        yield app
    if _database_taken(app):
        # Shutting down after a test that took the database away (the presence rows are
        # deleted on the way out) leaves a failed aiosqlite connection: collect it while
        # this test's event loop still runs to take its worker thread's last callback.
        gc.collect()
        await asyncio.sleep(0.05)


def _database_taken(app: App) -> bool:
    return bool(getattr(app.state, "database_taken", False))


def asgi_client(app: App) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://notifier")


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as http:
        yield http
