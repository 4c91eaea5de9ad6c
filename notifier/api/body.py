"""Request bodies: size limits before parsing, then strict JSON and model validation.

Bodies are parsed with orjson (faster, and it refuses NaN and Infinity, which the
standard library would let through into stored data). Every failure is a 4xx that
changes nothing.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Model = TypeVar("Model", bound=BaseModel)

SINGLE_BODY_LIMIT = 1024 * 1024
BATCH_BODY_LIMIT = 16 * 1024 * 1024
_BATCH_PATH = "/v1/notifications/batch"


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


class BodyLimit:
    """Refuse an oversized body with 413 before the app sees any of it.

    `Content-Length` is checked first; a chunked body is buffered up to the limit and
    refused as soon as it passes it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = BATCH_BODY_LIMIT if scope["path"] == _BATCH_PATH else SINGLE_BODY_LIMIT
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
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def parse(request: Request, model: type[Model]) -> Model:
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
