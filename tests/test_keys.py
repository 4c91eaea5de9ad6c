"""Key sets (notifier/keys.py): tokens picked by `kid`, keys matched to algorithms, a
file reloaded when it changes, a URL fetched with its bounds. No server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from notifier.auth import AuthError, TokenVerifier
from notifier.keys import JwksFile, JwksUrl, fetch, parse_jwks
from tests.jwks_support import SigningKey, jwks, write_jwks

ALGS = ["RS256", "ES256"]


@pytest.fixture(scope="module")
def key_a() -> SigningKey:
    return SigningKey.generate("a", "ES256")


@pytest.fixture(scope="module")
def key_b() -> SigningKey:
    return SigningKey.generate("b", "RS256")


def verifier_of(path: Path, algorithms: list[str] = ALGS) -> tuple[TokenVerifier, JwksFile]:
    keys = JwksFile(str(path), algorithms)
    return TokenVerifier(keys=keys, algorithms=algorithms), keys


def test_tokens_are_verified_with_the_key_their_kid_names(
    tmp_path: Path, key_a: SigningKey, key_b: SigningKey
) -> None:
    """Each token is checked against the key of its `kid`; a kid the set lacks, or a
    token signed by one key but naming the other, is refused."""
    write_jwks(tmp_path / "jwks.json", key_a, key_b)
    verifier, _ = verifier_of(tmp_path / "jwks.json")
    assert verifier.verify(key_a.token("alice")).user_id == "alice"
    assert verifier.verify(key_b.token("bob")).user_id == "bob"
    with pytest.raises(AuthError, match="unknown token key"):
        verifier.verify(key_a.token("alice", kid="c"))
    with pytest.raises(AuthError):
        verifier.verify(key_b.token("bob", kid="a"))  # RS256 token, kid of an EC key


def test_a_token_without_kid_needs_a_single_candidate(tmp_path: Path, key_a: SigningKey) -> None:
    """Without `kid`, a set holding one key for the algorithm serves it; two keys for it
    refuse the token rather than try each."""
    write_jwks(tmp_path / "one.json", key_a)
    assert verifier_of(tmp_path / "one.json")[0].verify(key_a.token("a", kid=None)).user_id == "a"
    other = SigningKey.generate("a2", "ES256")
    write_jwks(tmp_path / "two.json", key_a, other)
    with pytest.raises(AuthError, match="invalid token"):
        verifier_of(tmp_path / "two.json")[0].verify(key_a.token("a", kid=None))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_an_rsa_key_never_verifies_an_hmac_token(tmp_path: Path, key_b: SigningKey) -> None:
    """Key confusion: a token HS256-signed with the RSA public key (which anyone has),
    as PEM or as its JWK's modulus, naming its kid, is refused even with HS256 allowed."""
    write_jwks(tmp_path / "jwks.json", key_b)
    verifier, _ = verifier_of(tmp_path / "jwks.json", ["RS256", "HS256"])
    header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": "b"}))
    payload = _b64(orjson.dumps({"sub": "mallory", "exp": int(time.time()) + 600}))
    signing_input = f"{header}.{payload}".encode()
    for secret in (key_b.public_pem.encode(), key_b.jwk()["n"].encode()):
        signature = _b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
        with pytest.raises(AuthError):
            verifier.verify(f"{header}.{payload}.{signature}")


def test_key_use_alg_and_curve_limit_what_a_key_verifies(key_a: SigningKey) -> None:
    """An encryption key, a key whose own `alg` differs, or a P-256 key for ES384 is
    not usable."""
    assert parse_jwks(orjson.dumps({"keys": [key_a.jwk()]}), ["ES256"])
    for bad in (key_a.jwk(use="enc"), key_a.jwk(alg="ES384"), key_a.jwk(key_ops=["sign"])):
        with pytest.raises(ValueError, match="no key usable"):
            parse_jwks(orjson.dumps({"keys": [bad]}), ["ES256", "ES384"])
    with pytest.raises(ValueError, match="no key usable"):
        parse_jwks(jwks(key_a), ["ES384"])


@pytest.mark.parametrize("document", [b"not json", b"[]", b'{"keys": {}}', b'{"keys": []}'])
def test_a_malformed_document_is_refused(tmp_path: Path, document: bytes) -> None:
    """A file that is not a JWKS with a usable key cannot be loaded at start."""
    path = tmp_path / "jwks.json"
    path.write_bytes(document)
    with pytest.raises(ValueError, match="NOTIFIER_JWKS_FILE"):
        JwksFile(str(path), ALGS)


def test_the_file_is_reloaded_when_it_changes(
    tmp_path: Path, key_a: SigningKey, key_b: SigningKey
) -> None:
    """Rotation by file: add the new key (both verify), drop the old one (only the new
    verifies); a broken version keeps the keys of the last good one."""
    path = tmp_path / "jwks.json"
    write_jwks(path, key_a)
    verifier, keys = verifier_of(path)
    assert not keys.reload_if_changed()
    write_jwks(path, key_a, key_b)
    assert keys.reload_if_changed()
    verifier.verify(key_a.token("u"))
    verifier.verify(key_b.token("u"))
    write_jwks(path, key_b)
    assert keys.reload_if_changed()
    with pytest.raises(AuthError, match="unknown token key"):
        verifier.verify(key_a.token("u"))
    path.write_bytes(b'{"keys": [')
    assert not keys.reload_if_changed()
    verifier.verify(key_b.token("u"))
    path.unlink()
    assert not keys.reload_if_changed()
    verifier.verify(key_b.token("u"))


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, dict[str, tuple[int, dict[str, str], bytes]]]]:
    """A loopback HTTP server; the test sets what each path answers."""
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()


async def test_url_keys_are_fetched_and_refreshed(
    jwks_server: tuple[str, dict[str, tuple[int, dict[str, str], bytes]]],
    key_a: SigningKey,
    key_b: SigningKey,
) -> None:
    """The set is fetched at start and again on refresh; a failed fetch keeps it."""
    base, routes = jwks_server
    routes["/jwks"] = (200, {}, jwks(key_a))
    keys = JwksUrl(base + "/jwks", ALGS, refresh_seconds=300)
    verifier = TokenVerifier(keys=keys, algorithms=ALGS)
    await keys.start()
    verifier.verify(key_a.token("u"))
    routes["/jwks"] = (200, {}, jwks(key_b))
    assert await keys.refresh()
    verifier.verify(key_b.token("u"))
    with pytest.raises(AuthError):
        verifier.verify(key_a.token("u"))
    routes["/jwks"] = (500, {}, b"")
    assert not await keys.refresh()
    verifier.verify(key_b.token("u"))


def test_fetch_follows_no_redirect_and_bounds_the_size(
    jwks_server: tuple[str, dict[str, tuple[int, dict[str, str], bytes]]], key_a: SigningKey
) -> None:
    """The configured URL is the one read: a redirect fails, and so does a document
    over 1 MiB."""
    base, routes = jwks_server
    routes["/moved"] = (302, {"Location": base + "/jwks"}, b"")
    routes["/jwks"] = (200, {}, jwks(key_a))
    routes["/huge"] = (200, {}, b" " * (1024 * 1024 + 1))
    assert fetch(base + "/jwks") == jwks(key_a)
    with pytest.raises((OSError, ValueError)):
        fetch(base + "/moved")
    with pytest.raises(ValueError, match="larger than"):
        fetch(base + "/huge")
