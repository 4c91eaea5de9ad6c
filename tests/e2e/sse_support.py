"""An SSE client for the end-to-end tests: httpx streaming, and a parser of the event
stream format (WHATWG HTML, "Server-sent events") that also keeps comments, so that
tests can see heartbeats.

It checks the format as it reads: every `data` is one line of JSON, and only
`notification` events carry an `id`, which is the notification's seq.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from tests.support import Server, make_token, timeout


@dataclass
class Event:
    """One dispatched event, or a comment (`event == ":"`)."""

    event: str
    data: Any = None
    id: str | None = None
    comment: str | None = None

    def frame(self) -> dict[str, Any]:
        """The WebSocket frame this event stands for (for `ws_support.Stream.take`)."""
        if self.event == "notification":
            return {"type": "notification", "notification": self.data}
        return {**self.data, "type": self.event}


class SseStream:
    """The events of one open `GET /v1/sse` response, read one at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.ended = False

    async def next(self, seconds: float = 10) -> Event:
        """The next event or comment; EOFError once the server ended the response."""
        return await asyncio.wait_for(self._next(), timeout(seconds))

    async def _next(self) -> Event:
        fields: dict[str, str] = {}
        data: list[str] = []
        async for line in self._lines:
            if line == "":
                if not data and not fields:
                    continue
                return _event(fields, data)
            if line.startswith(":"):
                assert not fields and not data, f"comment inside an event: {line!r}"
                return Event(":", comment=line[1:].strip())
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                assert name not in fields, f"field {name!r} twice in one event"
                fields[name] = value
        self.ended = True
        assert not fields and not data, "the stream ended inside an event"
        raise EOFError("the server ended the stream")

    async def event(self, seconds: float = 10) -> Event:
        """The next event, comments skipped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout(seconds)
        while True:
            found = await self.next(max(0.01, (deadline - loop.time()) / timeout(1)))
            if found.event != ":":
                return found

    async def until(self, kind: str, seconds: float = 20) -> tuple[list[Event], Event]:
        """Events before the first `kind` event, and that event."""
        before: list[Event] = []
        while True:
            found = await self.event(seconds)
            if found.event == kind:
                return before, found
            before.append(found)

    async def rest(self, seconds: float = 20) -> list[Event]:
        """Every event until the server ends the response."""
        found: list[Event] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout(seconds)
        while True:
            try:
                found.append(await self.next(max(0.01, (deadline - loop.time()) / timeout(1))))
            except EOFError:
                return found


def _event(fields: dict[str, str], data: list[str]) -> Event:
    kind = fields.get("event", "message")
    assert len(data) == 1, f"{kind}: data must be one line, got {len(data)}"
    body = orjson.loads(data[0])
    assert isinstance(body, dict), body
    event_id = fields.get("id")
    if kind == "notification":
        assert event_id == str(body["seq"]), f"id {event_id!r} for seq {body['seq']}"
    else:
        assert event_id is None, f"a {kind} event carries an id"
    return Event(kind, body, event_id)


def sse_url(server: Server) -> str:
    return server.url + "/v1/sse"


def sse_params(
    user: str | None = None, *, token: str | None = None, after: int | str | None = None
) -> dict[str, str]:
    params: dict[str, str] = {}
    if token is None and user is not None:
        token = make_token(user)
    if token is not None:
        params["access_token"] = token
    if after is not None:
        params["after"] = str(after)
    return params


@contextlib.asynccontextmanager
async def sse_open(
    server: Server,
    user: str | None = None,
    *,
    token: str | None = None,
    after: int | str | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[SseStream]:
    """An open stream that answered 200 with the event-stream head."""
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(timeout(30), read=None)) as client,
        client.stream(
            "GET",
            sse_url(server),
            params=sse_params(user, token=token, after=after),
            headers=headers,
        ) as response,
    ):
        if response.status_code != 200:
            await response.aread()
            raise AssertionError(f"{response.status_code}: {response.text}")
        assert response.headers["content-type"] == "text/event-stream", response.headers
        assert response.headers["cache-control"] == "no-cache", response.headers
        yield SseStream(response)


async def sse_refused(
    server: Server,
    user: str | None = None,
    *,
    token: str | None = None,
    after: int | str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A request that must be refused: its response, read whole."""
    async with httpx.AsyncClient(timeout=timeout(10)) as client:
        response = await client.get(
            sse_url(server), params=sse_params(user, token=token, after=after), headers=headers
        )
    assert response.status_code != 200, "the stream was opened"
    assert response.headers["content-type"] == "application/json", response.headers
    return response
