"""Settings (notifier/config.py): every rule between settings, and what makes a JWT secret
weak, without a server."""

from __future__ import annotations

import pickle

import pytest
from pydantic import ValidationError

from notifier.config import MIN_SECRET_BYTES, Settings, weak_secret
from notifier.startup import describe

SECRET = "config-test-secret-0123456789-0123456789"
PEM = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
PG = "postgresql+asyncpg://postgres@127.0.0.1/x"


def refusal(**values: object) -> str:
    """The one-line message `serve` would print for these settings."""
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    message = describe(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("size", [1, 2, 100 * 1024 * 1024])
def test_max_payload_bytes_accepts_any_positive_value(size: int) -> None:
    """NOTIFIER_MAX_PAYLOAD_BYTES has no upper bound and no floor above 1."""
    assert Settings(max_payload_bytes=size).max_payload_bytes == size


@pytest.mark.parametrize("size", [0, -1])
def test_max_payload_bytes_refuses_zero_and_negative(size: int) -> None:
    """0 and -1 are refused with a line naming NOTIFIER_MAX_PAYLOAD_BYTES."""
    assert refusal(max_payload_bytes=size).startswith("NOTIFIER_MAX_PAYLOAD_BYTES: ")


def test_secret_and_public_key_together_are_refused() -> None:
    """Both a secret and a public key: one line naming both."""
    message = refusal(jwt_secret=SECRET, jwt_public_key=PEM)
    assert "NOTIFIER_JWT_SECRET" in message
    assert "NOTIFIER_JWT_PUBLIC_KEY" in message


@pytest.mark.parametrize("algorithms", ["HS256", "RS256,HS512", "hs384"])
def test_public_key_with_an_hmac_algorithm_is_refused(algorithms: str) -> None:
    """A public key may never verify HMAC tokens (the key is public): refused, naming the
    algorithm and NOTIFIER_JWT_PUBLIC_KEY."""
    message = refusal(jwt_public_key=PEM, jwt_algorithms=algorithms)
    assert message.startswith("NOTIFIER_JWT_ALGORITHMS names the HMAC algorithm HS")
    assert "NOTIFIER_JWT_PUBLIC_KEY" in message


def test_secret_without_an_hmac_algorithm_is_refused() -> None:
    """A secret with only RS*/ES* allowed could never verify a token: refused."""
    message = refusal(jwt_secret=SECRET, jwt_algorithms="RS256,ES256")
    assert "has no HMAC algorithm for NOTIFIER_JWT_SECRET" in message


@pytest.mark.parametrize("algorithm", ["none", "PS256", "HS257"])
def test_unknown_algorithm_is_refused(algorithm: str) -> None:
    """An algorithm outside HS*/RS*/ES* ('none' above all) is refused, listing those."""
    message = refusal(jwt_secret=SECRET, jwt_algorithms=f"HS256,{algorithm}")
    assert message.startswith(f"NOTIFIER_JWT_ALGORITHMS names {algorithm.upper()}")
    assert "HS256" in message and "ES512" in message


def test_default_algorithms_follow_the_key() -> None:
    """HS256 with a secret, RS256 and ES256 with a public key (the contract's defaults)."""
    assert Settings(jwt_secret=SECRET).effective_algorithms == ["HS256"]
    assert Settings(jwt_public_key=PEM).effective_algorithms == ["RS256", "ES256"]


def test_postgres_bus_with_sqlite_is_refused() -> None:
    """NOTIFIER_BUS=postgres has nothing to LISTEN on with SQLite."""
    message = refusal(bus="postgres", database_url="sqlite+aiosqlite:///x.db")
    assert message.startswith("NOTIFIER_BUS=postgres needs a PostgreSQL NOTIFIER_DATABASE_URL")


@pytest.mark.parametrize(
    "url", ["postgresql://postgres@127.0.0.1/x", "sqlite:///x.db", "mysql+aiomysql://h/x"]
)
def test_database_url_needs_an_async_driver(url: str) -> None:
    """Only postgresql+asyncpg and sqlite+aiosqlite URLs are served."""
    message = refusal(database_url=url)
    assert message.startswith(
        "NOTIFIER_DATABASE_URL must start with postgresql+asyncpg:// or sqlite+aiosqlite://"
    )


def test_database_url_message_never_shows_the_password() -> None:
    """The refusal names the scheme only: the URL's password stays out of the logs."""
    assert "hunter2" not in refusal(database_url="postgresql://u:hunter2@h/x")


def test_redis_url_is_checked_when_the_bus_is_redis() -> None:
    """A Redis bus needs a redis://, rediss://, unix:// or cluster URL; otherwise the URL is
    unused."""
    assert refusal(bus="redis", redis_url="http://h").startswith("NOTIFIER_REDIS_URL")
    assert Settings(redis_url="http://h").redis_url == "http://h"


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://10.0.0.1:7000",
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000,[::1]:7001/",
        "rediss+cluster://notifier:s3cret@redis-a.internal:6380,redis-b.internal:6380",
    ],
)
def test_cluster_urls_are_accepted_for_the_redis_bus(url: str) -> None:
    """A Redis Cluster is named by one or more seed nodes, with or without TLS."""
    assert Settings(bus="redis", redis_url=url).redis_url == url  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+cluster://", "names no cluster node"),
        ("redis+cluster://h:70000", "'h:70000' has no valid port"),
        ("redis+cluster://h1:7000,:7001", "':7001' has no host"),
        ("redis+cluster://h:7000/2", "only database 0"),
        ("redis+cluster://h:7000?ssl_cert_reqs=none", "takes no query options"),
        ("redis+cluster://hunter2@h:7000", "user:password@ or :password@"),
    ],
)
def test_malformed_cluster_url_is_one_line_without_the_password(url: str, reason: str) -> None:
    """Start-up refuses a malformed cluster URL in one line that says what is wrong and
    never repeats the password."""
    message = refusal(bus="redis", redis_url=url)
    assert message.startswith("NOTIFIER_REDIS_URL") and reason in message, message
    assert "hunter2" not in message


def test_log_level_is_checked_and_case_blind() -> None:
    """An unknown NOTIFIER_LOG_LEVEL is one line, not a traceback from logging."""
    assert Settings(log_level="WARNING").log_level == "warning"  # type: ignore[arg-type]
    assert refusal(log_level="verbose").startswith("NOTIFIER_LOG_LEVEL: ")


def test_environment_values_meet_the_same_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules hold for NOTIFIER_* variables as for keyword arguments."""
    monkeypatch.setenv("NOTIFIER_JWT_SECRET", SECRET)
    monkeypatch.setenv("NOTIFIER_JWT_PUBLIC_KEY", PEM)
    assert "keep only one" in refusal()


def test_the_sql_publisher_name_is_reserved() -> None:
    """`sql` is the publisher of notifier_publish(): an API key of that name would share
    its idempotency keys. A bare key, or a name merely containing it, is fine."""
    assert "reserved for notifier_publish()" in refusal(api_keys="main:k, sql:other")
    assert Settings(api_keys="sql,mysql:k,sqlx:k").api_keys == ["sql", "mysql:k", "sqlx:k"]  # type: ignore[arg-type]


def test_settings_pickle() -> None:
    """`serve --workers N` hands each worker its Settings in a pickle."""
    settings = Settings(database_url=PG, jwt_secret=SECRET, api_keys="main:k")  # type: ignore[arg-type]
    assert pickle.loads(pickle.dumps(settings)) == settings


# -- weak secrets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret", ["secret", "changeme", "change-me", "please-change", "dev", "test", "Change_Me"]
)
def test_well_known_placeholders_are_weak(secret: str) -> None:
    """Placeholders copied from examples are named as such."""
    reason = weak_secret(secret)
    assert reason is not None
    assert reason.startswith("NOTIFIER_JWT_SECRET is a well-known placeholder")


def test_a_long_placeholder_is_still_weak() -> None:
    """Length does not redeem an example value left in place."""
    assert weak_secret("CHANGE-ME-a-long-random-string-0123456789") is not None


def test_a_short_secret_is_weak_and_the_fix_is_named() -> None:
    """Under 32 bytes: the size, the minimum and a command that makes a good one."""
    assert weak_secret("x1y2z3w4v5u") == (
        "NOTIFIER_JWT_SECRET is 11 bytes; use at least 32 random bytes, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
    )


def test_bytes_not_characters_are_counted() -> None:
    """The minimum is in bytes of the UTF-8 key, as HMAC sees it."""
    assert weak_secret("é" * 16) is None  # 32 bytes
    assert weak_secret("q" * (MIN_SECRET_BYTES - 1)) is not None


def test_a_random_secret_is_not_weak() -> None:
    """What the advice prints passes."""
    import secrets

    assert weak_secret(secrets.token_urlsafe(32)) is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [(":key-without-a-name", "empty publisher name"), ("main:", "has no key")],
)
def test_api_key_entry_without_name_or_key_is_refused(entry: str, message: str) -> None:
    """`:key` would make a publisher with an empty name, `name:` a publisher without a
    key: both are refused on every host."""
    with pytest.raises(ValidationError, match=message):
        Settings(api_keys=["good:key-0123456789", entry])


def test_only_one_source_of_token_keys() -> None:
    """A secret, a public key, a JWKS file and a JWKS URL: at most one."""
    with pytest.raises(ValidationError, match="NOTIFIER_JWT_SECRET and NOTIFIER_JWKS_FILE"):
        Settings(jwt_secret="s" * 40, jwks_file="/etc/jwks.json")
    with pytest.raises(ValidationError, match="only one source of token keys"):
        Settings(jwks_file="/etc/jwks.json", jwks_url="https://id.example.com/jwks")
    assert Settings(jwks_file="/etc/jwks.json").effective_algorithms == ["RS256", "ES256"]


@pytest.mark.parametrize(
    "url", ["http://id.example.com/jwks", "ftp://id.example.com/jwks", "file:///etc/jwks.json"]
)
def test_jwks_url_must_be_https(url: str) -> None:
    """A key set fetched in clear could be replaced on the way: https only (plain http
    to a loopback host only, for tests)."""
    with pytest.raises(ValidationError, match="https://"):
        Settings(jwks_url=url)
    Settings(jwks_url="http://127.0.0.1:9/jwks.json")
