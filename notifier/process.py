"""The processes `serve` runs, and what it does to each: its logging, its garbage
collector policy (`gcpolicy`) and its streams' close on SIGTERM (`drain_on_stop`), which
belong to a served process, never to an app built in process by a test or an embedding
program.

With `--workers N`, uvicorn's supervisor spawns N processes and pickles its `Config` to
each, app included: the app is `worker_app` bound to the resolved `Settings`, so the
credentials travel inside that pickle (over a pipe) and never through the environment,
where any process of the same user could read them (`/proc/<pid>/environ`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server
from uvicorn.config import STARTUP_FAILURE

from notifier import gcpolicy, logs, supervisor
from notifier.api import sse
from notifier.app import create_app
from notifier.config import Settings
from notifier.httpguard import GuardedHttpToolsProtocol
from notifier.service import Service
from notifier.startup import StartupError

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

WORKER_HEALTHCHECK_SECONDS = 30
"""How long uvicorn's supervisor waits for a worker's answer before it kills the worker
as hung. Its default, 5 s, is shorter than a replacement worker takes to import the app
on a busy machine (a worker answers only once it has): with 100,000 sockets on 2 cores,
after one worker was killed, the supervisor killed 104 replacements in a row, one every
5.6 s, and a surviving worker too, while 33,627 users waited (`python -m bench.scale`).
A worker that is truly hung is still replaced, 30 s later."""


def worker_app(settings: Settings, *, access_log: bool = True) -> FastAPI:
    """The app of one served process, with that process's policies: uvicorn calls it
    (`factory=True`) in the process that will serve it."""
    logs.configure(settings.log_level, access_log=access_log)
    GuardedHttpToolsProtocol.configure(
        head_timeout=settings.head_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        stream_paths=(sse.PATH,),
    )

    @contextlib.asynccontextmanager
    async def served() -> AsyncIterator[None]:
        async with gcpolicy.applied():
            with drain_on_stop(app.state.service):
                yield

    app = create_app(settings, on_startup=served)
    # With siblings, a full worker stops accepting (`notifier.listening`); alone, the
    # listening servers are never attached and this does nothing.
    app.state.service.admission.on_full = supervisor.LISTENING.want_closed
    return app


@contextlib.contextmanager
def drain_on_stop(service: Service) -> Iterator[None]:
    """While serving, SIGTERM and SIGINT first close every stream with 1012
    (`Service.drain`), then go on to uvicorn's own handling.

    uvicorn closes WebSockets with 1012 itself, but an HTTP response still streaming
    (SSE) only learns of the shutdown when it is cancelled at the end of the graceful
    period, with no `close` event. The handler uvicorn installed is chained, not
    replaced, and put back on the way out.
    """
    loop = asyncio.get_running_loop()
    previous: dict[signal.Signals, Any] = {}

    def stop(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(service.drain)
        chained = previous.get(signal.Signals(signum))
        if callable(chained):
            chained(signum, frame)
        else:  # no Python handler before ours: the signal's own effect
            signal.signal(signum, chained if chained is not None else signal.SIG_DFL)
            signal.raise_signal(signum)

    with contextlib.suppress(ValueError):  # signals are the main thread's only
        for signum in _STOP_SIGNALS:
            previous[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def metrics_listener(settings: Settings, host: str, folder: str | None) -> Iterator[None]:
    """`GET /metrics` on `NOTIFIER_METRICS_PORT` (when set) for as long as the block
    runs: prometheus_client's own small HTTP server, in a thread of this process (the
    supervisor's, with `--workers N`, where it reads every worker's metrics from
    `folder`). A listener apart from the service port, so the metrics, which name
    publishers, can stay on a private network."""
    if settings.metrics_port is None:
        yield
        return
    registry: Any = REGISTRY
    if folder is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    try:
        server, thread = start_http_server(settings.metrics_port, addr=host, registry=registry)
    except OSError as error:
        raise StartupError(
            f"cannot listen on NOTIFIER_METRICS_PORT {settings.metrics_port}: {error.strerror}"
        ) from None
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def server_config(settings: Settings, *, workers: int, **options: Any) -> uvicorn.Config:
    """uvicorn's `Config` for `serve` (`options` are its own), with notifier's defaults."""
    factory = functools.partial(worker_app, settings, access_log=options.get("access_log", True))
    options.setdefault("timeout_worker_healthcheck", WORKER_HEALTHCHECK_SECONDS)
    return uvicorn.Config(factory, factory=True, workers=workers, **options)


def run(settings: Settings, *, workers: int, **options: Any) -> int:
    """Serve until stopped, as `uvicorn.run` does; the exit status.

    `options` are `uvicorn.Config`'s. One process serves in this one; more are spawned
    by the supervisor (`notifier.supervisor`, uvicorn's), which restarts a worker that
    dies and stops them all on SIGINT or SIGTERM.
    """
    config = server_config(settings, workers=workers, **options)
    host = options.get("host", "127.0.0.1")
    if workers == 1:
        server = uvicorn.Server(config)
        with metrics_listener(settings, host, None):
            server.run()  # Ctrl-C ends in KeyboardInterrupt: `main` exits with 130
        return 0 if server.started else STARTUP_FAILURE
    # prometheus_client reads this at import, in each worker: their metrics meet there.
    with tempfile.TemporaryDirectory(prefix="notifier-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        workers_supervisor = supervisor.Supervisor(config, sockets=[config.bind_socket()])
        with contextlib.suppress(KeyboardInterrupt), metrics_listener(settings, host, folder):
            workers_supervisor.run()  # the supervisor handles SIGINT
    failed = any(p.exitcode == STARTUP_FAILURE for p in workers_supervisor.processes)
    return STARTUP_FAILURE if failed else 0
