"""The login page under throttling: 429, Retry-After, a generic message, and which address counts (fhir_server/api/auth_routes.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.auth import login
from fhir_server.auth.login_throttle import PAIR
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests.auth.smart_flow import _CHEAP_HASHER, BASE, PASSWORD, Authorization, add_user, log_in, register

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"


class Clock:
    def __init__(self, at: float = 1_800_000_000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def app_with_users(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The app and user anna; unknown usernames are checked against a test-cheap hash."""
    dummy = _CHEAP_HASHER.hash("not anyone's password")
    monkeypatch.setattr(login, "_dummy_hash", lambda: dummy)
    register(store, "app", name="Test App")
    add_user(store, "anna")
    return store


def behind_proxy(store: Store, settings: Settings, clock: Clock) -> TestClient:
    """A client whose socket peer is the reverse proxy 10.0.0.5, on an app with an injected clock."""
    app = create_app(settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"]}), store=store)
    app.state.auth.flow.clock = clock
    return TestClient(app, base_url=BASE, follow_redirects=False, client=("10.0.0.5", 50000))


@pytest.fixture
def proxied(app_with_users: Store, smart_settings: Settings) -> Iterator[tuple[TestClient, Clock]]:
    clock = Clock()
    with behind_proxy(app_with_users, smart_settings, clock) as http:
        yield http, clock


def login_from(http: TestClient, address: str, password: str, username: str = "anna") -> httpx.Response:
    http.headers["X-Forwarded-For"] = f"6.6.6.6, {address}"
    page = http.get(Authorization().url())
    return log_in(http, page.text, username, password)


def test_a_throttled_login_page_says_when_to_try_again_and_the_owner_elsewhere_still_logs_in(
    proxied: tuple[TestClient, Clock],
) -> None:
    http, _ = proxied
    for _ in range(PAIR.free):
        assert login_from(http, ATTACKER, "wrong guess").status_code == 401
    refused = login_from(http, ATTACKER, "wrong guess")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == str(PAIR.base)
    assert f"try again in {PAIR.base} seconds" in refused.text
    assert 'id="login"' in refused.text
    owner = login_from(http, OWNER, PASSWORD)
    assert owner.status_code == 200 and "fhir_auth_session" in owner.headers["set-cookie"]


def test_the_throttled_page_is_the_same_for_a_username_that_does_not_exist(
    proxied: tuple[TestClient, Clock],
) -> None:
    http, _ = proxied
    for username in ("anna", "nobody"):
        for _ in range(PAIR.free):
            login_from(http, ATTACKER, "wrong guess", username)
    anna = login_from(http, ATTACKER, "wrong guess", "anna")
    nobody = login_from(http, ATTACKER, "wrong guess", "nobody")
    assert anna.status_code == nobody.status_code == 429
    assert anna.headers["retry-after"] == nobody.headers["retry-after"]


def test_without_trusted_proxies_a_forged_x_forwarded_for_does_not_give_a_fresh_address(
    app_with_users: Store, smart_client: TestClient
) -> None:
    smart_client.app.state.auth.flow.clock = Clock()  # type: ignore[attr-defined]
    for i in range(PAIR.free):
        assert login_from(smart_client, f"192.0.2.{i}", "wrong guess").status_code == 401
    assert login_from(smart_client, "192.0.2.99", "wrong guess").status_code == 429
