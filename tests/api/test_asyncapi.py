"""docs/asyncapi.yaml: served at /asyncapi.yaml from a checkout and from a wheel, its
Notification schema the OpenAPI document's, its examples valid, and the frames the code
really sends and accepts described by it. (Its validity as AsyncAPI 3 is checked by the
AsyncAPI parser itself: `make docs-check`.)"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from notifier.api import responses, ws
from notifier.connection import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_REVOKED,
    CLOSE_TOO_MANY_STREAMS,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
)
from notifier.wire import frames, sse
from notifier.wire.notification import Notification
from tests.support import ROOT

DOCUMENT_PATH = ROOT / "docs" / "asyncapi.yaml"
DOCUMENT: dict[str, Any] = yaml.safe_load(DOCUMENT_PATH.read_text())
MESSAGES: dict[str, Any] = DOCUMENT["components"]["messages"]


def validator(message: str) -> Draft7Validator:
    """Validates a frame against a message's payload; `#/components/...` refs resolve in
    the whole document."""
    resource = Resource.from_contents(DOCUMENT, default_specification=DRAFT7)
    registry: Registry[Any] = Registry().with_resource("urn:asyncapi", resource)
    pointer = f"urn:asyncapi#/components/messages/{message}/payload"
    return Draft7Validator({"$ref": pointer}, registry=registry)


def errors(message: str, frame: object) -> list[str]:
    return [error.message for error in validator(message).iter_errors(frame)]


async def test_the_document_is_served_as_yaml(client: httpx.AsyncClient) -> None:
    """GET /asyncapi.yaml answers the file itself, as YAML."""
    answer = await client.get("/asyncapi.yaml")
    assert answer.status_code == 200
    assert answer.headers["content-type"].split(";")[0] in ("application/yaml", "text/yaml")
    assert answer.content == DOCUMENT_PATH.read_bytes()


async def test_the_notification_schema_is_the_openapi_one(client: httpx.AsyncClient) -> None:
    """The Notification schema is the same in both documents (written once in
    notifier/api/responses.py, copied into the YAML)."""
    openapi = (await client.get("/openapi.json")).json()
    assert DOCUMENT["components"]["schemas"]["Notification"] == responses.NOTIFICATION_SCHEMA
    assert openapi["components"]["schemas"]["Notification"] == responses.NOTIFICATION_SCHEMA


def sse_only(message: dict[str, Any]) -> bool:
    return any(tag["name"] == "sse-events" for tag in message.get("tags", []))


def test_messages_are_named_after_frame_types() -> None:
    """Each frame message's `name` is the `type` its payload requires (SSE events name
    their event instead)."""
    for key, message in MESSAGES.items():
        if sse_only(message):
            continue
        payload = message["payload"]
        variants = payload.get("oneOf", [payload])
        assert {v["properties"]["type"]["const"] for v in variants} == {message["name"]}, key


@pytest.mark.parametrize("message", sorted(MESSAGES))
def test_every_example_fits_its_payload(message: str) -> None:
    """Every message example validates against its payload schema."""
    examples = MESSAGES[message]["examples"]
    assert examples
    for example in examples:
        assert errors(message, example["payload"]) == []


def test_the_frames_the_server_sends_fit_the_document() -> None:
    """Frames built by the code (the same functions the server sends) validate."""
    notification = Notification(
        id="0b6c1f5e-6f2a-4d8e-9a51-3f0c2b7d9e14",
        user_id="alice",
        seq=1,
        type="t",
        data_json='{"a":[1,2]}',
        created_at=datetime(2026, 11, 24, 5, 0, tzinfo=UTC),
    )
    sent = {
        "notification": [orjson.loads(notification.frame)],
        "read": [
            orjson.loads(frames.read_frame_up_to(17)),
            orjson.loads(frames.read_frame_ids([notification.id])),
        ],
        "archived": [orjson.loads(f) for f in frames.archived_frames([notification.id] * 250)],
        "replayed": [orjson.loads(frames.replayed_frame(17, False))],
        "pong": [orjson.loads(frames.PONG)],
        "error": [orjson.loads(frames.error_frame("unknown frame type 'x'"))],
    }
    for message, built in sent.items():
        for frame in built:
            assert errors(message, frame) == [], (message, frame)


def test_the_sse_events_the_server_sends_fit_the_document() -> None:
    """Each event `wire.sse` writes is named as its message and its data validates."""
    notification = Notification(
        id="0b6c1f5e-6f2a-4d8e-9a51-3f0c2b7d9e14",
        user_id="alice",
        seq=3,
        type="t",
        data_json="{}",
        created_at=datetime(2026, 11, 24, 5, 0, tzinfo=UTC),
    )
    channel = DOCUMENT["channels"]["sseStream"]["messages"]
    built = [
        sse.event(notification.frame, 3),
        sse.event(frames.replayed_frame(3, True)),
        sse.event(frames.read_frame_up_to(3)),
        sse.close_event(4401, "token expired"),
    ]
    for raw in built:
        lines = dict(line.split(": ", 1) for line in raw.decode().strip().split("\n"))
        message = channel[lines["event"]]["$ref"].rsplit("/", 1)[1]
        assert MESSAGES[message]["name"] == lines["event"]
        assert errors(message, orjson.loads(lines["data"])) == [], raw


@pytest.mark.parametrize(
    ("message", "parsed"),
    [("ping", frames.Ping), ("markRead", frames.ReadUpTo), ("auth", frames.Auth)],
)
def test_the_client_frames_in_the_document_are_accepted(message: str, parsed: type) -> None:
    """Each client message's examples parse as that frame in the server's parser."""
    for example in MESSAGES[message]["examples"]:
        assert isinstance(
            frames.parse_client_frame(orjson.dumps(example["payload"]).decode()), parsed
        )


def test_the_close_codes_the_code_uses_are_documented() -> None:
    """Every close code the code sends, and uvicorn's (1009, 1011, 1012), is listed."""
    used = {
        ws.CLOSE_BAD_REQUEST,
        CLOSE_UNAUTHORIZED,
        CLOSE_TRY_AGAIN_LATER,
        CLOSE_INTERNAL_ERROR,
        CLOSE_REVOKED,
        CLOSE_TOO_MANY_STREAMS,
    }
    listed = {int(code) for code in DOCUMENT["channels"]["stream"]["x-close-codes"]}
    assert listed == used | {1009, 1011, 1012}
    description = DOCUMENT["channels"]["stream"]["description"]
    assert all(f"| {code} |" in description for code in listed)


def test_a_wheel_ships_the_document_where_the_route_finds_it(tmp_path: Path) -> None:
    """The wheel holds notifier/_docs/asyncapi.yaml, and the installed package finds it
    there (not in a checkout)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("notifier-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("notifier/_docs/asyncapi.yaml") == DOCUMENT_PATH.read_bytes()
        archive.extractall(tmp_path / "site")
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from notifier.api.routes.ops import asyncapi_path; print(asyncapi_path())",
        ],
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    assert found == str(tmp_path / "site" / "notifier" / "_docs" / "asyncapi.yaml")
