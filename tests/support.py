"""Test helpers: a real `notifier serve` in a subprocess, tokens, a WebSocket client.

Everything here talks to real processes over loopback sockets. `TIMEOUT_FACTOR` (env
`NOTIFIER_TEST_TIMEOUT_FACTOR`) stretches every wait on a slow machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from jose import jwt
from websockets.asyncio.client import ClientConnection, connect

TIMEOUT_FACTOR = float(os.environ.get("NOTIFIER_TEST_TIMEOUT_FACTOR", "1"))
SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
API_KEY = "test-publisher-key"
OTHER_API_KEY = "other-publisher-key"
ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get(
    "NOTIFIER_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def timeout(seconds: float) -> float:
    return seconds * TIMEOUT_FACTOR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def make_token(
    user: str, *, secret: str = SECRET, ttl: float = 3600, algorithm: str = "HS256", **claims: Any
) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"sub": user, "iat": now, "exp": now + ttl}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return str(jwt.encode(body, secret, algorithm=algorithm))


def publisher_headers(key: str = API_KEY, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def user_headers(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


@dataclass
class Server:
    """A `notifier serve` subprocess on a free loopback port."""

    database_url: str
    env_extra: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        env.update(
            NOTIFIER_DATABASE_URL=self.database_url,
            NOTIFIER_JWT_SECRET=SECRET,
            NOTIFIER_API_KEYS=f"main:{API_KEY},other:{OTHER_API_KEY}",
            NOTIFIER_LOG_LEVEL="info",
            # Tests open sockets from one address far faster than any client should; the
            # limit has its own tests (tests/e2e/test_hostile.py).
            NOTIFIER_HANDSHAKE_RATE="0",
        )
        env.update(self.env_extra)
        return env

    def start(self, wait: bool = True) -> Server:
        import tempfile

        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix="notifier-test-", suffix=".log")[1])
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "notifier", "serve", "--port", str(self.port), *self.args],
                env=self.env(),
                stdout=log,
                stderr=log,
                cwd=ROOT,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + timeout(seconds)
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.logs()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"server not ready:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout(30))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def running(database_url: str, **env: str) -> Iterator[Server]:
    server = Server(database_url, env_extra=env).start()
    try:
        yield server
    finally:
        server.stop()


def ws_url(
    server: Server,
    user: str | None = None,
    *,
    after: int | str | None = None,
    token: str | None = None,
) -> str:
    params = []
    if token is None and user is not None:
        token = make_token(user)
    if token is not None:
        params.append(f"access_token={token}")
    if after is not None:
        params.append(f"after={after}")
    return server.ws_url + ("?" + "&".join(params) if params else "")


@contextlib.asynccontextmanager
async def ws_connect(
    server: Server, user: str | None = None, **kwargs: Any
) -> AsyncIterator[ClientConnection]:
    headers = kwargs.pop("additional_headers", None)
    url = ws_url(server, user, **kwargs)
    async with connect(
        url, additional_headers=headers, open_timeout=timeout(10), max_size=2**24
    ) as ws:
        yield ws


async def recv_json(ws: ClientConnection, seconds: float = 10) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout(seconds))
    body = orjson.loads(raw)
    assert isinstance(body, dict)
    return body


async def recv_notifications(
    ws: ClientConnection, count: int, seconds: float = 20
) -> list[dict[str, Any]]:
    """The next `count` notification frames (other frame types are skipped)."""
    found: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout(seconds)
    while len(found) < count:
        left = deadline - asyncio.get_running_loop().time()
        frame = await recv_json(ws, max(0.01, left / TIMEOUT_FACTOR))
        if frame["type"] == "notification":
            found.append(frame["notification"])
    return found


async def recv_until(
    ws: ClientConnection, frame_type: str, seconds: float = 20
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Notification frames received before the first frame of `frame_type`, and that frame."""
    before: list[dict[str, Any]] = []
    while True:
        frame = await recv_json(ws, seconds)
        if frame["type"] == frame_type:
            return before, frame
        if frame["type"] == "notification":
            before.append(frame["notification"])


async def no_frame(ws: ClientConnection, seconds: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


def publish(
    client: httpx.Client | None,
    server: Server,
    user: str,
    type_: str = "test.event",
    data: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    api_key: str = API_KEY,
) -> httpx.Response:
    headers = publisher_headers(api_key)
    if key is not None:
        headers["Idempotency-Key"] = key
    body = {"user_id": user, "type": type_, "data": data if data is not None else {"n": 1}}
    if client is None:
        return httpx.post(server.url + "/v1/notifications", json=body, headers=headers, timeout=10)
    return client.post(server.url + "/v1/notifications", json=body, headers=headers)


async def apublish(
    client: httpx.AsyncClient,
    server: Server,
    user: str,
    type_: str = "test.event",
    data: dict[str, Any] | None = None,
    *,
    key: str | None = None,
) -> httpx.Response:
    headers = publisher_headers()
    if key is not None:
        headers["Idempotency-Key"] = key
    body = {"user_id": user, "type": type_, "data": data if data is not None else {"n": 1}}
    return await client.post(server.url + "/v1/notifications", json=body, headers=headers)


def publish_batch(
    server: Server, items: list[dict[str, Any]], *, api_key: str = API_KEY
) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/notifications/batch",
        json={"notifications": items},
        headers=publisher_headers(api_key),
        timeout=60,
    )


@contextlib.asynccontextmanager
async def in_process_uvicorn(app: Any, **config: Any) -> AsyncIterator[Any]:
    """uvicorn serving `app` in this event loop on a free port (`server.config.port`),
    with uvicorn's own logging and lifespan off; stopped on exit. For tests of the
    protocol classes `serve` hands uvicorn, without a notifier behind them."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, port=free_port(), log_config=None, lifespan="off", **config)
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        await task
