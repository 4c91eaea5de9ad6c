"""Request bodies: size limits before parsing, then strict JSON and model validation,
and the checks every stored `data` object passes (`encode_data`).

Bodies are parsed with orjson (faster, and it refuses NaN and Infinity, which the
standard library would let through into stored data). Every failure is a 4xx that
changes nothing, and a 422's list of errors is bounded (`MAX_LISTED_ERRORS`).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping, Sequence
from re import Pattern
from typing import Any, TypeVar

import annotated_types
import orjson
import simdjson
from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Model = TypeVar("Model", bound=BaseModel)

SINGLE_BODY_LIMIT = 1024 * 1024
"""The limit of a route that declares none (`max_body_size`), and of unknown paths."""
BATCH_BODY_LIMIT = 16 * 1024 * 1024
BODY = "notifier.body"
"""A scope key under which a layer that already read the body may leave it for `parse`
(`BodyLimit` does not: the route authenticates before anything is read)."""


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
    """Hold every request body to its route's limit (`max_body_size`, else
    `SINGLE_BODY_LIMIT`), as the app reads it.

    Nothing is read here: the route authenticates first and reads the body only then
    (`parse`), so an unauthenticated upload costs no memory (an answer sent before the
    body was read makes uvicorn discard the rest as it arrives). A declared
    `Content-Length` over the limit is answered 413 at once; one within it passes
    untouched (the server never delivers more than declared). A chunked body is counted
    as it is read and refused with 413 the moment it passes the limit, or with 408 if it
    has not arrived in full `timeout` seconds after the request began; both close the
    connection. `serve` also bounds the time of every body at the connection
    (`httpguard`). `routes` is read when the middleware stack is built (at the first
    request), when every route is in place.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], timeout: float = 60.0) -> None:
        self.app = app
        self._limit = RouteLimits(routes, SINGLE_BODY_LIMIT)
        self._timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["method"], _route_path(scope))
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = limit + 1
                if declared > limit:
                    await _send_413(send, limit)
                    return
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked:  # a declared length within the limit, or no body
            await self.app(scope, receive, send)
            return
        await self.app(scope, self._counting(receive, limit), send)

    def _counting(self, receive: Receive, limit: int) -> Receive:
        deadline = asyncio.get_running_loop().time() + self._timeout
        size = 0
        complete = False

        async def counting_receive() -> Message:
            nonlocal size, complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408,
                    detail=f"request body not received within {self._timeout:g} seconds",
                    headers=_CLOSE,
                ) from None
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    raise HTTPException(
                        413, detail=f"request body larger than {limit} bytes", headers=_CLOSE
                    )
                complete = not message.get("more_body", False)
            return message

        return counting_receive


_CLOSE = {"Connection": "close"}


def _route_path(scope: Scope) -> str:
    """The path as routes see it: without the `root_path` an ASGI server may prefix."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


MAX_DATA_DEPTH = 64
"""Levels of objects and arrays in a `data` object, itself included: `{"a": {"b": 1}}`
is 2. orjson serializes at most 254 levels, and the idempotency fingerprint wraps `data`
in one more; 64 is far beyond any real notification and keeps every walk over it short."""
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
"""The integers orjson reads and writes exactly (signed or unsigned 64 bits); docs promise
422 beyond them rather than a silent float."""
MAX_LISTED_ERRORS = 20
"""A 422 lists at most this many errors (then one saying how many more), each `loc` part
cut to `_MAX_LOC_CHARS`: a body of thousands of unknown fields gets a short answer."""
_MAX_LOC_CHARS = 100

_DIGITS = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
"""A translation table: every digit to `1`, every other byte to `0`."""
_LONG_RUN = b"1" * 19
"""19 digits in a row: the shortest run that may be an integer orjson would read as a
float (below -2**63 or above 2**64-1). Bodies without one take the fast path. Found by
`bytes.translate` and a substring search, about 1 ns a byte (a regular expression costs
ten times that)."""


class DataError(ValueError):
    """`data` that cannot be stored as given; the message says why."""


def check_data(data: dict[str, Any]) -> None:
    """Refuse (`DataError`) a `data` object nested deeper than `MAX_DATA_DEPTH`, or
    holding an integer outside `INT_MIN..INT_MAX`.

    The one check every path that stores `data` applies (single, batch and topic
    publishes, through `encode_data`); it stops at the first level past the bound, so it
    never recurses deeper than that.
    """
    _check_level(data, 1)


def _check_level(value: dict[str, Any] | list[Any], depth: int) -> None:
    if depth > MAX_DATA_DEPTH:
        raise DataError(f"data is nested more than {MAX_DATA_DEPTH} levels deep")
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, dict | list):
            _check_level(item, depth + 1)
        elif type(item) is int and not INT_MIN <= item <= INT_MAX:
            raise DataError("data holds an integer beyond 64 bits")


def encode_data(data: dict[str, Any], *, max_bytes: int, index: int | None = None) -> str:
    """`data` as the compact JSON that is stored, once `check_data` admits it and it fits
    in `max_bytes`: else `HTTPException` 422 (too deep, an integer beyond 64 bits) or 413,
    naming `data`, or `notifications[index].data` for an item of a batch.

    The depth walk runs only when the JSON is longer than two bytes a level and has more
    than `MAX_DATA_DEPTH` brackets in all (a count in C, nothing per value): most `data`
    objects never need it.
    """
    try:
        encoded = orjson.dumps(data)
    except TypeError:  # deeper than orjson's 254 levels, or an integer beyond 64 bits
        try:
            check_data(data)
        except DataError as error:
            raise HTTPException(422, detail=f"{_where(index)}: {error}") from None
        raise HTTPException(422, detail=f"{_where(index)} cannot be stored as JSON") from None
    size = len(encoded)
    # Each level takes two bytes at least: short data cannot be too deep.
    if size > 2 * MAX_DATA_DEPTH and encoded.count(b"{") + encoded.count(b"[") > MAX_DATA_DEPTH:
        try:
            check_data(data)
        except DataError as error:
            raise HTTPException(422, detail=f"{_where(index)}: {error}") from None
    if size > max_bytes:
        raise HTTPException(
            413, detail=f"{_where(index)} is {size} bytes, over the {max_bytes}-byte limit"
        )
    return encoded.decode()


def _where(index: int | None) -> str:
    return "data" if index is None else f"notifications[{index}].data"


def _exact_int(text: str) -> int:
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError("an integer beyond 64 bits")
    return value


def _loads(raw: bytes) -> Any:
    """JSON with every integer exact. orjson reads an integer beyond 64 bits as a float,
    so a body with 19 digits in a row is read again, by the standard library, with
    integers checked as they are read (orjson has already refused NaN, Infinity and
    malformed JSON, so both readers agree on everything else)."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise HTTPException(422, detail=f"body is not valid JSON: {error}") from error
    if _LONG_RUN not in raw.translate(_DIGITS):
        return payload
    try:
        return json.loads(raw, parse_int=_exact_int)
    except ValueError as error:
        raise HTTPException(422, detail=f"body holds {error}") from None
    except RecursionError:
        raise HTTPException(422, detail="body is nested too deep") from None


@functools.cache
def _list_limits(model: type[BaseModel]) -> tuple[tuple[str, int], ...]:
    """The top-level list fields of `model` with a most-items bound (`max_length`)."""
    return tuple(
        (field.alias or name, rule.max_length)
        for name, field in model.model_fields.items()
        for rule in field.metadata
        if isinstance(rule, annotated_types.MaxLen)
    )


PRECOUNT_ABOVE = 64 * 1024
"""Bodies longer than this have their bounded lists counted before they are parsed
(`_count_before_parsing`). Below it, parsing first costs at most a few MiB."""


def _too_long(name: str, limit: int, count: int) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "too_long",
                "loc": ("body", name),
                "msg": f"List should have at most {limit} items, not {count}",
            }
        ]
    )


def _too_many_items(payload: Any, model: type[BaseModel]) -> None:
    """Refuse a list over its bound before any of its items is validated (a batch of
    300,000 items would otherwise be validated, and explained, item by item)."""
    if not isinstance(payload, dict):
        return
    for name, limit in _list_limits(model):
        value = payload.get(name)
        if isinstance(value, list) and len(value) > limit:
            raise _too_long(name, limit, len(value))


def _count_before_parsing(raw: bytes, model: type[BaseModel]) -> None:
    """Refuse a list over its bound before the body becomes Python objects.

    Parsing builds every item first: 16 MiB of `{},` is five million dicts, about 400 MiB
    for as long as the request lasts. simdjson indexes the body in C (memory in
    proportion to its bytes, no Python object per value, freed on return) and counts the
    list's items from that index. Anything it cannot read is left to the full parse,
    which explains the error.
    """
    limits = _list_limits(model)
    if not limits or len(raw) <= PRECOUNT_ABOVE:
        return
    for name, limit, count in _counts(raw, limits):
        if count > limit:
            raise _too_long(name, limit, count)


def _counts(raw: bytes, limits: tuple[tuple[str, int], ...]) -> list[tuple[str, int, int]]:
    # A parser of its own (cheap to make) whose proxies all die on return: no buffer is
    # kept between requests, and none is shared.
    try:
        document = simdjson.Parser().parse(raw)
    except (ValueError, RuntimeError):  # not JSON, or beyond simdjson's own limits
        return []
    if not isinstance(document, simdjson.Object):
        return []
    counts = []
    for name, limit in limits:
        value = document.get(name)
        if isinstance(value, simdjson.Array):
            counts.append((name, limit, len(value)))
    return counts


def _bounded(errors: list[Any]) -> list[Any]:
    """At most `MAX_LISTED_ERRORS` errors, each with `loc` parts of bounded length."""
    listed = errors[:MAX_LISTED_ERRORS]
    for item in listed:
        item["loc"] = (
            "body",
            *(
                part[:_MAX_LOC_CHARS] + "..."
                if isinstance(part, str) and len(part) > _MAX_LOC_CHARS
                else part
                for part in item["loc"]
            ),
        )
    if len(errors) > MAX_LISTED_ERRORS:
        listed.append(
            {
                "type": "too_many_errors",
                "loc": ("body",),
                "msg": f"{len(errors) - MAX_LISTED_ERRORS} more errors not listed",
            }
        )
    return listed


async def read_body(request: Request) -> bytes:
    """The whole body, through `BodyLimit`'s receive (its size and time limits apply).

    Read from the ASGI messages directly rather than through `Request.stream()`, whose
    generator costs about 3 µs of CPU a request; a body of one message (any publish
    that fits a socket read) is taken as it is, without a copy."""
    raw = request.scope.get(BODY)
    if raw is None:
        raw = getattr(request, "_body", None)  # already read with `request.body()`
    if raw is not None:
        return bytes(raw)
    message = await request.receive()
    if message["type"] != "http.request":
        raise ClientDisconnect
    body: bytes = message.get("body", b"")
    if message.get("more_body", False):
        chunks = [body]
        while True:
            message = await request.receive()
            if message["type"] != "http.request":
                raise ClientDisconnect
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
    request._body = body  # as `request.body()` keeps it, for a later reader
    return body


async def parse(request: Request, model: type[Model]) -> Model:
    """The body as `model`, or a 422 (bad JSON, an integer beyond 64 bits, a list over
    its bound, anything the model refuses) whose size is bounded."""
    raw = await read_body(request)
    _count_before_parsing(raw, model)
    payload = _loads(raw)
    _too_many_items(payload, model)
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(_bounded(errors)) from None


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
