"""The browser client, served by the service itself: `GET /v1/client.js` (an ES module a
page imports with no bundler) and `/v1/client.d.ts` (its types).

The files are built from `clients/js/` and committed in `notifier/_static/`, so they ship
inside the Python package (`make client-check` fails when they are stale). They are
read once: they are part of the installation and never change under it.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response

from notifier.api import responses as doc

router = APIRouter(tags=["client"])

STATIC = Path(__file__).resolve().parents[2] / "_static"
JAVASCRIPT = "text/javascript; charset=utf-8"
TYPESCRIPT = "application/typescript; charset=utf-8"
# Revalidated every 10 minutes: a page picks up a new release soon after an upgrade, and
# a revalidation costs a 304 with no body.
CACHE_CONTROL = "public, max-age=600"


@cache
def asset(name: str) -> tuple[bytes, str] | None:
    """The file's bytes and its ETag, or None when the installation lacks it."""
    path = STATIC / name
    if not path.is_file():
        return None
    body = path.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _serve(request: Request, name: str, media_type: str) -> Response:
    found = asset(name)
    if found is None:
        raise HTTPException(404, detail=f"{name} is missing from this installation")
    body, etag = found
    headers = {
        "ETag": etag,
        "Cache-Control": CACHE_CONTROL,
        # A module script from another origin is fetched in CORS mode: any page may
        # import the client (it holds no secret; the token is the page's own).
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _responses(what: str, media_type: str, example: str) -> doc.Responses:
    return {
        200: {
            "description": f"{what}. With `ETag` and `Cache-Control: {CACHE_CONTROL}`.",
            "content": {media_type: {"schema": {"type": "string"}, "example": example}},
        },
        304: {
            "description": "Not modified: `If-None-Match` names the current ETag. No body.",
            "content": {media_type: {"schema": {"type": "string", "maxLength": 0}, "example": ""}},
        },
        404: doc.error(
            "The file is missing from this installation (a packaging fault).",
            missing="client.js is missing from this installation",
        ),
    }


@router.get(
    "/v1/client.js",
    response_model=None,
    responses=_responses(
        "The browser client, one ES module with no dependencies: "
        '`import { NotifierClient } from "https://notifier.example/v1/client.js"`',
        JAVASCRIPT,
        "class NotifierClient extends Emitter { ... }",
    ),
)
async def client_js(request: Request) -> Response:
    return _serve(request, "client.js", JAVASCRIPT)


@router.get(
    "/v1/client.d.ts",
    response_model=None,
    responses=_responses(
        "The browser client's TypeScript declarations.",
        TYPESCRIPT,
        "export declare class NotifierClient { ... }",
    ),
)
async def client_types(request: Request) -> Response:
    return _serve(request, "client.d.ts", TYPESCRIPT)
