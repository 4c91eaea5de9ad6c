"""The default access log (notifier/api/accesslog.py): a line for each failed or slow
request, none for the others, never a query string."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from notifier.app import App, create_app
from notifier.config import Settings
from tests.api.conftest import asgi_client
from tests.support import API_KEY, SECRET, make_token, new_user


def settings(tmp_path: Path, **options: object) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'log.db'}",
        jwt_secret=SECRET,
        api_keys=[f"main:{API_KEY}"],
        **options,  # type: ignore[arg-type]
    )


def quiet_client(app: App) -> httpx.AsyncClient:
    """A client that gets the 500 a server would send, rather than the app's exception
    (which ServerErrorMiddleware re-raises for the server to log)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://notifier")


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "notifier.access"]


async def test_fast_answers_are_not_logged_and_failures_are(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """By default a 2xx and a refused request (401, 422) leave no line; a request that
    fails inside the service (500) leaves one with its method, path and status, and
    without the query string."""
    caplog.set_level(logging.INFO)
    app = create_app(settings(tmp_path))
    assert isinstance(app, App)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    user = new_user()
    async with app.router.lifespan_context(app), quiet_client(app) as http:
        ok = await http.get(
            "/v1/me/notifications", headers={"authorization": f"Bearer {make_token(user)}"}
        )
        refused = await http.post("/v1/notifications", content=b"{}")
        malformed = await http.post(
            "/v1/notifications",
            headers={"authorization": f"Bearer {API_KEY}"},
            content=b"{",
        )
        assert (ok.status_code, refused.status_code, malformed.status_code) == (200, 401, 422)
        assert lines(caplog) == []
        failed = await http.get("/boom?access_token=secret-in-query")
    assert failed.status_code == 500
    [line] = lines(caplog)
    assert line.getMessage() == "failed request"
    assert (line.method, line.path, line.status) == ("GET", "/boom", 500)  # type: ignore[attr-defined]
    assert "secret-in-query" not in str(line.__dict__)


async def test_slow_requests_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A request at or over `access_log_slow_ms` leaves a line with its duration."""
    caplog.set_level(logging.INFO)
    app = create_app(settings(tmp_path, access_log_slow_ms=0.001))
    async with app.router.lifespan_context(app), asgi_client(app) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    [line] = lines(caplog)
    assert line.getMessage() == "slow request"
    assert line.status == 200 and line.duration_ms >= 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["all", "off"])
async def test_other_modes_leave_the_app_without_this_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    """`all` (uvicorn's line per request, which `serve` turns on) and `off` add no
    middleware of their own: a failure leaves no `notifier.access` line."""
    caplog.set_level(logging.INFO)
    app = create_app(settings(tmp_path, access_log=mode, access_log_slow_ms=0.001))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    async with app.router.lifespan_context(app), quiet_client(app) as http:
        assert (await http.get("/boom")).status_code == 500
    assert lines(caplog) == []
