"""Every HTTP route of the app is served through the app's middleware stack: a
middleware added to the app sees every request and stamps every answer, publish
included, good requests and bad."""

from __future__ import annotations

import re

import orjson
from fastapi.routing import iter_route_contexts
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifier.app import App
from tests.api.conftest import asgi_client
from tests.support import API_KEY, make_token, new_user


class Stamp:
    """A pure ASGI middleware: adds `x-stamp` to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-stamp", b"yes")]
            await send(message)

        await self.app(scope, receive, stamped)


def requests_for(user: str) -> list[tuple[dict[str, str], bytes]]:
    """(headers, body) sent to every route: without credentials, as a publisher, as a
    user; with a single-publish, a batch, a read and a broken body."""
    single = {"user_id": user, "type": "t", "data": {}}
    bodies = [
        orjson.dumps(single),
        orjson.dumps({"notifications": [single]}),
        orjson.dumps({"up_to_seq": 1}),
        b"{",
        b"x" * (16 * 1024 * 1024 + 1),
    ]
    credentials = [{}, {"authorization": f"Bearer {API_KEY}"}]
    credentials.append({"authorization": f"Bearer {make_token(user)}"})
    json = {"content-type": "application/json"}
    return [({**json, **c}, body) for c in credentials for body in bodies]


async def test_a_middleware_added_to_the_app_applies_to_every_route(app: App) -> None:
    """Every method of every HTTP route (enumerated from the app, so a new route is
    covered), each answer good or bad, plus unknown paths and methods, carries the
    middleware's header."""
    app.add_middleware(Stamp)
    user = new_user()
    statuses: dict[tuple[str, str], set[int]] = {}
    async with asgi_client(app) as http:
        for route in iter_route_contexts(app.routes):
            if route.path is None or route.methods is None:  # not HTTP
                continue
            path = re.sub(r"\{[^}]*\}", "x", route.path)
            for method in sorted(route.methods):
                for headers, body in requests_for(user):
                    response = await http.request(method, path, headers=headers, content=body)
                    assert response.headers.get("x-stamp") == "yes", (method, path, response)
                    statuses.setdefault((method, route.path), set()).add(response.status_code)
        for method, path in [("GET", "/nowhere"), ("DELETE", "/v1/notifications")]:
            for headers, body in requests_for(user):
                response = await http.request(method, path, headers=headers, content=body)
                assert response.headers.get("x-stamp") == "yes", (method, path, response)
    assert statuses[("POST", "/v1/notifications")] == {201, 401, 413, 422}
    assert statuses[("POST", "/v1/notifications/batch")] == {201, 401, 413, 422}
    assert {200, 401} <= statuses[("GET", "/v1/me/notifications")]
    assert len(statuses) >= 10
