"""Logging in at the authorization server: passwords and TOTP without replay (fhir_server/auth/login.py)."""

from __future__ import annotations

import pytest

from fhir_server.auth import totp
from fhir_server.auth.login import LoginAttempt, LoginRefused, log_in
from fhir_server.store.sql import Store
from tests.auth.smart_flow import PASSWORD, add_user

pytestmark = pytest.mark.rolled_back

NOW = 1_800_000_000.0


class Clock:
    def __init__(self, at: float = NOW) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def test_the_right_password_logs_in_and_a_wrong_one_does_not(store: Store) -> None:
    add_user(store, "anna", "Patient/p1")
    assert log_in(store, LoginAttempt("anna", PASSWORD)).fhir_user == "Patient/p1"
    with pytest.raises(LoginRefused) as refused:
        log_in(store, LoginAttempt("anna", "wrong password"))
    assert not refused.value.throttled
    with pytest.raises(LoginRefused):
        log_in(store, LoginAttempt("nobody", PASSWORD))


def test_a_user_with_totp_needs_a_current_code_that_works_only_once(store: Store) -> None:
    secret = add_user(store, "tom", with_totp=True)
    assert secret is not None
    key = totp.decode_secret(secret)
    clock = Clock()
    with pytest.raises(LoginRefused):
        log_in(store, LoginAttempt("tom", PASSWORD), clock=clock)
    code = totp.generate(key, NOW)
    with pytest.raises(LoginRefused):
        log_in(store, LoginAttempt("tom", "wrong password", code), clock=clock)
    assert log_in(store, LoginAttempt("tom", PASSWORD, code), clock=clock).username == "tom"
    with pytest.raises(LoginRefused):
        log_in(store, LoginAttempt("tom", PASSWORD, code), clock=clock)
    clock.at += totp.STEP
    assert (
        log_in(store, LoginAttempt("tom", PASSWORD, totp.generate(key, clock.at)), clock=clock).username
        == "tom"
    )
