"""Routes whose handler skips FastAPI's generic dependency resolution.

FastAPI answers a request by `solve_dependencies`: for each parameter of the endpoint and
of each dependency it walks the dependency tree, looks up overrides and caches, and
validates path, query, header, cookie and body parameters. For a route whose
dependencies are plain `async def dep(request)` functions that machinery is most of the
route's CPU: profiling the publish route under load put `solve_dependencies` alone at
13% of the server.

`LeanRoute` reads the same `dependant` FastAPI built from the endpoint's signature and,
once when the route is built, compiles a handler that calls those dependencies in
declaration order and then the endpoint. Everything else stays FastAPI's: routing, the
middleware stack, the exception handlers (an exception leaves the handler exactly as it
would leave FastAPI's), the OpenAPI schema. A route it cannot compile keeps FastAPI's
own handler, and so does every request while `app.dependency_overrides` is in use.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi import routing as fastapi_routing
from fastapi.dependencies.models import Dependant
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Step = tuple[str | None, Callable[..., Awaitable[Any]], bool]
"""A dependency: the endpoint parameter it fills (None: run for its effect), the
function, and whether it takes the request."""

# Where FastAPI keeps the inclusion (prefix, router dependencies) a route's handler is
# being built for. Without it there is no telling which dependant applies: such a route
# keeps FastAPI's handler.
_INCLUSION = getattr(fastapi_routing, "_effective_route_context_var", None)


class LeanRoute(APIRoute):
    """An `APIRoute` served by a handler compiled from its dependant when it can be
    (`compile_handler`), FastAPI's own otherwise.

    Added to the app with `include` (its own route list), a compiled route's ASGI app is
    just the handler: no per-request exit stacks (its dependencies have no teardown) and
    no exception handling of its own (an exception goes on to the app's
    `ExceptionMiddleware`, whose handlers answer it as FastAPI's would). Its
    `max_body_size` is enforced before routing by `api.body.BodyLimit`, which reads it
    from the routes. Included with `include_router`, it still works, but inside FastAPI's
    wrappers and its router-inclusion layer.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        self._options = options
        compiled = compile_handler(self)
        self.compiled = compiled is not None
        """Whether `app` is the compiled handler (with FastAPI's as its fallback)."""
        if compiled is not None:
            self.app = _serve(compiled, self.app, self.dependency_overrides_provider)

    def get_route_handler(self) -> Handler:
        generic = super().get_route_handler()
        if _INCLUSION is None:
            return generic
        context = _INCLUSION.get()
        route = context if context is not None and context.original_route is self else self
        compiled = compile_handler(route)
        if compiled is None:
            return generic
        return _with_overrides(compiled, generic, route.dependency_overrides_provider)

    def bound_to(self, provider: Any) -> LeanRoute:
        """The same route, built anew with `provider` (the app) as the source of
        `dependency_overrides`."""
        options = {**self._options, "dependency_overrides_provider": provider}
        return type(self)(self.path, self.endpoint, **options)


def include(app: FastAPI, router: APIRouter) -> None:
    """Add `router`'s routes to the app's own route list, as `@app.post` would, but
    ahead of the routes already there (the app's router tries routes in order, and these
    are the busiest).

    `app.include_router` adds a layer that matches each request against the router
    twice, and serves a route through FastAPI's per-request wrappers: about 35 µs of CPU
    more per publish, whose own work is about 20 (`python -m bench.http_layer`). The
    router's prefix, tags and dependencies are already part of its routes.
    """
    routes = []
    for route in router.routes:
        if not isinstance(route, LeanRoute):
            raise TypeError(f"{route!r} is not a LeanRoute: use app.include_router")
        routes.append(route.bound_to(app))
    app.router.routes[:0] = routes


def compile_handler(route: Any) -> Handler | None:
    """A handler for `route` (an `APIRoute`, or FastAPI's view of one as included) that
    calls its dependencies and endpoint directly, or None when the route needs anything
    of FastAPI's resolution: parameters other than the request (path, query, header,
    cookie, body), dependencies with dependencies of their own, generator dependencies,
    security scopes, response models, streaming."""
    dependant: Dependant = route.dependant
    if (
        route.body_field is not None
        or route.response_field is not None
        or route.is_sse_stream
        or route.is_json_stream
        or not _takes_only_the_request(dependant)
        or not _returns_a_response(dependant.call)
    ):
        return None
    steps: list[Step] = []
    for sub in dependant.dependencies:
        if (
            sub.dependencies
            or not _takes_only_the_request(sub)
            or sub.call in [call for _, call, _ in steps]  # shared: FastAPI's cache
        ):
            return None
        assert sub.call is not None
        steps.append((sub.name, sub.call, sub.request_param_name is not None))
    assert dependant.call is not None
    return _handler(dependant.call, dependant.request_param_name, tuple(steps))


def _handler(
    endpoint: Callable[..., Awaitable[Any]], request_name: str | None, steps: tuple[Step, ...]
) -> Handler:
    async def handler(request: Request) -> Response:
        values: dict[str, Any] = {}
        for name, call, takes_request in steps:
            value = await (call(request) if takes_request else call())
            if name is not None:
                values[name] = value
        if request_name is not None:
            values[request_name] = request
        response = await endpoint(**values)
        if not isinstance(response, Response):
            raise TypeError(f"{endpoint.__qualname__} returned {type(response).__name__}")
        return response

    return handler


def _with_overrides(compiled: Handler, generic: Handler, provider: Any) -> Handler:
    """`compiled`, but `generic` while the app has dependency overrides (tests)."""

    async def handler(request: Request) -> Response:
        if _overridden(provider):
            return await generic(request)
        return await compiled(request)

    return handler


def _serve(compiled: Handler, generic: ASGIApp, provider: Any) -> ASGIApp:
    """The route's ASGI app: `compiled` on a bare `Request`; `generic` (FastAPI's
    wrapped handler) while the app has dependency overrides. `generic` gets the
    `AsyncExitStack` it expects in its scope even when `api.stack.StaticRoutes`, which
    serves compiled routes without that layer, sent the request here."""
    generic = AsyncExitStackMiddleware(generic)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if _overridden(provider):
            await generic(scope, receive, send)
            return
        response = await compiled(Request(scope, receive, send))
        await response(scope, receive, send)

    return app


def _overridden(provider: Any) -> bool:
    """Whether the app (`provider`) has dependency overrides in use (tests): then
    FastAPI's own resolution must run, since only it applies them."""
    return provider is not None and bool(getattr(provider, "dependency_overrides", None))


def _takes_only_the_request(dependant: Dependant) -> bool:
    return (
        inspect.iscoroutinefunction(dependant.call)
        and not (
            dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
        )
        and dependant.websocket_param_name is None
        and dependant.http_connection_param_name is None
        and dependant.response_param_name is None
        and dependant.background_tasks_param_name is None
        and dependant.security_scopes_param_name is None
        and not dependant.own_oauth_scopes
    )


def _returns_a_response(call: Callable[..., Any] | None) -> bool:
    try:
        returned = typing.get_type_hints(call).get("return")
    except Exception:  # an annotation that does not resolve: leave it to FastAPI
        return False
    return isinstance(returned, type) and issubclass(returned, Response)
