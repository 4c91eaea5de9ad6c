"""Receiving a user's notifications: `Subscriber`, an async iterator that never loses or
repeats one, across disconnects, restarts and token expiries.

It holds the position the way the service expects a client to (docs/reference.md,
WebSocket): it always connects with `after=<last seq it delivered>` (the user's head,
read over HTTP, when it starts without one), drops any seq it has already delivered,
and reconnects after a failure with exponential backoff and full jitter capped at 30
seconds (`backoff`). What to do after each close is `after_close`, a pure function of
the close code:

- 4401 (token refused or expired): ask the token callback for a fresh token and
  reconnect at once; a second 4401 in a row backs off; a fixed token raises
  `Unauthorized`.
- 4403 (tokens revoked): raise `Revoked`, never reconnect with that token.
- 4400 (position refused): report a gap, then restart from the user's head.
- anything else (1012 restart, 1013 too slow, 1011, 4429, a network error): back off
  and resume.

A token is renewed before its `exp` with the `auth` frame (the callback again), so a
long-lived connection is never closed for expiry. A `replayed` frame with
`complete: false` (notifications after the position were deleted by retention) and a
4400 are reported as a `Gap` event (and to `on_gap`): the application should refetch its
inbox page over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from notifier.client import tokens
from notifier.client.backoff import Backoff
from notifier.client.errors import ApiError, Revoked, Unauthorized
from notifier.client.tokens import TokenSource

log = logging.getLogger("notifier.client")

Notification = dict[str, Any]


@dataclass(frozen=True)
class Delivered:
    """A notification, delivered once, in seq order."""

    notification: Notification


@dataclass(frozen=True)
class Read:
    """Read state changed on another device: `up_to_seq`, or `ids`."""

    up_to_seq: int | None = None
    ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Archived:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Gap:
    """Notifications after `after` may be missing from the stream (deleted by retention,
    or the position was refused): refetch the inbox over HTTP. The stream goes on from
    `resumed_at`, or from the user's head when that is None."""

    after: int
    resumed_at: int | None


@dataclass(frozen=True)
class StateChanged:
    state: State


class State(enum.Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    OFFLINE = "offline"
    UNAUTHORIZED = "unauthorized"
    REVOKED = "revoked"
    CLOSED = "closed"


Event = Delivered | Read | Archived | Gap | StateChanged


class Action(enum.Enum):
    RESUME = "resume"
    """Back off, then reconnect from the last seq."""
    RENEW = "renew"
    """Get a fresh token and reconnect at once."""
    RESET = "reset"
    """Report a gap, then restart from the user's head."""
    STOP = "stop"


CLOSE_BAD_POSITION = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_REVOKED = 4403


def after_close(code: int | None) -> Action:
    """What to do once the connection ended with `code` (None: no close frame, or the
    connection never opened)."""
    if code == CLOSE_UNAUTHORIZED:
        return Action.RENEW
    if code == CLOSE_REVOKED:
        return Action.STOP
    if code == CLOSE_BAD_POSITION:
        return Action.RESET
    return Action.RESUME


def _urls(url: str) -> tuple[str, str]:
    """The service's HTTP base URL and its WebSocket URL, from either."""
    parts = urlsplit(url.rstrip("/"))
    http_scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    ws_scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    base = parts.path.removesuffix("/v1/ws")
    return (
        urlunsplit((http_scheme, parts.netloc, base, "", "")),
        urlunsplit((ws_scheme, parts.netloc, base + "/v1/ws", "", "")),
    )


class Subscriber:
    """One user's notifications, in order, each exactly once.

    >>> async with Subscriber("http://127.0.0.1:8000", get_token) as notifications:
    ...     async for notification in notifications:
    ...         print(notification["seq"], notification["type"])

    `token` is a fixed JWT or a callable (plain or async) returning a fresh one; only a
    callable lets the subscriber renew before `exp` and recover from 4401. `after` is the
    last seq the application has already handled (None: start at the user's newest).
    `last_seq` is the position to store for the next run.
    """

    def __init__(
        self,
        url: str,
        token: TokenSource,
        *,
        after: int | None = None,
        backoff: Backoff | None = None,
        renew_margin: float = 60.0,
        open_timeout: float = 10.0,
        on_gap: Callable[[Gap], Awaitable[None] | None] | None = None,
        on_state: Callable[[State], Awaitable[None] | None] | None = None,
    ) -> None:
        self.http_url, self.ws_url = _urls(url)
        self._source = token
        self._token: str | None = None
        self.last_seq = after
        self.backoff = backoff or Backoff(base=0.5, cap=30.0)
        self.renew_margin = renew_margin
        self.open_timeout = open_timeout
        self.on_gap = on_gap
        self.on_state = on_state
        self.state = State.OFFLINE
        self.connections = 0
        """Connections opened so far (each one's `replayed` frame arrived)."""
        self._closing = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._last_close: int | None = None
        self._resumed_from = 0

    async def __aenter__(self) -> Subscriber:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[Notification]:
        return self._notifications()

    async def _notifications(self) -> AsyncIterator[Notification]:
        async for event in self.events():
            if isinstance(event, Delivered):
                yield event.notification

    async def close(self) -> None:
        """Stop: the iteration ends (from any task)."""
        self._closing.set()
        ws = self._ws
        if ws is not None:
            await ws.close()

    async def events(self) -> AsyncIterator[Event]:
        """Every event: notifications, read and archive changes, gaps, state changes.
        Raises `Revoked` on 4403 and `Unauthorized` when no token is accepted."""
        attempt = 0
        renewed = False  # a fresh token was fetched after a 4401, not yet accepted
        while not self._closing.is_set():
            yield await self._set(State.CONNECTING)
            code: int | None = None
            try:
                if self._token is None:
                    self._token = await tokens.fetch(self._source)
                if self.last_seq is None:
                    self.last_seq = await self._head(self._token)
                async with contextlib.aclosing(self._connection(self._token)) as events:
                    async for event in events:
                        if isinstance(event, StateChanged) and event.state is State.LIVE:
                            attempt, renewed = 0, False
                        yield event
                code = self._last_close
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else None
            except InvalidStatus as refused:
                status = refused.response.status_code
                code = CLOSE_UNAUTHORIZED if status == 401 else None
                log.info("handshake refused with %s", status)
            except ApiError as error:  # reading the head
                code = CLOSE_UNAUTHORIZED if error.status == 401 else None
            except (OSError, TimeoutError, InvalidHandshake, httpx.TransportError) as error:
                log.info("cannot reach %s: %r", self.ws_url, error)
            finally:
                self._ws = None
            if self._closing.is_set():
                break
            action = after_close(code)
            if action is Action.STOP:
                yield await self._set(State.REVOKED)
                raise Revoked("the user's tokens were revoked (4403)")
            if action is Action.RENEW:
                if isinstance(self._source, str):
                    yield await self._set(State.UNAUTHORIZED)
                    raise Unauthorized("the token was refused or expired (4401)")
                self._token = None  # fetched again before the next attempt
                if not renewed:
                    renewed = True
                    continue  # once at once; a second refusal in a row backs off
                yield await self._set(State.UNAUTHORIZED)
            elif action is Action.RESET:
                assert self.last_seq is not None
                yield await self._gap(Gap(after=self.last_seq, resumed_at=None))
                self.last_seq = None
            if self.state is not State.UNAUTHORIZED:
                yield await self._set(State.OFFLINE)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.backoff.delay(attempt))
            attempt += 1
        yield await self._set(State.CLOSED)

    async def _connection(self, token: str) -> AsyncGenerator[Event, None]:
        """One connection, from the handshake to its close."""
        self._last_close = None
        assert self.last_seq is not None
        self._resumed_from = self.last_seq
        url = f"{self.ws_url}?after={self.last_seq}"
        async with connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=self.open_timeout,
            max_size=2**24,
        ) as ws:
            self._ws = ws
            renewer = (
                None if isinstance(self._source, str) else asyncio.create_task(self._renew(ws))
            )
            try:
                async for raw in ws:
                    for event in await self._on_frame(raw):
                        yield event
            finally:
                if renewer is not None:
                    renewer.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await renewer
            self._last_close = ws.close_code

    async def _on_frame(self, raw: str | bytes) -> list[Event]:
        frame = json.loads(raw)
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "notification":
            notification: Notification = frame["notification"]
            seq = notification["seq"]
            if self.last_seq is not None and seq <= self.last_seq:
                return []  # already delivered
            self.last_seq = seq
            return [Delivered(notification)]
        if kind == "replayed":
            self.connections += 1
            found: list[Event] = []
            if not frame.get("complete", True):
                last = max(self.last_seq or 0, int(frame["last_seq"]))
                found.append(await self._gap(Gap(after=self._resumed_from, resumed_at=last)))
                self.last_seq = last
            found.append(await self._set(State.LIVE))
            return found
        if kind == "read":
            return [Read(frame.get("up_to_seq"), tuple(frame.get("ids") or ()))]
        if kind == "archived":
            return [Archived(tuple(frame.get("ids") or ()))]
        if kind == "error":
            log.warning("the service says: %s", frame.get("detail"))
        return []  # pong, and frame types this version does not know

    async def _renew(self, ws: ClientConnection) -> None:
        """Send a fresh token in an `auth` frame before the current one expires."""
        while True:
            assert self._token is not None
            wait = tokens.renew_in(self._token, time.time(), margin=self.renew_margin)
            if wait is None:
                return  # a token without exp never expires
            await asyncio.sleep(wait)
            try:
                fresh = await tokens.fetch(self._source)
            except Exception:
                log.exception("the token callback failed; retrying in 5 s")
                await asyncio.sleep(5)
                continue
            old_exp = tokens.claims(self._token).get("exp", 0)
            if tokens.claims(fresh).get("exp", 0) <= old_exp:
                log.warning("the token callback returned no fresher token; reconnecting at exp")
                return
            await ws.send(json.dumps({"type": "auth", "access_token": fresh}))
            self._token = fresh

    async def _head(self, token: str) -> int:
        """The user's newest seq (0 before the first notification)."""
        async with httpx.AsyncClient(timeout=self.open_timeout) as client:
            response = await client.get(
                self.http_url + "/v1/me/notifications",
                params={"limit": 1},
                headers={"Authorization": f"Bearer {token}"},
            )
        if response.status_code != 200:
            raise ApiError(response.status_code, response.text)
        newest = response.json()["notifications"]
        return int(newest[0]["seq"]) if newest else 0

    async def _set(self, state: State) -> StateChanged:
        self.state = state
        if self.on_state is not None:
            await _call(self.on_state, state)
        return StateChanged(state)

    async def _gap(self, gap: Gap) -> Gap:
        if self.on_gap is not None:
            await _call(self.on_gap, gap)
        return gap


async def _call(callback: Callable[[Any], Awaitable[None] | None], value: Any) -> None:
    result = callback(value)
    if inspect.isawaitable(result):
        await result
