"""The command line as an operator meets it: `python -m notifier ...` in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import SECRET, free_port, make_token, timeout

JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def cli_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(values)
    return env


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, seconds: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout(seconds),
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fixes: str) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fix in fixes:
        assert fix in lines[0], lines[0]
    return lines[0]


def sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{folder / 'notifier.db'}"


def wait_healthy(process: subprocess.Popen[bytes], url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + timeout(seconds)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError("serve did not answer /healthz")


@contextlib.contextmanager
def serving(env: dict[str, str], cwd: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`notifier serve` on 127.0.0.1:port, output in cwd/serve.out and cwd/serve.err."""
    with (cwd / "serve.out").open("wb") as out, (cwd / "serve.err").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "notifier", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=err,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout(15))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- startup refusals -------------------------------------------------------------------


def test_serve_refuses_both_secret_and_public_key(tmp_path: Path) -> None:
    """With both NOTIFIER_JWT_SECRET and NOTIFIER_JWT_PUBLIC_KEY set, serve exits with one
    line naming both."""
    env = cli_env(
        NOTIFIER_DATABASE_URL=sqlite_url(tmp_path),
        NOTIFIER_JWT_SECRET=SECRET,
        NOTIFIER_JWT_PUBLIC_KEY="-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        NOTIFIER_API_KEYS="main:k",
    )
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    assert_one_line_error(result, "NOTIFIER_JWT_SECRET", "NOTIFIER_JWT_PUBLIC_KEY")


def test_serve_refuses_public_host_without_credentials(tmp_path: Path) -> None:
    """Without secret and API key, serve on 0.0.0.0 exits with one line naming both
    variables, and creates no development credentials."""
    env = cli_env(NOTIFIER_DATABASE_URL=sqlite_url(tmp_path))
    result = run_cli(
        "serve", "--host", "0.0.0.0", "--port", str(free_port()), env=env, cwd=tmp_path
    )
    assert_one_line_error(result, "NOTIFIER_JWT_SECRET", "NOTIFIER_API_KEYS")
    assert not (tmp_path / ".notifier-dev.json").exists()


def test_serve_refuses_unreachable_database(tmp_path: Path) -> None:
    """An unreachable database makes serve exit with one line naming NOTIFIER_DATABASE_URL."""
    env = cli_env(
        NOTIFIER_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:1/x",
        NOTIFIER_JWT_SECRET=SECRET,
        NOTIFIER_API_KEYS="main:k",
    )
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    assert_one_line_error(result, "NOTIFIER_DATABASE_URL")


def test_serve_refuses_unmigrated_postgres(tmp_path: Path, fresh_pg_database: str) -> None:
    """On a PostgreSQL database whose schema is behind, serve exits with one line naming
    `notifier migrate`."""
    env = cli_env(
        NOTIFIER_DATABASE_URL=fresh_pg_database,
        NOTIFIER_JWT_SECRET=SECRET,
        NOTIFIER_API_KEYS="main:k",
    )
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    assert_one_line_error(result, "notifier migrate")


def test_migrate_then_serve_starts_on_postgres(tmp_path: Path, fresh_pg_database: str) -> None:
    """`notifier migrate` on a fresh PostgreSQL database succeeds, then serve answers
    /healthz and shuts down on SIGTERM (uvicorn re-raises the signal after a graceful
    shutdown, so the status is 0 or -SIGTERM) without a traceback."""
    env = cli_env(
        NOTIFIER_DATABASE_URL=fresh_pg_database,
        NOTIFIER_JWT_SECRET=SECRET,
        NOTIFIER_API_KEYS="main:k",
    )
    migrated = run_cli("migrate", env=env, cwd=tmp_path, seconds=60)
    assert migrated.returncode == 0, migrated.stderr
    assert "Traceback" not in migrated.stderr
    port = free_port()
    with serving(env, tmp_path, port) as process:
        wait_healthy(process, f"http://127.0.0.1:{port}")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=timeout(15)) in (0, -signal.SIGTERM)
    assert "Traceback" not in (tmp_path / "serve.err").read_text()


# -- development mode -------------------------------------------------------------------


@dataclass
class DevServer:
    url: str
    cwd: Path
    env: dict[str, str]
    banner: str

    def token(self) -> str:
        tokens = JWT.findall(self.banner)
        assert tokens, self.banner
        return tokens[0]

    def curl_line(self) -> str:
        lines = [line for line in self.banner.splitlines() if "curl " in line]
        assert len(lines) == 1, self.banner
        return lines[0][lines[0].index("curl ") :]


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """`notifier serve` with no credentials on 127.0.0.1 (development mode), in a tmp cwd."""
    cwd = tmp_path_factory.mktemp("dev-mode")
    env = cli_env(NOTIFIER_DATABASE_URL=sqlite_url(cwd))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(env, cwd, port) as process:
        wait_healthy(process, url)
        yield DevServer(url, cwd, env, (cwd / "serve.out").read_text())


def test_dev_mode_prints_a_user_token_and_a_curl_command(dev_server: DevServer) -> None:
    """Development mode prints a ready user token and a curl publish command on stdout."""
    assert dev_server.token()
    curl = dev_server.curl_line()
    assert dev_server.url + "/v1/notifications" in curl
    assert "Authorization: Bearer " in curl


def test_dev_mode_printed_curl_and_token_work(dev_server: DevServer) -> None:
    """The printed curl command publishes (201), and the printed token reads the
    notification it published from the inbox."""
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to run the printed command")
    argv = shlex.split(dev_server.curl_line())
    argv[1:1] = ["-w", "\n%{http_code}"]
    published = subprocess.run(argv, capture_output=True, text=True, timeout=timeout(20))
    body, _, status = published.stdout.rpartition("\n")
    assert status == "201", published
    created = json.loads(body)
    inbox = httpx.get(
        dev_server.url + "/v1/me/notifications",
        headers={"Authorization": f"Bearer {dev_server.token()}"},
        timeout=10,
    )
    assert inbox.status_code == 200, inbox.text
    assert created in inbox.json()["notifications"]
    assert created["user_id"] == "alice"


def test_token_command_prints_a_token_the_dev_server_accepts(dev_server: DevServer) -> None:
    """`notifier token alice` in the same directory prints a token the server accepts."""
    result = run_cli("token", "alice", env=dev_server.env, cwd=dev_server.cwd)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert JWT.fullmatch(token), result.stdout
    inbox = httpx.get(
        dev_server.url + "/v1/me/notifications",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert inbox.status_code == 200, inbox.text


def test_dev_mode_prints_the_demo_url_and_serves_it(dev_server: DevServer) -> None:
    """The banner names the inbox demo page, which is served, and whose token route
    gives a token for any user that the server accepts (development mode only)."""
    lines = [line for line in dev_server.banner.splitlines() if "inbox demo:" in line]
    assert len(lines) == 1, dev_server.banner
    url = lines[0].split("inbox demo:", 1)[1].strip()
    assert url == dev_server.url + "/demo?user=alice"
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200
    assert "/v1/client.js" in page.text
    token = httpx.get(dev_server.url + "/demo/token", params={"user": "dora"}, timeout=10)
    inbox = httpx.get(
        dev_server.url + "/v1/me/notifications",
        headers={"Authorization": f"Bearer {token.json()['token']}"},
        timeout=10,
    )
    assert inbox.status_code == 200, inbox.text


def test_send_command_publishes(dev_server: DevServer) -> None:
    """`notifier send USER TYPE DATA --url ...` publishes and prints the created
    Notification, which the user then finds in the inbox."""
    result = run_cli(
        "send",
        "bob",
        "demo.sent",
        '{"a":1}',
        "--url",
        dev_server.url,
        env=dev_server.env,
        cwd=dev_server.cwd,
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert (created["user_id"], created["type"], created["data"]) == ("bob", "demo.sent", {"a": 1})
    token = run_cli("token", "bob", env=dev_server.env, cwd=dev_server.cwd).stdout.strip()
    inbox = httpx.get(
        dev_server.url + "/v1/me/notifications",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert inbox.json()["notifications"] == [created]


# -- weak secrets -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("x1y2z3w4v5u", "NOTIFIER_JWT_SECRET is 11 bytes"),
        ("secret", "well-known placeholder"),
        ("changeme", "well-known placeholder"),
        ("change-me", "well-known placeholder"),
        ("please-change", "well-known placeholder"),
        ("dev", "well-known placeholder"),
        ("test", "well-known placeholder"),
        ("CHANGE-ME-a-long-random-string-0123456789", "well-known placeholder"),
    ],
)
def test_serve_refuses_a_weak_secret_off_loopback(tmp_path: Path, secret: str, reason: str) -> None:
    """On a non-loopback host a short (< 32 bytes) or placeholder NOTIFIER_JWT_SECRET
    stops serve with one line: what is wrong, and how to make a good secret."""
    env = cli_env(
        NOTIFIER_DATABASE_URL=sqlite_url(tmp_path),
        NOTIFIER_JWT_SECRET=secret,
        NOTIFIER_API_KEYS="main:k",
    )
    result = run_cli(
        "serve", "--host", "0.0.0.0", "--port", str(free_port()), env=env, cwd=tmp_path
    )
    line = assert_one_line_error(
        result, reason, "at least 32 random bytes", "secrets.token_urlsafe(32)"
    )
    assert line.startswith("notifier: error: NOTIFIER_JWT_SECRET is ")
    assert result.returncode == 2


def test_serve_warns_about_a_weak_secret_on_loopback(tmp_path: Path) -> None:
    """On 127.0.0.1 (development mode) a short secret serves, and tokens signed with it
    are accepted, but serve logs a warning naming the fix."""
    short = "dev-secret-16byt"
    env = cli_env(
        NOTIFIER_DATABASE_URL=sqlite_url(tmp_path),
        NOTIFIER_JWT_SECRET=short,
        NOTIFIER_API_KEYS="main:k",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(env, tmp_path, port) as process:
        wait_healthy(process, url)
        token = make_token("carol", secret=short)
        inbox = httpx.get(
            url + "/v1/me/notifications", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert inbox.status_code == 200, inbox.text
    warnings = [
        json.loads(line)
        for line in (tmp_path / "serve.err").read_text().splitlines()
        if "NOTIFIER_JWT_SECRET" in line
    ]
    assert len(warnings) == 1, warnings
    assert warnings[0]["level"] == "warning"
    assert "NOTIFIER_JWT_SECRET is 16 bytes" in warnings[0]["message"]
    assert "secrets.token_urlsafe(32)" in warnings[0]["message"]
    assert short not in (tmp_path / "serve.err").read_text()


def test_serve_refuses_a_malformed_cluster_url(tmp_path: Path) -> None:
    """A `redis+cluster://` URL with a bad node stops serve with one line naming the
    variable and the form to write, not a traceback from the Redis client."""
    env = cli_env(
        NOTIFIER_DATABASE_URL=sqlite_url(tmp_path),
        NOTIFIER_JWT_SECRET=SECRET,
        NOTIFIER_API_KEYS="main:k",
        NOTIFIER_BUS="redis",
        NOTIFIER_REDIS_URL="redis+cluster://10.0.0.1:7000,10.0.0.2:x",
    )
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    assert_one_line_error(result, "NOTIFIER_REDIS_URL", "'10.0.0.2:x'", "host:port[,host:port")


# -- NOTIFIER_MAX_PAYLOAD_BYTES ---------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1"])
def test_serve_refuses_a_max_payload_below_one(tmp_path: Path, value: str) -> None:
    """0 and negative sizes stop serve with one line naming NOTIFIER_MAX_PAYLOAD_BYTES."""
    env = cli_env(
        NOTIFIER_DATABASE_URL=sqlite_url(tmp_path),
        NOTIFIER_JWT_SECRET=SECRET,
        NOTIFIER_API_KEYS="main:k",
        NOTIFIER_MAX_PAYLOAD_BYTES=value,
    )
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    assert_one_line_error(result, "NOTIFIER_MAX_PAYLOAD_BYTES", "greater than 0")


@pytest.mark.parametrize(
    ("value", "sizes"),
    [
        ("1", {2: (413, "over the 1-byte limit")}),  # `{}` alone is 2 bytes
        (
            str(100 * 1024 * 1024),
            {200_000: (201, ""), 2 * 1024 * 1024: (413, "request body larger than")},
        ),
    ],
)
def test_serve_accepts_any_positive_max_payload(
    tmp_path: Path, value: str, sizes: dict[int, tuple[int, str]]
) -> None:
    """1 byte and 100 MiB both serve: the limit applies as set, and above the request
    body limit (1 MiB for one notification) the body limit governs."""
    env = cli_env(
        NOTIFIER_DATABASE_URL=sqlite_url(tmp_path),
        NOTIFIER_JWT_SECRET=SECRET,
        NOTIFIER_API_KEYS="main:k",
        NOTIFIER_MAX_PAYLOAD_BYTES=value,
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(env, tmp_path, port) as process:
        wait_healthy(process, url)
        for size, (status, detail) in sizes.items():
            data = {"p": "x" * (size - len('{"p":""}'))} if size > 2 else {}
            response = httpx.post(
                url + "/v1/notifications",
                json={"user_id": "dave", "type": "t", "data": data},
                headers={"Authorization": "Bearer k"},
                timeout=30,
            )
            assert response.status_code == status, (size, response.text)
            assert detail in response.text
