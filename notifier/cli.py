"""`notifier serve | migrate | token | send | tail` (also `python -m notifier`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable

from notifier.config import Settings
from notifier.startup import StartupError, load_dev_credentials, load_settings


def _serve(args: argparse.Namespace) -> int:
    from notifier import logs, process
    from notifier.httpguard import GuardedHttpToolsProtocol
    from notifier.startup import check_credentials, check_workers, preflight, resolve_credentials
    from notifier.wsprotocol import LeanWSProtocol

    settings = load_settings()
    if args.access_log or args.no_access_log:
        mode = args.access_log or "off"
        settings = settings.model_copy(update={"access_log": mode})
    every_request = settings.access_log == "all"
    check_workers(settings, args.workers)
    settings, banner = resolve_credentials(settings, args.host, args.port)
    warnings = check_credentials(settings, args.host)
    logs.configure(settings.log_level, access_log=every_request)
    for warning in warnings:
        logging.getLogger("notifier.startup").warning(warning)
    preflight(settings)
    if banner:
        print(banner, flush=True)
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete; a graceful stop
    # is a success for supervisors, so let that re-raise end the process with status 0.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    return process.run(
        settings,
        workers=args.workers,
        host=args.host,
        port=args.port,
        http=GuardedHttpToolsProtocol,
        ws=LeanWSProtocol,
        ws_max_size=settings.ws_max_message_bytes,
        ws_per_message_deflate=False,
        ws_ping_interval=settings.ws_ping_seconds,
        ws_ping_timeout=settings.ws_ping_seconds,
        log_config=None,
        access_log=every_request,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


def _migrate(_args: argparse.Namespace) -> int:
    from notifier import db

    settings = load_settings()

    async def run() -> None:
        engine = db.create_engine(settings.database_url)
        try:
            await db.upgrade(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except OSError as error:
        raise StartupError(f"cannot reach the database: {error}") from None
    except Exception as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
        raise StartupError(f"migration failed: {reason}") from None
    print(f"database schema is at the newest revision ({db.head_revision()})")
    return 0


def _secret(settings: Settings) -> str:
    if settings.jwt_secret:
        return settings.jwt_secret
    dev = load_dev_credentials(settings)
    if dev is None:
        raise StartupError(
            "no JWT secret: set NOTIFIER_JWT_SECRET, or run `notifier serve` once on "
            "localhost to create development credentials"
        )
    return dev["jwt_secret"]


def _api_key(settings: Settings) -> str:
    from notifier.auth import parse_api_keys

    keys = parse_api_keys(settings.api_keys)
    if keys:
        return keys[0][1].decode()
    dev = load_dev_credentials(settings)
    if dev is None:
        raise StartupError(
            "no API key: set NOTIFIER_API_KEYS, or run `notifier serve` once on localhost "
            "to create development credentials"
        )
    return dev["api_key"]


def _token(args: argparse.Namespace) -> int:
    from notifier.auth import mint_token

    settings = load_settings()
    print(mint_token(_secret(settings), args.user, ttl_seconds=args.ttl))
    return 0


def _send(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        data = json.loads(args.data)
    except ValueError:
        raise StartupError('DATA must be a JSON object, e.g. \'{"text": "hi"}\'') from None
    body = json.dumps({"user_id": args.user, "type": args.type, "data": data}).encode()
    headers = {
        "Authorization": f"Bearer {_api_key(settings)}",
        "Content-Type": "application/json",
    }
    if args.idempotency_key:
        headers["Idempotency-Key"] = args.idempotency_key
    request = urllib.request.Request(  # noqa: S310 (the URL is the operator's own)
        args.url.rstrip("/") + "/v1/notifications", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            print(response.read().decode())
    except urllib.error.HTTPError as error:
        print(f"{error.code}: {error.read().decode()}", file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        raise StartupError(f"cannot reach {args.url}: {error.reason}") from None
    return 0


def _minting(secret: str, user: str) -> Callable[[], str]:
    """A token callback: a fresh one-hour token each call (the subscriber renews it)."""
    from notifier.auth import mint_token

    return lambda: mint_token(secret, user, ttl_seconds=3600)


def _tail(args: argparse.Namespace) -> int:
    try:
        from notifier.client import Gap, Revoked, Subscriber, Unauthorized
    except ImportError:
        raise StartupError(
            "`notifier tail` needs the client extra: pip install 'notifier[client]'"
        ) from None
    from notifier.client.tokens import TokenSource

    source: TokenSource = args.token or _minting(_secret(load_settings()), args.user)

    def gap(found: Gap) -> None:
        print(
            f"# notifications after seq {found.after} are gone (retention): refetch the inbox",
            file=sys.stderr,
            flush=True,
        )

    async def run() -> None:
        async with Subscriber(args.url, source, after=args.after, on_gap=gap) as subscriber:
            async for notification in subscriber:
                print(json.dumps(notification, ensure_ascii=False), flush=True)

    try:
        asyncio.run(run())
    except Revoked:
        print("notifier: the user's tokens were revoked", file=sys.stderr)
        return 1
    except Unauthorized:
        print("notifier: the token was refused or has expired", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notifier", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes (PostgreSQL and a shared bus)"
    )
    serve.add_argument(
        "--access-log",
        choices=("errors", "all", "off"),
        help="log failed and slow requests (errors, the default), every request, or none "
        "(NOTIFIER_ACCESS_LOG)",
    )
    serve.add_argument("--no-access-log", action="store_true", help="the same as --access-log off")
    serve.set_defaults(func=_serve)

    migrate = commands.add_parser("migrate", help="bring the database schema to the newest")
    migrate.set_defaults(func=_migrate)

    token = commands.add_parser("token", help="mint a user token (development)")
    token.add_argument("user")
    token.add_argument("--ttl", type=int, default=86400, help="seconds until it expires")
    token.set_defaults(func=_token)

    send = commands.add_parser("send", help="publish one notification")
    send.add_argument("user")
    send.add_argument("type")
    send.add_argument("data", nargs="?", default="{}", help="a JSON object")
    send.add_argument("--url", default="http://127.0.0.1:8000")
    send.add_argument("--idempotency-key")
    send.set_defaults(func=_send)

    tail = commands.add_parser(
        "tail",
        help="print a user's notifications as they arrive, one JSON line each",
        description=(
            "Print USER's notifications as they arrive (one JSON object a line), each "
            "exactly once, resuming across reconnects. Without --token it mints tokens "
            "with NOTIFIER_JWT_SECRET or the development credentials."
        ),
    )
    tail.add_argument("user")
    tail.add_argument("--url", default="http://127.0.0.1:8000")
    tail.add_argument("--token", help="a user JWT (not renewed: tail stops at its exp)")
    tail.add_argument(
        "--after", type=int, default=None, help="replay from this seq (default: only new ones)"
    )
    tail.set_defaults(func=_tail)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except StartupError as error:
        print(f"notifier: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
