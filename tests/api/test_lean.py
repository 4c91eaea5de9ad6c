"""`LeanRoute` serves the publish routes with a handler compiled from their dependant:
it must answer exactly as FastAPI's own handler for the same route would, and leave to
FastAPI every route it cannot compile."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import httpx
import orjson
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi import routing as fastapi_routing
from fastapi.responses import PlainTextResponse

from notifier.api import lean
from notifier.api.deps import current_publisher
from notifier.api.lean import LeanRoute, compile_handler
from notifier.app import App
from notifier.auth import Publisher
from tests.api.conftest import MAX_PAYLOAD, asgi_client
from tests.support import API_KEY, make_token, new_user

AUTH = {"authorization": f"Bearer {API_KEY}"}
JSON = {"content-type": "application/json"}
Case = tuple[str, dict[str, str], bytes]


def cases(user: str) -> list[Case]:
    """(path, headers, body): one of each answer the publish routes give."""
    one = orjson.dumps({"user_id": user, "type": "t", "data": {"n": 1}})
    other = orjson.dumps({"user_id": user, "type": "t", "data": {"n": 2}})
    key = "key-" + user  # keys are per publisher: each side its own
    item = {"user_id": user, "type": "t", "data": {"n": 3}, "idempotency_key": key + "-b"}
    single, batch = "/v1/notifications", "/v1/notifications/batch"
    return [
        (single, {**AUTH, **JSON}, one),
        (single, {**AUTH, **JSON, "idempotency-key": key}, one),
        (single, {**AUTH, **JSON, "idempotency-key": key}, one),  # 200 repeat
        (single, {**AUTH, **JSON, "idempotency-key": key}, other),  # 409
        (single, {**AUTH, **JSON, "idempotency-key": ""}, one),  # 422 key
        (single, {**AUTH, **JSON, "idempotency-key": "k" * 256}, one),  # 422 key
        (single, {**AUTH, **JSON, "idempotency-key": ""}, b"{"),  # the key before the body
        (single, JSON, one),  # 401
        (single, {**JSON, "idempotency-key": ""}, b"{"),  # credentials first
        (single, {**JSON, "authorization": "Bearer wrong"}, one),  # 401
        (single, {**JSON, "authorization": f"Bearer {make_token(user)}"}, one),  # 401
        (single, {**JSON, "authorization": f"Basic {API_KEY}"}, one),  # 401
        (single, {**AUTH, **JSON}, b'{"user_id": '),  # 422 bad JSON
        (single, {**AUTH, **JSON}, b'{"user_id": 5, "type": "t", "data": {}}'),  # wrong type
        (single, {**AUTH, **JSON}, b'{"user_id": "u", "type": "t"}'),  # missing field
        (single, {**AUTH, **JSON}, b'{"user_id": "u", "type": "t", "data": {}, "x": 1}'),
        (single, {**AUTH, **JSON}, b'{"user_id": "u", "type": "t", "data": {"n": 1e999}}'),
        (
            single,
            {**AUTH, **JSON},
            orjson.dumps({"user_id": user, "type": "t", "data": {"x": "y" * MAX_PAYLOAD}}),
        ),  # 413 data
        (single, {**AUTH, **JSON}, b"x" * (1024 * 1024 + 1)),  # 413 body
        (batch, {**AUTH, **JSON}, b'{"notifications": [' + one + b"]}"),
        (batch, {**AUTH, **JSON}, orjson.dumps({"notifications": [item]})),
        (batch, {**AUTH, **JSON}, orjson.dumps({"notifications": [item]})),  # repeat
        (batch, {**AUTH, **JSON}, orjson.dumps({"notifications": [{**item, "type": "u"}]})),
        (batch, {**AUTH, **JSON}, b'{"notifications": []}'),
        (batch, {**AUTH, **JSON}, b"[]"),
        (batch, JSON, b"[]"),  # 401
        (
            batch,
            {**AUTH, **JSON},
            orjson.dumps({"notifications": [{**item, "data": {"x": "y" * MAX_PAYLOAD}}]}),
        ),  # 413 item
        (batch, {**AUTH, **JSON}, b"x" * (16 * 1024 * 1024 + 1)),  # 413 body
    ]


@contextmanager
def fastapi_resolution(app: FastAPI) -> Iterator[None]:
    """While any dependency override is set, a LeanRoute serves with FastAPI's handler."""

    async def unused() -> None:
        pass

    app.dependency_overrides[unused] = unused
    try:
        yield
    finally:
        del app.dependency_overrides[unused]


@pytest.fixture
def resolutions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The endpoints FastAPI's `solve_dependencies` ran for, in order."""
    ran: list[str] = []
    original = fastapi_routing.solve_dependencies

    async def counting(**kwargs: Any) -> Any:
        ran.append(kwargs["dependant"].call.__name__)
        return await original(**kwargs)

    monkeypatch.setattr(fastapi_routing, "solve_dependencies", counting)
    return ran


async def test_compiled_and_fastapi_handlers_answer_alike(app: App, resolutions: list[str]) -> None:
    """For every kind of publish request, good or bad, the compiled handler and FastAPI's
    own answer the same status, headers and body, and store the same thing."""
    lean_user, fastapi_user = new_user(), new_user()
    generic_runs = 0
    statuses: set[int] = set()
    async with asgi_client(app) as http:
        for (path, headers, body), (_, other_headers, other_body) in zip(
            cases(lean_user), cases(fastapi_user), strict=True
        ):
            a = await http.post(path, headers=headers, content=body)
            assert resolutions == [], path  # the compiled handler served it
            with fastapi_resolution(app):
                b = await http.post(path, headers=other_headers, content=other_body)
            generic_runs += len(resolutions)
            resolutions.clear()
            assert a.status_code == b.status_code, (path, headers, body[:80])
            statuses.add(a.status_code)
            if a.status_code in (200, 201):  # ids and times differ; compared below
                assert {k: v for k, v in a.headers.items() if k != "content-length"} == {
                    k: v for k, v in b.headers.items() if k != "content-length"
                }
            else:
                assert dict(a.headers) == dict(b.headers), (path, a.headers, b.headers)
                assert a.content == b.content.replace(fastapi_user.encode(), lean_user.encode())
        # FastAPI's handler served every request but the two bodies refused before routing.
        assert generic_runs == len(cases(lean_user)) - 2
        assert statuses == {200, 201, 401, 409, 413, 422}

        # What each stored reads back the same, but for ids, users and times.
        stored = []
        for user in (lean_user, fastapi_user):
            listed = await http.get(
                "/v1/me/notifications", headers={"authorization": f"Bearer {make_token(user)}"}
            )
            assert listed.status_code == 200
            stored.append(
                [(n["seq"], n["type"], n["data"]) for n in listed.json()["notifications"]]
            )
        assert stored[0] == stored[1]
        assert len(stored[0]) == 4  # the single, the keyed one, two batch items


async def test_dependency_overrides_apply_to_lean_routes(app: App) -> None:
    """`app.dependency_overrides` (as tests use it) reaches a LeanRoute's dependencies."""

    async def somebody() -> Publisher:
        return Publisher("somebody")

    body = orjson.dumps({"user_id": new_user(), "type": "t", "data": {}})
    async with asgi_client(app) as http:
        assert (await http.post("/v1/notifications", content=body)).status_code == 401
        app.dependency_overrides[current_publisher] = somebody
        try:
            response = await http.post("/v1/notifications", content=body)
        finally:
            app.dependency_overrides.clear()
        assert response.status_code == 201, response.text


# -- routes the compiler leaves to FastAPI ---------------------------------------------


async def _who(request: Request) -> str:
    return request.headers.get("x-who", "nobody")


async def _loud(name: Annotated[str, Depends(_who)]) -> str:
    return name.upper()


async def _forbid(request: Request) -> None:
    if "x-who" not in request.headers:
        raise HTTPException(403, detail="who?")


def _router() -> APIRouter:
    router = APIRouter(prefix="/t", route_class=LeanRoute)

    @router.get("/plain")
    async def plain(request: Request, name: Annotated[str, Depends(_who)]) -> Response:
        return PlainTextResponse(f"{name} at {request.url.path}")

    @router.get("/query")
    async def query(limit: int = 5) -> Response:
        return PlainTextResponse(str(limit))

    @router.get("/nested")
    async def nested(name: Annotated[str, Depends(_loud)]) -> Response:
        return PlainTextResponse(name)

    @router.get("/model")
    async def model(name: Annotated[str, Depends(_who)]) -> dict[str, str]:
        return {"name": name}

    @router.get("/sync")
    def sync(request: Request) -> Response:
        return PlainTextResponse("sync")

    return router


def _asgi_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_only_routes_of_plain_request_dependencies_compile() -> None:
    """Query parameters, nested dependencies, response models and sync endpoints are
    left to FastAPI's handler."""
    compiled = {
        route.path: compile_handler(route) is not None
        for route in _router().routes
        if isinstance(route, LeanRoute)
    }
    assert compiled == {
        "/t/plain": True,
        "/t/query": False,
        "/t/nested": False,
        "/t/model": False,
        "/t/sync": False,
    }


async def test_routes_that_do_not_compile_are_served_by_fastapi(resolutions: list[str]) -> None:
    """Each route answers as FastAPI does: validation, nesting, models, sync endpoints."""
    app = FastAPI()
    lean.include(app, _router())
    headers = {"x-who": "ann"}
    async with _asgi_client(app) as http:
        plain = await http.get("/t/plain", headers=headers)
        assert (plain.status_code, plain.text) == (200, "ann at /t/plain")
        assert resolutions == []
        assert (await http.get("/t/query", params={"limit": "7"})).text == "7"
        refused = await http.get("/t/query", params={"limit": "x"})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == [
            "query",
            "limit",
        ]
        assert (await http.get("/t/nested", headers=headers)).text == "ANN"
        assert (await http.get("/t/model", headers=headers)).json() == {"name": "ann"}
        assert (await http.get("/t/sync")).text == "sync"
    assert resolutions == ["query", "query", "nested", "model", "sync"]


async def test_a_lean_route_included_as_a_router_keeps_the_routers_dependencies(
    resolutions: list[str],
) -> None:
    """Through `include_router`, the compiled handler runs the dependencies the inclusion
    adds (here one that refuses), and serves under the inclusion's prefix."""
    app = FastAPI()
    app.include_router(_router(), prefix="/inner", dependencies=[Depends(_forbid)])
    async with _asgi_client(app) as http:
        refused = await http.get("/inner/t/plain")
        assert (refused.status_code, refused.json()) == (403, {"detail": "who?"})
        served = await http.get("/inner/t/plain", headers={"x-who": "bo"})
        assert (served.status_code, served.text) == (200, "bo at /inner/t/plain")
    assert resolutions == []


def test_include_takes_only_lean_routes() -> None:
    """`lean.include` refuses a router of plain APIRoutes (they need `include_router`)."""
    router = APIRouter()

    @router.get("/x")
    async def x() -> Response:
        return Response()

    with pytest.raises(TypeError, match="LeanRoute"):
        lean.include(FastAPI(), router)
