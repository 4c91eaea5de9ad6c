"""Health, readiness and metrics, for load balancers and Prometheus."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from notifier import metrics
from notifier.api.deps import ServiceDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process runs."""
    return {"status": "ok"}


@router.get("/readyz")
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


@router.get("/metrics")
async def metrics_endpoint(service: ServiceDep) -> Response:
    metrics.BUS_UP.set(service.bus.healthy)
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
