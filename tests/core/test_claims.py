"""Claim checks of user tokens (notifier/core/claims.py): no keys, no clock."""

from __future__ import annotations

import pytest

from notifier.core.claims import ClaimsError, UserIdentity, check_claims

NOW = 1_800_000_000.0


def claims(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"sub": "alice", "iat": NOW - 10, "exp": NOW + 60}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def test_valid_claims_give_the_user_and_expiry() -> None:
    """A token with sub, iat and a future exp admits its `sub` and reports its `exp` and
    `iat`."""
    assert check_claims(claims(), now=NOW) == UserIdentity("alice", NOW + 60, NOW - 10)


def test_a_token_without_iat_reports_none() -> None:
    """`iat` is optional: its absence is reported (a revoked user's such tokens are refused)."""
    assert check_claims(claims(iat=None), now=NOW).issued_at is None


def test_exp_is_required() -> None:
    """A token without `exp` is refused (it would never expire)."""
    with pytest.raises(ClaimsError, match="exp"):
        check_claims(claims(exp=None), now=NOW)


@pytest.mark.parametrize("exp", [NOW, NOW - 1, NOW - 3600])
def test_expired_token_is_refused(exp: float) -> None:
    """A token is refused from the moment of its `exp` on."""
    with pytest.raises(ClaimsError, match="expired"):
        check_claims(claims(exp=exp), now=NOW)


def test_leeway_admits_a_recently_expired_token() -> None:
    """Within the leeway a just-expired token passes, and expires at exp + leeway."""
    identity = check_claims(claims(exp=NOW - 5), now=NOW, leeway=10)
    assert identity.expires_at == NOW + 5


def test_leeway_does_not_admit_a_token_expired_beyond_it() -> None:
    """A token expired longer ago than the leeway is refused."""
    with pytest.raises(ClaimsError):
        check_claims(claims(exp=NOW - 11), now=NOW, leeway=10)


@pytest.mark.parametrize("name", ["nbf", "iat"])
def test_claim_in_the_future_is_refused(name: str) -> None:
    """`nbf` or `iat` later than now is refused."""
    with pytest.raises(ClaimsError):
        check_claims(claims(**{name: NOW + 30}), now=NOW)


@pytest.mark.parametrize("name", ["nbf", "iat"])
def test_leeway_admits_slightly_future_nbf_and_iat(name: str) -> None:
    """Clock skew within the leeway on `nbf`/`iat` is tolerated."""
    assert check_claims(claims(**{name: NOW + 5}), now=NOW, leeway=10).user_id == "alice"


def test_nbf_in_the_past_is_accepted() -> None:
    """A `nbf` already passed admits the token."""
    assert check_claims(claims(nbf=NOW - 1), now=NOW).user_id == "alice"


@pytest.mark.parametrize("aud", ["api", ["other", "api"]])
def test_audience_as_string_or_list_matches(aud: object) -> None:
    """A configured audience matches `aud` given as a string or inside a list."""
    assert check_claims(claims(aud=aud), now=NOW, audience="api").user_id == "alice"


@pytest.mark.parametrize("aud", [None, "other", ["other"], [], 5, {"api": 1}])
def test_audience_mismatch_or_missing_is_refused(aud: object) -> None:
    """With an audience configured, a missing or different `aud` is refused."""
    with pytest.raises(ClaimsError, match="aud"):
        check_claims(claims(aud=aud), now=NOW, audience="api")


def test_audience_unchecked_when_not_configured() -> None:
    """Without a configured audience any `aud` passes."""
    assert check_claims(claims(aud="anything"), now=NOW).user_id == "alice"


@pytest.mark.parametrize("iss", [None, "https://evil", ""])
def test_issuer_mismatch_or_missing_is_refused(iss: object) -> None:
    """With an issuer configured, a missing or different `iss` is refused."""
    with pytest.raises(ClaimsError, match="iss"):
        check_claims(claims(iss=iss), now=NOW, issuer="https://idp")


def test_issuer_match_is_accepted() -> None:
    """The configured issuer in `iss` admits the token."""
    assert check_claims(claims(iss="https://idp"), now=NOW, issuer="https://idp").user_id


@pytest.mark.parametrize(
    "sub",
    [
        pytest.param(None, id="missing"),
        pytest.param(123, id="number"),
        pytest.param(["alice"], id="list"),
        pytest.param("", id="empty"),
        pytest.param("x" * 256, id="too-long"),
        pytest.param("al\x00ice", id="NUL"),
    ],
)
def test_bad_sub_is_refused(sub: object) -> None:
    """`sub` must be a string of 1..255 characters, without NUL."""
    with pytest.raises(ClaimsError, match="sub"):
        check_claims(claims(sub=sub), now=NOW)


def test_sub_of_255_characters_is_accepted() -> None:
    """The longest allowed `sub` (255 characters) passes."""
    assert check_claims(claims(sub="x" * 255), now=NOW).user_id == "x" * 255


@pytest.mark.parametrize(
    ("name", "value"),
    [("exp", True), ("nbf", False), ("iat", True), ("exp", "1900000000"), ("nbf", [1])],
)
def test_time_claims_must_be_real_numbers(name: str, value: object) -> None:
    """A boolean or non-number `exp`/`nbf`/`iat` is refused, not read as 1 or 0."""
    with pytest.raises(ClaimsError, match=name):
        check_claims(claims(**{name: value}), now=NOW)
