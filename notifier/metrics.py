"""Prometheus metrics, served at /metrics."""

from __future__ import annotations

import asyncio
import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

OPEN_SOCKETS = Gauge(
    "notifier_open_sockets",
    "WebSocket connections currently open",
    multiprocess_mode="livesum",
)
OPEN_SSE_STREAMS = Gauge(
    "notifier_open_sse_streams",
    "Server-Sent Events streams (GET /v1/sse) currently open",
    multiprocess_mode="livesum",
)
PUBLISHED = Counter("notifier_notifications_published_total", "Notifications stored", ["publisher"])
IDEMPOTENT_REPEATS = Counter(
    "notifier_idempotent_repeats_total", "Publishes answered with an original", ["publisher"]
)
DELIVERED = Counter(
    "notifier_notifications_delivered_total", "Live frames sent to sockets and SSE streams"
)
REPLAYED = Counter(
    "notifier_notifications_replayed_total", "Frames sent from the database (replay, gap fill)"
)
GAP_FILLS = Counter("notifier_gap_fills_total", "Database reads made to fill a gap in seq")
LATENCY = Histogram(
    "notifier_publish_to_send_seconds",
    "From the notification's creation to its frame being written to a socket",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PUBLISH_RATE_LIMITED = Counter(
    "notifier_publish_rate_limited_total",
    "Publish requests refused with 429 for going over NOTIFIER_PUBLISH_RATE",
    ["publisher"],
)
AUTH_REFUSED = Counter("notifier_auth_refused_total", "Refused credentials", ["kind"])
SLOW_CLOSES = Counter(
    "notifier_slow_client_closes_total", "Streams closed with 1013 for not reading"
)
ARCHIVED = Counter(
    "notifier_notifications_archived_total", "Notifications that went from not archived to archived"
)
PRESENCE_USERS = Gauge(
    "notifier_presence_users",
    "Users holding at least one open stream (WebSocket or SSE) on this instance",
    multiprocess_mode="livesum",
)
REVOCATIONS = Counter("notifier_revocations_total", "Users' tokens revoked through this instance")
REVOKED_CLOSES = Counter(
    "notifier_revoked_stream_closes_total",
    "Streams closed with 4403 because their tokens were revoked",
)
REVOKED_TOKENS = Counter(
    "notifier_revoked_tokens_refused_total", "Tokens refused because their user revoked them"
)
STREAM_CAP_REFUSED = Counter(
    "notifier_stream_cap_refusals_total",
    "Streams refused because their user already held NOTIFIER_MAX_SOCKETS_PER_USER here",
    ["transport"],
)
STREAMS_SHED = Counter(
    "notifier_streams_shed_total",
    "Streams refused at once because the process was busy opening others (reason "
    "opening, NOTIFIER_MAX_OPENING_STREAMS), held all it may (reason streams, "
    "NOTIFIER_MAX_STREAMS), or the WebSocket handshake or SSE request waited in the "
    "listen backlog past 5 s (reason stale) or its client had already left (reason gone)",
    ["transport", "reason"],
)
LISTENING_CLOSED = Gauge(
    "notifier_listening_closed",
    "Workers of serve --workers N not accepting connections because they hold all the "
    "streams they may (NOTIFIER_MAX_STREAMS); their siblings accept in their place",
    multiprocess_mode="livesum",
)
BUS_UP = Gauge(
    "notifier_bus_up", "1 while the cross-instance bus is connected", multiprocess_mode="livemin"
)
DATABASE_UP = Gauge(
    "notifier_database_up",
    "1 while the database answered the last check",
    multiprocess_mode="livemin",
)

TASKS = Gauge(
    "notifier_asyncio_tasks",
    "asyncio tasks alive in this process's event loop (counted each reconcile round)",
    multiprocess_mode="livesum",
)


def count_tasks() -> None:
    """Set `TASKS`. A task left behind by a stream that ended shows as a count that grows
    with the connects made rather than following the streams open. Counting walks every
    task (about 4 ms at 10,000 streams), so the reconcile loop does it once a round, not
    each request or scrape."""
    TASKS.set(len(asyncio.all_tasks()))


def exposition() -> bytes:
    """This process's metrics, or every worker's when running with `--workers N`
    (prometheus_client's multiprocess mode, switched on by PROMETHEUS_MULTIPROC_DIR)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))
    return bytes(generate_latest())
