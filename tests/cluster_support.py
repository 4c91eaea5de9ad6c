"""A real Redis Cluster on loopback for tests: 3 masters and 3 replicas in a temp dir.

Each node is a `redis-server` process of its own (cluster bus on a port of its own too),
created with `redis-cli --cluster create` and torn down with its files at the end. Tests
that need one skip with a reason when this redis-server has no cluster support.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from redis.crc import key_slot

from tests.support import free_port, new_user, timeout


def _cli(port: int, *args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return done.stdout


def cluster_unsupported() -> str | None:
    """Why no cluster can run here, or None."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        return "redis-server and redis-cli are not installed"
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout
    major = version.partition(" v=")[2].partition(".")[0]
    if not major.isdigit() or int(major) < 7:
        return f"sharded pub/sub needs Redis 7 (found {version.strip() or 'no version'})"
    return None


@dataclass
class Node:
    port: int
    bus_port: int
    process: subprocess.Popen[bytes] | None = None

    def info(self, section: str) -> dict[str, str]:
        lines = _cli(self.port, "info", section).splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)


@dataclass
class RedisCluster:
    """Six `redis-server --cluster-enabled yes` processes made into one cluster."""

    folder: Path
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A `redis+cluster://` URL that names two seeds, not every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def start(self, size: int = 6) -> RedisCluster:
        for _ in range(size):
            node = Node(free_port(), free_port())
            node.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(node.port),
                    "--cluster-port",
                    str(node.bus_port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{node.port}.conf",
                    "--cluster-node-timeout",
                    "1500",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--repl-diskless-sync-delay",  # replicas in sync at once, not after 5 s
                    "0",
                    "--daemonize",
                    "no",
                    "--logfile",
                    f"redis-{node.port}.log",
                ],
                cwd=self.folder,
            )
            self.nodes.append(node)
        for node in self.nodes:
            self._wait(lambda node=node: "PONG" in _cli(node.port, "ping"), "node up")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_healthy(replicas=size // 2)
        return self

    def wait_healthy(self, replicas: int, seconds: float = 30) -> None:
        """Every live node sees the cluster ok, and `replicas` replicas are in sync."""

        def healthy() -> bool:
            live = self.live()
            if not all(n.info("cluster").get("cluster_enabled") == "1" for n in live):
                return False
            if not all("cluster_state:ok" in _cli(n.port, "cluster", "info") for n in live):
                return False
            synced = [
                n
                for n in live
                if n.info("replication").get("role") == "slave"
                and n.info("replication").get("master_link_status") == "up"
            ]
            return len(synced) >= replicas

        self._wait(healthy, "cluster ok")

    def _wait(self, check: object, what: str, seconds: float = 30) -> None:
        assert callable(check)
        deadline = time.monotonic() + timeout(seconds)
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise TimeoutError(f"redis cluster: {what}")

    def master_of(self, channel: str) -> Node:
        """The node serving `channel`'s hash slot, as the live nodes see it now."""
        slot = key_slot(channel.encode())
        by_port = {node.port: node for node in self.nodes}
        for node in self.live():
            for line in _cli(node.port, "cluster", "nodes").splitlines():
                parts = line.split()
                if "master" not in parts[2] or "fail" in parts[2]:
                    continue
                for span in parts[8:]:
                    low, _, high = span.partition("-")
                    if low.isdigit() and int(low) <= slot <= int(high or low):
                        return by_port[int(parts[1].split("@")[0].rsplit(":", 1)[1])]
        raise LookupError(f"no live master serves {channel}")

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def masters(self) -> list[Node]:
        return [n for n in self.live() if n.info("replication").get("role") == "master"]

    def move_slot(self, channel: str, to: Node) -> None:
        """Migrate `channel`'s (keyless) hash slot to the master `to`, as `redis-cli
        --cluster reshard` would: IMPORTING, MIGRATING, then the new owner everywhere."""
        slot = str(key_slot(channel.encode()))
        source = self.master_of(channel)
        source_id, target_id = (_cli(n.port, "cluster", "myid").strip() for n in (source, to))
        assert _cli(to.port, "cluster", "setslot", slot, "importing", source_id).strip() == "OK"
        assert _cli(source.port, "cluster", "setslot", slot, "migrating", target_id).strip() == "OK"
        for node in (to, source, *self.masters()):
            _cli(node.port, "cluster", "setslot", slot, "node", target_id)

    def kill(self, node: Node) -> None:
        """SIGKILL: the node's connections break at once; its replica takes over after
        the node timeout."""
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=10)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(timeout=10)


@contextlib.contextmanager
def redis_cluster() -> Iterator[RedisCluster]:
    with tempfile.TemporaryDirectory(prefix="notifier-cluster-") as folder:
        cluster = RedisCluster(Path(folder))
        try:
            yield cluster.start()
        finally:
            cluster.stop()


def users_on_distinct_masters(cluster: RedisCluster, count: int) -> list[str]:
    """`count` new users whose channels hash to slots of `count` different masters."""
    chosen: dict[int, str] = {}
    while len(chosen) < count:
        user = new_user()
        owner = cluster.master_of("notifier:user:" + user).port
        chosen.setdefault(owner, user)
    return list(chosen.values())
