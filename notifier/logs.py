"""Structured (JSON line) logs, with credentials redacted wherever they could appear.

uvicorn logs request paths with their query strings, and a WebSocket token may travel
as `?access_token=...`: the filter below rewrites every record of uvicorn's loggers
and ours before any handler sees it. Query parameters are judged by their name and
value as the server decodes them (`access_toke%6E=` is `access_token=` to the
handshake, so it is to the redaction too), and anything shaped like a JWT is redacted
wherever it appears.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from urllib.parse import unquote_plus

import orjson

_SECRET_NAMES = frozenset(
    {"access_token", "token", "api_key", "apikey", "id_token", "refresh_token", "jwt", "key"}
)
_PAIR = re.compile(r"([^\s?&;=\"'<>]+)=([^&;\s\"'<>]*)")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=%-]+", re.IGNORECASE)
_REDACTED = "[REDACTED]"
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def _pair(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(2)
    decoded_name = unquote_plus(name).strip().lower()
    if decoded_name in _SECRET_NAMES or _JWT.search(unquote_plus(value)):
        return f"{name}={_REDACTED}"
    return match.group(0)


def redact(text: str) -> str:
    """`text` with query-string credentials, bearer credentials and JWTs replaced."""
    if "=" in text:
        text = _PAIR.sub(_pair, text)
    return _JWT.sub(_REDACTED, _BEARER.sub(rf"\1{_REDACTED}", text))


def _scrub(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, tuple):
        return tuple(_scrub(v) for v in value)
    return value


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_scrub(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _scrub(v) for k, v in record.args.items()}
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _scrub(value) if isinstance(value, str | tuple) else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _Handshakes(logging.Filter):
    """Drops uvicorn's line per accepted WebSocket (`"WebSocket /v1/ws?..." [accepted]`,
    logged at info whatever its access log setting): an access-log line, kept only with
    the access log for every request. Written for each of thousands of handshakes a
    second it cost 6% of the server's CPU in a reconnect storm (`python -m bench.storm`,
    py-spy), most of it redacting the token from its query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _ACCEPTED


_ACCEPTED = '%s - "WebSocket %s" [accepted]'


def drops_accept_lines(logger: logging.Logger) -> bool:
    """Whether `configure` drops uvicorn's accept line on this logger: the WebSocket
    protocol then skips making the record (`wsprotocol.LeanWSProtocol`), 2% of a
    worker's CPU while connecting."""
    return any(isinstance(f, _Handshakes) for f in logger.filters)


def configure(level: str = "info", *, access_log: bool = True) -> None:
    """Set up the whole process's logging (`serve` only: an app built in process leaves
    logging alone). Calling it again replaces what an earlier call set up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic narrates every revision check at info; startup errors must stay one line.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        for old in [f for f in logger.filters if isinstance(f, RedactFilter | _Handshakes)]:
            logger.removeFilter(old)
        if not access_log and name == "uvicorn.error":
            logger.addFilter(_Handshakes())  # first: nothing more is spent on those lines
        logger.addFilter(RedactFilter())
    # uvicorn's own `access_log=False` is undone by the loop above in a worker process,
    # which configures logging after uvicorn did: so the flag is applied here as well.
    logging.getLogger("uvicorn.access").propagate = access_log
