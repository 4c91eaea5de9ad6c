"""Settings from `NOTIFIER_*` environment variables (every one is described in
docs/reference.md).

Every rule that relates two settings is `Settings._consistent`, so `serve`, `migrate` and
an in-process app refuse the same configurations with the same one-line message, naming
the variable and the fix. Rules that need the command line too (the host for
development mode and for a weak secret, `--workers`) are in `startup.py`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal, Self

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BusKind = Literal["memory", "postgres", "redis"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
AccessLog = Literal["errors", "all", "off"]

DATABASE_SCHEMES = ("postgresql+asyncpg://", "sqlite+aiosqlite://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
"""One Redis; `redis+cluster://` and `rediss+cluster://` name a Redis Cluster's nodes."""
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
KEY_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
"""The JWS signature algorithms python-jose verifies; anything else ('none' above all)
would never verify a token, or should not."""

MIN_SECRET_BYTES = 32
"""HS256's key should be as long as its hash (RFC 7518, section 3.2)."""
SECRET_ADVICE = (
    f"use at least {MIN_SECRET_BYTES} random bytes, e.g. "
    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
)
_PLACEHOLDERS = frozenset(
    {
        "secret",
        "secretkey",
        "jwtsecret",
        "mysecret",
        "yoursecret",
        "supersecret",
        "topsecret",
        "changeme",
        "changeit",
        "changethis",
        "pleasechange",
        "replaceme",
        "dev",
        "development",
        "test",
        "testing",
        "password",
        "default",
        "example",
        "placeholder",
        "your256bitsecret",
        "notsecret",
        "insecure",
    }
)
_PLACEHOLDER_MARKERS = ("changeme", "changethis", "pleasechange", "replaceme", "placeholder")


def weak_secret(secret: str) -> str | None:
    """Why `secret` must not sign production tokens, or None.

    A placeholder copied from an example, or any HMAC key shorter than its hash, can be
    guessed offline from a single token, and then anyone can mint tokens for any user.
    """
    normalized = re.sub(r"[^a-z0-9]", "", secret.lower())
    if normalized in _PLACEHOLDERS or any(m in normalized for m in _PLACEHOLDER_MARKERS):
        return f"NOTIFIER_JWT_SECRET is a well-known placeholder; {SECRET_ADVICE}"
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        return f"NOTIFIER_JWT_SECRET is {size} bytes; {SECRET_ADVICE}"
    return None


MIN_API_KEY_BYTES = 24
"""An API key is a bearer secret checked online, where guesses are slow; 24 random
characters (about 140 bits from `secrets.token_urlsafe(18)`) leave nothing to guess."""
API_KEY_ADVICE = (
    f"use at least {MIN_API_KEY_BYTES} random characters, e.g. "
    "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`"
)


def weak_api_keys(entries: list[str]) -> str | None:
    """Why one of `NOTIFIER_API_KEYS` must not guard a public listener, or None. The
    message names the entry by its publisher name, never by its key."""
    for entry in entries:
        name, sep, key = entry.partition(":")
        if not sep:  # named as auth.parse_api_keys names it
            name, key = "key-" + hashlib.sha256(entry.encode()).hexdigest()[:8], entry
        normalized = re.sub(r"[^a-z0-9]", "", key.lower())
        if normalized in _PLACEHOLDERS or any(m in normalized for m in _PLACEHOLDER_MARKERS):
            return f"NOTIFIER_API_KEYS: the key of '{name}' is a placeholder; {API_KEY_ADVICE}"
        if len(key.encode()) < MIN_API_KEY_BYTES:
            return (
                f"NOTIFIER_API_KEYS: the key of '{name}' is {len(key.encode())} bytes; "
                f"{API_KEY_ADVICE}"
            )
    return None


def _malformed_api_key(entries: list[str]) -> str | None:
    """An entry that names no publisher (`:key`) or holds no key (`name:`)."""
    for entry in entries:
        name, sep, key = entry.partition(":")
        if sep and not name.strip():
            return (
                "NOTIFIER_API_KEYS has an entry with an empty publisher name (':key'): "
                "write name:key, or the bare key"
            )
        if sep and not key:
            return f"NOTIFIER_API_KEYS entry '{name}:' has no key after the colon"
    return None


def _redis_url_problem(url: str) -> str | None:
    """Why the redis bus cannot use `url`, in one line that never shows its password."""
    from notifier.bus.clusterurl import is_cluster_url, parse_cluster_url

    if is_cluster_url(url):
        try:
            parse_cluster_url(url)
        except ValueError as error:
            return str(error)
        return None
    if not url.startswith(REDIS_SCHEMES):
        return (
            "NOTIFIER_REDIS_URL must start with redis://, rediss:// or unix:// (one Redis), "
            "or redis+cluster:// or rediss+cluster:// (a Redis Cluster)"
        )
    return None


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything an operator can set. A CLI flag of the same meaning wins."""

    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./notifier.db"
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwks_file: str | None = None
    """A JWKS document on disk, reloaded when it changes (instead of a secret or key)."""
    jwks_url: str | None = None
    """The HTTPS URL of a JWKS document (an identity provider's `jwks_uri`)."""
    jwks_refresh_seconds: float = Field(default=300.0, ge=1, le=86400)
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=list)
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_seconds: int = Field(default=0, ge=0, le=3600)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    bus: BusKind | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    max_payload_bytes: int = Field(default=65536, gt=0)
    """No upper bound: above the request body limits (`api/body.py`) those govern."""
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    publish_rate: float | None = Field(default=None, ge=0)
    """Notifications a second one publisher may publish through one instance (bursts of
    twice that); unset or 0: no limit."""
    max_sockets_per_user: int = Field(default=100, ge=1)
    """Open WebSocket and SSE streams one user may hold on one instance (one process)."""

    # Extensions beyond the contract (documented in docs/reference.md).
    ws_max_buffer_bytes: int = Field(default=1024 * 1024, ge=4096)
    """Live frames queued for one socket; beyond it a burst waits in the database."""
    ws_stall_seconds: float = Field(default=1.0, gt=0, le=600)
    """With its queue full, a socket whose write has not completed for this long is not
    reading: closed with 1013."""
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    """Largest client frame accepted (uvicorn closes bigger ones with 1009)."""
    ws_ping_seconds: float = Field(default=20.0, ge=1, le=300)
    """A WebSocket protocol ping to every socket this often; one unanswered for as long
    closes the socket (1011). Keeps proxies' idle timeouts (nginx: 60 s) from cutting
    quiet sockets and finds dead peers. Each ping costs the server a write and a read
    (one timer per process visits the sockets, `keepalive.Keepalive`): at 100,000
    sockets the default is 5,000 pings a second on the host, about 0.2 of a core here,
    so a host that holds that many may raise it (below its proxies' idle timeout)."""
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0, le=20)
    """A comment on every SSE stream this often (the contract promises one at least
    every 20 seconds while nothing else is sent)."""
    replay_page_size: int = Field(default=1000, ge=1, le=5000)
    reconcile_seconds: float = Field(default=10.0, gt=0, le=3600)
    """How often sockets are checked against the database while the bus is healthy."""
    publish_lock_timeout_ms: int = Field(default=5000, ge=0)
    """How long a publish waits for a user's stream held by another transaction (a
    backend's open transaction that called notifier_publish()) before it gives up with
    503; 0 waits for ever. Longer than any lock notifier itself holds."""
    retention_days: float | None = Field(default=None, gt=0)
    """Delete notifications older than this; unset keeps them forever."""
    log_level: LogLevel = "info"
    access_log: AccessLog = "errors"
    """`errors`: a line per failed (5xx) or slow request (`api.accesslog`); `all`: a line
    per request; `off`."""
    access_log_slow_ms: float = Field(default=1000.0, gt=0)
    """A request taking this long or longer is logged under `access_log=errors`."""
    dev_credentials_file: str = ".notifier-dev.json"
    demo: bool = False
    """Serve the inbox demo page at /demo (always served in development mode)."""

    _development: bool = PrivateAttr(default=False)
    """Set by `startup.resolve_credentials` when it generated the JWT secret, never from
    the environment: the demo page may then mint development tokens for any user."""

    # Hardening (docs/reference.md, Limits; SECURITY.md).
    head_timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    """A request head (request line and headers) must arrive within this; else 408."""
    body_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    """A request body must arrive in full within this after its head; else 408."""
    max_opening_streams: int = Field(default=1000, ge=0)
    """Streams being opened at once (handshake, and a resume's first page) beyond which
    a new one is refused at once (WebSocket 1013, SSE 503): a storm is shed, not queued.
    0: no bound."""
    max_streams: int | None = Field(default=None, ge=1)
    """Open streams one process may hold; unset: what its descriptor limit allows
    (`notifier.admission`). Beyond it, refused like a busy process."""
    handshake_rate: float = Field(default=20.0, ge=0)
    """WebSocket handshakes a second from one client address, in bursts of 5x; 0: none."""
    max_token_lifetime_seconds: int = Field(default=86400, ge=5)
    """No socket stays open longer than this after its handshake, renewed or not."""
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Also serve `GET /metrics` on this port (a listener of its own, for Prometheus)."""
    metrics_on_service_port: bool = True
    """`GET /metrics` on the service port; false: 404 there (use `metrics_port`)."""
    interactive_docs: bool | None = None
    """`/docs` and `/redoc`; unset: on in development mode only."""

    @field_validator("jwt_algorithms", "api_keys", "allowed_origins", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator(
        "jwt_secret",
        "jwt_public_key",
        "jwks_file",
        "jwks_url",
        "jwt_audience",
        "jwt_issuer",
        "metrics_port",
        "interactive_docs",
        "publish_rate",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_level", "access_log", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        if not value.startswith(DATABASE_SCHEMES):
            raise ValueError(
                "NOTIFIER_DATABASE_URL must start with postgresql+asyncpg:// or "
                f"sqlite+aiosqlite:// (it starts with {value.partition(':')[0]}:)"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problem = self._conflict()
        if problem is not None:
            raise ValueError(problem)
        return self

    def _conflict(self) -> str | None:
        """The first rule between settings that this configuration breaks."""
        if self.jwt_secret and self.jwt_public_key:
            return "both NOTIFIER_JWT_SECRET and NOTIFIER_JWT_PUBLIC_KEY are set: keep only one"
        sources = [
            name
            for name, value in (
                ("NOTIFIER_JWT_SECRET", self.jwt_secret),
                ("NOTIFIER_JWT_PUBLIC_KEY", self.jwt_public_key),
                ("NOTIFIER_JWKS_FILE", self.jwks_file),
                ("NOTIFIER_JWKS_URL", self.jwks_url),
            )
            if value
        ]
        if len(sources) > 1:
            return f"{' and '.join(sources)} are all set: keep only one source of token keys"
        if self.jwks_url:
            from notifier.keys import check_jwks_url

            problem = check_jwks_url(self.jwks_url)
            if problem is not None:
                return problem
        malformed = _malformed_api_key(self.api_keys)
        if malformed is not None:
            return malformed
        algorithms = self.effective_algorithms
        unknown = [alg for alg in algorithms if alg not in HMAC_ALGORITHMS + KEY_ALGORITHMS]
        if unknown:
            return (
                f"NOTIFIER_JWT_ALGORITHMS names {', '.join(unknown)}, not a signature "
                f"algorithm: use {', '.join(HMAC_ALGORITHMS)} with NOTIFIER_JWT_SECRET, or "
                f"{', '.join(KEY_ALGORITHMS)} with NOTIFIER_JWT_PUBLIC_KEY"
            )
        hmac = [alg for alg in algorithms if alg in HMAC_ALGORITHMS]
        if self.jwt_public_key and hmac:
            return (
                f"NOTIFIER_JWT_ALGORITHMS names the HMAC algorithm {', '.join(hmac)} but "
                "NOTIFIER_JWT_PUBLIC_KEY is set: list only RS*/ES* algorithms (a public "
                "key must never verify HMAC tokens)"
            )
        if self.jwt_secret and not hmac:
            return (
                f"NOTIFIER_JWT_ALGORITHMS ({', '.join(algorithms)}) has no HMAC algorithm "
                "for NOTIFIER_JWT_SECRET: add HS256, or set NOTIFIER_JWT_PUBLIC_KEY instead"
            )
        if self.bus == "postgres" and self.is_sqlite:
            return (
                "NOTIFIER_BUS=postgres needs a PostgreSQL NOTIFIER_DATABASE_URL: use "
                "postgresql+asyncpg://..., or NOTIFIER_BUS=memory with SQLite"
            )
        if any(entry.partition(":")[0] == "sql" for entry in self.api_keys if ":" in entry):
            return (
                "NOTIFIER_API_KEYS names a publisher 'sql': that name is reserved for "
                "notifier_publish() (its idempotency keys are its own): choose another name"
            )
        if self.effective_bus == "redis":
            return _redis_url_problem(self.redis_url)
        return None

    @property
    def development(self) -> bool:
        """Development mode: serving on loopback with a JWT secret generated here."""
        return self._development

    def in_development(self) -> Settings:
        """A copy in development mode (see `development`)."""
        copy = self.model_copy()
        copy._development = True
        return copy

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def effective_bus(self) -> BusKind:
        if self.bus is not None:
            return self.bus
        return "memory" if self.is_sqlite else "postgres"

    @property
    def has_user_key(self) -> bool:
        """Whether any source of token keys is configured."""
        return bool(self.jwt_secret or self.jwt_public_key or self.jwks_file or self.jwks_url)

    @property
    def effective_algorithms(self) -> list[str]:
        if self.jwt_algorithms:
            return [alg.upper() for alg in self.jwt_algorithms]
        asymmetric = self.jwt_public_key or self.jwks_file or self.jwks_url
        return ["RS256", "ES256"] if asymmetric else ["HS256"]
