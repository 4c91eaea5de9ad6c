"""Body limits come from the routes' own declarations (`max_body_size`); the checks
every stored `data` passes."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError

from notifier.api.body import (
    BATCH_BODY_LIMIT,
    MAX_DATA_DEPTH,
    SINGLE_BODY_LIMIT,
    DataError,
    RouteLimits,
    check_data,
    encode_data,
    parse,
)
from notifier.api.schemas import BatchIn
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


def _nested(depth: int, leaf: object = None) -> dict[str, object]:
    data: dict[str, object] = {"leaf": leaf} if leaf is not None else {}
    for _ in range(depth - 1):
        data = {"a": data}
    return data


def test_check_data_bounds_depth_at_64() -> None:
    """64 levels pass, 65 are refused, objects and arrays alike."""
    check_data(_nested(MAX_DATA_DEPTH))
    with pytest.raises(DataError, match="nested more than 64"):
        check_data(_nested(MAX_DATA_DEPTH + 1))
    lists: list[object] = []  # 1 level
    for _ in range(MAX_DATA_DEPTH - 2):
        lists = [lists]  # 63 levels: {"l": lists} is 64
    check_data({"l": lists})
    with pytest.raises(DataError):
        check_data({"l": [lists]})


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30])
def test_check_data_refuses_integers_beyond_64_bits(value: int) -> None:
    """An integer orjson cannot store exactly is refused, however deep."""
    with pytest.raises(DataError, match="64 bits"):
        check_data(_nested(5, leaf=[value]))
    check_data(_nested(5, leaf=[2**64 - 1, -(2**63)]))


def test_encode_data_maps_each_refusal_to_its_status() -> None:
    """Too deep and too big an integer are 422 (naming the item), over the size 413."""
    assert encode_data({"a": [1, "x"]}, max_bytes=100) == '{"a":[1,"x"]}'
    for bad in (_nested(65), _nested(300), {"n": 2**64}):
        with pytest.raises(HTTPException) as caught:
            encode_data(bad, max_bytes=10**6, index=3)
        assert caught.value.status_code == 422
        assert str(caught.value.detail).startswith("notifications[3].data: ")
    with pytest.raises(HTTPException) as caught:
        encode_data({"p": "x" * 100}, max_bytes=100)
    assert caught.value.status_code == 413


def _request(body: bytes) -> Request:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "headers": []}, receive)


async def test_a_batch_over_its_item_limit_is_refused_before_its_items_are_built() -> None:
    """4 MiB of empty items (1.4 million) is refused naming the count, and no Python
    object is made per item: parsing it first held about 100 MiB."""
    body = b'{"notifications":[' + b",".join([b"{}"] * 1_400_000) + b"]}"
    tracemalloc.start()
    try:
        with pytest.raises(RequestValidationError) as caught:
            await parse(_request(body), BatchIn)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    [error] = caught.value.errors()
    assert error["loc"] == ("body", "notifications")
    assert error["msg"] == "List should have at most 1000 items, not 1400000"
    assert peak < 1024 * 1024


async def test_large_batches_within_the_limit_and_bad_json_parse_as_before() -> None:
    """The count only refuses: a 1000-item batch of 200 KiB parses, and a large body
    that is not JSON still gets the parser's own explanation."""
    items = [{"user_id": f"u{i}", "type": "t", "data": {"text": "x" * 200}} for i in range(1000)]
    body = orjson.dumps({"notifications": items})
    assert len(body) > 200_000
    batch = await parse(_request(body), BatchIn)
    assert len(batch.notifications) == 1000
    with pytest.raises(HTTPException) as caught:
        await parse(_request(body[:-1]), BatchIn)
    assert caught.value.status_code == 422
    assert str(caught.value.detail).startswith("body is not valid JSON")
