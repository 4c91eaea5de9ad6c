"""CPU per request of the HTTP layer alone: the app's ASGI callable, in process, with the
store and delivery replaced by a stub that answers at once.

`bench.run` measures the whole server (database driver, delivery, uvicorn) and its
figures spread by 10-15% from run to run on a shared machine; a change to how routes
are served moves a few tens of µs out of ~400, which only shows here:

    python -m bench.http_layer [--requests 20000] [--repeat 5]

It prints µs of CPU (process time, best of `repeat`) per request for a good single
publish, a batch of 10, a refused key, a bad body and an inbox read.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
from starlette.types import ASGIApp, Message, Scope

from notifier.app import create_app
from notifier.config import Settings
from notifier.store import NewNotification, Published
from notifier.wire.notification import Notification

API_KEY = "bench-publisher-key"
Headers = list[tuple[bytes, bytes]]


def _scope(method: str, path: str, headers: Headers) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "root_path": "",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


async def _one(app: ASGIApp, method: str, path: str, headers: Headers, body: bytes) -> int:
    if body:  # as every HTTP client sends it (a chunked body takes another path)
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    status = 0
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(method, path, headers), receive, send)
    return status


Publish = Callable[[str, Sequence[NewNotification]], Awaitable[list[Published]]]


def _stub(notification: Notification) -> Publish:
    async def publish(publisher: str, items: Sequence[NewNotification]) -> list[Published]:
        return [Published(notification=notification, created=True) for _ in items]

    return publish


async def main(requests: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}",
            jwt_secret="bench-secret-that-is-long-enough-for-hs256-0123456789",
            api_keys=[f"main:{API_KEY}"],
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            service = app.state.service
            notification = Notification(
                id=str(uuid.uuid4()),
                user_id="u",
                seq=1,
                type="t",
                data_json='{"n":1}',
                created_at=datetime.now(UTC),
            )
            service.publish = _stub(notification)
            auth = (b"authorization", f"Bearer {API_KEY}".encode())
            json = (b"content-type", b"application/json")
            one = orjson.dumps({"user_id": "u", "type": "bench", "data": {"r": 1, "i": 2}})
            ten = orjson.dumps({"notifications": [orjson.loads(one)] * 10})
            cases = {
                "publish 201": ("POST", "/v1/notifications", [auth, json], one, 201),
                "batch of 10 201": ("POST", "/v1/notifications/batch", [auth, json], ten, 201),
                "wrong key 401": (
                    "POST",
                    "/v1/notifications",
                    [(b"authorization", b"Bearer nope"), json],
                    one,
                    401,
                ),
                "bad JSON 422": ("POST", "/v1/notifications", [auth, json], b"{", 422),
                "healthz 200": ("GET", "/healthz", [], b"", 200),
            }
            for name, (method, path, headers, body, expected) in cases.items():
                status = await _one(app, method, path, headers, body)
                assert status == expected, (name, status)
            best = dict.fromkeys(cases, float("inf"))
            gc.collect()
            gc.disable()  # a collection lands on whichever case runs: noise
            try:
                for _ in range(repeat):  # round robin: a busy moment hits every case
                    for name, (method, path, headers, body, _) in cases.items():
                        started = time.process_time()
                        for _ in range(requests):
                            await _one(app, method, path, headers, body)
                        best[name] = min(best[name], time.process_time() - started)
                        gc.collect()
            finally:
                gc.enable()
            for name, seconds in best.items():
                print(f"{name:>18}: {seconds / requests * 1e6:6.1f} µs of CPU per request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.requests, options.repeat))
