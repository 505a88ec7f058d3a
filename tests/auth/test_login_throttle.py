"""Login throttling with backoff per (user, address), per user and per address (fhir_server/auth/login_throttle.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from fhir_server.auth import login, totp
from fhir_server.auth.login import LoginAttempt, LoginRefused, log_in
from fhir_server.auth.login_throttle import ADDRESS, PAIR, USER
from fhir_server.auth.tables import login_throttle
from fhir_server.store.sql import Store
from tests.auth.smart_flow import _CHEAP_HASHER, PASSWORD, add_user

NOW = 1_800_000_000.0
ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"


@pytest.fixture(autouse=True)
def cheap_unknown_user_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown usernames are checked against a test-cheap hash instead of a production-cost one."""
    dummy = _CHEAP_HASHER.hash("not anyone's password")
    monkeypatch.setattr(login, "_dummy_hash", lambda: dummy)


class Clock:
    def __init__(self, at: float = NOW) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def fail(store: Store, clock: Clock, username: str = "anna", address: str = ATTACKER, code: str = "") -> None:
    """One wrong guess that is checked (not throttled)."""
    with pytest.raises(LoginRefused) as refused:
        log_in(store, LoginAttempt(username, "wrong guess", code, address), clock=clock)
    assert not refused.value.throttled


def refused_for(store: Store, clock: Clock, username: str = "anna", address: str = ATTACKER) -> int:
    """Seconds an attempt with the right password is told to wait."""
    with pytest.raises(LoginRefused) as refused:
        log_in(store, LoginAttempt(username, PASSWORD, address=address), clock=clock)
    assert refused.value.throttled
    return refused.value.retry_after


def logs_in(store: Store, clock: Clock, username: str = "anna", address: str = OWNER) -> bool:
    return log_in(store, LoginAttempt(username, PASSWORD, address=address), clock=clock).username == username


def guess_as_soon_as_allowed(store: Store, clock: Clock, address: str = ATTACKER) -> None:
    """The attacker's next wrong guess, after waiting out the delay when there is one."""
    try:
        log_in(store, LoginAttempt("anna", "wrong guess", address=address), clock=clock)
    except LoginRefused as refused:
        if refused.throttled:
            clock.at += refused.retry_after
            fail(store, clock, address=address)


def test_an_attacker_guessing_at_one_address_never_stops_the_owner_at_another(store: Store) -> None:
    add_user(store, "anna")
    clock = Clock()
    for _ in range(30):
        guess_as_soon_as_allowed(store, clock)
    assert logs_in(store, clock, address=OWNER)


def test_the_attacker_waits_an_exponentially_growing_capped_delay_between_guesses(store: Store) -> None:
    add_user(store, "anna")
    clock = Clock()
    for _ in range(PAIR.free):
        fail(store, clock)
    waits = []
    for _ in range(7):
        wait = refused_for(store, clock)
        waits.append(wait)
        clock.at += wait - 1
        assert refused_for(store, clock) == 1  # even the right password is not checked before the delay
        clock.at += 1
        fail(store, clock)
    assert waits == [30, 60, 120, 240, 480, 900, 900]


def test_after_the_delay_the_right_password_logs_in_at_that_address_and_resets_its_count(
    store: Store,
) -> None:
    add_user(store, "anna")
    clock = Clock()
    for _ in range(PAIR.free):
        fail(store, clock)
    clock.at += refused_for(store, clock)
    assert logs_in(store, clock, address=ATTACKER)
    for _ in range(PAIR.free):
        fail(store, clock)
    assert refused_for(store, clock) == PAIR.base


def test_a_success_resets_the_count_of_its_address_only_not_the_users(store: Store) -> None:
    add_user(store, "anna")
    clock = Clock()
    for i in range(USER.free - 1):
        fail(store, clock, address=f"10.0.{i // 250}.{i % 250}")
    fail(store, clock, address=OWNER)
    assert refused_for(store, clock, address=OWNER) == USER.base
    clock.at += USER.base
    assert logs_in(store, clock, address=OWNER)
    fail(store, clock, address="10.9.9.9")
    assert refused_for(store, clock, address=OWNER) == 2 * USER.base


def test_guessing_spread_over_many_addresses_only_slows_the_owner_down(store: Store) -> None:
    add_user(store, "anna")
    clock = Clock()
    for i in range(USER.free):
        fail(store, clock, address=f"10.0.{i // 250}.{i % 250}")
    assert refused_for(store, clock, address=OWNER) == USER.base
    clock.at += USER.base
    assert logs_in(store, clock, address=OWNER)


def test_guessing_many_usernames_from_one_address_is_slowed_down_there_only(store: Store) -> None:
    add_user(store, "anna")
    clock = Clock()
    for i in range(ADDRESS.free):
        fail(store, clock, username=f"user{i}")
    assert refused_for(store, clock, address=ATTACKER) == ADDRESS.base
    assert logs_in(store, clock, address=OWNER)


def test_wrong_or_missing_totp_codes_count_as_failures(store: Store) -> None:
    secret = add_user(store, "tom", with_totp=True)
    assert secret is not None
    clock = Clock()
    for _ in range(PAIR.free - 1):
        with pytest.raises(LoginRefused) as refused:
            log_in(store, LoginAttempt("tom", PASSWORD, "000000", ATTACKER), clock=clock)
        assert not refused.value.throttled
    with pytest.raises(LoginRefused):
        log_in(store, LoginAttempt("tom", PASSWORD, "", ATTACKER), clock=clock)
    assert refused_for(store, clock, username="tom") == PAIR.base
    code = totp.generate(totp.decode_secret(secret), clock.at)
    assert log_in(store, LoginAttempt("tom", PASSWORD, code, OWNER), clock=clock).username == "tom"


def test_throttling_is_the_same_for_a_username_that_does_not_exist(store: Store) -> None:
    add_user(store, "anna")
    clock = Clock()
    for _ in range(PAIR.free):
        fail(store, clock, username="anna")
        fail(store, clock, username="nobody")
    assert refused_for(store, clock, username="nobody") == refused_for(store, clock, username="anna")


def test_processes_sharing_the_database_share_the_counts(store: Store) -> None:
    add_user(store, "anna")
    other_process = Store(store.engine, base=store.base)
    clock = Clock()
    for _ in range(PAIR.free):
        fail(store, clock)
    assert refused_for(other_process, clock) == PAIR.base


def test_failures_are_forgotten_after_a_quiet_day_and_their_rows_pruned(store: Store) -> None:
    add_user(store, "anna")
    add_user(store, "bob")
    clock = Clock()
    for _ in range(PAIR.free):
        fail(store, clock, username="anna", address=OWNER)
    clock.at += PAIR.forget + 1
    for _ in range(PAIR.free):
        fail(store, clock, username="bob", address=ATTACKER)
    with store.read() as tx:  # only bob's pair, bob and the attacker's address are left
        assert tx.conn.execute(select(func.count()).select_from(login_throttle)).scalar_one() == 3
    for _ in range(PAIR.free):
        fail(store, clock, username="anna", address=OWNER)
    assert refused_for(store, clock, username="anna", address=OWNER) == PAIR.base
