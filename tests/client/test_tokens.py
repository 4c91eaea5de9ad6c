"""When a subscriber renews its token (notifier/client/tokens.py)."""

from __future__ import annotations

import pytest
from jose import jwt

from notifier.client.tokens import claims, fetch, renew_in


def token(**body: object) -> str:
    return str(jwt.encode({"sub": "u", **body}, "k" * 32, algorithm="HS256"))


def test_a_long_token_is_renewed_a_minute_before_exp() -> None:
    assert renew_in(token(iat=0, exp=3600), 1000.0) == 3600 - 60 - 1000


def test_a_short_token_is_renewed_a_fifth_of_its_life_before_exp() -> None:
    assert renew_in(token(iat=100, exp=110), 100.0) == pytest.approx(8.0)


def test_a_token_past_its_renewal_time_is_renewed_now() -> None:
    assert renew_in(token(exp=50), 100.0) == 0.0


def test_no_exp_or_no_jwt_means_no_renewal() -> None:
    assert renew_in(token(), 0.0) is None
    assert renew_in("not-a-jwt", 0.0) is None
    assert claims("a.!!!.c") == {}


async def test_a_source_is_a_string_or_a_plain_or_async_callable() -> None:
    async def async_source() -> str:
        return "b"

    assert [await fetch("a"), await fetch(lambda: "c"), await fetch(async_source)] == [
        "a",
        "c",
        "b",
    ]
    with pytest.raises(TypeError):
        await fetch(lambda: "")
