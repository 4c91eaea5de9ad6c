"""`redis+cluster://` and `rediss+cluster://` URLs: the seed nodes of a Redis Cluster.

redis-py reads one host from a URL; a cluster is found from any of several nodes, so the
URL lists them, comma-separated (`redis+cluster://user:pass@10.0.0.1:7000,10.0.0.2:7000`).
Parsing is pure so that the settings refuse a malformed URL at start-up, in one line,
with the same rules the bus applies. No message repeats the URL's password.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
DEFAULT_PORT = 6379
_FORM = "write redis+cluster://[user:password@]host:port[,host:port...]"


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    nodes: tuple[tuple[str, int], ...]
    """Seed nodes: any one that answers tells the client the rest of the cluster."""
    tls: bool
    username: str | None = None
    password: str | None = None


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def parse_cluster_url(url: str) -> ClusterUrl:
    """The seeds and credentials of `url`; ValueError with a one-line reason otherwise."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("redis+cluster", "rediss+cluster"):
        raise ValueError(f"NOTIFIER_REDIS_URL: {scheme}:// is not a cluster URL; {_FORM}")
    if "?" in rest or "#" in rest:
        raise ValueError(f"NOTIFIER_REDIS_URL: a cluster URL takes no query options; {_FORM}")
    netloc, slash, path = rest.partition("/")
    if slash and path not in ("", "0"):
        raise ValueError(
            f"NOTIFIER_REDIS_URL: a Redis Cluster has only database 0 (the URL names /{path})"
        )
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        hosts = netloc
    username, password = _credentials(userinfo) if at else (None, None)
    nodes = tuple(_node(part.strip()) for part in hosts.split(",") if part.strip())
    if not nodes:
        raise ValueError(f"NOTIFIER_REDIS_URL names no cluster node; {_FORM}")
    return ClusterUrl(nodes, tls=scheme == "rediss+cluster", username=username, password=password)


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    if not colon:  # a user with no password, or a password with no colon: never guess
        raise ValueError("NOTIFIER_REDIS_URL: write user:password@ or :password@ before the nodes")
    return unquote(user) or None, unquote(password) or None


def _node(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, bracket, tail = text[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"NOTIFIER_REDIS_URL: node {text!r} is not host:port; {_FORM}")
        port_text = tail[1:]
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError(f"NOTIFIER_REDIS_URL: node {text!r} has no host; {_FORM}")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"NOTIFIER_REDIS_URL: node {text!r} has no valid port; {_FORM}")
    return host, int(port_text)
