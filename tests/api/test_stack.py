"""The app's middleware stack (notifier/api/stack.py): the publish routes are found by
one lookup, and everything the router would give a route is still given."""

from __future__ import annotations

import orjson
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from notifier.api.lean import LeanRoute
from notifier.api.stack import StaticRoutes
from notifier.app import App
from tests.api.conftest import asgi_client
from tests.support import API_KEY, make_token, new_user


class Witness:
    """A user middleware that keeps each request's scope, as the route left it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            seen.append(scope)


seen: list[Scope] = []


def static_routes(app: App) -> StaticRoutes:
    layer = app.middleware_stack
    while not isinstance(layer, StaticRoutes):
        layer = layer.app  # type: ignore[union-attr]
    return layer


async def test_the_table_holds_the_compiled_publish_routes_only(app: App) -> None:
    """The two publish routes (compiled LeanRoutes without path parameters) are in the
    table; the inbox and operations routes go through the router."""
    async with asgi_client(app) as http:
        await http.get("/healthz")  # builds the stack
    table = static_routes(app).table
    assert set(table) == {("POST", "/v1/notifications"), ("POST", "/v1/notifications/batch")}
    assert all(isinstance(route, LeanRoute) and route.compiled for route in table.values())


async def test_a_route_served_from_the_table_gets_the_routers_scope(app: App) -> None:
    """A publish served from the table leaves in the scope the route, endpoint, router
    and path parameters the router gives every route (and the route matches fully), like
    an inbox request served by the router."""
    app.add_middleware(Witness)
    seen.clear()
    user = new_user()
    async with asgi_client(app) as http:
        publish = await http.post(
            "/v1/notifications",
            headers={"authorization": f"Bearer {API_KEY}"},
            content=orjson.dumps({"user_id": user, "type": "t", "data": {}}),
        )
        inbox = await http.get(
            "/v1/me/notifications", headers={"authorization": f"Bearer {make_token(user)}"}
        )
    assert (publish.status_code, inbox.status_code) == (201, 200)
    assert len(seen) == 2
    for scope, path in zip(seen, ["/v1/notifications", "/v1/me/notifications"], strict=True):
        route = scope["route"]
        assert route.path == path
        assert scope["endpoint"] is route.endpoint
        assert scope["router"] is app.router
        assert scope["path_params"] == {}
        assert route.matches(scope)[0] is Match.FULL
    # The publish came from the table, the inbox read through the router (and FastAPI's
    # AsyncExitStack layer, which its generic handler requires).
    assert ["fastapi_middleware_astack" in scope for scope in seen] == [False, True]


async def test_other_methods_on_a_table_path_still_get_the_routers_405(app: App) -> None:
    """Only POST is in the table: GET on the publish path is the router's 405 with its
    `Allow` header, as before."""
    async with asgi_client(app) as http:
        response = await http.get("/v1/notifications")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_a_prefix_the_server_adds_is_not_part_of_the_route_path(app: App) -> None:
    """Behind a proxy that mounts the service under a prefix (`root_path`), a publish is
    still found in the table."""
    app.add_middleware(Witness)
    seen.clear()
    user = new_user()
    async with asgi_client(app) as http:
        http._transport.root_path = "/notify"  # type: ignore[attr-defined]
        response = await http.post(
            "/notify/v1/notifications",
            headers={"authorization": f"Bearer {API_KEY}"},
            content=orjson.dumps({"user_id": user, "type": "t", "data": {}}),
        )
    assert response.status_code == 201, response.text
    assert seen[-1]["route"].path == "/v1/notifications"
    assert "fastapi_middleware_astack" not in seen[-1]  # from the table, not the router
