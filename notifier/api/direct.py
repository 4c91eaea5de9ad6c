"""Serve one endpoint straight from uvicorn, without FastAPI's per-request machinery.

`app.App` sends the publish routes here (see `api.routes.publish`): the endpoint gets a
`Request` as under FastAPI, an exception it raises is answered by the app's own exception
handlers (looked up by class, most specific first, as Starlette does), and the body limit
applies as in the middleware stack. What is skipped is the router, the middleware stack
and dependency resolution: about half the server CPU of a single publish (300 against
160 µs, measured under `python -m bench.run --scenarios throughput`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.types import Receive, Scope, Send

from notifier.api.body import BodyLimit

Endpoint = Callable[[Request], Awaitable[Response]]


class Direct:
    """An ASGI app serving `endpoints` (by path) of `app`, behind the body limit."""

    def __init__(self, app: FastAPI, endpoints: Mapping[str, Endpoint]) -> None:
        self._app = app
        self._endpoints = endpoints
        self._limited = BodyLimit(self._serve)

    def serves(self, scope: Scope) -> bool:
        return (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and (scope["path"] in self._endpoints)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._limited(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self._app
        request = Request(scope, receive)
        try:
            response = await self._endpoints[scope["path"]](request)
        except Exception as error:
            response = await self._handle(request, error)
        await response(scope, receive, send)

    async def _handle(self, request: Request, error: Exception) -> Response:
        handlers = self._app.exception_handlers
        for cls in type(error).__mro__:
            if cls in handlers:
                answer: Any = handlers[cls](request, error)
                if inspect.isawaitable(answer):
                    answer = await answer
                response: Response = answer
                return response
        raise error  # the app registers a handler for Exception: never reached
