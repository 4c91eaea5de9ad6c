"""GET /v1/sse: the WebSocket's stream as Server-Sent Events, as a plain ASGI endpoint.

The stream is a `Connection` like a socket's, with the SSE transport (`notifier.transport`):
replay and its pacing, the live merge, gap fills, the slow-client bound, expiry and every
close are the connection's, not this module's. What is here is the request around it,
in the same order as the WebSocket's handshake (`api.ws`), which is what makes "every
notification committed after the response head was sent" hold: check the Origin, the
token and the resume position, subscribe the stream to live delivery, learn where it
starts, and only then send the head. Refusals are JSON responses (`403`, `401`, `400`,
`503`) sent before any event.

Like the WebSocket, it is served beside FastAPI rather than through it (`app.App`):
a stream lives for hours, and Starlette's `StreamingResponse` with the middleware stack
around it would keep their suspended coroutines in memory for as long, per stream. Why
not `sse-starlette`: its response runs a task per stream for pings and another for the
disconnect, where one clock for every stream does the pings (`notifier.heartbeat`) and
the endpoint's own task waits for the disconnect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from notifier import httpguard, metrics
from notifier.admission import BUSY
from notifier.api import handshake
from notifier.auth import AuthError
from notifier.connection import Connection
from notifier.core.claims import UserIdentity
from notifier.service import Service, TooManyStreams
from notifier.transport import SSE
from notifier.wire.frames import parse_seq

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PATH = "/v1/sse"
_READ = (b"origin", b"authorization", b"last-event-id")

log = logging.getLogger("notifier.sse")


async def serve(service: Service, scope: Scope, receive: Receive, send: Send) -> None:
    """One request to /v1/sse, from its head to the client's disconnect."""
    # A request that waited past the limit in the listen backlog, or whose client has
    # left, is refused before any work, as a WebSocket upgrade is (`notifier.httpguard`).
    reason = httpguard.shed_reason(scope)
    if reason is not None:
        metrics.STREAMS_SHED.labels("sse", reason).inc()
        await _refuse(send, 503, BUSY, [], retry=True)
        return
    # Shed before anything costly while the process is busy opening others or full
    # (`notifier.admission`): the client retries after `Retry-After`.
    opening = service.admission.admit("sse")
    if opening is None:
        await _refuse(send, 503, BUSY, [], retry=True)
        return
    admitted = None
    try:
        admitted = await _admit(service, scope, send)
    finally:
        if admitted is None:  # refused, or the client left
            opening.end()
    if admitted is None:
        return
    identity, after, head = admitted
    del admitted
    user_id = identity.user_id
    connection = Connection(
        user_id=user_id,
        reads=service.reads,
        send=send,
        replay_after=after,
        page_size=service.settings.replay_page_size,
        max_buffer_bytes=service.settings.ws_max_buffer_bytes,
        stall_seconds=service.settings.ws_stall_seconds,
        issued_at=identity.issued_at,
        transport=SSE,
        opening=opening if after is not None else None,
    )
    metrics.OPEN_SSE_STREAMS.inc()
    # A stream lives at most NOTIFIER_MAX_TOKEN_LIFETIME_SECONDS, whatever its token says.
    lifetime = service.settings.max_token_lifetime_seconds
    service.expiries.watch(connection, min(identity.expires_at, time.time() + lifetime))
    del identity
    try:
        try:
            await service.attach(user_id, connection, transport="sse")
        except TooManyStreams as error:
            await _refuse(send, 429, str(error), head)
            return
        if after is None:
            try:
                connection.start_at(await service.heads.head(user_id))
            except Exception as error:  # the database is down: the client retries
                log.warning("stream without a database", extra={"error": repr(error)[:300]})
                await _refuse(send, 503, "database unavailable, retry", head, retry=True)
                return
        await send({"type": "http.response.start", "status": 200, "headers": head})
        del head
        if after is None:
            opening.done()  # live; a resume is done opening once its first page is read
        service.heartbeats.add(connection)
        connection.start()
        try:
            # The request has no body worth reading; this waits for the disconnect (or
            # for the response to end: uvicorn then answers `http.disconnect` too).
            while (await receive())["type"] != "http.disconnect":
                pass
        except asyncio.CancelledError:
            if not connection.gave_up:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # the client never took its close event: drop it
    finally:
        opening.end()
        service.heartbeats.discard(connection)
        service.expiries.forget(connection)
        service.detach(user_id, connection)
        connection.discard()
        metrics.OPEN_SSE_STREAMS.dec()


async def _admit(
    service: Service, scope: Scope, send: Send
) -> tuple[UserIdentity, int | None, list[tuple[bytes, bytes]]] | None:
    """Who the stream is for, where it resumes and the head of its response, or None
    once it is refused (its own function, so that what it parsed is freed on return)."""
    found = handshake.headers(scope, _READ)
    origin = found.get("origin")
    allowed = service.settings.allowed_origins
    cors = _cors(origin, allowed)
    if scope["method"] != "GET":
        await _refuse(send, 405, "use GET", cors, allow=True)
        return None
    client = scope.get("client")
    if not service.allow_handshake(client[0] if client else "", time.monotonic()):
        metrics.AUTH_REFUSED.labels("rate").inc()
        await _refuse(send, 429, "too many streams opened from this address", cors, retry=True)
        return None
    if handshake.origin_refused(allowed, origin):
        metrics.AUTH_REFUSED.labels("origin").inc()
        await _refuse(send, 403, "origin not allowed", [])
        return None
    query = handshake.query(scope)
    token = handshake.user_token(query, found)
    try:
        if token is None:
            raise AuthError("missing user token")
        identity = await service.authenticate(token)  # revocations included
    except AuthError as error:
        metrics.AUTH_REFUSED.labels("user").inc()
        await _refuse(send, 401, str(error), cors, challenge=True)
        return None
    except Exception as error:  # revocations could not be checked: the client retries
        log.warning("stream without a database", extra={"error": repr(error)[:300]})
        await _refuse(send, 503, "database unavailable, retry", cors, retry=True)
        return None
    # `EventSource` sends Last-Event-ID on its own when it reconnects, while the URL
    # keeps the `after` it was opened with: the header is the newer position.
    raw = found.get("last-event-id")
    name = "Last-Event-ID" if raw is not None else "after"
    try:
        after = parse_seq(raw if raw is not None else query.get("after"))
    except ValueError:
        await _refuse(send, 400, f"{name} must be a non-negative integer seq", cors)
        return None
    head = [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-cache"),
        # nginx passes the events on as they come even where buffering is left on.
        (b"x-accel-buffering", b"no"),
        *cors,
    ]
    return identity, after, head


def _cors(origin: str | None, allowed: list[str]) -> list[tuple[bytes, bytes]]:
    """A cross-origin `EventSource` (no cookies: the token is in the URL) may read the
    stream: any origin while NOTIFIER_ALLOWED_ORIGINS is unset, else the request's own
    when it is listed (one outside the list is refused with 403). The request's value is
    echoed only when it is one of the configured ones, never as sent."""
    if origin is None:
        return []
    if not allowed:
        return [(b"access-control-allow-origin", b"*")]
    if origin in allowed:
        return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
    return []


async def _refuse(
    send: Send,
    status: int,
    detail: str,
    extra: list[tuple[bytes, bytes]],
    *,
    challenge: bool = False,
    retry: bool = False,
    allow: bool = False,
) -> None:
    """A JSON error response (the stream's own head, if given, is not used)."""
    body = orjson.dumps({"detail": detail})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(h for h in extra if h[0] in (b"access-control-allow-origin", b"vary")),
    ]
    if challenge:
        headers.append((b"www-authenticate", b"Bearer"))
    if retry:
        headers.append((b"retry-after", b"1"))
    if allow:
        headers.append((b"allow", b"GET"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
