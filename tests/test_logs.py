"""Credentials never reach the logs (notifier/logs.py), in unit and against a real server."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from notifier import logs
from notifier.logs import JsonFormatter, RedactFilter, redact
from tests.support import SECRET, Server, make_token, new_user, recv_notifications, timeout

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA"


def test_redact_access_token_in_query_string() -> None:
    """An access_token query value is removed; the path and other parameters stay."""
    text = redact(f'127.0.0.1:5555 - "WebSocket /v1/ws?access_token={TOKEN}&after=3" [accepted]')
    assert TOKEN not in text
    assert "c2lnbmF0dXJlLXNlY3JldA" not in text
    assert "/v1/ws?" in text and "after=3" in text


def test_redact_access_token_as_a_later_parameter() -> None:
    """A token after another query parameter is removed too."""
    text = redact(f"GET /v1/ws?after=0&access_token={TOKEN} HTTP/1.1")
    assert TOKEN not in text
    assert "after=0" in text


def test_redact_bearer_header_text() -> None:
    """`Bearer <credential>` text loses the credential, whatever the casing."""
    for header in (f"Authorization: Bearer {TOKEN}", "authorization: bearer pub-key-123"):
        text = redact(header)
        assert TOKEN not in text and "pub-key-123" not in text
        assert text.lower().startswith("authorization: bearer")


def test_redact_leaves_ordinary_text_alone() -> None:
    """Text without credentials is unchanged."""
    line = 'POST /v1/notifications HTTP/1.1" 201'
    assert redact(line) == line


def test_filter_and_formatter_redact_arguments_and_extras() -> None:
    """A record whose path arrives as a %-argument or an extra field is logged redacted."""
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s"', None, None
    )
    record.args = ("127.0.0.1:1", "GET", f"/v1/ws?access_token={TOKEN}")
    record.header = f"Bearer {TOKEN}"
    assert RedactFilter().filter(record)
    line = JsonFormatter().format(record)
    assert TOKEN not in line
    entry = json.loads(line)
    assert "/v1/ws?access_token=" in entry["message"]


def _wait_for(server: Server, *texts: str, seconds: float = 5) -> str:
    deadline = time.monotonic() + timeout(seconds)
    while time.monotonic() < deadline:
        logs = server.logs()
        if all(text in logs for text in texts):
            return logs
        time.sleep(0.05)
    return server.logs()


async def test_server_logs_carry_no_token_or_api_key(tmp_path: Path) -> None:
    """After a WebSocket with ?access_token= and an API-key publish, neither credential
    (nor the JWT secret) appears in the server's logs, while the request paths do (with
    a line per request: `NOTIFIER_ACCESS_LOG=all`)."""
    api_key = f"log-test-key-{new_user()}"
    server = Server(
        f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}",
        env_extra={"NOTIFIER_API_KEYS": f"main:{api_key}", "NOTIFIER_ACCESS_LOG": "all"},
    ).start()
    try:
        user = new_user()
        token = make_token(user)
        async with connect(
            f"{server.ws_url}?access_token={token}&after=0", open_timeout=timeout(10)
        ) as ws:
            response = httpx.post(
                server.url + "/v1/notifications",
                json={"user_id": user, "type": "log.test", "data": {"n": 1}},
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=10,
            )
            assert response.status_code == 201, response.text
            await recv_notifications(ws, 1)
        logs = _wait_for(server, "/v1/notifications", "/v1/ws")
    finally:
        server.stop()
    assert "/v1/notifications" in logs, logs
    assert "/v1/ws" in logs, logs
    assert token not in logs
    assert token.rsplit(".", 1)[1] not in logs
    assert api_key not in logs
    assert SECRET not in logs


def test_redact_percent_encoded_parameter_names() -> None:
    """`access_toke%6E=` is `access_token=` to the handshake, and to the redaction."""
    for name in ("access_toke%6E", "%61ccess_token", "ACCESS_TOKEN", "access%5Ftoken"):
        text = redact(f'"WebSocket /v1/ws?after=1&{name}={TOKEN}" [accepted]')
        assert TOKEN not in text and "c2lnbmF0dXJlLXNlY3JldA" not in text, text
        assert "after=1" in text


def test_redact_a_jwt_anywhere() -> None:
    """A JWT under any parameter name, percent-encoded, or bare in text is removed."""
    encoded = TOKEN.replace("e", "%65")
    for text in (f"/x?foo={TOKEN}", f"/x?foo={encoded}", f"token was {TOKEN}.", f"/p/{TOKEN}"):
        assert "c2lnbmF0dXJlLXNlY3JldA" not in redact(text), text
        assert "eyJhbGciOiJIUzI1NiJ9" not in redact(text), text


def test_accepted_websocket_lines_follow_the_access_log() -> None:
    """uvicorn's line per accepted WebSocket is dropped unless every request is logged
    (NOTIFIER_ACCESS_LOG=all); uvicorn's other lines pass."""
    accepted = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]', None, None
    )
    accepted.args = ("127.0.0.1:1", "/v1/ws?after=0")
    started = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, "Application startup complete.", None, None
    )
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic")
    kept = {n: (logging.getLogger(n).filters[:], logging.getLogger(n).propagate) for n in names}
    logger = logging.getLogger("uvicorn.error")
    try:
        logs.configure("info", access_log=False)
        assert [bool(logger.filter(accepted)), bool(logger.filter(started))] == [False, True]
        assert logs.drops_accept_lines(logger)  # the protocol does not even make the line
        logs.configure("info", access_log=True)
        assert bool(logger.filter(accepted)) and bool(logger.filter(started))
        assert not logs.drops_accept_lines(logger)
    finally:
        root.handlers[:], root.level = saved
        for name, (filters, propagate) in kept.items():
            logging.getLogger(name).filters[:] = filters
            logging.getLogger(name).propagate = propagate
