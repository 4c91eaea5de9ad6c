"""Health, readiness and metrics, for load balancers and Prometheus; the AsyncAPI
document of the WebSocket stream, for client authors."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from notifier import metrics
from notifier.api import responses as doc
from notifier.api.deps import ServiceDep

router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])
"""`GET /metrics` alone: the app leaves it out with NOTIFIER_METRICS_ON_SERVICE_PORT=false."""

_READY = {"status": "ready", "database": "up", "bus": "up", "bus_kind": "postgres"}
_METRICS_EXAMPLE = (
    "# HELP notifier_open_sockets WebSocket connections currently open\n"
    "# TYPE notifier_open_sockets gauge\n"
    "notifier_open_sockets 1204.0\n"
)
_YAML = "application/yaml"


@router.get(
    "/healthz",
    response_model=None,
    responses={200: doc.success("The process runs.", doc.Health, {"status": "ok"})},
)
async def healthz() -> dict[str, str]:
    """The process runs."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=None,
    responses={
        200: doc.success(
            "The database answers: route traffic here. A bus outage alone keeps the "
            "instance in rotation (`bus: down`).",
            doc.Readiness,
            _READY,
        ),
        503: {
            "description": "The database does not answer (within 2 s): take the instance "
            "out of rotation.",
            "model": doc.Readiness,
            "content": {
                "application/json": {
                    "example": {
                        "status": "unavailable",
                        "database": "down",
                        "bus": "down",
                        "bus_kind": "postgres",
                        "detail": "database unavailable",
                    }
                }
            },
        },
    },
)
async def readyz(service: ServiceDep) -> JSONResponse:
    """Ready while the database answers. A bus outage is reported but keeps the instance
    in rotation: publishing still commits and sockets catch up from the database."""
    try:
        await asyncio.wait_for(service.store.ping(), timeout=2)
        database = "up"
    except Exception:
        database = "down"
    bus = "up" if service.bus.healthy else "down"
    metrics.DATABASE_UP.set(database == "up")
    metrics.BUS_UP.set(bus == "up")
    body: dict[str, object] = {
        "status": "ready" if database == "up" else "unavailable",
        "database": database,
        "bus": bus,
        "bus_kind": service.bus.name,
    }
    if database != "up":
        body["detail"] = "database unavailable"
    return JSONResponse(body, status_code=200 if database == "up" else 503)


@metrics_router.get(
    "/metrics",
    response_model=None,
    responses={
        200: {
            "description": "Prometheus text format.",
            "content": {
                CONTENT_TYPE_LATEST: {"schema": {"type": "string"}, "example": _METRICS_EXAMPLE}
            },
        }
    },
)
async def metrics_endpoint(service: ServiceDep) -> Response:
    metrics.BUS_UP.set(service.bus.healthy)
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def asyncapi_path() -> Path | None:
    """`docs/asyncapi.yaml` in a checkout (editable install), or its copy packed inside
    the wheel (pyproject.toml force-includes it)."""
    package = Path(__file__).resolve().parents[2]
    for candidate in (package / "_docs" / "asyncapi.yaml", package.parent / "docs/asyncapi.yaml"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _asyncapi() -> bytes | None:
    path = asyncapi_path()
    return path.read_bytes() if path is not None else None


@router.get(
    "/asyncapi.yaml",
    response_model=None,
    responses={
        200: {
            "description": "The AsyncAPI 3 document of the WebSocket stream `/v1/ws`: its "
            "handshake, every frame each way, and the close codes; and of the same stream "
            "as Server-Sent Events, `/v1/sse`.",
            "content": {
                _YAML: {
                    # A YAML document whose top level is a mapping (readers parse it).
                    "schema": {"type": "object", "required": ["asyncapi"]},
                    "example": {"asyncapi": "3.0.0", "info": {"title": "notifier"}},
                }
            },
        },
        404: doc.error(
            "The document is missing from this installation (a packaging fault).",
            missing="asyncapi.yaml is missing from this installation",
        ),
    },
)
async def asyncapi() -> Response:
    """Read once: the document is part of the installation and never changes under it."""
    body = _asyncapi()
    if body is None:
        raise HTTPException(404, detail="asyncapi.yaml is missing from this installation")
    return Response(body, media_type=_YAML)
