"""Caching client JWK Sets no longer than their Cache-Control allows (https://hl7.org/fhir/smart-app-launch/STU2.2/client-confidential-asymmetric.html#response)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.auth.client_assertion import FetchedJwks, InvalidClient, JwksCache, max_age

URL = "https://client.example.com/jwks.json"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    def __call__(self, url: str) -> FetchedJwks:
        self.calls += 1
        jwks: dict[str, Any] = {"keys": [], "version": self.calls}
        return FetchedJwks(jwks, self.seconds)


def test_jwks_is_reused_while_its_max_age_lasts_and_fetched_again_after() -> None:
    clock, fetch = Clock(), Counting(60)
    cache = JwksCache(fetch, clock)
    assert cache.get(URL)["version"] == 1
    clock.now += 59
    assert cache.get(URL)["version"] == 1
    clock.now += 2
    assert cache.get(URL)["version"] == 2


def test_jwks_without_a_cacheable_header_is_fetched_every_time() -> None:
    fetch = Counting(0)
    cache = JwksCache(fetch, Clock())
    cache.get(URL)
    cache.get(URL)
    assert fetch.calls == 2


def test_fresh_fetch_bypasses_and_replaces_the_cached_set() -> None:
    clock, fetch = Clock(), Counting(600)
    cache = JwksCache(fetch, clock)
    cache.get(URL)
    clock.now += 11
    assert cache.get(URL, fresh=True)["version"] == 2
    assert cache.get(URL)["version"] == 2


def test_fresh_fetches_are_throttled_so_unknown_kids_cannot_hammer_the_client() -> None:
    clock, fetch = Clock(), Counting(600)
    cache = JwksCache(fetch, clock, refresh_interval=10)
    cache.get(URL)
    for _ in range(5):
        assert cache.get(URL, fresh=True)["version"] == 1
    clock.now += 10
    assert cache.get(URL, fresh=True)["version"] == 2


def test_fetch_failure_is_an_invalid_client() -> None:
    def broken(url: str) -> FetchedJwks:
        raise OSError("connection refused")

    with pytest.raises(InvalidClient):
        JwksCache(broken, Clock()).get(URL)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 0),
        ("", 0),
        ("max-age=300", 300),
        ("public, max-age=3600", 3600),
        ('Max-Age="120"', 120),
        ("max-age=300, no-store", 0),
        ("no-cache", 0),
        ("private", 0),
        ("max-age=-5", 0),
        ("max-age=abc", 0),
    ],
)
def test_cache_control_header_gives_the_cache_lifetime(header: str | None, seconds: float) -> None:
    assert max_age(header) == seconds


@given(st.text(max_size=80))
def test_any_cache_control_header_gives_a_non_negative_lifetime(header: str) -> None:
    seconds = max_age(header)
    assert seconds >= 0
    if "no-store" in header.lower().replace(" ", "").split(","):
        assert seconds == 0


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["", "public, ", "must-revalidate, "]))
def test_max_age_directive_round_trips(seconds: int, prefix: str) -> None:
    assert max_age(f"{prefix}max-age={seconds}") == seconds
