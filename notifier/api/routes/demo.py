"""The inbox demo page, `/demo`, served in development mode or with `NOTIFIER_DEMO=1`,
and in development mode only, `/demo/token`: a token for any user, signed with the
generated development secret, so that `/demo?user=NAME` works with no other setup.

The page uses nothing but the served client module (`/v1/client.js`). Neither route is
part of the API (they are left out of /openapi.json); with the demo off both answer 404.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import HTMLResponse

from notifier.api.deps import ServiceDep
from notifier.api.routes.client import STATIC
from notifier.auth import mint_token

router = APIRouter(include_in_schema=False)


@cache
def _page() -> bytes:
    return (STATIC / "demo.html").read_bytes()


@router.get("/demo")
async def demo(service: ServiceDep) -> Response:
    settings = service.settings
    if not (settings.development or settings.demo):
        raise HTTPException(404, detail="Not Found")
    return HTMLResponse(_page(), headers={"Cache-Control": "no-store"})


@router.get("/demo/token")
async def demo_token(
    service: ServiceDep,
    user: Annotated[str, Query(min_length=1, max_length=255)],
    ttl: Annotated[int, Query(ge=1, le=86400)] = 3600,
) -> Response:
    """Development mode only: the secret was generated on this machine, for this
    machine's loopback host, so minting a token for anyone gives nothing away."""
    settings = service.settings
    if not settings.development or settings.jwt_secret is None:
        raise HTTPException(404, detail="Not Found")
    token = mint_token(settings.jwt_secret, user, ttl_seconds=ttl)
    return Response(
        f'{{"token":"{token}"}}',
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
