"""NOTIFIER_METRICS_PORT: Prometheus metrics on a listener of their own, so the service
port can drop them (they name publishers)."""

from __future__ import annotations

import httpx

from tests.e2e.ws_support import own_server
from tests.support import Server, free_port, new_user, publish


async def test_metrics_on_their_own_port(sqlite_url: str) -> None:
    """With a metrics port and the service port's route off: the service port answers
    404, the metrics port the Prometheus text with the publish just made."""
    port = free_port()
    env = {"NOTIFIER_METRICS_PORT": str(port), "NOTIFIER_METRICS_ON_SERVICE_PORT": "false"}
    async with own_server(sqlite_url, **env) as server:
        assert publish(None, server, new_user()).status_code == 201
        assert httpx.get(server.url + "/metrics").status_code == 404
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert 'notifier_notifications_published_total{publisher="main"}' in response.text


def test_metrics_port_with_workers_sums_every_worker(pg_database: str) -> None:
    """With --workers 2 the supervisor serves the metrics port, from every worker: the
    publishes made through either worker are counted there."""
    port = free_port()
    env = {"NOTIFIER_METRICS_PORT": str(port), "NOTIFIER_METRICS_ON_SERVICE_PORT": "false"}
    server = Server(pg_database, env_extra=env, args=["--workers", "2"]).start()
    try:
        with httpx.Client(timeout=10) as client:  # new connections: both workers answer
            for _ in range(10):
                assert publish(None, server, new_user()).status_code == 201
            text = client.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        server.stop()
    counted = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('notifier_notifications_published_total{publisher="main"}')
    ]
    assert counted and counted[0] >= 10, text[:2000]
