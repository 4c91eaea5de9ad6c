"""Reference server 2: the leanest in-memory push server on uvicorn, a raw ASGI callable.

No framework: the same endpoints as notifier (`POST /v1/notifications`, `POST
/v1/notifications/batch`, `GET /v1/ws?access_token=`, `GET /healthz`), orjson, a dict
of user -> set of ASGI `send` callables, nothing persisted (an in-memory per-user counter
stands in for `seq`). The user token is still checked (HS256 signature with `hmac`,
`alg`, `exp`), but by hand instead of python-jose: this server is the floor of what
Python on uvicorn can do, so every shortcut that keeps it correct is taken.

    python -m bench.ref_raw --port 8002

uvicorn runs with wsproto, per-message deflate off, no access log, log level warning,
no lifespan, no server/date headers. Reads NOTIFIER_JWT_SECRET and NOTIFIER_API_KEYS.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
import uvicorn

SECRET = os.environ.get("NOTIFIER_JWT_SECRET", "change-me").encode()
API_KEYS = {
    (entry.partition(":")[2] or entry).encode()
    for entry in os.environ.get("NOTIFIER_API_KEYS", "").split(",")
    if entry
}
JSON = b"application/json"

sockets: dict[str, set[Any]] = {}
last_seq: dict[str, int] = {}


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify(token: str) -> str | None:
    """The token's `sub` if it is an unexpired HS256 JWT signed with SECRET."""
    try:
        header, payload, signature = token.split(".")
        if orjson.loads(_b64(header)).get("alg") != "HS256":
            return None
        expected = hmac.new(SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64(signature)):
            return None
        claims = orjson.loads(_b64(payload))
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] < time.time():
            return None
        sub = claims.get("sub")
        return sub if isinstance(sub, str) and sub else None
    except (ValueError, TypeError, AttributeError):
        return None


def notification(item: Any) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    user_id, type_, data = item.get("user_id"), item.get("type"), item.get("data")
    if not (isinstance(user_id, str) and user_id and isinstance(type_, str) and type_):
        return None
    if not isinstance(data, dict):
        return None
    seq = last_seq.get(user_id, 0) + 1
    last_seq[user_id] = seq
    return {
        "id": str(uuid.uuid4()),
        "user_id": user_id,
        "seq": seq,
        "type": type_,
        "data": data,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "read_at": None,
        "topic": None,
        "archived_at": None,
    }


async def deliver(item: dict[str, Any]) -> None:
    targets = sockets.get(item["user_id"])
    if not targets:
        return
    frame = orjson.dumps({"type": "notification", "notification": item}).decode()
    for send in tuple(targets):
        try:
            await send({"type": "websocket.send", "text": frame})
        except Exception:  # the socket went away meanwhile; its disconnect cleans up
            targets.discard(send)


async def respond(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path, method = scope["path"], scope["method"]
    if method == "GET" and path in ("/healthz", "/readyz"):
        await respond(send, 200, b'{"status":"ok"}')
        return
    if method != "POST" or path not in ("/v1/notifications", "/v1/notifications/batch"):
        await respond(send, 404, b'{"detail":"not found"}')
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    authorization = dict(scope["headers"]).get(b"authorization", b"")
    if not authorization.startswith(b"Bearer ") or authorization[7:] not in API_KEYS:
        await respond(send, 401, b'{"detail":"invalid API key"}')
        return
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        await respond(send, 422, b'{"detail":"body is not valid JSON"}')
        return
    if path == "/v1/notifications":
        item = notification(body)
        if item is None:
            await respond(send, 422, b'{"detail":"invalid notification"}')
            return
        await deliver(item)
        await respond(send, 201, orjson.dumps(item))
        return
    items = body.get("notifications") if isinstance(body, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= 1000:
        await respond(send, 422, b'{"detail":"notifications: 1..1000 items"}')
        return
    created = [notification(item) for item in items]
    if any(item is None for item in created):
        await respond(send, 422, b'{"detail":"invalid notification"}')
        return
    for item in created:
        assert item is not None
        await deliver(item)
    await respond(send, 201, orjson.dumps({"notifications": created}))


async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    query = dict(parse_qsl(scope["query_string"].decode()))
    user_id = verify(query.get("access_token", ""))
    await receive()  # websocket.connect
    if user_id is None:
        await send({"type": "websocket.close", "code": 4401})
        return
    await send({"type": "websocket.accept"})
    targets = sockets.setdefault(user_id, set())
    targets.add(send)
    try:
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        targets.discard(send)
        if not targets and sockets.get(user_id) is targets:
            del sockets[user_id]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        ws="wsproto",
        ws_per_message_deflate=False,
        access_log=False,
        log_level="warning",
        lifespan="off",
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
