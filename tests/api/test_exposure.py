"""What the service port shows beyond the API (issue 13): the interactive docs only in
development mode, `/metrics` there unless turned off."""

from __future__ import annotations

from pathlib import Path

import httpx

from notifier.app import App, create_app
from notifier.config import Settings
from notifier.startup import resolve_credentials
from tests.api.conftest import asgi_client
from tests.support import API_KEY, SECRET


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'exposure.db'}",
        jwt_secret=SECRET,
        api_keys=[f"main:{API_KEY}"],
        **extra,  # type: ignore[arg-type]
    )


async def _get(settings: Settings, *paths: str) -> dict[str, httpx.Response]:
    app = create_app(settings)
    assert isinstance(app, App)
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        return {path: await client.get(path) for path in paths}


async def test_interactive_docs_are_off_by_default(tmp_path: Path) -> None:
    """/docs and /redoc answer 404 outside development mode; /openapi.json stays."""
    answers = await _get(_settings(tmp_path), "/docs", "/redoc", "/openapi.json")
    assert answers["/docs"].status_code == 404
    assert answers["/redoc"].status_code == 404
    assert answers["/openapi.json"].status_code == 200


async def test_interactive_docs_in_development_mode_or_when_asked(tmp_path: Path) -> None:
    """Development mode (generated credentials) turns them on, and so does
    NOTIFIER_INTERACTIVE_DOCS=true."""
    dev, banner = resolve_credentials(
        Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'dev.db'}",
            dev_credentials_file=str(tmp_path / "dev.json"),
        ),
        "127.0.0.1",
    )
    assert banner is not None
    for settings in (dev, _settings(tmp_path, interactive_docs=True)):
        answers = await _get(settings, "/docs", "/redoc")
        assert answers["/docs"].status_code == 200
        assert answers["/redoc"].status_code == 200


async def test_metrics_can_be_taken_off_the_service_port(tmp_path: Path) -> None:
    """NOTIFIER_METRICS_ON_SERVICE_PORT=false: /metrics is 404 and not in the OpenAPI
    document; by default it is served."""
    off = await _get(
        _settings(tmp_path, metrics_on_service_port=False), "/metrics", "/openapi.json"
    )
    assert off["/metrics"].status_code == 404
    assert "/metrics" not in off["/openapi.json"].json()["paths"]
    on = await _get(_settings(tmp_path), "/metrics")
    assert on["/metrics"].status_code == 200
