"""User tokens and publisher keys (notifier/auth.py), without a server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt

from notifier.auth import ApiKeys, AuthError, TokenVerifier, bearer

SECRET = "unit-test-secret-0123456789-0123456789-abcdef"
ASYMMETRIC = ["RS256", "ES256"]


def claims(sub: str = "alice", ttl: int = 3600, **extra: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + ttl, **extra}


def pems(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    private = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    return pems(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_keys() -> tuple[str, str]:
    return pems(ec.generate_private_key(ec.SECP256R1()))


def b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def hs256() -> TokenVerifier:
    return TokenVerifier(key=SECRET, algorithms=["HS256"])


# -- HS256 --------------------------------------------------------------------------


def test_hs256_token_is_accepted() -> None:
    """A valid HS256 token signed with the secret yields its sub and exp."""
    body = claims()
    identity = hs256().verify(jwt.encode(body, SECRET, algorithm="HS256"))
    assert identity.user_id == "alice"
    assert identity.expires_at == body["exp"]


def test_hs256_token_with_wrong_secret_is_refused() -> None:
    """A token signed with another secret is refused."""
    with pytest.raises(AuthError):
        hs256().verify(jwt.encode(claims(), SECRET + "x", algorithm="HS256"))


def test_tampered_payload_is_refused() -> None:
    """Replacing the payload of a signed token breaks its signature."""
    header, _, signature = jwt.encode(claims(), SECRET, algorithm="HS256").split(".")
    forged = f"{header}.{b64(claims(sub='mallory'))}.{signature}"
    with pytest.raises(AuthError):
        hs256().verify(forged)


def test_expired_token_is_refused() -> None:
    """A correctly signed but expired token is refused."""
    with pytest.raises(AuthError):
        hs256().verify(jwt.encode(claims(ttl=-10), SECRET, algorithm="HS256"))


def test_token_without_exp_is_refused() -> None:
    """A correctly signed token without exp is refused."""
    body = claims()
    del body["exp"]
    with pytest.raises(AuthError):
        hs256().verify(jwt.encode(body, SECRET, algorithm="HS256"))


def test_audience_and_issuer_are_enforced_when_configured() -> None:
    """With audience/issuer set, matching tokens pass and others are refused."""
    verifier = TokenVerifier(key=SECRET, algorithms=["HS256"], audience="api", issuer="idp")
    good = jwt.encode(claims(aud="api", iss="idp"), SECRET, algorithm="HS256")
    assert verifier.verify(good).user_id == "alice"
    for bad in (claims(aud="web", iss="idp"), claims(aud="api", iss="other"), claims()):
        with pytest.raises(AuthError):
            verifier.verify(jwt.encode(bad, SECRET, algorithm="HS256"))


def test_hs512_is_refused_under_an_hs256_allow_list() -> None:
    """An HS512 token with the right secret is refused when only HS256 is allowed."""
    with pytest.raises(AuthError):
        hs256().verify(jwt.encode(claims(), SECRET, algorithm="HS512"))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(alg: str) -> None:
    """An unsigned token (`alg: none`, any casing) is refused."""
    unsigned = f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims())}."
    with pytest.raises(AuthError):
        hs256().verify(unsigned)


def test_alg_none_cannot_be_allowed() -> None:
    """A verifier cannot be built with `none` in its allow-list."""
    with pytest.raises(ValueError):
        TokenVerifier(key=SECRET, algorithms=["HS256", "none"])


def test_oversized_token_is_refused() -> None:
    """A correctly signed token longer than the size limit is refused."""
    token = jwt.encode(claims(pad="x" * 10_000), SECRET, algorithm="HS256")
    assert hs256().verify(jwt.encode(claims(pad="x" * 100), SECRET, algorithm="HS256"))
    with pytest.raises(AuthError):
        hs256().verify(token)


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b", "a.b.c.d", "....", "not a token at all", "eyJ.eyJ.sig"]
)
def test_malformed_token_is_refused(token: str) -> None:
    """Garbage in place of a token raises AuthError, not another exception."""
    with pytest.raises(AuthError):
        hs256().verify(token)


# -- RS256 / ES256 --------------------------------------------------------------------


def test_rs256_token_is_accepted_with_the_public_key(rsa_keys: tuple[str, str]) -> None:
    """An RS256 token verifies against the PEM public key."""
    private, public = rsa_keys
    verifier = TokenVerifier(key=public, algorithms=ASYMMETRIC)
    assert verifier.verify(jwt.encode(claims(), private, algorithm="RS256")).user_id == "alice"


def test_es256_token_is_accepted_with_the_public_key(ec_keys: tuple[str, str]) -> None:
    """An ES256 token verifies against the PEM public key."""
    private, public = ec_keys
    verifier = TokenVerifier(key=public, algorithms=ASYMMETRIC)
    assert verifier.verify(jwt.encode(claims(), private, algorithm="ES256")).user_id == "alice"


def test_rs256_token_of_another_key_is_refused(rsa_keys: tuple[str, str]) -> None:
    """An RS256 token signed by a different private key is refused."""
    _, public = rsa_keys
    other_private, _ = pems(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    verifier = TokenVerifier(key=public, algorithms=ASYMMETRIC)
    with pytest.raises(AuthError):
        verifier.verify(jwt.encode(claims(), other_private, algorithm="RS256"))


def test_es256_token_checked_against_an_rsa_key_is_refused(
    rsa_keys: tuple[str, str], ec_keys: tuple[str, str]
) -> None:
    """An ES256 token presented to a verifier holding an RSA public key is refused."""
    _, rsa_public = rsa_keys
    ec_private, _ = ec_keys
    verifier = TokenVerifier(key=rsa_public, algorithms=ASYMMETRIC)
    with pytest.raises(AuthError):
        verifier.verify(jwt.encode(claims(), ec_private, algorithm="ES256"))


def test_hs256_token_is_refused_under_an_asymmetric_allow_list(rsa_keys: tuple[str, str]) -> None:
    """An HS256 token is refused when only RS256/ES256 are allowed."""
    _, public = rsa_keys
    verifier = TokenVerifier(key=public, algorithms=ASYMMETRIC)
    with pytest.raises(AuthError):
        verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))


def test_key_confusion_hs256_signed_with_the_public_key_is_refused(
    rsa_keys: tuple[str, str],
) -> None:
    """An HS256 token whose HMAC secret is the public key PEM is refused (key confusion)."""
    _, public = rsa_keys
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims(sub='mallory'))}"
    mac = hmac.new(public.encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    verifier = TokenVerifier(key=public, algorithms=ASYMMETRIC)
    with pytest.raises(AuthError):
        verifier.verify(forged)


# -- API keys -------------------------------------------------------------------------


def test_named_api_key_identifies_its_publisher() -> None:
    """A `name:key` entry admits the key under its name."""
    keys = ApiKeys(["main:k-one", "other:k-two"])
    assert keys.check("k-one").name == "main"
    assert keys.check("k-two").name == "other"


def test_bare_api_key_is_accepted_and_named_without_the_key() -> None:
    """A bare key is admitted under a name that does not reveal the key."""
    keys = ApiKeys(["bare-secret-key"])
    name = keys.check("bare-secret-key").name
    assert name
    assert "bare-secret-key" not in name


def test_api_key_with_a_colon_inside_the_key() -> None:
    """Only the first colon separates the name: the rest is the key."""
    assert ApiKeys(["svc:a:b"]).check("a:b").name == "svc"


@pytest.mark.parametrize("presented", ["wrong", "", "k-one ", "k-on", "main:k-one", "main"])
def test_wrong_api_key_is_refused(presented: str) -> None:
    """Anything but a configured key, including its name, is refused."""
    with pytest.raises(AuthError):
        ApiKeys(["main:k-one"]).check(presented)


def test_empty_api_key_configuration() -> None:
    """No entries (or only empty keys) means no key is accepted."""
    for entries in ([], ["name:"]):
        keys = ApiKeys(entries)
        assert not keys
        with pytest.raises(AuthError):
            keys.check("")


def test_user_token_is_not_an_api_key() -> None:
    """A valid user JWT is refused where a publisher key is expected."""
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    with pytest.raises(AuthError):
        ApiKeys(["main:k-one"]).check(token)


def test_api_key_is_not_a_user_token() -> None:
    """A publisher key is refused where a user JWT is expected."""
    with pytest.raises(AuthError):
        hs256().verify("k-one")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer   abc  ", "abc"),
        ("Bearer ", None),
        ("Bearer", None),
        ("Bearerabc", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Token abc", None),
    ],
)
def test_bearer_header_parsing(header: str | None, expected: str | None) -> None:
    """bearer() returns the credential of a `Bearer <credential>` header and None otherwise."""
    assert bearer(header) == expected


def test_token_with_a_crit_header_is_refused() -> None:
    """A `crit` header names extensions the verifier must understand; it understands
    none, so any token carrying one is refused (RFC 7515, section 4.1.11)."""
    for crit in (["exp"], ["b64"], []):
        token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"crit": crit})
        with pytest.raises(AuthError, match="crit"):
            hs256().verify(token)


def test_token_with_a_non_string_kid_is_refused() -> None:
    """`kid` names a key: anything but a string is a malformed token."""
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": 7})
    with pytest.raises(AuthError, match="malformed"):
        hs256().verify(token)
