"""Every bad input of the contract's error list: the precise status, a JSON detail, no
traceback, and nothing changed. Limits are probed on both sides of the boundary."""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.http_support import assert_error, http, inbox, unread
from tests.support import API_KEY, Server, new_user, publish, publisher_headers, user_headers

MIB = 1024 * 1024
DEFAULT_MAX_PAYLOAD = 65536


def post(
    server: Server, path: str, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    merged = {"Content-Type": "application/json", **(headers or {})}
    return http().post(server.url + path, content=body, headers=merged)


def publish_raw(server: Server, body: bytes, **headers: str) -> httpx.Response:
    return post(server, "/v1/notifications", body, publisher_headers(API_KEY, **headers))


def batch_raw(server: Server, body: bytes) -> httpx.Response:
    return post(server, "/v1/notifications/batch", body, publisher_headers(API_KEY))


def read_raw(server: Server, user: str, body: bytes) -> httpx.Response:
    return post(server, "/v1/me/notifications/read", body, user_headers(user))


def published_total(server: Server) -> float:
    """All notifications this server process stored (notifier_notifications_published_total)."""
    text = http().get(server.url + "/metrics").text
    pattern = r"^notifier_notifications_published_total(?:\{.*\})? (\S+)$"
    return sum(float(value) for value in re.findall(pattern, text, re.M))


def sized_data(size: int, char: str = "x") -> dict[str, str]:
    """A data object whose compact UTF-8 JSON is exactly `size` bytes."""
    overhead = len(b'{"p":""}')
    width = len(char.encode())
    count, rest = divmod(size - overhead, width)
    data = {"p": char * count + "x" * rest}
    assert len(orjson.dumps(data)) == size
    return data


def body_of(user: str, **fields: Any) -> bytes:
    body: dict[str, Any] = {"user_id": user, "type": "bad.input", "data": {"k": "v"}}
    body.update(fields)
    return orjson.dumps({k: v for k, v in body.items() if v is not _MISSING})


def nested(depth: int) -> dict[str, Any]:
    """A data object `depth` levels deep (`{}` is 1)."""
    data: dict[str, Any] = {}
    for _ in range(depth - 1):
        data = {"a": data}
    return data


def deep_body(user: str, depth: int) -> bytes:
    """A publish body whose data is `depth` levels deep, built as bytes: orjson would not
    serialize the body of a 254-level data object (255 levels in all)."""
    head = orjson.dumps({"user_id": user, "type": "bad.input"})[:-1]
    return head + b',"data":' + b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1) + b"}"


class _Missing:
    pass


_MISSING: Any = _Missing()

# Bad single-publish bodies: a function of a fresh user id -> (body, expected status).
BAD_PUBLISH_BODIES: dict[str, Callable[[str], tuple[bytes, int]]] = {
    "not JSON": lambda u: (b"hello " + u.encode(), 422),
    "truncated JSON": lambda u: (body_of(u)[:-5], 422),
    "empty body": lambda u: (b"", 422),
    "invalid UTF-8": lambda u: (body_of(u).replace(b'"v"', b'"\xff\xfe"'), 422),
    "trailing garbage": lambda u: (body_of(u) + b" {}", 422),
    "JSON array": lambda u: (b"[" + body_of(u) + b"]", 422),
    "JSON string": lambda u: (orjson.dumps(u), 422),
    "JSON null": lambda u: (b"null", 422),
    "JSON number": lambda u: (b"42", 422),
    "user_id a number": lambda u: (body_of(u, user_id=12345), 422),
    "user_id null": lambda u: (body_of(u, user_id=None), 422),
    "user_id a list": lambda u: (body_of(u, user_id=[u]), 422),
    "type a number": lambda u: (body_of(u, type=7), 422),
    "type null": lambda u: (body_of(u, type=None), 422),
    "type an object": lambda u: (body_of(u, type={"name": "x"}), 422),
    "data a list": lambda u: (body_of(u, data=[1, 2]), 422),
    "data a string": lambda u: (body_of(u, data='{"k": "v"}'), 422),
    "data null": lambda u: (body_of(u, data=None), 422),
    "data a number": lambda u: (body_of(u, data=1), 422),
    "data a boolean": lambda u: (body_of(u, data=True), 422),
    "empty user_id": lambda u: (body_of(u, user_id=""), 422),
    "empty type": lambda u: (body_of(u, type=""), 422),
    "user_id of 256 chars": lambda u: (body_of(u, user_id=(u + "x" * 256)[:256]), 422),
    "type of 256 chars": lambda u: (body_of(u, type="t" * 256), 422),
    "unknown top-level field": lambda u: (body_of(u, priority="high"), 422),
    "idempotency_key in the single body": lambda u: (body_of(u, idempotency_key="k"), 422),
    "missing user_id": lambda u: (body_of(u, user_id=_MISSING), 422),
    "missing type": lambda u: (body_of(u, type=_MISSING), 422),
    "missing data": lambda u: (body_of(u, data=_MISSING), 422),
    "NaN in data": lambda u: (body_of(u).replace(b'"v"', b"NaN"), 422),
    "Infinity in data": lambda u: (body_of(u).replace(b'"v"', b"Infinity"), 422),
    "-Infinity in data": lambda u: (body_of(u).replace(b'"v"', b"-Infinity"), 422),
    "data NaN": lambda u: (body_of(u).replace(b'{"k":"v"}', b"NaN"), 422),
    "data nested 65 levels": lambda u: (deep_body(u, 65), 422),
    "data nested 254 levels": lambda u: (deep_body(u, 254), 422),
    "data nested 900 levels": lambda u: (deep_body(u, 900), 422),
    "integer beyond 64 bits": lambda u: (body_of(u).replace(b'"v"', b"18446744073709551616"), 422),
    "negative integer beyond 64 bits": lambda u: (
        body_of(u).replace(b'"v"', b"-9223372036854775809"),
        422,
    ),
    "integer of 5000 digits": lambda u: (body_of(u).replace(b'"v"', b"9" * 5000), 422),
    "data one byte over the limit": lambda u: (
        body_of(u, data=sized_data(DEFAULT_MAX_PAYLOAD + 1)),
        413,
    ),
    "data far over the limit": lambda u: (body_of(u, data=sized_data(900_000)), 413),
}


@pytest.mark.parametrize("case", list(BAD_PUBLISH_BODIES))
def test_bad_publish_body_is_refused_and_stores_nothing(server: Server, case: str) -> None:
    """A malformed single-publish body gets its precise status and stores nothing."""
    user = new_user()
    body, status = BAD_PUBLISH_BODIES[case](user)
    before = published_total(server)
    assert_error(publish_raw(server, body), status)
    assert inbox(server, user) == []
    assert published_total(server) == before


@pytest.mark.parametrize("depth", [65, 254])
def test_deep_data_with_an_idempotency_key_is_422(server: Server, depth: int) -> None:
    """data nested past 64 levels is 422 with an Idempotency-Key too, single and batch
    (it was a 500: the key's fingerprint nests data one level deeper than orjson allows)."""
    user = new_user()
    before = published_total(server)
    key = uuid.uuid4().hex
    assert_error(publish_raw(server, deep_body(user, depth), **{"Idempotency-Key": key}), 422)
    item = deep_body(user, depth)[:-1] + b',"idempotency_key":"' + key.encode() + b'"}'
    assert_error(batch_raw(server, b'{"notifications":[' + item + b"]}"), 422)
    assert inbox(server, user) == []
    assert published_total(server) == before


def test_data_64_levels_deep_is_stored_and_repeats(server: Server) -> None:
    """data exactly 64 levels deep is 201, and its Idempotency-Key repeat is 200."""
    user = new_user()
    key = uuid.uuid4().hex
    first = publish_raw(server, deep_body(user, 64), **{"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    repeat = publish_raw(server, deep_body(user, 64), **{"Idempotency-Key": key})
    assert repeat.status_code == 200 and repeat.json() == first.json()
    assert first.json()["data"] == nested(64)
    items = [{"user_id": user, "type": "t", "data": nested(64), "idempotency_key": key + "b"}]
    assert batch_raw(server, orjson.dumps({"notifications": items})).status_code == 201


def test_64_bit_integers_are_stored_exactly(server: Server) -> None:
    """The integers at both ends of 64 bits, and long digit runs inside strings, are
    stored exactly (not as floats)."""
    user = new_user()
    data = {
        "max": 18446744073709551615,
        "min": -9223372036854775808,
        "digits": "123456789012345678901234567890",
        "float": 12345678901234567890.5,
    }
    response = publish_raw(server, body_of(user, data=data))
    assert response.status_code == 201, response.text
    assert response.json()["data"] == data
    assert inbox(server, user)[0]["data"] == data


@pytest.mark.parametrize(
    ("length", "status"),
    [(256, 422), (0, 422), (255, 201), (1, 201)],
    ids=["256 chars", "empty", "255 chars", "1 char"],
)
def test_idempotency_key_length_is_1_to_255(server: Server, length: int, status: int) -> None:
    """An Idempotency-Key of 1..255 characters is accepted; empty or 256 is 422."""
    user = new_user()
    key = (uuid.uuid4().hex * 8)[:length]  # fresh: keys are remembered per publisher
    before = published_total(server)
    response = publish_raw(server, body_of(user), **{"Idempotency-Key": key})
    if status == 201:
        assert response.status_code == 201, response.text
        assert inbox(server, user) == [response.json()]
        repeat = publish_raw(server, body_of(user), **{"Idempotency-Key": key})
        assert repeat.status_code == 200 and repeat.json() == response.json()
    else:
        assert_error(response, status)
        assert inbox(server, user) == []
        assert published_total(server) == before


def test_names_of_255_characters_are_accepted(server: Server) -> None:
    """user_id and type of exactly 255 characters (also non-ASCII ones) are stored."""
    for char in ("u", "é", "\U0001f600"):
        user = (new_user() + char * 255)[:255]
        type_ = char * 255
        response = publish_raw(server, body_of(user, type=type_))
        assert response.status_code == 201, response.text
        assert (response.json()["user_id"], response.json()["type"]) == (user, type_)
        assert inbox(server, user) == [response.json()]


def test_data_exactly_at_the_default_limit_is_accepted(server: Server) -> None:
    """data of exactly 65536 bytes (compact UTF-8 JSON) is 201, however it is sent."""
    user = new_user()
    ascii_data = sized_data(DEFAULT_MAX_PAYLOAD)
    unicode_data = sized_data(DEFAULT_MAX_PAYLOAD, "é")
    bodies = [
        orjson.dumps({"user_id": user, "type": "t", "data": ascii_data}),
        # Whitespace in the request is not part of the measured size.
        json.dumps({"user_id": user, "type": "t", "data": ascii_data}, indent=4).encode(),
        # Neither are \\u escapes: "é" is measured as its 2 UTF-8 bytes.
        json.dumps({"user_id": user, "type": "t", "data": unicode_data}).encode(),
        orjson.dumps({"user_id": user, "type": "t", "data": unicode_data}),
    ]
    for body in bodies:
        response = publish_raw(server, body)
        assert response.status_code == 201, response.text[:300]
    stored = inbox(server, user)
    assert [n["data"] for n in reversed(stored)] == [ascii_data, ascii_data] + [unicode_data] * 2


def test_data_one_byte_over_the_limit_counts_utf8_bytes(server: Server) -> None:
    """data of 65537 UTF-8 bytes is 413 even when it has far fewer characters."""
    user = new_user()
    data = sized_data(DEFAULT_MAX_PAYLOAD + 1, "é")
    assert len(data["p"]) < DEFAULT_MAX_PAYLOAD // 2
    assert_error(publish_raw(server, body_of(user, data=data)), 413)
    assert inbox(server, user) == []


def padded(body: bytes, size: int) -> bytes:
    """`body` (a JSON object) padded with whitespace before its closing brace to `size`."""
    assert body.endswith(b"}") and len(body) < size
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_single_body_over_1_mib_is_413(server: Server) -> None:
    """A single-publish body of exactly 1 MiB is accepted; one byte more is 413."""
    user = new_user()
    body = orjson.dumps({"user_id": user, "type": "t", "data": {"small": True}})
    accepted = publish_raw(server, padded(body, MIB))
    assert accepted.status_code == 201, accepted.text
    before = published_total(server)
    over_user = new_user()
    body = orjson.dumps({"user_id": over_user, "type": "t", "data": {"small": True}})
    assert_error(publish_raw(server, padded(body, MIB + 1)), 413)
    assert inbox(server, over_user) == []
    assert published_total(server) == before
    assert len(inbox(server, user)) == 1


def test_chunked_single_body_over_1_mib_is_413(server: Server) -> None:
    """A body without Content-Length (chunked) is held to the same 1 MiB limit."""
    user = new_user()
    body = padded(orjson.dumps({"user_id": user, "type": "t", "data": {}}), MIB + 1)
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    before = published_total(server)
    response = http().post(
        server.url + "/v1/notifications",
        content=iter(chunks),
        headers=publisher_headers(API_KEY, **{"Content-Type": "application/json"}),
    )
    assert_error(response, 413)
    assert inbox(server, user) == []
    assert published_total(server) == before
    small = padded(orjson.dumps({"user_id": user, "type": "t", "data": {}}), MIB)
    response = http().post(
        server.url + "/v1/notifications",
        content=iter([small[: MIB // 2], small[MIB // 2 :]]),
        headers=publisher_headers(API_KEY, **{"Content-Type": "application/json"}),
    )
    assert response.status_code == 201, response.text
    assert "content-length" not in response.request.headers


def test_batch_body_over_16_mib_is_413(server: Server) -> None:
    """A batch body of exactly 16 MiB is accepted; one byte more is 413 with nothing stored."""
    user = new_user()
    items = [{"user_id": user, "type": "t", "data": {"i": i}} for i in range(3)]
    body = orjson.dumps({"notifications": items})
    accepted = batch_raw(server, padded(body, 16 * MIB))
    assert accepted.status_code == 201, accepted.text[:300]
    over_user = new_user()
    items = [{"user_id": over_user, "type": "t", "data": {"i": i}} for i in range(3)]
    before = published_total(server)
    assert_error(
        batch_raw(server, padded(orjson.dumps({"notifications": items}), 16 * MIB + 1)), 413
    )
    assert inbox(server, over_user) == []
    assert published_total(server) == before
    assert len(inbox(server, user)) == 3


def test_batch_body_over_1_mib_of_real_items_is_accepted(server: Server) -> None:
    """The 1 MiB single-body limit does not apply to a batch of large items."""
    user = new_user()
    items = [{"user_id": user, "type": "t", "data": sized_data(60_000)} for _ in range(20)]
    body = orjson.dumps({"notifications": items})
    assert len(body) > MIB
    response = batch_raw(server, body)
    assert response.status_code == 201, response.text[:300]
    assert [n["seq"] for n in response.json()["notifications"]] == list(range(1, 21))


BAD_BATCH_BODIES: dict[str, Callable[[str], bytes]] = {
    "not JSON": lambda u: b"{notifications: []}",
    "JSON array of items": lambda u: b"[" + body_of(u) + b"]",
    "notifications an object": lambda u: b'{"notifications":' + body_of(u) + b"}",
    "notifications a string": lambda u: b'{"notifications":"' + u.encode() + b'"}',
    "notifications null": lambda u: b'{"notifications":null}',
    "missing notifications": lambda u: b"{}",
    "unknown top-level field": lambda u: b'{"notifications":[' + body_of(u) + b'],"atomic":true}',
    "an item a string": lambda u: b'{"notifications":[' + body_of(u) + b',"item"]}',
    "an item a list": lambda u: b'{"notifications":[' + body_of(u) + b",[]]}",
    "NaN in an item": lambda u: (
        b'{"notifications":[' + body_of(u) + b"," + body_of(u).replace(b'"v"', b"NaN") + b"]}"
    ),
    "item idempotency_key a number": lambda u: (
        b'{"notifications":[' + body_of(u, idempotency_key=5) + b"]}"
    ),
}


@pytest.mark.parametrize("case", list(BAD_BATCH_BODIES))
def test_bad_batch_body_is_422_and_stores_nothing(server: Server, case: str) -> None:
    """A malformed batch body is 422 and stores nothing."""
    user = new_user()
    before = published_total(server)
    assert_error(batch_raw(server, BAD_BATCH_BODIES[case](user)), 422)
    assert inbox(server, user) == []
    assert published_total(server) == before


BAD_READ_BODIES: dict[str, Callable[[list[str]], bytes]] = {
    "both up_to_seq and ids": lambda ids: orjson.dumps({"up_to_seq": 2, "ids": ids}),
    "neither up_to_seq nor ids": lambda ids: b"{}",
    "up_to_seq null": lambda ids: b'{"up_to_seq": null}',
    "negative up_to_seq": lambda ids: b'{"up_to_seq": -1}',
    "up_to_seq a string": lambda ids: b'{"up_to_seq": "2"}',
    "up_to_seq a float": lambda ids: b'{"up_to_seq": 1.5}',
    "up_to_seq a boolean": lambda ids: b'{"up_to_seq": true}',
    "ids a string": lambda ids: orjson.dumps({"ids": ids[0]}),
    "ids a number": lambda ids: b'{"ids": 5}',
    "ids an object": lambda ids: orjson.dumps({"ids": {"id": ids[0]}}),
    "ids null": lambda ids: b'{"ids": null}',
    "ids holding a number": lambda ids: orjson.dumps({"ids": [ids[0], 5]}),
    "unknown field": lambda ids: b'{"up_to_seq": 2, "all": true}',
    "not JSON": lambda ids: b"up_to_seq=2",
    "truncated JSON": lambda ids: b'{"up_to_seq": 2',
    "JSON array": lambda ids: b'[{"up_to_seq": 2}]',
    "NaN": lambda ids: b'{"up_to_seq": NaN}',
}


@pytest.mark.parametrize("case", list(BAD_READ_BODIES))
def test_bad_read_body_is_422_and_marks_nothing(server: Server, case: str) -> None:
    """A malformed mark-read body is 422 and leaves every notification unread."""
    user = new_user()
    for _ in range(2):
        assert publish(http(), server, user).status_code == 201
    ids = [n["id"] for n in inbox(server, user)]
    assert_error(read_raw(server, user, BAD_READ_BODIES[case](ids)), 422)
    assert unread(server, user) == 2
    assert all(n["read_at"] is None for n in inbox(server, user))


@pytest.fixture(scope="module")
def small_payload_server() -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="notifier-payload-") as folder:
        server = Server(
            f"sqlite+aiosqlite:///{Path(folder) / 'payload.db'}",
            env_extra={"NOTIFIER_MAX_PAYLOAD_BYTES": "100"},
        ).start()
        try:
            yield server
        finally:
            server.stop()


def test_configured_max_payload_bytes_is_enforced(small_payload_server: Server) -> None:
    """With NOTIFIER_MAX_PAYLOAD_BYTES=100, 100 bytes of data pass and 101 are 413."""
    server = small_payload_server
    user = new_user()
    at_limit = publish_raw(server, body_of(user, data=sized_data(100)))
    assert at_limit.status_code == 201, at_limit.text
    assert at_limit.json()["data"] == sized_data(100)
    assert_error(publish_raw(server, body_of(user, data=sized_data(101))), 413)
    assert_error(publish_raw(server, body_of(user, data=sized_data(101, "é"))), 413)
    items = [
        {"user_id": user, "type": "t", "data": sized_data(100)},
        {"user_id": user, "type": "t", "data": sized_data(101)},
    ]
    assert_error(batch_raw(server, orjson.dumps({"notifications": items})), 413)
    assert inbox(server, user) == [at_limit.json()]
    ok = batch_raw(server, orjson.dumps({"notifications": items[:1]}))
    assert ok.status_code == 201, ok.text
    assert [n["seq"] for n in ok.json()["notifications"]] == [2]


def test_server_still_serves_after_bad_input(server: Server) -> None:
    """After all the bad input, /healthz answers and a normal publish works."""
    assert http().get(server.url + "/healthz").status_code == 200
    user = new_user()
    response = publish(http(), server, user, "after.bad.input", {"ok": True})
    assert response.status_code == 201, response.text
    assert response.json()["seq"] == 1
    assert inbox(server, user) == [response.json()]
