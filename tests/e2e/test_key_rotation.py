"""Key rotation under live sockets (NOTIFIER_JWKS_FILE, NOTIFIER_JWKS_URL): sockets
opened with the old key keep working until their own `exp`, tokens of a newly added key
are accepted, and once the old key is removed no new handshake or HTTP call passes
with it. No mass logout."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.ws_support import close_code, expect_no_connection, open_ws, own_server
from tests.jwks_support import SigningKey, jwks, write_jwks
from tests.support import Server, new_user, publish, recv_notifications, timeout, ws_url


async def _until(predicate: object, seconds: float = 15) -> None:
    """Poll `predicate` (an async callable returning bool) until it holds."""
    deadline = time.monotonic() + timeout(seconds)
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("condition never held")


def _http_status(server: Server, token: str) -> int:
    return httpx.get(
        server.url + "/v1/me/notifications/unread-count",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).status_code


async def _rotate(server: Server, install: object, old: SigningKey, new: SigningKey) -> None:
    """The rotation, whatever carries the key set (`install(*keys)` publishes it)."""
    alice, bob = new_user(), new_user()
    assert _http_status(server, old.token(alice)) == 200
    async with open_ws(ws_url(server, token=old.token(alice, ttl=120), after=0)) as old_socket:
        # 1. Add the new key next to the old one: both are accepted.
        install(old, new)  # type: ignore[operator]

        async def new_key_works() -> bool:
            return _http_status(server, new.token(bob)) == 200

        await _until(new_key_works)
        async with open_ws(ws_url(server, token=new.token(bob), after=0)) as new_socket:
            # 2. Remove the old key: new tokens of it are refused, HTTP and handshake.
            install(new)  # type: ignore[operator]

            async def old_key_refused() -> bool:
                return _http_status(server, old.token(alice)) == 401

            await _until(old_key_refused)
            await expect_no_connection(ws_url(server, token=old.token(alice), after=0))
            # 3. The socket opened with the old key still gets its notifications.
            assert publish(None, server, alice).status_code == 201
            assert publish(None, server, bob).status_code == 201
            [to_alice] = await recv_notifications(old_socket, 1)
            [to_bob] = await recv_notifications(new_socket, 1)
            assert (to_alice["user_id"], to_bob["user_id"]) == (alice, bob)


async def test_rotation_through_a_jwks_file(tmp_path: Path, sqlite_url: str) -> None:
    """NOTIFIER_JWKS_FILE is reloaded when it changes: rotate without a restart."""
    old, new = SigningKey.generate("2026-11", "ES256"), SigningKey.generate("2026-12", "RS256")
    path = tmp_path / "jwks.json"
    write_jwks(path, old)

    def install(*keys: SigningKey) -> None:
        write_jwks(path, *keys)

    env = {"NOTIFIER_JWT_SECRET": "", "NOTIFIER_JWKS_FILE": str(path)}
    async with own_server(sqlite_url, **env) as server:
        await _rotate(server, install, old, new)


async def test_an_old_socket_still_closes_at_its_own_exp(tmp_path: Path, sqlite_url: str) -> None:
    """Removing a key does not close its sockets, and does not extend them either: a
    socket closes with 4401 at its token's exp."""
    old, new = SigningKey.generate("old", "ES256"), SigningKey.generate("new", "ES256")
    path = tmp_path / "jwks.json"
    write_jwks(path, old)
    env = {"NOTIFIER_JWT_SECRET": "", "NOTIFIER_JWKS_FILE": str(path)}
    async with own_server(sqlite_url, **env) as server:
        user = new_user()
        async with open_ws(ws_url(server, token=old.token(user, ttl=3), after=0)) as socket:
            write_jwks(path, new)
            code, _frames = await close_code(socket, 10)
        assert code == 4401


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    document = b""

    def do_GET(self) -> None:
        body = type(self).document
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jwks_endpoint() -> Iterator[tuple[str, type[_JwksHandler]]]:
    handler = type("Handler", (_JwksHandler,), {"document": b""})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", handler
    finally:
        server.shutdown()
        server.server_close()


async def test_rotation_through_a_jwks_url(
    jwks_endpoint: tuple[str, type[_JwksHandler]], sqlite_url: str
) -> None:
    """NOTIFIER_JWKS_URL is fetched again every NOTIFIER_JWKS_REFRESH_SECONDS: the same
    rotation, published by an identity provider."""
    url, handler = jwks_endpoint
    old, new = SigningKey.generate("k1", "RS256"), SigningKey.generate("k2", "ES256")
    handler.document = jwks(old)

    def install(*keys: SigningKey) -> None:
        handler.document = jwks(*keys)

    env = {
        "NOTIFIER_JWT_SECRET": "",
        "NOTIFIER_JWKS_URL": url,
        "NOTIFIER_JWKS_REFRESH_SECONDS": "1",
    }
    async with own_server(sqlite_url, **env) as server:
        await _rotate(server, install, old, new)


async def test_unreachable_jwks_url_refuses_to_start(sqlite_url: str) -> None:
    """serve refuses to start, in one line, when the key set cannot be fetched."""
    server = Server(
        sqlite_url,
        env_extra={"NOTIFIER_JWT_SECRET": "", "NOTIFIER_JWKS_URL": "http://127.0.0.1:9/jwks"},
    )
    with pytest.raises(RuntimeError, match="cannot fetch NOTIFIER_JWKS_URL"):
        await asyncio.to_thread(server.start)
