"""WebSocket authentication: handshake refusals, `after` validation, token expiry while
connected, the `auth` frame, and the Origin allow-list (docs/reference.md, WebSocket: Auth,
Resume, Client frames, Lifetime; NOTIFIER_ALLOWED_ORIGINS)."""

from __future__ import annotations

import asyncio
import base64
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from tests.e2e.ws_support import (
    alg_none_token,
    close_code,
    expect_no_connection,
    open_ws,
    own_server,
    ping_pong,
    recv_frame,
)
from tests.support import (
    API_KEY,
    Server,
    make_token,
    new_user,
    publish,
    recv_notifications,
    timeout,
    ws_connect,
    ws_url,
)

# Each builds a token for `user` that must not open a socket.
BAD_TOKENS: dict[str, Callable[[str], str | None]] = {
    "missing": lambda user: None,
    "garbage": lambda user: "this-is-not-a-jwt",
    "three-garbage-parts": lambda user: "abc.def.ghi",
    "expired": lambda user: make_token(user, ttl=-30),
    "no-exp": lambda user: make_token(user, exp=None),
    "wrong-signature": lambda user: make_token(user, secret="another-secret-" + "x" * 40),
    "alg-none": lambda user: alg_none_token(
        {"sub": user, "iat": int(time.time()), "exp": int(time.time()) + 3600}
    ),
    "alg-hs512-not-allowed": lambda user: make_token(user, algorithm="HS512"),
    "api-key-as-token": lambda user: API_KEY,
    "not-yet-valid": lambda user: make_token(user, nbf=int(time.time()) + 600),
    "nul-in-sub": lambda user: make_token(user + "\x00x"),
}


def _refusal_request(
    server: Server, token: str | None, transport: str
) -> tuple[str, dict[str, str] | None]:
    # after=0 makes an accepted socket send a `replayed` frame at once, so an accepted
    # connection can never pass for a refusal.
    if transport == "query":
        url = server.ws_url + "?after=0" + (f"&access_token={token}" if token else "")
        return url, None
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return server.ws_url + "?after=0", headers


@pytest.mark.parametrize("transport", ["query", "header"])
@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_token_gets_no_connection(server: Server, case: str, transport: str) -> None:
    """A missing/malformed/expired/wrongly signed/wrongly algorithmed token (or an API key)
    is refused at the handshake (401/403) or closed with 4401 before any frame."""
    token = BAD_TOKENS[case](new_user())
    url, headers = _refusal_request(server, token, transport)
    await expect_no_connection(url, headers=headers)


@pytest.mark.parametrize("transport", ["query", "header"])
async def test_valid_token_is_accepted(server: Server, transport: str) -> None:
    """The control case: a valid token by query parameter or Bearer header opens a socket
    that replays and then receives live notifications."""
    user = new_user()
    url, headers = _refusal_request(server, make_token(user), transport)
    async with open_ws(url, additional_headers=headers) as ws:
        assert await recv_frame(ws) == {"type": "replayed", "last_seq": 0, "complete": True}
        assert publish(None, server, user).status_code == 201
        [received] = await recv_notifications(ws, 1)
        assert received["seq"] == 1 and received["user_id"] == user


@pytest.mark.parametrize("after", ["abc", "-1", "-7", "1.5", "0x10", "1e3", "%201", "seven"])
async def test_malformed_or_negative_after_closes_4400(server: Server, after: str) -> None:
    """A malformed or negative `after` with a valid token is refused with 4400 (or an HTTP
    refusal of the handshake), before any frame."""
    url = ws_url(server, new_user(), after=after)
    await expect_no_connection(url, close_codes=(4400,), statuses=(400, 401, 403))


async def test_token_expiring_while_connected_closes_4401(server: Server) -> None:
    """A socket whose token's `exp` passes without a fresh `auth` frame is closed with 4401."""
    user = new_user()
    token = make_token(user, ttl=2)
    exp = orjson.loads(_payload(token))["exp"]
    async with ws_connect(server, token=token) as ws:
        await ping_pong(ws)
        code, frames = await close_code(ws, 8)
        closed_at = time.time()
    assert code == 4401, f"closed with {code} after {frames!r:.300}"
    assert closed_at >= exp - 0.2, "closed before the token expired"
    assert closed_at <= exp + timeout(3), "closed long after the token expired"


async def test_auth_frame_with_fresh_token_extends_connection(server: Server) -> None:
    """An `auth` frame with a fresh token of the same sub keeps the socket open past the
    first token's expiry; the new token's own `exp` then closes it with 4401."""
    user = new_user()
    first = make_token(user, ttl=2)
    first_exp = orjson.loads(_payload(first))["exp"]
    fresh = make_token(user, ttl=5)
    fresh_exp = orjson.loads(_payload(fresh))["exp"]
    async with ws_connect(server, token=first) as ws:
        await ws.send(orjson.dumps({"type": "auth", "access_token": fresh}).decode())
        await ping_pong(ws)  # frames are handled in order: the auth frame was handled
        # Past the first expiry (no frame, no close meanwhile).
        wait = first_exp + 1.0 - time.time()
        with pytest.raises(TimeoutError):
            got = await asyncio.wait_for(ws.recv(), max(0.0, wait))
            pytest.fail(f"unexpected frame {got!r}")
        assert publish(None, server, user).status_code == 201
        [received] = await recv_notifications(ws, 1)
        assert received["seq"] == 1
        await ping_pong(ws)
        code, _ = await close_code(ws, fresh_exp - time.time() + 4)
        closed_at = time.time()
    assert code == 4401
    assert closed_at >= fresh_exp - 0.2, "closed before the fresh token expired"


BAD_AUTH_FRAMES: dict[str, Callable[[str], str]] = {
    "other-sub": lambda user: make_token(new_user()),
    "expired": lambda user: make_token(user, ttl=-30),
    "wrong-signature": lambda user: make_token(user, secret="another-secret-" + "x" * 40),
    "garbage": lambda user: "garbage.token.here",
    "alg-none": lambda user: alg_none_token({"sub": user, "exp": int(time.time()) + 3600}),
    "alg-hs512-not-allowed": lambda user: make_token(user, algorithm="HS512"),
    "api-key": lambda user: API_KEY,
}


@pytest.mark.parametrize("case", sorted(BAD_AUTH_FRAMES))
async def test_auth_frame_with_bad_token_closes_4401(server: Server, case: str) -> None:
    """An `auth` frame carrying another sub's token or a token failing any check closes
    the socket with 4401."""
    user = new_user()
    async with ws_connect(server, user) as ws:
        await ping_pong(ws)
        token = BAD_AUTH_FRAMES[case](user)
        await ws.send(orjson.dumps({"type": "auth", "access_token": token}).decode())
        code, frames = await close_code(ws, 5)
    assert code == 4401, f"closed with {code}; frames before: {frames!r:.300}"
    assert not any('"notification"' in str(frame) for frame in frames)


def _payload(token: str) -> bytes:
    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


ALLOWED = "https://app.example.com,https://admin.example.com"


async def test_allowed_origins_refuse_other_origins() -> None:
    """With NOTIFIER_ALLOWED_ORIGINS set, a handshake from an unlisted Origin is refused
    (even with a valid token), a listed Origin and a missing Origin are accepted."""
    folder = tempfile.mkdtemp(prefix="notifier-origin-")
    url = f"sqlite+aiosqlite:///{Path(folder) / 'origin.db'}"
    async with own_server(url, NOTIFIER_ALLOWED_ORIGINS=ALLOWED) as srv:
        user = new_user()
        for origin in (
            "https://evil.example.com",
            "http://app.example.com",
            "https://app.example.com.evil.com",
            "null",
        ):
            how = await expect_no_connection(
                ws_url(srv, user, after=0),
                origin=origin,
                close_codes=(1008, 4401, 4403),
                statuses=(401, 403),
            )
            assert how, origin
        for origin in ("https://app.example.com", "https://admin.example.com", None):
            async with open_ws(ws_url(srv, user, after=0), origin=origin) as ws:
                frame = await recv_frame(ws)
                assert frame["type"] == "replayed", (origin, frame)
                await ping_pong(ws)
        # A listed origin gets live delivery too.
        async with open_ws(ws_url(srv, user), origin="https://app.example.com") as ws:
            assert publish(None, srv, user).status_code == 201
            [received] = await recv_notifications(ws, 1)
            assert received["user_id"] == user
