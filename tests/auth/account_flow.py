"""Helpers that drive the self-service account pages like a person in a browser would (register, sign in, change)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.auth import passwords
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests.auth.smart_flow import _CHEAP_HASHER, BASE, PASSWORD, hidden

DETAILS = {"given": "Ada Maria", "family": "Lovelace", "birthdate": "1985-12-10"}


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """New passwords are hashed with test-cheap Argon2id parameters (verification reads them from the hash)."""
    monkeypatch.setattr(passwords, "hash_password", _CHEAP_HASHER.hash)


def app_client(store: Store, settings: Settings, **changes: Any) -> TestClient:
    app = create_app(settings.model_copy(update=changes), store=store)
    return TestClient(app, base_url=BASE, raise_server_exceptions=False, follow_redirects=False)


@pytest.fixture
def open_registration(store: Store, smart_settings: Settings) -> Iterator[TestClient]:
    """A SMART server that lets anyone register."""
    with app_client(store, smart_settings, self_registration="open") as http:
        yield http


@pytest.fixture
def invite_registration(store: Store, smart_settings: Settings) -> Iterator[TestClient]:
    """A SMART server that lets people with an invite code register."""
    with app_client(store, smart_settings, self_registration="invite") as http:
        yield http


def register(http: TestClient, username: str, password: str = PASSWORD, **fields: str) -> Any:
    """Open the registration page and submit it (fields override `DETAILS`)."""
    page = http.get("/auth/register")
    assert page.status_code == 200, page.text
    form = {**DETAILS, "username": username, "password": password, "password2": password, **fields}
    return http.post("/auth/register", data={"csrf": hidden(page.text, "csrf"), **form})


def invite(http: TestClient, days: int = 7) -> str:
    made = http.post(
        "/admin/invites", json={"days": days}, headers={"Authorization": "Bearer test-admin-secret"}
    )
    assert made.status_code == 201, made.text
    return str(made.json()["code"])


def sign_in(http: TestClient, username: str, password: str = PASSWORD, code: str = "") -> Any:
    """Open the account page and sign in; returns the page after sign-in."""
    page = http.get("/auth/account")
    assert page.status_code == 200, page.text
    form = {"csrf": hidden(page.text, "csrf"), "username": username, "password": password, "totp": code}
    return http.post("/auth/account/login", data=form)


def change_password(http: TestClient, page: str, current: str, new: str, again: str | None = None) -> Any:
    form = {
        "csrf": hidden(page, "csrf"),
        "current": current,
        "new": new,
        "new2": new if again is None else again,
    }
    return http.post("/auth/account/password", data=form)


def start_totp(http: TestClient, page: str) -> Any:
    return http.post("/auth/account/totp", data={"csrf": hidden(page, "csrf"), "action": "start"})


def confirm_totp(http: TestClient, page: str, code: str) -> Any:
    return http.post(
        "/auth/account/totp", data={"csrf": hidden(page, "csrf"), "action": "confirm", "code": code}
    )
