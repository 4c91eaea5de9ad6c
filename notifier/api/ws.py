"""GET /v1/ws: the handshake, then the client's frames, as a plain ASGI endpoint.

A socket lives for hours, and everything it passes through on the way in stays in memory
for as long, as suspended coroutines: Starlette's middleware stack, router and
`WebSocket` wrapper cost several KiB per idle socket (with the per-socket sender task
that `connection` no longer keeps, 36 KiB a socket became 20 KiB; bench connect). So
`app.App` hands WebSocket scopes straight to `serve` below and FastAPI sees only HTTP.

The handshake order is what makes "every notification committed after the handshake"
hold: authenticate, subscribe the socket to live delivery, learn where it starts (the
`after` of a resume, or the user's head read after subscribing), and only then accept.
Refusals are sent after accept as close codes (4401, 4400, 4429) so that browsers, which never
see a refused handshake's status, can tell a bad token from a network error; a
forbidden Origin, or another path, is refused before accept (HTTP 403), and so is a
handshake shed while the process is busy (HTTP 503: the client retries as after any
failure, which is all it should do).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from notifier import metrics, transport
from notifier.admission import BUSY, BUSY_BODY
from notifier.api import handshake
from notifier.auth import AuthError
from notifier.connection import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_TOO_MANY_STREAMS,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    Connection,
)
from notifier.core.claims import UserIdentity
from notifier.core.ratelimit import TokenBucket
from notifier.service import Service, TooManyStreams
from notifier.wire.frames import (
    PONG,
    Auth,
    FrameError,
    Ping,
    ReadUpTo,
    error_frame,
    parse_client_frame,
    parse_seq,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PATH = "/v1/ws"
CLOSE_BAD_REQUEST = 4400
# Client frames are pings, read marks and token renewals: a few a minute. A client that
# floods gets error frames (bounded by its queue), never database work per frame.
FRAME_RATE = 20.0
FRAME_BURST = 50.0

log = logging.getLogger("notifier.ws")


async def serve(service: Service, scope: Scope, receive: Receive, send: Send) -> None:
    """One WebSocket scope, from `websocket.connect` to `websocket.disconnect`."""
    if (await receive())["type"] != "websocket.connect":
        return
    # Shed before anything costly (the token's signature, the database, the WebSocket
    # itself) while the process is busy opening others or full (`notifier.admission`).
    opening = service.admission.admit("ws")
    if opening is None:
        await _busy(scope, send)
        return
    admitted = None
    try:
        admitted = await _admit(service, scope, send)
    finally:
        if admitted is None:  # refused, or the client left
            opening.end()
    if admitted is None:
        return
    identity, after = admitted
    del admitted
    user_id = identity.user_id
    # However often its token is renewed, a socket lives at most this long.
    ends_at = time.time() + service.settings.max_token_lifetime_seconds
    connection = Connection(
        user_id=user_id,
        reads=service.reads,
        send=send,
        replay_after=after,
        page_size=service.settings.replay_page_size,
        max_buffer_bytes=service.settings.ws_max_buffer_bytes,
        stall_seconds=service.settings.ws_stall_seconds,
        issued_at=identity.issued_at,
        transport=transport.for_websocket(scope),
        opening=opening if after is not None else None,
    )
    metrics.OPEN_SOCKETS.inc()
    service.expiries.watch(connection, min(identity.expires_at, ends_at))
    del identity
    try:
        try:
            await service.attach(user_id, connection)
        except TooManyStreams as error:
            await _refuse(send, CLOSE_TOO_MANY_STREAMS, str(error))
            return
        if after is None:
            try:
                head = await service.heads.head(user_id)
            except Exception as error:  # the database is down: the client retries
                log.warning("handshake without a database", extra={"error": repr(error)[:300]})
                await _refuse(send, CLOSE_INTERNAL_ERROR, "database unavailable, retry")
                return
            connection.start_at(head)
        try:
            await send({"type": "websocket.accept"})
        except OSError:
            return  # the client left during the handshake
        if after is None:
            opening.done()  # live; a resume is done opening once its first page is read
        connection.start()
        # The receive loop is here, not in a function of its own: a suspended frame per
        # idle socket is memory per socket.
        bucket: TokenBucket | None = None  # made at the first frame: most sockets never send
        try:
            while (message := await receive())["type"] != "websocket.disconnect":
                if connection.close_code is None:
                    if bucket is None:
                        bucket = TokenBucket(FRAME_RATE, FRAME_BURST, time.monotonic())
                    await _on_message(service, connection, bucket, message, ends_at)
        except asyncio.CancelledError:
            if not connection.gave_up:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # the client never took its close frame: drop it
    finally:
        opening.end()
        service.expiries.forget(connection)
        service.detach(user_id, connection)
        connection.discard()
        metrics.OPEN_SOCKETS.dec()


async def _admit(
    service: Service, scope: Scope, send: Send
) -> tuple[UserIdentity, int | None] | None:
    """Who the socket is for and where it resumes, or None once it is refused.

    Its own function so that what the handshake parsed (headers, query, the token) is
    freed when it returns instead of living in the endpoint's frame as long as the socket.
    """
    if scope["path"] != PATH:
        await send({"type": "websocket.close", "code": 1000})  # before accept: HTTP 403
        return None
    client = scope.get("client")
    if not service.allow_handshake(client[0] if client else "", time.monotonic()):
        metrics.AUTH_REFUSED.labels("rate").inc()
        await _refuse(send, CLOSE_TOO_MANY_STREAMS, "too many handshakes from this address")
        return None
    headers = handshake.headers(scope, (b"origin", b"authorization"))
    if handshake.origin_refused(service.settings.allowed_origins, headers.get("origin")):
        metrics.AUTH_REFUSED.labels("origin").inc()
        await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
        return None

    query = handshake.query(scope)
    token = handshake.user_token(query, headers)
    try:
        if token is None:
            raise AuthError("missing token")
        identity = await service.authenticate(token)
    except AuthError as error:
        metrics.AUTH_REFUSED.labels("user").inc()
        await _refuse(send, CLOSE_UNAUTHORIZED, str(error))
        return None
    except Exception as error:  # revocations could not be checked: the client retries
        log.warning("handshake without a database", extra={"error": repr(error)[:300]})
        await _refuse(send, CLOSE_INTERNAL_ERROR, "database unavailable, retry")
        return None
    try:
        after = parse_seq(query.get("after"))
    except ValueError as error:
        await _refuse(send, CLOSE_BAD_REQUEST, str(error))
        return None

    return identity, after


async def _busy(scope: Scope, send: Send) -> None:
    """`503` with `Retry-After` instead of the upgrade (the ASGI WebSocket Denial Response):
    no WebSocket is set up, so a refusal costs a fraction of an accept and a close. A
    browser sees a failed connection and retries on its backoff like after any failure;
    a client that reads the status learns when to come back. A server without the
    extension gets the accept and a close with 1013 (Try Again Later)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await _refuse(send, CLOSE_TRY_AGAIN_LATER, BUSY)
        return
    try:
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(BUSY_BODY)).encode()),
                    (b"retry-after", b"1"),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": BUSY_BODY})
    except OSError:
        pass  # the client left first


async def _refuse(send: Send, code: int, reason: str) -> None:
    try:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": code, "reason": reason})
    except OSError:
        pass  # the client left first


async def _on_message(
    service: Service, connection: Connection, bucket: TokenBucket, message: Message, ends_at: float
) -> None:
    """One frame from the client."""
    if not bucket.allow(time.monotonic()):
        connection.push(error_frame("too many frames: at most 20 a second; frame ignored"))
        return
    text = message.get("text")
    if text is None:
        connection.push(error_frame("binary frames are not supported; send JSON text"))
        return
    try:
        frame = parse_client_frame(text)
    except FrameError as error:
        connection.push(error_frame(str(error)))
        return
    if isinstance(frame, Ping):
        connection.push(PONG)
    elif isinstance(frame, ReadUpTo):
        try:
            await service.mark_read_up_to(connection.user_id, frame.up_to_seq, skip=connection)
        except Exception:
            log.exception("mark read from a socket failed")
            connection.push(error_frame("could not mark read; try again"))
    elif isinstance(frame, Auth):
        try:
            fresh = await service.authenticate(frame.access_token)
            if fresh.user_id != connection.user_id:
                raise AuthError("token is for another user")
        except AuthError as error:
            metrics.AUTH_REFUSED.labels("user").inc()
            connection.request_close(CLOSE_UNAUTHORIZED, str(error))
            return
        except Exception:  # revocations could not be checked: keep the current token
            log.exception("token renewal could not be checked")
            connection.push(error_frame("could not check the token; try again"))
            return
        connection.issued_at = fresh.issued_at
        service.expiries.watch(connection, min(fresh.expires_at, ends_at))
