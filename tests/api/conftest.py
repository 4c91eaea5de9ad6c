"""An in-process app on SQLite for the tests of the published interface documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from notifier.app import App, create_app
from notifier.config import Settings
from tests.support import API_KEY, SECRET


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}",
        jwt_secret=SECRET,
        api_keys=[f"main:{API_KEY}"],
    )
    app = create_app(settings)
    assert isinstance(app, App)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as client:
        yield client
