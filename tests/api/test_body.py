"""Body limits come from the routes' own declarations (`max_body_size`)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Response

from notifier.api.body import BATCH_BODY_LIMIT, SINGLE_BODY_LIMIT, RouteLimits
from notifier.app import App


def test_limits_are_read_from_the_routes() -> None:
    """A route's limit applies to its method and path (a path parameter matches any
    value, a router's limit applies to its routes); anything else gets the default."""
    router = APIRouter(prefix="/r", max_body_size=300)

    @router.post("/inherits")
    async def inherits() -> Response:
        return Response()

    @router.put("/items/{item}", max_body_size=200)
    async def item(item: str) -> Response:
        return Response()

    app = FastAPI()

    @app.post("/own", max_body_size=100)
    async def own() -> Response:
        return Response()

    @app.post("/none")
    async def none() -> Response:
        return Response()

    app.include_router(router, prefix="/in")
    limit = RouteLimits(app.routes, default=50)
    assert limit("POST", "/own") == 100
    assert limit("GET", "/own") == 50
    assert limit("POST", "/none") == 50
    assert limit("POST", "/in/r/inherits") == 300
    assert limit("PUT", "/in/r/items/42") == 200
    assert limit("PUT", "/in/r/items/42/more") == 50
    assert limit("POST", "/elsewhere") == 50


def test_the_publish_routes_declare_their_limits(app: App) -> None:
    """1 MiB for a single publish, 16 MiB for a batch, the default elsewhere."""
    limit = RouteLimits(app.routes, default=SINGLE_BODY_LIMIT)
    assert limit("POST", "/v1/notifications") == SINGLE_BODY_LIMIT
    assert limit("POST", "/v1/notifications/batch") == BATCH_BODY_LIMIT
    assert limit("POST", "/v1/me/notifications/read") == SINGLE_BODY_LIMIT
