"""GET /v1/ws: the handshake, then the client's frames.

The handshake order is what makes "every notification committed after the handshake"
hold: authenticate, subscribe the socket to live delivery, learn where it starts (the
`after` of a resume, or the user's head read after subscribing), and only then accept.
Refusals are sent after accept as close codes (4401, 4400) so that browsers, which never
see a refused handshake's status, can tell a bad token from a network error; a
forbidden Origin is refused before accept (HTTP 403).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from fastapi import APIRouter, WebSocket

from notifier import metrics
from notifier.auth import AuthError, bearer
from notifier.connection import CLOSE_INTERNAL_ERROR, CLOSE_UNAUTHORIZED, Connection
from notifier.core.claims import UserIdentity
from notifier.core.frames import (
    PONG,
    Auth,
    FrameError,
    Ping,
    ReadUpTo,
    error_frame,
    parse_client_frame,
    parse_seq,
)
from notifier.core.ratelimit import TokenBucket
from notifier.service import Service

router = APIRouter()
log = logging.getLogger("notifier.ws")

CLOSE_BAD_REQUEST = 4400
# Client frames are pings, read marks and token renewals: a few a minute. A client that
# floods gets error frames (bounded by its queue), never database work per frame.
FRAME_RATE = 20.0
FRAME_BURST = 50.0
CLOSE_POLICY = 1008


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    await websocket.accept()
    await websocket.close(code=code, reason=reason)


@router.websocket("/v1/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    service: Service = websocket.app.state.service
    settings = service.settings

    origin = websocket.headers.get("origin")
    if settings.allowed_origins and origin is not None and origin not in settings.allowed_origins:
        metrics.AUTH_REFUSED.labels("origin").inc()
        await websocket.close(code=CLOSE_POLICY)  # before accept: HTTP 403
        return

    token = websocket.query_params.get("access_token") or bearer(
        websocket.headers.get("authorization")
    )
    try:
        if token is None:
            raise AuthError("missing token")
        identity = service.verifier.verify(token)
    except AuthError as error:
        metrics.AUTH_REFUSED.labels("user").inc()
        await _refuse(websocket, CLOSE_UNAUTHORIZED, str(error))
        return
    try:
        after = parse_seq(websocket.query_params.get("after"))
    except ValueError as error:
        await _refuse(websocket, CLOSE_BAD_REQUEST, str(error))
        return

    async def send_text(text: str) -> None:
        await websocket.send({"type": "websocket.send", "text": text})

    async def close(code: int, reason: str) -> None:
        await websocket.close(code=code, reason=reason)

    connection = Connection(
        user_id=identity.user_id,
        store=service.store,
        send_text=send_text,
        close=close,
        replay_after=after,
        page_size=settings.replay_page_size,
        max_buffer_bytes=settings.ws_max_buffer_bytes,
        stall_seconds=settings.ws_stall_seconds,
    )
    metrics.OPEN_SOCKETS.inc()
    loop = asyncio.get_running_loop()
    expiry = loop.call_later(
        max(0.0, identity.expires_at - time.time()),
        connection.request_close,
        CLOSE_UNAUTHORIZED,
        "token expired",
    )
    sender: asyncio.Task[None] | None = None
    try:
        await service.attach(identity.user_id, connection)
        if after is None:
            try:
                head = await service.store.head(identity.user_id)
            except Exception as error:  # the database is down: the client retries
                log.warning("handshake without a database", extra={"error": repr(error)[:300]})
                await _refuse(websocket, CLOSE_INTERNAL_ERROR, "database unavailable, retry")
                return
            connection.start_at(head)
        await websocket.accept()
        sender = asyncio.create_task(connection.run())
        sender.add_done_callback(_drop_if_unanswered(asyncio.current_task()))
        try:
            expiry = await _receive_loop(websocket, service, connection, identity, expiry)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not sender.done() or current is None or current.cancelling() != 1:
                raise
            current.uncancel()  # our own cancel: the client never answered the close
    finally:
        expiry.cancel()
        service.detach(identity.user_id, connection)
        metrics.OPEN_SOCKETS.dec()
        if sender is not None and not sender.done():
            sender.cancel()


def _drop_if_unanswered(
    endpoint: asyncio.Task[object] | None, grace: float = 5.0
) -> Callable[[asyncio.Task[None]], None]:
    """Once the sender has sent (or given up sending) the close frame, a client that does
    not answer within `grace` is dropped instead of holding the socket open."""

    def on_sender_done(_sender: asyncio.Task[None]) -> None:
        if endpoint is not None and not endpoint.done():
            asyncio.get_running_loop().call_later(grace, _cancel_if_running, endpoint)

    return on_sender_done


def _cancel_if_running(task: asyncio.Task[object]) -> None:
    if not task.done():
        task.cancel()


async def _receive_loop(
    websocket: WebSocket,
    service: Service,
    connection: Connection,
    identity: UserIdentity,
    expiry: asyncio.TimerHandle,
) -> asyncio.TimerHandle:
    """Handle client frames until the client goes; returns the live expiry timer."""
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(FRAME_RATE, FRAME_BURST, loop.time())
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return expiry
        if connection.close_code is not None:
            continue
        if not bucket.allow(loop.time()):
            connection.push(error_frame("too many frames: at most 20 a second; frame ignored"))
            continue
        text = message.get("text")
        if text is None:
            connection.push(error_frame("binary frames are not supported; send JSON text"))
            continue
        try:
            frame = parse_client_frame(text)
        except FrameError as error:
            connection.push(error_frame(str(error)))
            continue
        if isinstance(frame, Ping):
            connection.push(PONG)
        elif isinstance(frame, ReadUpTo):
            try:
                await service.mark_read_up_to(identity.user_id, frame.up_to_seq, skip=connection)
            except Exception:
                log.exception("mark read from a socket failed")
                connection.push(error_frame("could not mark read; try again"))
        elif isinstance(frame, Auth):
            try:
                fresh = service.verifier.verify(frame.access_token)
                if fresh.user_id != identity.user_id:
                    raise AuthError("token is for another user")
            except AuthError as error:
                metrics.AUTH_REFUSED.labels("user").inc()
                connection.request_close(CLOSE_UNAUTHORIZED, str(error))
                continue
            expiry.cancel()
            expiry = asyncio.get_running_loop().call_later(
                max(0.0, fresh.expires_at - time.time()),
                connection.request_close,
                CLOSE_UNAUTHORIZED,
                "token expired",
            )
