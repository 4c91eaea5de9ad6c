"""`redis+cluster://` URLs: seeds, TLS and credentials, parsed without a network."""

from __future__ import annotations

import pytest

from notifier.bus.clusterurl import ClusterUrl, is_cluster_url, parse_cluster_url


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("redis+cluster://h", ClusterUrl((("h", 6379),), tls=False)),
        (
            "redis+cluster://10.0.0.1:7000, 10.0.0.2:7001/",
            ClusterUrl((("10.0.0.1", 7000), ("10.0.0.2", 7001)), tls=False),
        ),
        ("rediss+cluster://[::1]:7000/0", ClusterUrl((("::1", 7000),), tls=True)),
        (
            "rediss+cluster://app:p%40ss:w@h:7000",
            ClusterUrl((("h", 7000),), tls=True, username="app", password="p@ss:w"),
        ),
        ("redis+cluster://:pw@h:7000", ClusterUrl((("h", 7000),), tls=False, password="pw")),
    ],
)
def test_cluster_url(url: str, parsed: ClusterUrl) -> None:
    """Every listed node is a seed; `rediss+` means TLS; credentials are percent-decoded."""
    assert parse_cluster_url(url) == parsed


def test_only_cluster_schemes_are_cluster_urls() -> None:
    """`redis://` stays the single-Redis engine."""
    assert is_cluster_url("redis+cluster://h") and is_cluster_url("rediss+cluster://h")
    assert not is_cluster_url("redis://h:6379/0") and not is_cluster_url("unix:///r.sock")
