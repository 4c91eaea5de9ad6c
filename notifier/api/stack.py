"""The app's middleware stack: FastAPI's, less what does nothing for this app, and a
routing table for the busiest routes.

FastAPI builds `ServerErrorMiddleware`, its telemetry and app-wide body-limit layers, the
user middleware, `ExceptionMiddleware`, an `AsyncExitStack` layer and the router, for
every request. Each layer costs a few µs of CPU, and a single publish's own work in the
HTTP layer is about 20 (`python -m bench.http_layer`). `build` keeps every layer that
acts here, in FastAPI's order, and drops the rest:

- telemetry's layer (the app turns telemetry off) and the app-wide body limit (none is
  set: `api.body.BodyLimit` enforces each route's own);
- the `AsyncExitStack` layer, for the requests that never use it: it holds files that
  FastAPI's generic handler opens for form bodies, and `StaticRoutes` serves only
  handlers compiled by `api.lean`, which parse no forms. Every other request still goes
  through it.

`StaticRoutes` sits where the router does, inside every user middleware and
`ExceptionMiddleware`: a middleware added to the app sees every route, and an exception
of a route is answered by the app's handlers (tests/api/test_middleware.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from notifier.api.lean import LeanRoute


class StaticRoutes:
    """Requests for a path without parameters of a compiled `LeanRoute` go to it by one
    dictionary lookup, with the scope the router would have given it; every other
    request goes to `router` (through FastAPI's `AsyncExitStack` layer).

    The router matches a request against each route in turn (a regular expression and a
    child scope per route tried) and then hands it over through FastAPI's route context
    lookups: about 7 µs of CPU per request, a third of a publish's HTTP layer."""

    def __init__(self, router: Any, routes: Iterable[BaseRoute]) -> None:
        self.router = router
        self.fallback: ASGIApp = AsyncExitStackMiddleware(router)
        self.table: dict[tuple[str, str], LeanRoute] = {}
        for route in routes:
            if isinstance(route, LeanRoute) and route.compiled and not route.param_convertors:
                for method in route.methods or ():
                    # The router tries routes in order: the first one of a path wins.
                    self.table.setdefault((method, route.path), route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            route = self.table.get((scope["method"], path))
            if route is not None:
                scope["router"] = self.router
                scope["endpoint"] = route.endpoint
                scope["route"] = route
                scope.setdefault("path_params", {})
                await route.app(scope, receive, send)
                return
        await self.fallback(scope, receive, send)


def build(
    router: Any,
    routes: Sequence[BaseRoute],
    user_middleware: Sequence[Middleware],
    exception_handlers: dict[Any, Any],
    debug: bool,
) -> ASGIApp:
    """The stack `FastAPI.build_middleware_stack` builds, for an app with telemetry off
    and no app-wide body limit, with `StaticRoutes` in front of the router."""
    error_handler = None
    handlers: dict[Any, Any] = {}
    for key, value in exception_handlers.items():
        if key in (500, Exception):
            error_handler = value
        else:
            handlers[key] = value
    middleware = [
        Middleware(ServerErrorMiddleware, handler=error_handler, debug=debug),
        *user_middleware,
        Middleware(ExceptionMiddleware, handlers=handlers, debug=debug),
    ]
    app: ASGIApp = StaticRoutes(router, routes)
    for cls, args, kwargs in reversed(middleware):
        app = cls(app, *args, **kwargs)
    return app
