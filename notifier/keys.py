"""Where user tokens' verification keys come from: one static key, or a key set.

A static key (`NOTIFIER_JWT_SECRET`, `NOTIFIER_JWT_PUBLIC_KEY`) verifies every token; to
rotate it, every token signed with the old one stops working at once. A key set (JWKS,
RFC 7517) holds several keys, each named by its `kid`; a token names the key that signed
it in its header's `kid`, so a new key can be added before tokens use it and the old one
removed once its tokens have expired: no mass logout.

- `JwksFile` (`NOTIFIER_JWKS_FILE`): a JWKS document on disk, read again within about a
  second of any change (a Kubernetes Secret or ConfigMap mounted as a file is updated in
  place).
- `JwksUrl` (`NOTIFIER_JWKS_URL`): the operator's HTTPS URL (your identity provider's
  `jwks_uri`), fetched with a timeout and a size bound, kept, and fetched again every
  `NOTIFIER_JWKS_REFRESH_SECONDS`, and sooner (at most every 10 s) when a token names a
  `kid` the set does not have. Nothing in a token ever chooses a URL: `jku`, `x5u` and
  `jwk` headers are ignored.

A broken update (unreadable file, malformed document, failed fetch) keeps the previous
set and is logged; a token whose `kid` is unknown is refused like any bad token.
A key serves only the algorithms of its type (`oct`: HS*, `RSA`: RS*, `EC`: ES* on the
curve of that algorithm) that are also in `NOTIFIER_JWT_ALGORITHMS`, and only its own
`alg` when the key names one: an RSA public key can never verify an HMAC token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
from jose import jwk
from jose.backends.base import Key
from jose.exceptions import JOSEError

log = logging.getLogger("notifier.keys")

MAX_JWKS_BYTES = 1024 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
FILE_POLL_SECONDS = 1.0
UNKNOWN_KID_REFRESH_SECONDS = 10.0
"""After a token names an unknown `kid`, the URL is fetched again, but not more often."""

_FAMILY = {"oct": ("HS",), "RSA": ("RS", "PS"), "EC": ("ES",)}
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class KeySource(Protocol):
    """What `auth.TokenVerifier` asks for a token's key."""

    def find(self, kid: str | None, alg: str) -> Key | None:
        """The key to verify a token of `alg` naming `kid` (None: the token names none),
        or None when there is none."""
        ...

    async def start(self) -> None:
        """Have the keys before serving (a no-op for keys read when built)."""
        ...

    async def maintain(self) -> None:
        """Keep the keys current for the life of the process (returns at once when they
        never change)."""
        ...


def prepare(key: str | Mapping[str, Any], alg: str) -> Key | None:
    """jose's key object for `alg`, or None if `key` is not a key for it (an RSA public
    key cannot verify ES256; a PEM key is refused for HMAC, jose's guard against
    algorithm confusion)."""
    try:
        return jwk.construct(dict(key) if isinstance(key, Mapping) else key, alg)
    except (JOSEError, ValueError, TypeError, KeyError):
        return None


class StaticKey:
    """One key for every token (`kid` is not looked at)."""

    def __init__(self, key: str, algorithms: list[str]) -> None:
        self._keys = {alg: prepare(key, alg) for alg in algorithms}

    def find(self, kid: str | None, alg: str) -> Key | None:
        return self._keys.get(alg)

    async def start(self) -> None:
        return None

    async def maintain(self) -> None:
        return None


def parse_jwks(document: bytes, algorithms: list[str]) -> dict[str | None, dict[str, Key]]:
    """The usable keys of a JWKS document by `kid` (None for keys without one), each
    prepared for every allowed algorithm it may serve. ValueError if the document is
    not a JWKS or has no usable key."""
    try:
        body = orjson.loads(document)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
        raise ValueError('not a JWKS document: no "keys" list')
    keys: dict[str | None, dict[str, Key]] = {}
    for item in body["keys"]:
        if not isinstance(item, dict):
            continue
        kid = item.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        prepared = {
            alg: key for alg in _algorithms_of(item, algorithms) if (key := prepare(item, alg))
        }
        if prepared:
            keys.setdefault(kid, {}).update(prepared)
    if not keys:
        raise ValueError(f"no key usable with NOTIFIER_JWT_ALGORITHMS ({', '.join(algorithms)})")
    return keys


def _algorithms_of(item: Mapping[str, Any], algorithms: list[str]) -> list[str]:
    """The allowed algorithms a JWK may verify: by its type, its curve, its own `alg`,
    and only for signatures (`use` absent or `sig`)."""
    if item.get("use", "sig") != "sig":
        return []
    ops = item.get("key_ops")
    if isinstance(ops, list) and "verify" not in ops:
        return []
    family = _FAMILY.get(str(item.get("kty")), ())
    own = item.get("alg")
    found = []
    for alg in algorithms:
        if not alg.startswith(family) or (own is not None and own != alg):
            continue
        if alg in _CURVES and item.get("crv") != _CURVES[alg]:
            continue
        found.append(alg)
    return found


class _KeySet:
    """The current keys of a JWKS, replaced whole on each update."""

    def __init__(self, algorithms: list[str]) -> None:
        self._algorithms = algorithms
        self._keys: dict[str | None, dict[str, Key]] = {}

    def load(self, document: bytes) -> int:
        """Replace the keys with `document`'s; the number of keys. ValueError (and the
        keys unchanged) if it is unusable."""
        self._keys = parse_jwks(document, self._algorithms)
        return len(self._keys)

    def find(self, kid: str | None, alg: str) -> Key | None:
        if kid is not None:
            return self._keys.get(kid, {}).get(alg)
        # A token naming no key: only a set with a single candidate can serve it.
        candidates = [by_alg[alg] for by_alg in self._keys.values() if alg in by_alg]
        return candidates[0] if len(candidates) == 1 else None

    def knows(self, kid: str) -> bool:
        return kid in self._keys

    async def start(self) -> None:
        return None


class JwksFile(_KeySet):
    """A JWKS document on disk, read at once (ValueError if unusable) and again when its
    inode, size or modification time change."""

    def __init__(self, path: str, algorithms: list[str], poll: float = FILE_POLL_SECONDS) -> None:
        super().__init__(algorithms)
        self._path = Path(path)
        self._poll = poll
        try:
            self._seen = self._signature()
            self.load(self._path.read_bytes()[: MAX_JWKS_BYTES + 1])
        except OSError as error:
            raise ValueError(f"NOTIFIER_JWKS_FILE cannot be read: {error.strerror}") from None
        except ValueError as error:
            raise ValueError(f"NOTIFIER_JWKS_FILE {path}: {error}") from None
        self._failed: tuple[int, int, int] | None = None

    def _signature(self) -> tuple[int, int, int]:
        stat = os.stat(self._path)
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def reload_if_changed(self) -> bool:
        """Read the file again if it changed; whether the keys were replaced."""
        try:
            signature = self._signature()
        except OSError:
            signature = (0, 0, 0)  # gone: the previous keys stay until it is back
        if signature in (self._seen, self._failed):
            return False
        try:
            document = self._path.read_bytes()
            if len(document) > MAX_JWKS_BYTES:
                raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
            count = self.load(document)
        except (OSError, ValueError) as error:
            log.warning(
                "NOTIFIER_JWKS_FILE not reloaded, keeping the previous keys",
                extra={"error": str(error)[:300]},
            )
            self._failed = signature  # said once per version of the file
            return False
        self._seen = signature
        self._failed = None
        log.info("NOTIFIER_JWKS_FILE reloaded", extra={"keys": count})
        return True

    async def maintain(self) -> None:
        while True:
            await asyncio.sleep(self._poll)
            self.reload_if_changed()


def check_jwks_url(url: str) -> str | None:
    """Why `url` cannot be `NOTIFIER_JWKS_URL`, or None: HTTPS, or plain HTTP to a
    loopback host only (a key set fetched in clear could be replaced on the way)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        return None
    return "NOTIFIER_JWKS_URL must be an https:// URL (http:// only to a loopback host)"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The configured URL is the one fetched: a redirect is a failed fetch."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(url: str, timeout: float = FETCH_TIMEOUT_SECONDS) -> bytes:
    """The document at `url` (blocking): at most `MAX_JWKS_BYTES`, within `timeout`,
    no redirect. OSError or ValueError when it cannot be had."""
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with opener.open(request, timeout=timeout) as response:
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}")
        body: bytes = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
    return body


class JwksUrl(_KeySet):
    """A JWKS document fetched from the operator's URL; empty until the first fetch
    (`refresh`, which `maintain` runs at once and then periodically)."""

    def __init__(self, url: str, algorithms: list[str], refresh_seconds: float) -> None:
        super().__init__(algorithms)
        problem = check_jwks_url(url)
        if problem is not None:
            raise ValueError(problem)
        self._url = url
        self._refresh_seconds = refresh_seconds
        self._wake = asyncio.Event()
        self._last_attempt = -float("inf")
        self._ok = False

    def find(self, kid: str | None, alg: str) -> Key | None:
        key = super().find(kid, alg)
        # An unknown kid: perhaps a key published since the last fetch, so fetch soon.
        if (
            key is None
            and kid is not None
            and not self.knows(kid)
            and time.monotonic() - self._last_attempt >= UNKNOWN_KID_REFRESH_SECONDS
        ):
            self._wake.set()
        return key

    async def refresh(self) -> bool:
        """Fetch and load the set once; whether it worked (failures are logged and
        leave the previous keys)."""
        self._last_attempt = time.monotonic()
        try:
            document = await asyncio.to_thread(fetch, self._url)
            count = self.load(document)
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            log.warning(
                "NOTIFIER_JWKS_URL not fetched, keeping the previous keys",
                extra={"error": str(reason)[:300]},
            )
            return False
        log.info("NOTIFIER_JWKS_URL fetched", extra={"keys": count})
        return True

    async def start(self) -> None:
        self._ok = await self.refresh()

    async def maintain(self) -> None:
        ok = self._ok
        while True:
            # After a failure, try again sooner than a full period.
            wait = self._refresh_seconds if ok else min(self._refresh_seconds, 5.0)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
            else:
                # Woken by an unknown kid: never more often than UNKNOWN_KID_REFRESH_SECONDS.
                pause = UNKNOWN_KID_REFRESH_SECONDS - (time.monotonic() - self._last_attempt)
                if pause > 0:
                    await asyncio.sleep(pause)
            ok = await self.refresh()
