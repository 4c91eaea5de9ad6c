"""The browser client and the demo page as served: `/v1/client.js` and its types with
caching headers, `/demo` only in development mode or with NOTIFIER_DEMO=1, and
`/demo/token` only in development mode."""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from notifier.api.routes import client as client_routes
from notifier.app import create_app
from notifier.config import Settings
from notifier.core.claims import UserIdentity
from tests.api.conftest import asgi_client
from tests.support import API_KEY, ROOT, SECRET

STATIC = Path(client_routes.__file__).resolve().parents[2] / "_static"


@pytest.mark.parametrize(
    ("path", "name", "media_type"),
    [
        ("/v1/client.js", "client.js", "text/javascript"),
        ("/v1/client.d.ts", "client.d.ts", "application/typescript"),
    ],
)
async def test_the_client_is_served_from_the_package_with_caching_headers(
    client: httpx.AsyncClient, path: str, name: str, media_type: str
) -> None:
    """The committed build is served byte for byte, cacheable, importable from any
    origin, and revalidated with a 304 that has no body."""
    answer = await client.get(path)
    assert answer.status_code == 200
    assert answer.content == (STATIC / name).read_bytes()
    assert answer.headers["content-type"].startswith(media_type)
    assert answer.headers["cache-control"] == "public, max-age=600"
    assert answer.headers["access-control-allow-origin"] == "*"
    etag = answer.headers["etag"]
    again = await client.get(path, headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag


async def test_the_module_exports_the_client(client: httpx.AsyncClient) -> None:
    """The module is an ES module exporting NotifierClient, and the types declare it."""
    js = (await client.get("/v1/client.js")).text
    assert "export {" in js and "NotifierClient" in js
    types = (await client.get("/v1/client.d.ts")).text
    assert "export declare class NotifierClient" in types


async def test_no_demo_outside_development_mode(client: httpx.AsyncClient) -> None:
    """Without development mode or NOTIFIER_DEMO=1, /demo and /demo/token are 404."""
    assert (await client.get("/demo")).status_code == 404
    assert (await client.get("/demo/token", params={"user": "alice"})).status_code == 404


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
        jwt_secret=SECRET,
        api_keys=[f"main:{API_KEY}"],
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def demo_only(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(_settings(tmp_path, demo=True))
    async with app.router.lifespan_context(app), asgi_client(app) as http:  # type: ignore[arg-type]
        yield http


@pytest.fixture
async def development(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, UserIdentity]]:
    app = create_app(_settings(tmp_path).in_development())
    verifier = app.state.service.verifier
    async with app.router.lifespan_context(app), asgi_client(app) as http:  # type: ignore[arg-type]
        token = (await http.get("/demo/token", params={"user": "bob", "ttl": 30})).json()["token"]
        yield http, verifier.verify(token)


async def test_demo_flag_serves_the_page_but_mints_no_token(
    demo_only: httpx.AsyncClient,
) -> None:
    """NOTIFIER_DEMO=1 serves the page, which imports only the served module; tokens
    are minted in development mode alone (the page then takes one in its fragment)."""
    page = await demo_only.get("/demo")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'from "/v1/client.js"' in page.text
    assert (await demo_only.get("/demo/token", params={"user": "bob"})).status_code == 404


async def test_development_mode_mints_demo_tokens(
    development: tuple[httpx.AsyncClient, UserIdentity],
) -> None:
    """In development mode /demo/token gives a token for the user asked, with the ttl
    asked, that the service accepts."""
    http, identity = development
    assert identity.user_id == "bob"
    assert (await http.get("/demo")).status_code == 200
    assert (await http.get("/demo/token", params={"user": ""})).status_code == 422
    assert (await http.get("/demo/token", params={"user": "a", "ttl": 0})).status_code == 422


def test_development_mode_never_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only `serve` generating the secret turns development mode on, not a variable."""
    monkeypatch.setenv("NOTIFIER_DEVELOPMENT", "1")
    monkeypatch.setenv("NOTIFIER__DEVELOPMENT", "1")
    assert not Settings(jwt_secret=SECRET).development
    development = Settings(jwt_secret=SECRET).in_development()
    assert development.development
    # `serve --workers N` pickles the settings to each worker process.
    assert pickle.loads(pickle.dumps(development)).development
    assert development.model_copy(update={"demo": True}).development


def test_a_wheel_ships_the_client_and_the_demo_page(tmp_path: Path) -> None:
    """The built client, its types and the demo page are package data of the wheel,
    byte for byte the committed files the routes serve."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("notifier-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in ("client.js", "client.d.ts", "demo.html"):
            assert archive.read(f"notifier/_static/{name}") == (STATIC / name).read_bytes()
