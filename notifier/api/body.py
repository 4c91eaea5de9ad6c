"""Request bodies: size limits before parsing, then strict JSON and model validation.

Bodies are parsed with orjson (faster, and it refuses NaN and Infinity, which the
standard library would let through into stored data). Every failure is a 4xx that
changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from re import Pattern
from typing import Any, TypeVar

import orjson
from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ValidationError
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Model = TypeVar("Model", bound=BaseModel)

SINGLE_BODY_LIMIT = 1024 * 1024
"""The limit of a route that declares none (`max_body_size`), and of unknown paths."""
BATCH_BODY_LIMIT = 16 * 1024 * 1024
BODY = "notifier.body"
"""The scope key under which `BodyLimit` leaves the body it read, for `parse`."""


async def _send_413(send: Send, limit: int) -> None:
    body = orjson.dumps({"detail": f"request body larger than {limit} bytes"})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RouteLimits:
    """The body limit of each route that declares one (FastAPI's `max_body_size`, as
    included: a router's limit applies to its routes), by method and path."""

    def __init__(self, routes: Sequence[BaseRoute], default: int) -> None:
        self.default = default
        self._exact: dict[tuple[str, str], int] = {}
        self._patterns: list[tuple[Pattern[str], frozenset[str], int]] = []
        for route in iter_route_contexts(routes):
            limit = getattr(route, "max_body_size", None)
            if limit is None:
                continue
            methods = frozenset(route.methods or ())
            path: str = route.path or ""
            if route.param_convertors:
                self._patterns.append((route.path_regex, methods, limit))
            else:
                self._exact.update({(method, path): limit for method in methods})

    def __call__(self, method: str, path: str) -> int:
        limit = self._exact.get((method, path))
        if limit is not None:
            return limit
        for pattern, methods, limit in self._patterns:
            if method in methods and pattern.match(path):
                return limit
        return self.default


class BodyLimit:
    """Refuse an oversized body with 413 before the app sees any of it: the route's
    declared limit, else `SINGLE_BODY_LIMIT`.

    `Content-Length` is checked first; a chunked body is buffered up to the limit and
    refused as soon as it passes it. `routes` is read when the middleware stack is built
    (at the first request), when every route is in place.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self._limit = RouteLimits(routes, SINGLE_BODY_LIMIT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["method"], _route_path(scope))
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = limit + 1
                if declared > limit:
                    await _send_413(send, limit)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_413(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        # BodyLimit is the innermost user middleware (added first): nothing between it
        # and the route can change the body, so the route may take it from the scope
        # rather than through Request's stream (3 µs of CPU a request).
        scope[BODY] = body
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _route_path(scope: Scope) -> str:
    """The path as routes see it: without the `root_path` an ASGI server may prefix."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def parse(request: Request, model: type[Model]) -> Model:
    raw = request.scope.get(BODY)
    if raw is None:
        raw = await request.body()
    try:
        payload: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise HTTPException(422, detail=f"body is not valid JSON: {error}") from error
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_context=False, include_input=False)
        for item in errors:
            item["loc"] = ("body", *item["loc"])
        raise RequestValidationError(errors) from None


class JSONBytes(Response):
    """A response of JSON already serialized (`Notification.json`, `list_body`).

    Its two headers are written directly: Starlette's generic `init_headers` (which
    merges given headers and decides on a charset) is a tenth of a publish's HTTP layer."""

    media_type = "application/json"

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        if headers is not None:
            super().init_headers(headers)
            return
        self.raw_headers = [
            (b"content-length", str(len(self.body)).encode()),
            (b"content-type", b"application/json"),
        ]
