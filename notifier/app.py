"""The ASGI application: wiring of settings, store, hub, bus and routes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

import asyncpg
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

import notifier
from notifier import db
from notifier.api import lean, sse, stack, ws
from notifier.api.accesslog import ErrorsAndSlow
from notifier.api.body import BodyLimit
from notifier.api.cors import UserRoutesCors
from notifier.api.routes import client, demo, inbox, ops, publish, topics, users
from notifier.auth import ApiKeys, TokenVerifier
from notifier.bus import create_bus
from notifier.config import Settings
from notifier.hub import Hub
from notifier.keys import JwksFile, JwksUrl, KeySource, StaticKey
from notifier.service import Service
from notifier.store import create_store, sqlpublish

log = logging.getLogger("notifier.app")


class App(FastAPI):
    """FastAPI for HTTP, but WebSocket scopes go straight to `api.ws.serve`, and the SSE
    stream to `api.sse.serve` (their docstrings say why: memory per stream); the
    middleware stack is `api.stack`'s."""

    access_log_slow_seconds: float | None = None
    """Set: failed and slow requests are logged (`api.accesslog`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await ws.serve(self.state.service, scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == sse.PATH:
            await sse.serve(self.state.service, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        app = stack.build(
            self.router,
            self.router.routes,
            self.user_middleware,
            self.exception_handlers,
            self.debug,
        )
        if self.access_log_slow_seconds is not None:
            # Outside ServerErrorMiddleware, so that it sees the 500 that one sends.
            app = ErrorsAndSlow(app, self.access_log_slow_seconds)
        return app


def token_keys(settings: Settings) -> KeySource:
    """The configured source of user tokens' keys (ValueError if there is none or it is
    unusable, as a key set file that does not parse)."""
    algorithms = settings.effective_algorithms
    if settings.jwks_file:
        return JwksFile(settings.jwks_file, algorithms)
    if settings.jwks_url:
        return JwksUrl(settings.jwks_url, algorithms, settings.jwks_refresh_seconds)
    key = settings.jwt_public_key or settings.jwt_secret
    if key is None:
        raise ValueError("a JWT secret, public key or key set is required")
    return StaticKey(key, algorithms)


def build_service(settings: Settings) -> Service:
    keys = token_keys(settings)
    engine = db.create_engine(
        settings.database_url, lock_timeout_ms=settings.publish_lock_timeout_ms
    )
    origin = uuid.uuid4().hex
    return Service(
        settings=settings,
        store=create_store(engine),
        hub=Hub(),
        bus=create_bus(
            settings.effective_bus,
            engine=engine,
            redis_url=settings.redis_url,
            origin=origin,
        ),
        verifier=TokenVerifier(
            keys=keys,
            algorithms=settings.effective_algorithms,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_seconds,
        ),
        api_keys=ApiKeys(settings.api_keys),
        instance_id=origin,
    )


def create_app(
    settings: Settings,
    *,
    on_startup: Callable[[], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The service as an ASGI app, with no effect on the process around it.

    `on_startup` is entered once start-up is done and left before shutdown: `serve`
    passes its process-wide policies there (`notifier/process.py`), so an app built in
    process (tests) leaves the garbage collector and logging as it found them.
    """
    service = build_service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if db.is_sqlite(service.store.engine):
            await db.upgrade(service.store.engine)
        else:  # what notifier_publish() cannot read from this process's environment
            await sqlpublish.record_settings(service.store.engine, settings.max_payload_bytes)
        await service.start()
        try:
            async with on_startup() if on_startup is not None else nullcontext():
                yield
        finally:
            await service.stop()
            await service.store.engine.dispose()

    app = App(
        title="notifier",
        version=notifier.__version__,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        # Interactive pages (they load scripts from a CDN) only in development mode or
        # when asked for; /openapi.json, which clients generate code from, always.
        docs_url="/docs" if settings.interactive_docs else None,
        redoc_url="/redoc" if settings.interactive_docs else None,
        # notifier exports Prometheus metrics and configures no OpenTelemetry provider;
        # FastAPI would otherwise look for one on every request (~7 µs of CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = service
    if settings.access_log == "errors":
        app.access_log_slow_seconds = settings.access_log_slow_ms / 1000
    app.add_middleware(BodyLimit, routes=app.router.routes, timeout=settings.body_timeout_seconds)
    # Outermost: a preflight is answered before any other middleware looks at it.
    app.add_middleware(UserRoutesCors, allowed_origins=settings.allowed_origins)
    lean.include(app, publish.router)
    app.include_router(inbox.router)
    app.include_router(topics.router)
    app.include_router(users.router)
    app.include_router(ops.router)
    # Off the service port (404, and not in the OpenAPI document) when it is served on
    # NOTIFIER_METRICS_PORT only (process.py).
    if settings.metrics_on_service_port:
        app.include_router(ops.metrics_router)
    app.include_router(client.router)
    app.include_router(demo.router)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(OSError)
    async def database_unavailable(_request: Request, error: Exception) -> JSONResponse:
        log.warning("database unavailable", extra={"error": repr(error)[:500]})
        return JSONResponse(
            {"detail": "database unavailable; retry (with the same Idempotency-Key)"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(DBAPIError)
    async def database_error(_request: Request, error: Exception) -> JSONResponse:
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return await database_unavailable(_request, error)
        log.error("database error", exc_info=error)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.exception_handler(ClientDisconnect)
    async def client_left(_request: Request, _error: Exception) -> Response:
        """The client left (or was cut off at a time limit) while its body was read:
        nobody is left to answer, and nothing is worth a traceback."""
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, error: Exception) -> JSONResponse:
        if _database_unavailable(error):  # a driver error SQLAlchemy did not wrap
            return await database_unavailable(_request, error)
        log.error("unhandled error", exc_info=error)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    return app


_UNAVAILABLE = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # 57P01 shutdown, 57P03 cannot connect now
)


def _database_unavailable(error: BaseException) -> bool:
    """Whether `error`, or what caused it, says the database cannot be reached now (a
    restart refusing connections: "the database system is shutting down")."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, _UNAVAILABLE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
