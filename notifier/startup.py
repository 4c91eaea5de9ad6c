"""Checks before serving, each failing with one line that says what to do.

Development mode: with no JWT secret/public key and no API key on a loopback host,
`serve` generates both, keeps them in a local file (so `notifier token` and
`notifier send` work and a restart keeps tokens valid) and prints a ready token and a
ready curl command. On any other host it refuses to start without real credentials, or
with a weak JWT secret.

Rules between settings alone are `Settings._consistent` (config.py); the ones here also
need the command line: the host (`resolve_credentials`, `check_secret`) and the number of
worker processes (`check_workers`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import secrets
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from notifier import db
from notifier.auth import mint_token, parse_api_keys
from notifier.config import Settings, weak_api_keys, weak_secret


class StartupError(Exception):
    """One line for the operator: what is wrong and how to fix it."""


def load_settings() -> Settings:
    """The environment's settings, or the first thing wrong with them in one line."""
    try:
        return Settings()
    except ValidationError as error:
        raise StartupError(describe(error)) from None


def describe(error: ValidationError) -> str:
    first = error.errors()[0]
    message = str(first["msg"])
    if message.startswith("Value error, "):
        return message.removeprefix("Value error, ")  # ours: names the variable already
    name = "NOTIFIER_" + str(first["loc"][0]).upper() if first["loc"] else "NOTIFIER_*"
    return f"{name}: {message}"


def is_loopback(host: str) -> bool:
    """Development mode's hosts: 127.0.0.0/8, ::1 and localhost."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_dev_credentials(settings: Settings) -> dict[str, str] | None:
    path = Path(settings.dev_credentials_file)
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(stored, dict) and {"jwt_secret", "api_key"} <= stored.keys():
        return {k: str(v) for k, v in stored.items()}
    return None


def _dev_credentials(settings: Settings) -> dict[str, str]:
    existing = load_dev_credentials(settings)
    if existing is not None:
        return existing
    created = {"jwt_secret": secrets.token_urlsafe(32), "api_key": secrets.token_urlsafe(24)}
    path = Path(settings.dev_credentials_file)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(created, file)
    return created


def resolve_credentials(
    settings: Settings, host: str, port: int = 8000
) -> tuple[Settings, str | None]:
    """Settings ready to serve, and the development banner when credentials were made."""
    has_user_key = settings.has_user_key
    has_api_key = bool(parse_api_keys(settings.api_keys))
    if has_user_key and has_api_key:
        return settings, None
    if not is_loopback(host):
        missing = (
            []
            if has_user_key
            else [
                "NOTIFIER_JWT_SECRET (or NOTIFIER_JWT_PUBLIC_KEY, NOTIFIER_JWKS_FILE, "
                "NOTIFIER_JWKS_URL)"
            ]
        )
        if not has_api_key:
            missing.append("NOTIFIER_API_KEYS")
        raise StartupError(
            f"refusing to serve on {host} without credentials: set {' and '.join(missing)} "
            "(development mode generates them only on a loopback host)"
        )
    dev = _dev_credentials(settings)
    update: dict[str, object] = {}
    if not has_user_key:
        update["jwt_secret"] = dev["jwt_secret"]
        update["jwt_algorithms"] = ["HS256"]
    if not has_api_key:
        update["api_keys"] = [f"dev:{dev['api_key']}"]
    if settings.interactive_docs is None:
        update["interactive_docs"] = True  # development mode serves /docs and /redoc
    resolved = settings.model_copy(update=update)
    if not has_user_key:
        resolved = resolved.in_development()
    return resolved, _banner(resolved, dev, f"{host}:{port}", not has_user_key, not has_api_key)


def check_secret(settings: Settings, host: str) -> str | None:
    """Refuse a weak or placeholder JWT secret off a loopback host; on one (development
    mode: tests and quick starts use short secrets) return the warning to log instead."""
    problem = weak_secret(settings.jwt_secret) if settings.jwt_secret else None
    if problem is None:
        return None
    if not is_loopback(host):
        raise StartupError(f"{problem} (a loopback --host allows it for development)")
    return f"{problem} (accepted on the loopback host {host}, for development only)"


def check_credentials(settings: Settings, host: str) -> list[str]:
    """Every credential rule that depends on the host, or the first one broken as a
    `StartupError`; the warnings to log.

    Off a loopback host: a weak JWT secret (`check_secret`) or a short or placeholder API
    key refuses to start, and no `NOTIFIER_JWT_AUDIENCE` is warned about (RFC 8725,
    section 3.9: without it, any token of the same issuer and key passes, including ones
    minted for another service). On a loopback host a weak secret is a warning and a
    short API key passes (tests and quick starts use them).
    """
    warnings: list[str] = []
    weak = check_secret(settings, host)
    if weak is not None:
        warnings.append(weak)
    problem = weak_api_keys(settings.api_keys)
    if problem is not None and not is_loopback(host):
        raise StartupError(f"{problem} (a loopback --host allows it for development)")
    if settings.jwt_audience is None and not is_loopback(host):
        warnings.append(
            "NOTIFIER_JWT_AUDIENCE is unset: any token signed with this key is accepted, "
            "including tokens your auth service minted for other services; set it to the "
            "audience of the tokens meant for notifier"
        )
    return warnings


def check_workers(settings: Settings, workers: int) -> None:
    """Several processes share one port only through PostgreSQL and a shared bus."""
    if workers < 1:
        raise StartupError("--workers must be at least 1")
    if workers > 1 and settings.is_sqlite:
        raise StartupError(
            "--workers > 1 needs PostgreSQL (NOTIFIER_DATABASE_URL=postgresql+asyncpg://...): "
            "SQLite serves one process"
        )
    if workers > 1 and settings.effective_bus == "memory":
        raise StartupError(
            "--workers > 1 needs PostgreSQL and a shared bus (NOTIFIER_BUS=postgres or redis): "
            "the memory bus reaches one process only"
        )


def _banner(settings: Settings, dev: dict[str, str], address: str, user: bool, api: bool) -> str:
    host, _, port = address.rpartition(":")
    base = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    lines = ["", "notifier: DEVELOPMENT MODE (generated credentials, loopback only)"]
    lines.append(f"  credentials kept in {Path(settings.dev_credentials_file).resolve()}")
    if user:
        token = mint_token(dev["jwt_secret"], "alice")
        lines.append(f"  NOTIFIER_JWT_SECRET={dev['jwt_secret']}")
        lines.append(f"  user token for 'alice' (24 h): {token}")
        ws_base = base.replace("http", "ws", 1)
        lines.append(f"  subscribe:  {ws_base}/v1/ws?access_token={token}&after=0")
        lines.append("              (or, in a checkout: python examples/listen.py alice)")
        lines.append(f"  inbox demo: {base}/demo?user=alice")
    if api:
        lines.append(f"  NOTIFIER_API_KEYS=dev:{dev['api_key']}")
        lines.append(
            f"  publish:    curl -sS -X POST {base}/v1/notifications "
            f"-H 'Authorization: Bearer {dev['api_key']}' -H 'Content-Type: application/json' "
            """-d '{"user_id": "alice", "type": "hello", "data": {"text": "Hi!"}}'"""
        )
    lines.append("")
    return "\n".join(lines)


async def _check_database(settings: Settings) -> None:
    engine = db.create_engine(settings.database_url)
    try:
        try:
            current = await asyncio.wait_for(db.current_revision(engine), timeout=15)
        except (SQLAlchemyError, OSError, TimeoutError) as error:
            reason = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
            raise StartupError(
                f"cannot reach the database at {_safe_url(settings.database_url)}: {reason} "
                "(check NOTIFIER_DATABASE_URL and that the server is running)"
            ) from None
        if settings.is_sqlite:
            return  # serve migrates SQLite itself
        head = db.head_revision()
        if current is not None and current != head and not db.is_known_revision(current):
            logging.getLogger("notifier.startup").warning(
                "database schema %s is newer than this version (%s): serving, since "
                "migrations keep the previous version working during a rolling upgrade",
                current,
                head,
            )
            return
        if current != head:
            raise StartupError(
                f"database schema is at revision {current or 'none'}, this version needs "
                f"{head}: run `notifier migrate` first"
            )
    finally:
        await engine.dispose()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _check_keys(settings: Settings) -> None:
    """A key set must be there and usable before serving: the file read and parsed, the
    URL fetched once (as the database must answer)."""
    from notifier import keys

    algorithms = settings.effective_algorithms
    try:
        if settings.jwks_file:
            keys.JwksFile(settings.jwks_file, algorithms)
        elif settings.jwks_url:
            keys.parse_jwks(keys.fetch(settings.jwks_url), algorithms)
    except ValueError as error:
        raise StartupError(str(error)) from None
    except OSError as error:
        reason = getattr(error, "reason", None) or error
        raise StartupError(
            f"cannot fetch NOTIFIER_JWKS_URL: {reason} (check the URL and that it answers "
            f"within {keys.FETCH_TIMEOUT_SECONDS:g} s)"
        ) from None


def preflight(settings: Settings) -> None:
    """What `serve` checks outside itself before binding its port: the token key set,
    the database."""
    _check_keys(settings)
    asyncio.run(_check_database(settings))
