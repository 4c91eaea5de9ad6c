"""Settings from `NOTIFIER_*` environment variables (every one: docs/reference.md).

Validation that needs more than one value (both a secret and a public key, a missing
secret on a public host) lives in `startup.py`, where it can name the fix in one line.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BusKind = Literal["memory", "postgres", "redis"]


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
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=list)
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_seconds: int = Field(default=0, ge=0, le=3600)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    bus: BusKind | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    max_payload_bytes: int = Field(default=65536, ge=2, le=16 * 1024 * 1024)
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Extensions of this implementation (docs/reference.md, "Configuration").
    ws_max_buffer_bytes: int = Field(default=1024 * 1024, ge=4096)
    """Live frames queued for one socket; beyond it a burst waits in the database."""
    ws_stall_seconds: float = Field(default=1.0, gt=0, le=600)
    """With its queue full, a socket whose write has not completed for this long is not
    reading: closed with 1013."""
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    """Largest client frame accepted (uvicorn closes bigger ones with 1009)."""
    replay_page_size: int = Field(default=1000, ge=1, le=5000)
    reconcile_seconds: float = Field(default=10.0, gt=0, le=3600)
    """How often sockets are checked against the database while the bus is healthy."""
    retention_days: float | None = Field(default=None, gt=0)
    """Delete notifications older than this; unset keeps them forever."""
    log_level: str = "info"
    dev_credentials_file: str = ".notifier-dev.json"

    @field_validator("jwt_algorithms", "api_keys", "allowed_origins", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("jwt_secret", "jwt_public_key", "jwt_audience", "jwt_issuer", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def effective_bus(self) -> BusKind:
        if self.bus is not None:
            return self.bus
        return "memory" if self.is_sqlite else "postgres"

    @property
    def effective_algorithms(self) -> list[str]:
        if self.jwt_algorithms:
            return [alg.upper() for alg in self.jwt_algorithms]
        return ["RS256", "ES256"] if self.jwt_public_key else ["HS256"]
