"""POST /v1/users/{user_id}/revoke ("log out everywhere", v1.1): every open socket of the
user on every instance closed with 4403 within a second; from then on, across restarts,
every token of the user issued at or before the revocation (or without `iat`) refused on
HTTP (401), the WebSocket handshake (4401) and the `auth` frame (4401); later tokens
work. Also while the bus is down."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import asyncpg
import httpx

from tests.conftest import migrate
from tests.e2e.http_support import assert_error, parse_time
from tests.e2e.ws_support import close_code, expect_no_connection, own_server, ping_pong
from tests.support import (
    PG_ADMIN_DSN,
    Server,
    free_port,
    make_token,
    new_user,
    publisher_headers,
    timeout,
    ws_connect,
    ws_url,
)


def revoke(server: Server, user: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("headers", publisher_headers())
    return httpx.post(f"{server.url}/v1/users/{user}/revoke", timeout=10, **kwargs)


def revoked_cut(server: Server, user: str) -> int:
    response = revoke(server, user)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == user
    return math.floor(parse_time(body["revoked_at"]).timestamp())


def inbox_status(server: Server, token: str) -> int:
    response = httpx.get(
        server.url + "/v1/me/notifications",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return response.status_code


async def fresh_token_after(user: str, cut: int) -> str:
    """A token issued in the second after the revocation's (waiting for it to come)."""
    await asyncio.sleep(max(0.0, cut + 1 - time.time()))
    return make_token(user, iat=cut + 1)


async def test_revoke_closes_sockets_4403_and_refuses_old_tokens(server: Server) -> None:
    """Both sockets of the user are closed 4403; the old token and a token without `iat`
    are refused on HTTP and on the handshake; a token issued after works; another user's
    socket stays open."""
    user = new_user()
    old = make_token(user)
    no_iat = make_token(user, iat=None)
    assert inbox_status(server, no_iat) == 200, "no iat is fine until the user is revoked"
    async with (
        ws_connect(server, token=old) as first,
        ws_connect(server, token=no_iat) as second,
        ws_connect(server, new_user()) as bystander,
    ):
        started = time.monotonic()
        cut = revoked_cut(server, user)
        for ws in (first, second):
            code, frames = await close_code(ws, 1)
            assert code == 4403 and frames == [], (code, frames)
        assert time.monotonic() - started < timeout(1.5)
        await ping_pong(bystander)
    for token in (old, no_iat, make_token(user, iat=cut)):
        assert inbox_status(server, token) == 401
        await expect_no_connection(ws_url(server, token=token), close_codes=(4401,), statuses=())
    fresh = await fresh_token_after(user, cut)
    assert inbox_status(server, fresh) == 200
    async with ws_connect(server, token=fresh) as ws:
        await ping_pong(ws)


async def test_auth_frame_with_a_revoked_token_closes_4401(server: Server) -> None:
    """A socket opened after the revocation may not renew with a token from before it."""
    user = new_user()
    old = make_token(user)
    cut = revoked_cut(server, user)
    fresh = await fresh_token_after(user, cut)
    async with ws_connect(server, token=fresh) as ws:
        await ws.send(f'{{"type": "auth", "access_token": "{old}"}}')
        code, _ = await close_code(ws)
    assert code == 4401


def test_revoke_needs_a_publisher_key_and_no_body(server: Server) -> None:
    """401 without a key or with a user token; 422 for a body other than none or {}; both
    of those are accepted."""
    user = new_user()
    assert_error(revoke(server, user, headers={}), 401)
    assert_error(revoke(server, user, headers={"Authorization": f"Bearer {make_token(user)}"}), 401)
    assert_error(revoke(server, user, json={"reason": "x"}), 422)
    assert_error(revoke(server, user, content=b"not json"), 422)
    assert_error(revoke(server, "x" * 256), 422)
    assert inbox_status(server, make_token(user)) == 200, "a refused revoke changed something"
    assert revoke(server, user).status_code == 200
    assert revoke(server, user, json={}).status_code == 200


async def test_revocation_survives_a_restart(sqlite_url: str) -> None:
    """After a restart the old token is still refused, a later one still works."""
    user = new_user()
    old = make_token(user)
    async with own_server(sqlite_url) as server:
        cut = revoked_cut(server, user)
    fresh = await fresh_token_after(user, cut)
    async with own_server(sqlite_url) as server:
        assert inbox_status(server, old) == 401
        assert inbox_status(server, fresh) == 200


async def test_revoke_on_one_instance_closes_sockets_on_the_other(
    two_instances: tuple[Server, Server],
) -> None:
    """Revoked through B: A's socket of the user closes with 4403 within a second, and A
    refuses the old token at once."""
    a, b = two_instances
    user = new_user()
    old = make_token(user)
    async with ws_connect(a, token=old) as on_a, ws_connect(b, token=old) as on_b:
        started = time.monotonic()
        revoked_cut(b, user)
        for ws in (on_a, on_b):
            code, _ = await close_code(ws, 1)
            assert code == 4403
        assert time.monotonic() - started < timeout(1.5)
    assert inbox_status(a, old) == 401
    await expect_no_connection(ws_url(a, token=old), close_codes=(4401,), statuses=())


async def test_revocation_holds_while_the_bus_is_down(pg_database: str) -> None:
    """Two instances whose bus (Redis at a port where nothing listens) never connects:
    a revocation made on B is refused on A's handshake and HTTP (A reads the database
    while its bus is down), and A's open socket of the user is closed with 4403."""
    user = new_user()
    old = make_token(user)
    down = {"NOTIFIER_BUS": "redis", "NOTIFIER_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    async with own_server(pg_database, **down) as a, own_server(pg_database, **down) as b:
        async with ws_connect(a, token=old) as ws:
            await ping_pong(ws)
            revoked_cut(b, user)
            code, _ = await close_code(ws, 5)
        assert code == 4403
        assert inbox_status(a, old) == 401
        await expect_no_connection(ws_url(a, token=old), close_codes=(4401,), statuses=())


def test_revoke_metric_counts(server: Server) -> None:
    """notifier_revocations_total rises with each revocation."""

    def count() -> float:
        for line in httpx.get(server.url + "/metrics").text.splitlines():
            if line.startswith("notifier_revocations_total "):
                return float(line.split()[1])
        return 0.0

    before = count()
    revoked_cut(server, new_user())
    assert count() == before + 1


async def test_revocation_during_a_listen_outage_still_holds(fresh_pg_database: str) -> None:
    """Every LISTEN connection is terminated and the user revoked through B at once (A
    may miss the NOTIFY): A still closes its socket of the user with 4403 (it reloads its
    copy after reconnecting, or its reconcile round finds it) and refuses the old token."""
    migrate(fresh_pg_database)
    user = new_user()
    old = make_token(user)
    env = {"NOTIFIER_BUS": "postgres"}
    async with own_server(fresh_pg_database, **env) as a, own_server(fresh_pg_database, **env) as b:
        async with ws_connect(a, token=old) as ws:
            await ping_pong(ws)
            admin = await asyncpg.connect(PG_ADMIN_DSN)
            try:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'notifier-listen' AND datname = $1",
                    fresh_pg_database.rsplit("/", 1)[1],
                )
            finally:
                await admin.close()
            assert killed >= 1
            revoked_cut(b, user)
            assert inbox_status(a, old) == 401
            code, _ = await close_code(ws, 15)
        assert code == 4403
        await expect_no_connection(ws_url(a, token=old), close_codes=(4401,), statuses=())
