"""The checks `serve` makes with the command line's context (notifier/startup.py): the
host for development mode and weak secrets, the number of workers."""

from __future__ import annotations

import pytest

from notifier.config import Settings
from notifier.startup import (
    StartupError,
    check_credentials,
    check_secret,
    check_workers,
    is_loopback,
)

LONG = "startup-test-secret-0123456789-0123456789"
PG = "postgresql+asyncpg://postgres@127.0.0.1/x"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    """127.0.0.0/8, ::1 and localhost are development mode's hosts."""
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.7", "example.com", "128.0.0.1"])
def test_other_hosts(host: str) -> None:
    """Every other address, and any name but localhost, is not."""
    assert not is_loopback(host)


@pytest.mark.parametrize("secret", ["short-secret", "changeme", "secret"])
@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.7", "::"])
def test_a_weak_secret_is_refused_off_loopback(secret: str, host: str) -> None:
    """Off loopback a weak or placeholder secret stops serve, naming the variable and
    how to make a good one."""
    with pytest.raises(StartupError) as caught:
        check_secret(Settings(jwt_secret=secret), host)
    assert str(caught.value).startswith("NOTIFIER_JWT_SECRET is ")
    assert "secrets.token_urlsafe(32)" in str(caught.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_a_weak_secret_is_a_warning_on_loopback(host: str) -> None:
    """On a loopback host (tests, quick starts) a short secret serves, with a warning."""
    warning = check_secret(Settings(jwt_secret="short"), host)
    assert warning is not None
    assert "NOTIFIER_JWT_SECRET is 5 bytes" in warning
    assert "development" in warning


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_a_strong_secret_or_a_public_key_passes(host: str) -> None:
    """Nothing to say about a long random secret, or about a public key."""
    assert check_secret(Settings(jwt_secret=LONG), host) is None
    assert check_secret(Settings(jwt_public_key="-----BEGIN PUBLIC KEY-----"), host) is None


def test_workers_need_postgres_and_a_shared_bus() -> None:
    """--workers > 1 is refused on SQLite and with the memory bus; 1 worker always passes."""
    check_workers(Settings(), 1)
    check_workers(Settings(database_url=PG), 4)
    check_workers(Settings(database_url=PG, bus="redis"), 4)
    for settings in (Settings(), Settings(database_url=PG, bus="memory")):
        with pytest.raises(StartupError, match=r"^--workers > 1 needs PostgreSQL"):
            check_workers(settings, 2)
    with pytest.raises(StartupError, match="at least 1"):
        check_workers(Settings(), 0)


STRONG_KEY = "k" * 10 + "Zq3-9xT_u7wPbN4mRs2"


@pytest.mark.parametrize(
    "keys", [["main:short"], ["main:CHANGE-ME-a-long-random-key"], ["bare-short-key"]]
)
def test_a_short_or_placeholder_api_key_is_refused_off_loopback(keys: list[str]) -> None:
    """Off loopback a short or placeholder API key stops serve; the message names the
    publisher, never the key. On a loopback host it passes."""
    settings = Settings(jwt_secret=LONG, api_keys=keys, jwt_audience="notifier")
    with pytest.raises(StartupError) as caught:
        check_credentials(settings, "0.0.0.0")
    assert str(caught.value).startswith("NOTIFIER_API_KEYS: the key of ")
    key = keys[0].partition(":")[2] or keys[0]
    assert key not in str(caught.value)
    assert check_credentials(settings, "127.0.0.1") == []


def test_strong_keys_and_an_audience_start_without_a_word() -> None:
    """Long random credentials and an audience: nothing to refuse or warn about."""
    settings = Settings(jwt_secret=LONG, api_keys=[f"main:{STRONG_KEY}"], jwt_audience="n")
    assert check_credentials(settings, "0.0.0.0") == []


def test_no_audience_is_warned_about_off_loopback() -> None:
    """Without NOTIFIER_JWT_AUDIENCE on a public host, a warning names it (RFC 8725)."""
    settings = Settings(jwt_secret=LONG, api_keys=[f"main:{STRONG_KEY}"])
    [warning] = check_credentials(settings, "0.0.0.0")
    assert warning.startswith("NOTIFIER_JWT_AUDIENCE is unset")
    assert check_credentials(settings, "127.0.0.1") == []
