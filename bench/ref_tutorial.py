"""Reference server 1: the FastAPI WebSocket tutorial, grown to notifier's endpoints.

Written the way the common tutorial writes it: a `ConnectionManager` holding a dict of
user -> list of WebSockets, `send_text` awaited in a loop from the publishing request,
a JWT query parameter decoded with python-jose, pydantic bodies, nothing persisted (a
per-user counter in memory stands in for `seq`). It is what a first version of a push
service usually is, and the baseline every figure of notifier is compared with.

Its one step past the tutorial is the replay a client asks for with `after=N`: every
message a user was sent is kept in memory, in order, and a socket that connects with
`after` gets those past N, then `{"type": "replayed", ...}`, as from notifier. That is
the reference for notifier's replay from PostgreSQL (`--scenarios replay`), "the same
from memory".

    python -m bench.ref_tutorial --port 8001

Reads NOTIFIER_JWT_SECRET and NOTIFIER_API_KEYS (`name:key` or `key`, comma-separated)
like notifier. It runs on uvicorn's defaults (websockets-sansio, httptools, uvloop),
with the access log off and log level warning (it logs nothing per request, as
notifier's default access log logs nothing for a fast, successful one).
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, Header, HTTPException, Query, WebSocket, WebSocketDisconnect, status
from jose import JWTError, jwt
from pydantic import BaseModel

SECRET_KEY = os.environ.get("NOTIFIER_JWT_SECRET", "change-me")
ALGORITHM = "HS256"
API_KEYS = {
    entry.partition(":")[2] or entry
    for entry in os.environ.get("NOTIFIER_API_KEYS", "").split(",")
    if entry
}


class NotificationIn(BaseModel):
    user_id: str
    type: str
    data: dict[str, Any]


class BatchIn(BaseModel):
    notifications: list[NotificationIn]


class ConnectionManager:
    def __init__(self) -> None:
        self.active_connections: dict[str, list[WebSocket]] = {}
        self.last_seq: dict[str, int] = {}
        self.history: dict[str, list[str]] = {}
        """Every message sent to each user, seq 1 first."""

    async def connect(self, user_id: str, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active_connections.setdefault(user_id, []).append(websocket)

    def disconnect(self, user_id: str, websocket: WebSocket) -> None:
        connections = self.active_connections.get(user_id, [])
        if websocket in connections:
            connections.remove(websocket)
        if not connections:
            self.active_connections.pop(user_id, None)

    async def send_personal_message(self, message: str, user_id: str) -> None:
        self.history.setdefault(user_id, []).append(message)
        for connection in self.active_connections.get(user_id, []):
            await connection.send_text(message)

    async def replay(self, user_id: str, after: int, websocket: WebSocket) -> None:
        history = self.history.get(user_id, [])
        for message in history[after:]:
            await websocket.send_text(message)
        replayed = {"type": "replayed", "last_seq": len(history), "complete": True}
        await websocket.send_text(json.dumps(replayed))


manager = ConnectionManager()
app = FastAPI()


def check_publisher(authorization: str | None) -> None:
    if authorization is None or not authorization.startswith("Bearer "):
        raise HTTPException(status_code=401, detail="missing API key")
    if authorization[len("Bearer ") :] not in API_KEYS:
        raise HTTPException(status_code=401, detail="invalid API key")


def make_notification(item: NotificationIn) -> dict[str, Any]:
    seq = manager.last_seq.get(item.user_id, 0) + 1
    manager.last_seq[item.user_id] = seq
    return {
        "id": str(uuid.uuid4()),
        "user_id": item.user_id,
        "seq": seq,
        "type": item.type,
        "data": item.data,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "read_at": None,
        "topic": None,
        "archived_at": None,
    }


@app.post("/v1/notifications", status_code=201)
async def publish(
    item: NotificationIn, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    check_publisher(authorization)
    notification = make_notification(item)
    message = json.dumps({"type": "notification", "notification": notification})
    await manager.send_personal_message(message, item.user_id)
    return notification


@app.post("/v1/notifications/batch", status_code=201)
async def publish_batch(
    batch: BatchIn, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    check_publisher(authorization)
    created = []
    for item in batch.notifications:
        notification = make_notification(item)
        message = json.dumps({"type": "notification", "notification": notification})
        await manager.send_personal_message(message, item.user_id)
        created.append(notification)
    return {"notifications": created}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.websocket("/v1/ws")
async def websocket_endpoint(
    websocket: WebSocket,
    access_token: Annotated[str, Query()],
    after: Annotated[int | None, Query(ge=0)] = None,
) -> None:
    try:
        payload = jwt.decode(access_token, SECRET_KEY, algorithms=[ALGORITHM])
    except JWTError:
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        return
    user_id = payload["sub"]
    await manager.connect(user_id, websocket)
    try:
        if after is not None:
            await manager.replay(user_id, after, websocket)
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        manager.disconnect(user_id, websocket)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
