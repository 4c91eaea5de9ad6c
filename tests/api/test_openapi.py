"""The OpenAPI document at /openapi.json: valid, and for every route it names exactly the
status codes the route answers, each with an example that fits its schema. Each code is
provoked for real, in process, so the document cannot drift from the code."""

from __future__ import annotations

import asyncio
import gc
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from notifier.api import responses
from notifier.api.routes import client as client_routes
from notifier.api.routes import inbox, ops, publish, topics, users
from notifier.app import App
from notifier.core.ratelimit import PublishLimiter
from tests.support import API_KEY, make_token

USER = "openapi-user"
PUBLISHER = {"authorization": f"Bearer {API_KEY}"}
ONE = {"user_id": USER, "type": "t", "data": {"n": 1}}
OTHER = {"user_id": USER, "type": "t", "data": {"n": 2}}
ID = "0b6c1f5e-6f2a-4d8e-9a51-3f0c2b7d9e14"
BIG = b"{" + b" " * (16 * 1024 * 1024) + b"}"


def user() -> dict[str, str]:
    return {"authorization": f"Bearer {make_token(USER)}"}


@dataclass
class Case:
    """Requests sent in order; the last one's status is the code under test."""

    method: str
    path: str
    status: int
    requests: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    database_down: bool = False
    document_missing: bool = False
    template: str | None = None
    """The path as the document names it, when `path` fills in a parameter."""
    rate: float | None = None
    """NOTIFIER_PUBLISH_RATE for this case."""

    @property
    def documented(self) -> str:
        return self.template or self.path

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.path} {self.status}"


def key(name: str) -> dict[str, str]:
    return {**PUBLISHER, "idempotency-key": name}


def cases() -> list[Case]:
    inbox = "/v1/me/notifications"
    unread, read = f"{inbox}/unread-count", f"{inbox}/read"
    archive = f"{inbox}/archive"
    presence, presence_t = f"/v1/users/{USER}/presence", "/v1/users/{user_id}/presence"
    revoke, revoke_t = f"/v1/users/{USER}/revoke", "/v1/users/{user_id}/revoke"
    bulk = "/v1/presence"
    single, batch = "/v1/notifications", "/v1/notifications/batch"
    subscribers, topic_publish = (
        "/v1/topics/{topic}/subscribers",
        "/v1/topics/{topic}/notifications",
    )
    members, posted = "/v1/topics/t.1/subscribers", "/v1/topics/t.1/notifications"
    change = {"add": [USER]}
    news = {"type": "t", "data": {"n": 1}}
    big_data = {"type": "t", "data": {"p": "x" * 2000}}
    return [
        Case("post", members, 200, [{"headers": PUBLISHER, "json": change}], template=subscribers),
        Case("post", members, 401, [{"json": change}], template=subscribers),
        Case(
            "post",
            members,
            413,
            [{"headers": PUBLISHER, "content": BIG[: 1024 * 1024 + 2]}],
            template=subscribers,
        ),
        Case("post", members, 422, [{"headers": PUBLISHER, "json": {}}], template=subscribers),
        Case(
            "post",
            members,
            503,
            [{"headers": PUBLISHER, "json": change}],
            True,
            template=subscribers,
        ),
        Case("get", members, 200, [{"headers": PUBLISHER}], template=subscribers),
        Case("get", members, 401, template=subscribers),
        Case(
            "get", "/v1/topics/a b/subscribers", 422, [{"headers": PUBLISHER}], template=subscribers
        ),
        Case("get", members, 503, [{"headers": PUBLISHER}], True, template=subscribers),
        Case("post", posted, 201, [{"headers": PUBLISHER, "json": news}], template=topic_publish),
        Case(
            "post", posted, 200, [{"headers": key("t"), "json": news}] * 2, template=topic_publish
        ),
        Case("post", posted, 401, [{"json": news}], template=topic_publish),
        Case(
            "post",
            posted,
            409,
            [{"headers": key("u"), "json": j} for j in (news, big_data | {"data": {}})],
            template=topic_publish,
        ),
        Case(
            "post", posted, 413, [{"headers": PUBLISHER, "json": big_data}], template=topic_publish
        ),
        Case("post", posted, 422, [{"headers": PUBLISHER, "json": {}}], template=topic_publish),
        Case(
            "post",
            posted,
            429,
            [{"headers": PUBLISHER, "json": news}] * 3,
            template=topic_publish,
            rate=1,
        ),
        Case(
            "post",
            posted,
            503,
            [{"headers": PUBLISHER, "json": news}],
            True,
            template=topic_publish,
        ),
        Case("post", single, 429, [{"headers": PUBLISHER, "json": ONE}] * 3, rate=1),
        Case(
            "post",
            batch,
            429,
            [{"headers": PUBLISHER, "json": {"notifications": [ONE] * 3}}] * 2,
            rate=1,
        ),
        Case("get", inbox, 200, [{"headers": user()}]),
        Case("get", inbox, 401),
        Case("get", inbox, 422, [{"headers": user(), "params": {"limit": 0}}]),
        Case("get", inbox, 503, [{"headers": user()}], database_down=True),
        Case("get", unread, 200, [{"headers": user()}]),
        Case("get", unread, 401),
        Case("get", unread, 503, [{"headers": user()}], database_down=True),
        Case("post", read, 200, [{"headers": user(), "json": {"up_to_seq": 1}}]),
        Case("post", read, 401, [{"json": {"up_to_seq": 1}}]),
        Case("post", read, 413, [{"headers": user(), "content": BIG[: 1024 * 1024 + 2]}]),
        Case("post", read, 422, [{"headers": user(), "json": {}}]),
        Case("post", read, 503, [{"headers": user(), "json": {"up_to_seq": 1}}], True),
        Case("post", archive, 200, [{"headers": user(), "json": {"ids": [ID]}}]),
        Case("post", archive, 401, [{"json": {"ids": [ID]}}]),
        Case("post", archive, 413, [{"headers": user(), "content": BIG[: 1024 * 1024 + 2]}]),
        Case("post", archive, 422, [{"headers": user(), "json": {"ids": []}}]),
        Case("post", archive, 503, [{"headers": user(), "json": {"ids": [ID]}}], True),
        Case("get", presence, 200, [{"headers": PUBLISHER}], template=presence_t),
        Case("get", presence, 401, template=presence_t),
        Case(
            "get",
            f"/v1/users/{'x' * 256}/presence",
            422,
            [{"headers": PUBLISHER}],
            False,
            False,
            presence_t,
        ),
        Case("get", presence, 503, [{"headers": PUBLISHER}], True, template=presence_t),
        Case("post", bulk, 200, [{"headers": PUBLISHER, "json": {"user_ids": [USER]}}]),
        Case("post", bulk, 401, [{"json": {"user_ids": [USER]}}]),
        Case("post", bulk, 413, [{"headers": PUBLISHER, "content": BIG[: 1024 * 1024 + 2]}]),
        Case("post", bulk, 422, [{"headers": PUBLISHER, "json": {"user_ids": []}}]),
        Case("post", bulk, 503, [{"headers": PUBLISHER, "json": {"user_ids": [USER]}}], True),
        Case("post", revoke, 200, [{"headers": PUBLISHER}], template=revoke_t),
        Case("post", revoke, 401, template=revoke_t),
        Case(
            "post",
            revoke,
            413,
            [{"headers": PUBLISHER, "content": BIG[: 1024 * 1024 + 2]}],
            template=revoke_t,
        ),
        Case("post", revoke, 422, [{"headers": PUBLISHER, "json": {"a": 1}}], template=revoke_t),
        Case("post", revoke, 503, [{"headers": PUBLISHER}], True, template=revoke_t),
        Case("get", "/healthz", 200),
        Case("get", "/readyz", 200),
        Case("get", "/readyz", 503, database_down=True),
        Case("get", "/metrics", 200),
        Case("get", "/asyncapi.yaml", 200),
        Case("get", "/asyncapi.yaml", 404, document_missing=True),
        *client_cases("/v1/client.js", "client.js"),
        *client_cases("/v1/client.d.ts", "client.d.ts"),
        Case("post", single, 201, [{"headers": PUBLISHER, "json": ONE}]),
        Case("post", single, 200, [{"headers": key("a"), "json": ONE}] * 2),
        Case("post", single, 401, [{"json": ONE}]),
        Case("post", single, 409, [{"headers": key("b"), "json": j} for j in (ONE, OTHER)]),
        Case("post", single, 413, [{"headers": PUBLISHER, "content": BIG[: 1024 * 1024 + 2]}]),
        Case("post", single, 422, [{"headers": PUBLISHER, "json": {**ONE, "user_id": ""}}]),
        Case("post", single, 503, [{"headers": PUBLISHER, "json": ONE}], database_down=True),
        Case("post", batch, 201, [{"headers": PUBLISHER, "json": {"notifications": [ONE]}}]),
        Case("post", batch, 401, [{"json": {"notifications": [ONE]}}]),
        Case(
            "post",
            batch,
            409,
            [
                {"headers": PUBLISHER, "json": {"notifications": [{**j, "idempotency_key": "c"}]}}
                for j in (ONE, OTHER)
            ],
        ),
        Case("post", batch, 413, [{"headers": PUBLISHER, "content": BIG}]),
        Case("post", batch, 422, [{"headers": PUBLISHER, "json": {"notifications": []}}]),
        Case(
            "post",
            batch,
            503,
            [{"headers": PUBLISHER, "json": {"notifications": [ONE]}}],
            database_down=True,
        ),
    ]


def client_cases(path: str, name: str) -> list[Case]:
    found = client_routes.asset(name)
    assert found is not None, f"notifier/_static/{name} is missing: run `make client`"
    revalidate = {"headers": {"if-none-match": found[1]}}
    return [
        Case("get", path, 200),
        Case("get", path, 304, [revalidate]),
        Case("get", path, 404, document_missing=True),
    ]


CASES = cases()
ANSWERS: dict[tuple[str, str], set[str]] = {}
for _case in CASES:
    ANSWERS.setdefault((_case.method, _case.documented), set()).add(str(_case.status))

# The publish routes declare responses.PUBLISH_RESPONSES and BATCH_RESPONSES; the
# declared dicts must match what the routes answer.
PLANNED = {
    ("post", "/v1/notifications"): responses.PUBLISH_RESPONSES,
    ("post", "/v1/notifications/batch"): responses.BATCH_RESPONSES,
}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/openapi.json")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def documented_codes(document: dict[str, Any], method: str, path: str) -> set[str]:
    return set(document["paths"][path][method]["responses"])


async def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    """/openapi.json passes openapi-spec-validator (OpenAPI 3.1)."""
    assert document["openapi"].startswith("3.1")
    validate(document)


async def test_every_route_of_the_app_is_in_the_document(document: dict[str, Any]) -> None:
    """The document lists exactly the routes these tests provoke (a new route needs its
    cases here, and so its documented answers)."""
    assert {(m, p) for m, p, _ in operations(document)} == set(ANSWERS)


@pytest.mark.parametrize(("method", "path"), sorted(ANSWERS), ids=lambda v: str(v))
async def test_each_route_documents_exactly_the_codes_it_answers(
    document: dict[str, Any], method: str, path: str
) -> None:
    """Every status code a route answers is documented, and no other."""
    assert documented_codes(document, method, path) == ANSWERS[(method, path)]


@pytest.mark.parametrize(("method", "path"), sorted(PLANNED))
async def test_the_publish_routes_declare_their_answers(
    document: dict[str, Any], method: str, path: str
) -> None:
    """The publish routes' own declarations name every code they answer."""
    assert set(document["paths"][path][method]["responses"]) == ANSWERS[(method, path)]


def _examples(content: dict[str, Any]) -> list[Any]:
    found = [media["example"] for media in content.values() if "example" in media]
    for media in content.values():
        found.extend(example["value"] for example in media.get("examples", {}).values())
    return found


async def test_every_answer_has_an_example(document: dict[str, Any]) -> None:
    """Each documented answer in /openapi.json carries at least one example."""
    for method, path, operation in operations(document):
        answers = set(operation["responses"])
        if (method, path) in PLANNED and answers != ANSWERS[(method, path)]:
            continue  # checked from the declarations below until publish.py uses them
        for code, answer in operation["responses"].items():
            examples = _examples(answer.get("content", {}))
            assert examples, f"{method.upper()} {path} {code}: no example"


def declarations() -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(where, code, answer) for every answer the routes declare, and the planned ones."""
    routers = (inbox.router, ops.router, publish.router, users.router, client_routes.router)
    routers += (topics.router, ops.metrics_router)
    for route in (route for router in routers for route in router.routes):
        if isinstance(route, APIRoute):
            for method in route.methods:
                for code, answer in route.responses.items():
                    yield f"{method} {route.path} {code}", code, answer
    for (method, path), planned in PLANNED.items():
        for code, answer in planned.items():
            yield f"{method.upper()} {path} {code} (planned)", code, answer


def test_every_declared_example_fits_its_schema() -> None:
    """Every example a route declares validates against the schema it is declared with.

    Checked on the declarations, not on the served document: FastAPI drops null-valued
    fields from examples when it renders /openapi.json (`read_at: null` included)."""
    checked = 0
    for where, _code, answer in declarations():
        for media in answer.get("content", {}).values():
            model = answer.get("model")
            schema = model.model_json_schema() if model is not None else media["schema"]
            validator = Draft202012Validator(schema)
            for example in _examples({"": media}):
                errors = [error.message for error in validator.iter_errors(example)]
                assert not errors, f"{where} example: {errors}"
                checked += 1
    assert checked >= len(CASES)


@contextmanager
def _document_missing() -> Iterator[None]:
    original, static = ops.asyncapi_path, client_routes.STATIC
    ops._asyncapi.cache_clear()
    client_routes.asset.cache_clear()
    ops.asyncapi_path = lambda: None  # type: ignore[assignment]
    client_routes.STATIC = static / "missing"
    try:
        yield
    finally:
        ops.asyncapi_path = original  # type: ignore[assignment]
        client_routes.STATIC = static
        ops._asyncapi.cache_clear()
        client_routes.asset.cache_clear()


async def _take_database_away(app: App) -> None:
    """The SQLite file becomes a directory: every new connection fails like a database
    that is down (sqlite3.OperationalError)."""
    engine = app.state.service.store.engine
    path = Path(engine.url.database)
    app.state.database_taken = True  # tests/api/conftest.py cleans up after it
    await engine.dispose()
    shutil.move(path, path.with_suffix(".gone"))
    path.mkdir()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_each_documented_code_is_provoked(
    app: App, client: httpx.AsyncClient, document: dict[str, Any], case: Case
) -> None:
    """The route really answers the code, and the document names it."""
    if case.database_down:
        await _take_database_away(app)
    app.state.service.limiter = PublishLimiter.of(case.rate)
    with _document_missing() if case.document_missing else _nothing():
        for request in case.requests:
            answer = await client.request(case.method.upper(), case.path, **request)
    if case.database_down:
        await _settle_failed_connections()
    assert answer.status_code == case.status, answer.text
    assert str(case.status) in documented_codes(document, case.method, case.documented)


async def _settle_failed_connections() -> None:
    """aiosqlite stops the worker thread of a connection that failed to open when it is
    collected; collect now, while this test's event loop still runs to take the thread's
    last callback, rather than at some later collection after the loop has closed."""
    gc.collect()
    await asyncio.sleep(0.05)


@contextmanager
def _nothing() -> Iterator[None]:
    yield
