"""Self-registration and the account pages are in the audit trail like logins (docs/audit.md, fhir_server/api/registration_routes.py, account_routes.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fhir_server.auth import totp
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests.audit.conftest import subtype, trail, whats
from tests.auth.account_flow import (
    app_client,
    change_password,
    cheap_hashes,
    confirm_totp,
    register,
    sign_in,
    start_totp,
)
from tests.auth.test_account_self_service import hidden_text

__all__ = ["cheap_hashes"]  # fixture
NEW = "a brand new passphrase"


@pytest.fixture
def http(store: Store, audit_settings: Settings) -> Iterator[TestClient]:
    with app_client(store, audit_settings, self_registration="open") as client:
        yield client


def outcomes(http: TestClient) -> list[tuple[str, str, str]]:
    """(subtype, outcome, description) of the authentication AuditEvents, oldest first."""
    return [
        (subtype(e), e["outcome"], e["outcomeDesc"]) for e in trail(http) if e["type"]["code"] == "110114"
    ]


def test_registration_records_the_event_and_the_patient_created_from_it(http: TestClient) -> None:
    assert register(http, "ada", given="Ada").status_code == 201
    assert register(http, "ada").status_code == 400
    events = trail(http)
    created = [e for e in events if subtype(e) == "create"]
    assert len(created) == 1 and created[0]["outcomeDesc"] == "create from registration"
    patient = next(iter(whats(created[0])))
    assert patient.startswith("Patient/")
    registered = [e for e in events if subtype(e) == "register"]
    assert [e["outcome"] for e in registered] == ["0", "4"]
    assert any(a.get("altId", "").startswith("user-") for a in registered[0]["agent"])


def test_account_sign_in_password_change_and_totp_enrolment_are_recorded(http: TestClient) -> None:
    assert register(http, "ada").status_code == 201
    assert sign_in(http, "ada", "wrong password").status_code == 401
    page = sign_in(http, "ada")
    assert change_password(http, page.text, "wrong password", NEW).status_code == 401
    assert change_password(http, page.text, "correct horse battery staple", NEW).status_code == 200
    setup = start_totp(http, page.text)
    secret = hidden_text(setup.text, "totp-secret").replace(" ", "")
    assert (
        confirm_totp(http, setup.text, totp.generate(totp.decode_secret(secret), time.time())).status_code
        == 200
    )
    seen = [(s, o) for s, o, _ in outcomes(http)]
    assert seen == [
        ("register", "0"),
        ("110122", "4"),
        ("110122", "0"),
        ("password-change", "4"),
        ("password-change", "0"),
        ("totp-enrol", "0"),
    ], seen


def test_a_password_reset_through_an_operators_link_is_recorded(http: TestClient, store: Store) -> None:
    from fhir_server.auth import password_reset, users
    from tests.auth.smart_flow import hidden

    assert register(http, "ada").status_code == 201
    with store.write() as tx:
        user = users.get_by_username(tx.conn, "ada")
        assert user is not None
        token = password_reset.issue(tx.conn, user.pk, now=int(time.time())).token
    assert http.get(password_reset.PATH, params={"token": "not-the-token-" + "x" * 30}).status_code == 404
    page = http.get(password_reset.PATH, params={"token": token})
    form = {"csrf": hidden(page.text, "csrf"), "token": token, "new": NEW, "new2": NEW}
    assert http.post(password_reset.PATH, data=form).status_code == 200
    resets = [(s, o) for s, o, _ in outcomes(http) if s == "password-reset"]
    assert resets == [("password-reset", "4"), ("password-reset", "0")], resets
    done = next(e for e in trail(http) if subtype(e) == "password-reset" and e["outcome"] == "0")
    assert any(a.get("altId") == user.subject for a in done["agent"]), done["agent"]
