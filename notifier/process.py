"""The processes `serve` runs, and what it does to each: its logging and its garbage
collector policy (`gcpolicy`), which belong to a served process, never to an app built
in process by a test or an embedding program.

With `--workers N`, uvicorn's supervisor spawns N processes and pickles its `Config` to
each, app included: the app is `worker_app` bound to the resolved `Settings`, so the
credentials travel inside that pickle (over a pipe) and never through the environment,
where any process of the same user could read them (`/proc/<pid>/environ`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from notifier import gcpolicy, logs
from notifier.app import create_app
from notifier.config import Settings
from notifier.httpguard import GuardedHttpToolsProtocol
from notifier.startup import StartupError


def worker_app(settings: Settings, *, access_log: bool = True) -> FastAPI:
    """The app of one served process, with that process's policies: uvicorn calls it
    (`factory=True`) in the process that will serve it."""
    logs.configure(settings.log_level, access_log=access_log)
    GuardedHttpToolsProtocol.configure(
        head_timeout=settings.head_timeout_seconds, body_timeout=settings.body_timeout_seconds
    )
    return create_app(settings, on_startup=gcpolicy.applied)


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


def run(settings: Settings, *, workers: int, **options: Any) -> int:
    """Serve until stopped, as `uvicorn.run` does; the exit status.

    `options` are `uvicorn.Config`'s. One process serves in this one; more are spawned
    by uvicorn's supervisor, which restarts a worker that dies and stops them all on
    SIGINT or SIGTERM.
    """
    factory = functools.partial(worker_app, settings, access_log=options.get("access_log", True))
    config = uvicorn.Config(factory, factory=True, workers=workers, **options)
    server = uvicorn.Server(config)
    host = options.get("host", "127.0.0.1")
    if workers == 1:
        with metrics_listener(settings, host, None):
            server.run()  # Ctrl-C ends in KeyboardInterrupt: `main` exits with 130
        return 0 if server.started else STARTUP_FAILURE
    # prometheus_client reads this at import, in each worker: their metrics meet there.
    with tempfile.TemporaryDirectory(prefix="notifier-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        sockets = [config.bind_socket()]
        # Older uvicorn releases take the function each worker runs; newer ones build it.
        if "target" in inspect.signature(Multiprocess).parameters:
            supervisor = Multiprocess(config, target=server.run, sockets=sockets)  # type: ignore[call-arg]
        else:
            supervisor = Multiprocess(config, sockets=sockets)
        with contextlib.suppress(KeyboardInterrupt), metrics_listener(settings, host, folder):
            supervisor.run()  # the supervisor handles SIGINT
    failed = any(getattr(p, "exitcode", None) == STARTUP_FAILURE for p in supervisor.processes)
    return STARTUP_FAILURE if failed else 0
